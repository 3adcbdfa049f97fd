"""Benchmark: what a grant change costs when it re-judges a grantee's commits
(docs/replication.md, "Which commits count").

    .venv/bin/python bench/exclusion.py [--runs 7] [--objects 200] [--updates 4] [--postgres]

Setup, on a fresh hub (SQLite in a temporary directory; with --postgres a database of the
embedded PostgreSQL, or of IDENTITY_HUB_TEST_DATABASE_URL): an owner with a CRUD grant to an app, and the app's `--objects` playlists with
`--updates` updates each, all accepted under the grant. Each run then stores, through
`CommitService.write` (the path a replicated commit takes after its checks):

* revoke: a delete of the app's grant dated before all of the app's commits (a revocation racing
  them from another hub): every app commit is re-judged and excluded, every object refolded;
* regrant: a new grant dated before them: every app commit counts again;
* baseline: a grant to another DID with no commits (nothing to re-judge).

Reported: the median over --runs runs, and per re-judged commit. (A revocation or grant dated
now re-judges only the grantee's commits dated from then on: normally none or a few; this is
the worst case, a change dated before all of them.)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _support import postgres

from identity_hub.client import grant_payload
from identity_hub.identity import HubIdentity
from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE
from identity_hub.protocol.commit import parse_commit
from identity_hub.runtime import open_runtime
from identity_hub.settings import load_settings
from identity_hub.storage import store
from tests.support.actors import Actor, iso, playlist


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config: dict[str, Any] = {"data_dir": tmp}
        if args.database_url:
            config["database_url"] = args.database_url
        settings = load_settings(config, environ={})
        identity = HubIdentity.create(Path(tmp) / "identity", compat_2019=False)
        async with open_runtime(settings, identity=identity) as rt:
            owner, app = Actor("Ed25519"), Actor("Ed25519")
            await store.add_tenant(rt.db, owner.did)
            start = time.time()

            def grant(grantee: str, at: float) -> dict[str, Any]:
                return owner.commit(owner.did, interface="Permissions", context=GRANT_CONTEXT,
                                    type_=GRANT_TYPE, committed_at=iso(at),
                                    payload=grant_payload(owner.did, grantee,
                                                          context="https://schema.org",
                                                          type_="MusicPlaylist", allow="CRUD"))

            async def call(actor: Actor, commit: dict[str, Any]) -> dict[str, Any]:
                resp = await rt.hub.handle(actor.did, actor.write(rt.identity.did, commit,
                                                                  owner.did))
                assert resp["@type"] == "WriteResponse", resp
                return resp

            current = (await call(owner, grant(app.did, start - 290)))["revisions"][0]
            for i in range(args.objects):
                at = start - 200 + i * 0.01
                oid = (await call(app, app.commit(owner.did, payload=playlist(f"{i}"),
                                                  committed_at=iso(at))))["revisions"][0]
                for k in range(args.updates):
                    await call(app, app.commit(owner.did, operation="update", object_id=oid,
                                               payload=playlist(f"{i}.{k}"),
                                               committed_at=iso(at + 0.001 * (k + 1))))
            judged = args.objects * (1 + args.updates)

            async def store_commit(wire: dict[str, Any]) -> float:
                t0 = time.perf_counter()
                await rt.hub.commits.write(owner.did, parse_commit(wire))
                return time.perf_counter() - t0

            times: dict[str, list[float]] = {"revoke": [], "regrant": [], "baseline": []}
            for r in range(args.runs):
                times["revoke"].append(await store_commit(owner.commit(
                    owner.did, interface="Permissions", context=GRANT_CONTEXT, type_=GRANT_TYPE,
                    operation="delete", object_id=current,
                    committed_at=iso(start - 280 + r * 0.001))))
                wire = grant(app.did, start - 285 + r * 0.001)
                times["regrant"].append(await store_commit(wire))
                current = parse_commit(wire).rev
                times["baseline"].append(await store_commit(grant(Actor("Ed25519").did,
                                                                  start - 10)))
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{backend}: {judged} app commits in {args.objects} objects; median of {args.runs}")
    for name, values in times.items():
        med = statistics.median(values)
        per = f", {med / judged * 1e6:.0f} µs per re-judged commit" if name != "baseline" else ""
        print(f"  {name:9s} {med * 1e3:8.1f} ms{per}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    args.database_url = None
    if not args.postgres:
        asyncio.run(run(args))
        return
    with postgres() as pg:
        async def go() -> None:
            args.database_url = await pg.create_database("exclusion")
            await run(args)

        asyncio.run(go())


if __name__ == "__main__":
    main()
