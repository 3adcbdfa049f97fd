"""Replication benchmark: two real hubs on 127.0.0.1, each on its own PostgreSQL database.

1. Backlog: hub A holds N commits of one owner (written through its core API); hub B pulls them
   over the encrypted transport (`SyncService.sync_now`, pages of 200) and applies them
   (signature check + the commit service's write, one transaction each): commits/s.
2. Latency: the owner writes one commit to A over HTTP (HubClient); the time until it is in B's
   database, carried by A's push hint (anti-entropy rounds set to an hour, so only hints count).

    .venv/bin/python bench/sync.py [--count 10000] [--latency-samples 50] [--sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import tempfile
import time
import uuid

import _support  # noqa: F401  (puts the repository on sys.path)
from _support import PLAYLIST, median, percentile, postgres, quiet_logs, table

from identity_hub import appkeys
from identity_hub.client import HubClient
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.storage import store
from identity_hub.storage.engine import Database
from identity_hub.storage.migrate import upgrade
from identity_hub.sync import peers
from tests.support.actors import Actor
from tests.support.identities import identity_for
from tests.support.servers import running_hub
from tests.support.sync import commit_revs, make_identities, sync_grant


class _View:
    def __init__(self, runtime: object) -> None:
        self.runtime = runtime


async def _migrated(url: str) -> str:
    db = Database(url)
    await upgrade(db.engine)
    await db.dispose()
    return url


async def run(count: int, samples: int, urls: list[str], tmp: pathlib.Path) -> None:
    ids = make_identities(tmp, 2)
    person = identity_for("Ed25519")  # did:key: it can receive encrypted answers too
    owner = Actor("Ed25519", person.key)
    owner.did, owner.kid = person.did, person.kid
    opts = {"sync_interval_seconds": 3600.0}
    async with running_hub(tmp / "a", urls[0], ids[0], **opts) as a, \
            running_hub(tmp / "b", urls[1], ids[1], **opts) as b:
        for h in (a, b):
            await store.add_tenant(h.runtime.db, owner.did)
        hub_a = a.runtime.hub
        for h in (a, b):
            assert (await hub_a.handle(owner.did, owner.write(a.did, sync_grant(owner, h.did))
                                       ))["@type"] == "WriteResponse"
        t0 = time.perf_counter()
        for i in range(count):
            commit = owner.commit(owner.did, payload={**PLAYLIST, "name": f"p{i}"})
            assert (await hub_a.handle(owner.did, owner.write(a.did, commit)))["@type"] == \
                "WriteResponse"
        print(f"backlog of {count} commits written on A in {time.perf_counter() - t0:.1f} s")
        await peers.add_peer(b.runtime.db, owner.did, a.did, a.url)
        service = b.server.app[appkeys.SYNC]
        shown = [0.0]

        def progress(_peer: object, cursor: int, last_seq: int) -> None:
            if time.monotonic() - shown[0] > 2:
                shown[0] = time.monotonic()
                print(f"  pulled {cursor}/{last_seq}", flush=True)

        t0 = time.perf_counter()
        results = await service.sync_now(owner.did, progress)
        took = time.perf_counter() - t0
        (_peer, result, error), = results
        assert error is None and result is not None, error
        stored = result.tally.stored
        print(table(["backlog", "stored", "seconds", "commits/s"],
                    [[count + 2, stored, f"{took:.1f}", f"{stored / took:.0f}"]],
                    "pull + apply (B from A, encrypted transport)"))
        # latency with push hints: A must know B as a peer of the owner to hint it
        await peers.add_peer(a.runtime.db, owner.did, b.did, b.url)
        t0 = time.perf_counter()
        (_peer, back, error), = await a.server.app[appkeys.SYNC].sync_now(owner.did)
        assert error is None and back is not None, error
        took = time.perf_counter() - t0
        print(table(["commits", "already held", "seconds", "commits/s"],
                    [[back.pulled, back.tally.held, f"{took:.1f}", f"{back.pulled / took:.0f}"]],
                    "re-pull of commits already held (A from B)"))
        latencies = []
        async with HubClient(a.url, person.did, person.keys, hub_did=a.did,
                             resolver=DidResolver(ResolverConfig())) as client:
            for i in range(samples):
                before = len(await commit_revs(_View(b.runtime), owner.did))  # type: ignore[arg-type]
                t0 = time.perf_counter()
                await client.create({**PLAYLIST, "name": f"latency {i}"})
                while len(await commit_revs(_View(b.runtime), owner.did)) == before:  # type: ignore[arg-type]
                    await asyncio.sleep(0.002)
                latencies.append((time.perf_counter() - t0) * 1000)
        print(table(["samples", "median ms", "p90 ms", "max ms"],
                    [[samples, f"{median(latencies):.1f}", f"{percentile(latencies, 90):.1f}",
                      f"{max(latencies):.1f}"]],
                    "write on A (HTTP) → visible in B's database (push hint)"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=50)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()
    quiet_logs()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="identity-hub-bench-sync-"))
    if args.sqlite:
        urls = [f"sqlite+aiosqlite:///{tmp / f'{n}.db'}" for n in ("a", "b")]
        asyncio.run(_prepare_and_run(args, urls, tmp, None))
        return
    with postgres() as pg:
        names = [f"sync_{n}_{uuid.uuid4().hex[:6]}" for n in ("a", "b")]
        asyncio.run(_prepare_and_run(args, [pg.url(n) for n in names], tmp, (pg, names)))


async def _prepare_and_run(args: argparse.Namespace, urls: list[str], tmp: pathlib.Path,
                           pg: tuple[object, list[str]] | None) -> None:
    if pg is not None:
        server, names = pg
        await server.execute(*(f"CREATE DATABASE {n}" for n in names))  # type: ignore[attr-defined]
    for url in urls:
        await _migrated(url)
    await run(args.count, args.latency_samples, urls, tmp)


if __name__ == "__main__":
    main()
