"""Benchmark: the cost of a permission check with 1 and with 1,000 grants, and what grants and
the audit log add to a whole request compared with the owner's own.

    .venv/bin/python bench/permissions.py [--runs 9] [--checks 300] [--requests 30]
                                          [--database-url URL]

Setup, on a fresh hub (SQLite in a temporary directory unless --database-url names an empty
database): two owners with 20 playlists each and an app DID holding a `CR--` grant on
MusicPlaylist from both. The first owner has given no other grant; the second has given 999 more,
written through the hub (half to other DIDs on MusicPlaylist, half to the same app on other types).

Each run samples every measure for both owners, one after the other, so that the load of a shared
machine falls on both alike. Reported: the median over --runs runs of
* check: one grant lookup (`permissions.index.grants_at`, the query every request makes) on an
  open connection, and, for scale, `SELECT 1` on the same connection;
* read/write: a whole `Hub.handle` object query (context+type) or create, by the owner and by the
  app (the app's includes the grant lookup, the SQL filter and the audit entry).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from identity_hub.identity import HubIdentity
from identity_hub.permissions import index
from identity_hub.runtime import Runtime, open_runtime
from identity_hub.settings import load_settings
from identity_hub.storage import store
from tests.support.actors import Actor, playlist

SCHEMA = "https://schema.org"
GRANT_CTX = "schema.identity.foundation/0.1"


async def timed(repeat: int, fn: Callable[[], Awaitable[Any]]) -> float:
    """The mean time of one call (seconds) over `repeat` calls."""
    start = time.perf_counter()
    for _ in range(repeat):
        await fn()
    return (time.perf_counter() - start) / repeat


class Owner:
    """One owner on the hub, the app it grants to, and the grants it has given."""

    def __init__(self, rt: Runtime, app: Actor) -> None:
        self.rt = rt
        self.hub_did = rt.identity.did
        self.owner = Actor()
        self.app = app
        self.grants = 0

    async def call(self, actor: Actor, request: dict[str, Any]) -> dict[str, Any]:
        resp = await self.rt.hub.handle(actor.did, request)
        if resp.get("@type") == "ErrorResponse":
            raise RuntimeError(f"refused: {resp}")
        return resp

    async def setup(self) -> None:
        await store.add_tenant(self.rt.db, self.owner.did)
        for i in range(20):
            await self.call(self.owner, self.owner.write(
                self.hub_did, self.owner.commit(self.owner.did, payload=playlist(f"{i}"))))
        await self.grant(self.app.did, "MusicPlaylist", "CR--")

    async def grant(self, grantee: str, type_: str, allow: str) -> None:
        body = {"@context": GRANT_CTX, "@type": "PermissionGrant", "owner": self.owner.did,
                "grantee": grantee, "context": SCHEMA, "type": type_, "allow": allow}
        commit = self.owner.commit(self.owner.did, interface="Permissions", context=GRANT_CTX,
                                   type_="PermissionGrant", payload=body)
        await self.call(self.owner, self.owner.write(self.hub_did, commit))
        self.grants += 1

    async def sample(self, checks: int, requests: int) -> dict[str, float]:
        """One sample of every measure."""
        async with self.rt.db.read() as conn:
            oid = await store.owner_id(conn, self.owner.did)
            assert oid is not None

            async def check() -> None:
                found = await index.grants_at(conn, oid, self.app.did, SCHEMA, "MusicPlaylist",
                                              "read", store.now_us(), current_only=True)
                assert len(found) == 1

            async def select_one() -> None:
                await conn.execute(sa.text("SELECT 1"))

            out = {"check": await timed(checks, check),
                   "select 1": await timed(checks, select_one)}

        def reader(actor: Actor) -> Callable[[], Awaitable[Any]]:
            async def read() -> None:
                resp = await self.call(actor, actor.object_query(
                    self.hub_did, self.owner.did, context=SCHEMA, type="MusicPlaylist"))
                assert len(resp["objects"]) >= 20

            return read

        def writer(actor: Actor) -> Callable[[], Awaitable[Any]]:
            async def write() -> None:
                await self.call(actor, actor.write(self.hub_did, actor.commit(
                    self.owner.did, payload=playlist("bench")), self.owner.did))

            return write

        out["read owner"] = await timed(requests, reader(self.owner))
        out["read app"] = await timed(requests, reader(self.app))
        out["write owner"] = await timed(requests, writer(self.owner))
        out["write app"] = await timed(requests, writer(self.app))
        return out


def report(label: str, m: dict[str, float]) -> None:
    print(f"\n{label}")
    print(f"  permission check (one indexed lookup): {m['check'] * 1e6:7.1f} µs   "
          f"(SELECT 1 on the same connection: {m['select 1'] * 1e6:.1f} µs)")
    for kind in ("read", "write"):
        owner, app = m[f"{kind} owner"], m[f"{kind} app"]
        print(f"  {kind:5s} request: owner {owner * 1e3:6.2f} ms   app {app * 1e3:6.2f} ms   "
              f"overhead {(app - owner) * 1e3:+6.2f} ms ({(app / owner - 1) * 100:+.0f} %)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--checks", type=int, default=300)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-permissions-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{tmp}/hub.db"
        settings = load_settings({"data_dir": tmp, "database_url": url}, environ={})
        identity = HubIdentity.create(Path(tmp), compat_2019=False)
        async with open_runtime(settings, identity=identity) as rt:
            app = Actor()
            small, large = Owner(rt, app), Owner(rt, app)
            await small.setup()
            await large.setup()
            start = time.perf_counter()
            for i in range(999):
                if i % 2:
                    await large.grant(Actor().did, "MusicPlaylist", "-R--")
                else:
                    await large.grant(app.did, f"Type{i}", "CRUD")
            print(f"database: {'SQLite' if rt.db.sqlite else 'PostgreSQL'}; {large.grants - 1} "
                  f"more grants written through the hub in {time.perf_counter() - start:.1f} s")
            samples: dict[int, list[dict[str, float]]] = {small.grants: [], large.grants: []}
            for _ in range(args.runs):
                for who in (small, large):
                    samples[who.grants].append(await who.sample(args.checks, args.requests))
            print(f"median of {args.runs} runs ({args.checks} checks, {args.requests} requests "
                  "of each kind per run)")
            medians = {n: {k: statistics.median(s[k] for s in runs) for k in runs[0]}
                       for n, runs in samples.items()}
            for n, m in medians.items():
                report(f"{n} grant{'s' if n > 1 else ''}", m)
            ratio = medians[large.grants]["check"] / medians[small.grants]["check"]
            print(f"\ncheck with {large.grants} grants / with {small.grants}: {ratio:.2f}×")


if __name__ == "__main__":
    asyncio.run(main())
