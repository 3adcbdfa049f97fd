"""Bad peers benchmark: write on hub A → visible on its good peer B, with and without bad peers.

Two real hubs on 127.0.0.1 (SQLite by default, `--postgres` for PostgreSQL); A replicates the
owner to B and, in the second run, also to four bad peers: one accepting connections and never
answering (each request to it waits for the 30 s sync request timeout), one answering raw random
bytes, one answering HTTP 200 junk, one closed port. Anti-entropy rounds are an hour apart, so
only A's push hints carry the writes. Each run writes `--samples` commits one after the other and
prints the medians of write latency on A and of write → visible in B's database, over `--runs`
runs per configuration (fresh hubs each run).

    .venv/bin/python bench/sync_bad_peers.py [--samples 30] [--runs 3] [--postgres]
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
from identity_hub.identity import HubIdentity
from identity_hub.storage import store
from identity_hub.storage.engine import Database
from identity_hub.storage.migrate import upgrade
from identity_hub.sync import peers
from tests.support.bad_peers import bad_peers
from tests.support.identities import identity_for
from tests.support.servers import running_hub
from tests.support.sync import commit_revs, make_identities


class _View:
    def __init__(self, runtime: object) -> None:
        self.runtime = runtime


async def _count(runtime: object, owner: str) -> int:
    return len(await commit_revs(_View(runtime), owner))  # type: ignore[arg-type]


async def one_run(with_bad: bool, samples: int, urls: list[str], tmp: pathlib.Path
                  ) -> tuple[list[float], list[float]]:
    ids = make_identities(tmp / "ids", 6)
    owner = identity_for("Ed25519")
    opts = {"sync_interval_seconds": 3600.0, "sync_request_timeout_seconds": 30.0}
    run_dir = tmp / uuid.uuid4().hex[:8]
    async with bad_peers() as bad, \
            running_hub(run_dir / "a", urls[0], ids[0], **opts) as a, \
            running_hub(run_dir / "b", urls[1], ids[1], **opts) as b:
        for h in (a, b):
            await store.add_tenant(h.runtime.db, owner.did)
        await peers.add_peer(b.runtime.db, owner.did, a.did, a.url)
        async with HubClient(a.url, owner.did, owner.keys, hub_did=a.did,
                             resolver=DidResolver(ResolverConfig())) as client:
            await client.grant(b.did, context="schema.identity.foundation/0.1",
                               type_="HubSync", allow="-R--")
            (_p, _r, error), = await b.server.app[appkeys.SYNC].sync_now()
            assert error is None, error
            await peers.add_peer(a.runtime.db, owner.did, b.did, b.url)
            if with_bad:
                for path, url in zip(ids[2:], bad.urls.values(), strict=True):
                    await peers.add_peer(a.runtime.db, owner.did, HubIdentity.load(path).did,
                                         url)
            await asyncio.sleep(0.5)  # the queues' first pulls of the bad peers are under way
            writes, visible = [], []
            for i in range(samples):
                before = await _count(b.runtime, owner.did)
                t0 = time.perf_counter()
                await client.create({**PLAYLIST, "name": f"latency {i}"})
                writes.append((time.perf_counter() - t0) * 1000)
                while await _count(b.runtime, owner.did) == before:
                    if time.perf_counter() - t0 > 120:
                        raise SystemExit(f"write {i} not visible on B after 120 s")
                    await asyncio.sleep(0.002)
                visible.append((time.perf_counter() - t0) * 1000)
    return writes, visible


async def _fresh(urls: list[str], pg: object | None) -> list[str]:
    if pg is None:
        fresh = [u.replace(".db", f"-{uuid.uuid4().hex[:6]}.db") for u in urls]
    else:
        names = [f"badpeers_{n}_{uuid.uuid4().hex[:6]}" for n in ("a", "b")]
        await pg.execute(*(f"CREATE DATABASE {n}" for n in names))  # type: ignore[attr-defined]
        fresh = [pg.url(n) for n in names]  # type: ignore[attr-defined]
    for url in fresh:
        db = Database(url)
        await upgrade(db.engine)
        await db.dispose()
    return fresh


async def run(args: argparse.Namespace, tmp: pathlib.Path, pg: object | None) -> None:
    base = [f"sqlite+aiosqlite:///{tmp / f'{n}.db'}" for n in ("a", "b")]
    rows = []
    for with_bad in (False, True):
        medians_w, medians_v, p90s = [], [], []
        for _ in range(args.runs):
            writes, visible = await one_run(with_bad, args.samples, await _fresh(base, pg), tmp)
            medians_w.append(median(writes))
            medians_v.append(median(visible))
            p90s.append(percentile(visible, 90))
        rows.append(["B + 4 bad peers" if with_bad else "B only", args.runs, args.samples,
                     " ".join(f"{m:.1f}" for m in medians_w),
                     " ".join(f"{m:.1f}" for m in medians_v),
                     f"{median(medians_v):.1f}", f"{max(p90s):.1f}"])
    print(table(["A's peers", "runs", "writes/run", "write ms (median/run)",
                 "write→visible on B ms (median/run)", "median of medians", "worst p90"],
                rows, f"write on A → visible on B ({'PostgreSQL' if pg else 'SQLite'})"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    quiet_logs(level=50)  # the bad peers' failures are expected
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="identity-hub-bench-badpeers-"))
    if not args.postgres:
        asyncio.run(run(args, tmp, None))
        return
    with postgres() as pg:
        asyncio.run(run(args, tmp, pg))


if __name__ == "__main__":
    main()
