"""Latency of a rich object query (a 20-object page: type + one data field, sorted by updated_at)
at 1k, 10k, 100k and 1M objects of one owner, on PostgreSQL and SQLite (issue #8).

    .venv/bin/python bench/query_latency.py [--sizes 1000,10000,100000,1000000] [--quick]
                                            [--iterations N] [--backend sqlite|postgres]

The `objects` table is filled directly with bulk inserts (PostgreSQL: COPY through asyncpg;
SQLite: executemany in one transaction per step), growing one database per backend from size to
size; ANALYZE after each step. Rows are what the fold writes for a created object: interface
Collections, context https://schema.org, types MusicPlaylist 50%, MusicAlbum 20% (both with
`numTracks` 1..30), MusicRecording 20%, Person 10%; increasing `updated_at_us` and `create_seq`.

As docs/queries.md asks an operator to do for a field applications filter on, the bench creates
`query_sql.field_index_sql(dialect, "numTracks")` in each database (printed in the output).

Timed: `parse_rich_query` + `run_object_query` (the hub's query path) for
`where {"numTracks": 7} sort -updated_at limit 20` on one connection from
`Database(url).read()`, after a warm-up; p50/p95 of --iterations queries. Also the next page
(its skip_token) and the first page including the pool checkout (a fresh `read()` block each
time). Each page is checked (all rows match, in order, and as many as exist). A size whose
population would take more than --max-populate seconds (estimated from the previous step's rate)
is skipped on that backend and reported as such.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import pathlib
import random
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import _support as S
import sqlalchemy as sa

from identity_hub.storage.engine import Database
from identity_hub.storage.migrate import upgrade
from identity_hub.storage.query import parse_rich_query
from identity_hub.storage.query_sql import compile_object_query, field_index_sql, run_object_query
from identity_hub.storage.tables import objects

OWNER = "did:example:bench-owner"
INTERFACE, CONTEXT, TYPE = "Collections", "https://schema.org", "MusicPlaylist"
TYPES = (("MusicPlaylist", 50), ("MusicAlbum", 20), ("MusicRecording", 20), ("Person", 10))
FIELD, VALUE = "numTracks", 7
QUERY = {"where": {FIELD: VALUE}, "sort": "-updated_at", "limit": 20}
PAGE = 20
COLUMNS = ("owner_id", "object_id", "has_create", "interface", "context", "type", "type_iri",
           "commit_strategy", "created_by", "created_at", "created_at_us", "updated_at_us",
           "create_seq", "deleted", "win_rev", "win_operation", "win_committed_at_us", "data",
           "commit_count")
SCHEMA = "http://schema.org/"  # the type IRI the hub stores (objects.type_iri, migration 0006)
BATCH = 20_000
START_US = 1_700_000_000_000_000


def _pick_type(rnd: random.Random) -> str:
    x = rnd.randrange(100)
    for name, share in TYPES:
        if x < share:
            return name
        x -= share
    return TYPES[-1][0]


def generate(start: int, stop: int, owner_id: int, counts: dict[str, int]) -> Iterator[tuple]:
    """Rows `start`..`stop - 1` (deterministic per index); counts the query's matches."""
    for i in range(start, stop):
        rnd = random.Random(i)
        type_ = _pick_type(rnd)
        data: dict[str, Any] = {"@context": CONTEXT, "@type": type_, "name": f"{type_} {i}"}
        if type_ in ("MusicPlaylist", "MusicAlbum"):
            data[FIELD] = rnd.randint(1, 30)
        if type_ == TYPE and data[FIELD] == VALUE:
            counts["matches"] += 1
        object_id = hashlib.sha256(f"bench-object-{i}".encode()).hexdigest()
        updated = START_US + i * 1_000
        created = updated - rnd.randrange(0, 500)
        yield (owner_id, object_id, True, INTERFACE, CONTEXT, type_, SCHEMA + type_, "basic", OWNER,
               S.iso_us(created), created, updated, i + 1, False, object_id, "create", created,
               json.dumps(data), 1)


class Backend:
    """One database, grown size by size."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.db = Database(url)
        self.size = 0
        self.owner_id = 0
        self.counts = {"matches": 0}
        self.rate = 0.0  # rows/s of the last population step
        self.index_sql = ""

    async def setup(self) -> None:
        await upgrade(self.db.engine)
        self.index_sql = field_index_sql(self.db.engine.dialect.name, FIELD,
                                         type_columns=("type_iri",))
        async with self.db.transaction() as conn:
            await conn.exec_driver_sql(self.index_sql)
            result = await conn.execute(sa.text(
                "INSERT INTO owners (did, last_seq) VALUES (:d, 0) RETURNING id"), {"d": OWNER})
            self.owner_id = int(result.scalar_one())

    async def grow(self, size: int) -> float:
        """Insert rows up to `size`, then ANALYZE; seconds taken."""
        t0 = time.perf_counter()
        if self.name == "postgres":
            await self._grow_postgres(size)
        else:
            await asyncio.to_thread(self._grow_sqlite, size)
        elapsed = time.perf_counter() - t0
        self.rate = (size - self.size) / elapsed
        self.size = size
        return elapsed

    async def _grow_postgres(self, size: int) -> None:
        import asyncpg

        base, _, query = self.url.replace("postgresql+asyncpg://", "postgresql://"
                                          ).partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if p)
        conn = await asyncpg.connect(base, **({"host": params["host"]} if "host" in params
                                              else {}))
        try:
            rows = generate(self.size, size, self.owner_id, self.counts)
            while batch := [r for _, r in zip(range(BATCH), rows)]:
                await conn.copy_records_to_table("objects", records=batch, columns=COLUMNS)
            await conn.execute("UPDATE owners SET last_seq = $1 WHERE id = $2", size,
                               self.owner_id)
            await conn.execute("ANALYZE objects")
        finally:
            await conn.close()

    def _grow_sqlite(self, size: int) -> None:
        path = self.url.split("///", 1)[1]
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("BEGIN IMMEDIATE")
            sql = (f"INSERT INTO objects ({', '.join(COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(COLUMNS))})")
            rows = generate(self.size, size, self.owner_id, self.counts)
            while batch := [r for _, r in zip(range(BATCH), rows)]:
                conn.executemany(sql, batch)
            conn.execute("UPDATE owners SET last_seq = ? WHERE id = ?", (size, self.owner_id))
            conn.execute("COMMIT")
            conn.execute("ANALYZE")
        finally:
            conn.close()

    async def page(self, conn: Any, query: dict[str, Any]) -> tuple[list[Any], str | None]:
        rq = parse_rich_query(query)
        # As the hub queries since migration 0006: by type IRI, not by the spelled context.
        return await run_object_query(conn, rq, owner_id=self.owner_id, interface=INTERFACE,
                                      extra=[objects.c.type_iri == SCHEMA + TYPE])

    def check(self, rows: list[Any], expected: int) -> None:
        stamps = [r.updated_at_us for r in rows]
        if len(rows) != expected or stamps != sorted(stamps, reverse=True) or any(
                r.type != TYPE or json.loads(r.data if isinstance(r.data, str)
                                             else json.dumps(r.data))[FIELD] != VALUE
                for r in rows):
            raise SystemExit(f"{self.name}: wrong page at {self.size:,} objects "
                             f"({len(rows)} rows, expected {expected})")

    async def plan(self) -> str:
        """The access path of the first page (EXPLAIN, compressed to its index line)."""
        q = compile_object_query(parse_rich_query(QUERY), dialect=self.db.engine.dialect.name,
                                 owner_id=self.owner_id, interface=INTERFACE,
                                 extra=[objects.c.type_iri == SCHEMA + TYPE])
        sql = str(q.compile(dialect=self.db.engine.dialect,
                            compile_kwargs={"literal_binds": True}))
        prefix = "EXPLAIN " if self.name == "postgres" else "EXPLAIN QUERY PLAN "
        async with self.db.read() as conn:
            lines = [" ".join(str(c) for c in row) for row in
                     await conn.exec_driver_sql(prefix + sql)]
        text = "\n".join(lines)
        used = re.findall(r"(Index Only Scan Backward|Index Scan Backward|Index Only Scan|"
                          r"Index Scan|Bitmap Index Scan|Seq Scan|USING (?:COVERING )?INDEX|"
                          r"SCAN) ?(?:using |on )?(\w+)", text)
        how = ", ".join(f"{kind.lower()} {index}" for kind, index in used[:2]) or lines[0][:80]
        if "Sort" in text or "TEMP B-TREE" in text:
            how += ", + sort"
        return how

    async def measure(self, iterations: int, warmup: int) -> dict[str, Any]:
        expected1 = min(PAGE, self.counts["matches"])
        expected2 = min(PAGE, max(0, self.counts["matches"] - PAGE))
        out: dict[str, Any] = {"matches": self.counts["matches"]}
        async with self.db.read() as conn:
            for _ in range(warmup):
                rows, token = await self.page(conn, QUERY)
            self.check(rows, expected1)
            first, second = [], []
            for _ in range(iterations):
                t0 = time.perf_counter()
                rows, token = await self.page(conn, QUERY)
                first.append(time.perf_counter() - t0)
            if token is not None:
                nxt = {**QUERY, "skip_token": token}
                for _ in range(warmup):
                    rows2, _t = await self.page(conn, nxt)
                self.check(rows2, expected2)
                if rows2 and rows2[0].updated_at_us >= rows[-1].updated_at_us:
                    raise SystemExit(f"{self.name}: the next page overlaps the first")
                for _ in range(iterations):
                    t0 = time.perf_counter()
                    await self.page(conn, nxt)
                    second.append(time.perf_counter() - t0)
        checkout = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            async with self.db.read() as conn:
                await self.page(conn, QUERY)
            checkout.append(time.perf_counter() - t0)
        out["p50"], out["p95"] = S.percentile(first, 50), S.percentile(first, 95)
        if second:
            out["next_p50"], out["next_p95"] = (S.percentile(second, 50),
                                                S.percentile(second, 95))
        out["checkout_p50"] = S.percentile(checkout, 50)
        out["plan"] = await self.plan()
        return out


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:.2f}"


async def main_async(args: argparse.Namespace) -> None:
    S.quiet_logs()
    sizes = sorted({int(s) for s in args.sizes.split(",")}) if args.sizes else (
        [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000, 1_000_000])
    iterations = args.iterations or (30 if args.quick else 200)
    warmup = 5 if args.quick else 20
    names = args.backend or ["postgres", "sqlite"]
    t_start, load_before = time.perf_counter(), os.getloadavg()
    results: dict[tuple[str, int], dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="identity-hub-bench-q-") as tmp, \
            contextlib.ExitStack() as stack:
        backends = []
        for name in names:
            if name == "sqlite":
                url = f"sqlite+aiosqlite:///{pathlib.Path(tmp) / 'bench.db'}"
            else:
                pg = stack.enter_context(S.postgres())
                url = await pg.create_database("benchq")
            backend = Backend(name, url)
            await backend.setup()
            backends.append(backend)
        try:
            for size in sizes:
                for b in backends:  # the backends take turns at every size
                    if b.name in skipped:
                        continue
                    if b.rate and (size - b.size) / b.rate > args.max_populate:
                        skipped[b.name] = (f"{size:,} skipped: populating would take "
                                           f"~{(size - b.size) / b.rate:.0f} s at "
                                           f"{b.rate:,.0f} rows/s")
                        continue
                    took = await b.grow(size)
                    r = await b.measure(iterations, warmup)
                    r["populate_s"] = took
                    results[(b.name, size)] = r
                    print(f"{b.name} {size:,}: populated in {took:.1f} s "
                          f"({b.rate:,.0f} rows/s), p50 {ms(r['p50'])} ms; {r['plan']}",
                          file=sys.stderr)
        finally:
            for b in backends:
                await b.db.dispose()
    print()
    for b in backends:
        print(f"{b.name}: field index created as an operator would (docs/queries.md):\n"
              f"  {b.index_sql}")
    rows = []
    for b in backends:
        for size in sizes:
            r = results.get((b.name, size))
            if r is None:
                continue
            rows.append([f"{b.name} {size:,}", f"{r['matches']:,}", ms(r["p50"]), ms(r["p95"]),
                         ms(r.get("next_p50")), ms(r.get("next_p95")), ms(r["checkout_p50"]),
                         "yes" if r["p50"] <= 0.010 else "NO", f"{r['populate_s']:.1f}"])
    print()
    print(S.table(["backend, objects", "matching", "p50 ms", "p95 ms", "next p50", "next p95",
                   "p50 +checkout", "<=10ms", "fill s"], rows,
                  title=f"where {json.dumps(QUERY['where'])} sort {QUERY['sort']} limit {PAGE} "
                        f"(type {TYPE}), {iterations} queries after {warmup} warm-up; "
                        "run_object_query on one pooled connection"))
    print()
    for (name, size), r in results.items():
        print(f"plan {name} {size:,}: {r['plan']}")
    for name, why in skipped.items():
        print(f"{name}: {why}")
    print(f"\n{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; total {time.perf_counter() - t_start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", help="comma-separated object counts (default 1k,10k,100k,1M)")
    parser.add_argument("--quick", action="store_true", help="1k and 10k, 30 queries")
    parser.add_argument("--iterations", type=int, default=0, help="timed queries (default 200)")
    parser.add_argument("--max-populate", type=float, default=480.0,
                        help="skip a size whose population would take longer (s)")
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"],
                        help="only this backend (repeatable)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
