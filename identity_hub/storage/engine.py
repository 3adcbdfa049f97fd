"""Engines for both databases, with every dialect difference named here.

* SQLite: WAL journal with `synchronous=FULL` (an acknowledged write survives a crash),
  a busy timeout so that several processes can share the file, foreign keys on. SQLite has one
  writer at a time; within a process, writers also queue on an asyncio lock so that none of them
  spins on SQLITE_BUSY.
* PostgreSQL (asyncpg): `synchronous_commit=on`; several hub processes may share the database:
  each owner's writes serialize on that owner's row in `owners`. No ping on checkout (it cost
  three round trips per checkout): connections are recycled after `POOL_RECYCLE_SECONDS`, and
  a connection that fails is invalidated (by SQLAlchemy, or by the unit of work for the
  statements it runs on the driver).

Units of work (`storage/unit.py`) begin and end their transactions themselves on the driver
connection. On PostgreSQL the engine is in the driver's autocommit mode, so that the asyncpg
adapter never starts a transaction of its own: use `Database.read()`/`transaction()`, or
`transactional(engine)` (migrations), never `engine.begin()` for atomic work. SQLite's driver
(sqlite3) only begins a transaction implicitly when none is open, so it needs nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util import greenlet_spawn

from identity_hub.storage.driver import driver_of
from identity_hub.storage.unit import Unit, current_unit, joinable

logger = logging.getLogger(__name__)

POOL_SIZE = 5  # PostgreSQL: as many again may overflow under load
POOL_RECYCLE_SECONDS = 1800
IDLE_CONNECTIONS = POOL_SIZE  # kept checked out between units of work (`Database.checkout`)
_CHECKED_OUT_AT = "identity_hub.checked_out_at"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, pool_size: int = POOL_SIZE) -> AsyncEngine:
    """An AsyncEngine for `url` with the durability and concurrency settings above."""
    if is_sqlite(url):
        engine = create_async_engine(
            url, connect_args={"timeout": 30}, pool_pre_ping=False,
        )

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=POOL_RECYCLE_SECONDS,
        isolation_level="AUTOCOMMIT",
        connect_args={"server_settings": {"synchronous_commit": "on"}},
    )

    @sa.event.listens_for(engine.sync_engine.pool, "checkout")
    def _closed_check(_dbapi_conn: Any, _record: Any, proxy: Any) -> None:
        # Free (no round trip): asyncpg notices a server that went away on its own.
        if proxy.driver_connection.is_closed():
            raise sa.exc.DisconnectionError("connection closed by the server")

    return engine


def transactional(engine: AsyncEngine) -> AsyncEngine:
    """`engine` with transactions managed by SQLAlchemy, for code other than units of work
    (migrations): PostgreSQL engines are in the driver's autocommit mode (module docstring)."""
    if engine.dialect.name == "sqlite":
        return engine
    return engine.execution_options(isolation_level="READ COMMITTED")


def insert_ignore(engine_url: str, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the engine's dialect."""
    dialect_insert = sqlite.insert if is_sqlite(engine_url) else postgresql.insert
    return dialect_insert(table)


class Database:
    """An engine plus the two kinds of block: `read()` and `transaction()`, and `unit()`, which
    makes the blocks of one request share a connection and a transaction (storage/unit.py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self.engine = make_engine(url)
        self.write_lock = asyncio.Lock() if self.sqlite else None
        self._idle: list[tuple[AsyncConnection, float]] = []  # (connection, checked out at)
        self._disposed = False

    def insert_ignore(self, table: sa.Table) -> Any:
        return insert_ignore(self.url, table)

    def begin_statement(self, write: bool) -> str:
        """SQLite takes its write lock when a writing transaction begins, not halfway."""
        return "BEGIN IMMEDIATE" if write and self.sqlite else "BEGIN"

    async def checkout(self) -> AsyncConnection:
        """A pooled connection for a unit of work (which begins and ends its transactions).

        Units hand their connection back with `checkin`, which keeps a few checked out for the
        next unit: a checkout from SQLAlchemy's pool and the checkin cost ~80 µs of CPU each
        (greenlet switches), more than a statement. A kept connection is given out again only
        while its driver connection is open, and for `POOL_RECYCLE_SECONDS` at most.
        """
        while self._idle:
            conn, since = self._idle.pop()
            if time.monotonic() - since < POOL_RECYCLE_SECONDS and usable(conn):
                return conn
            await conn.close()
        raw = await self.engine.raw_connection()
        try:
            # Wrapped as `engine.connect()` does, at half its cost.
            conn = AsyncConnection(self.engine, sa.engine.Connection(self.engine.sync_engine,
                                                                     connection=raw))
        except BaseException:
            await greenlet_spawn(raw.close)
            raise
        conn.info[_CHECKED_OUT_AT] = time.monotonic()
        return conn

    async def checkin(self, conn: AsyncConnection) -> None:
        """Give back a connection from `checkout`, with no transaction open."""
        if conn.in_transaction():  # SQLAlchemy's bookkeeping of statements it ran
            await conn.rollback()
        if len(self._idle) < IDLE_CONNECTIONS and not self._disposed and usable(conn):
            self._idle.append((conn, conn.info.get(_CHECKED_OUT_AT, 0.0)))
            return
        await conn.close()

    def unit(self, *, nonce: tuple[str, int] | None = None) -> UnitScope:
        """`async with db.unit():` the blocks run inside share one connection and transaction,
        committed at the end. Inside a unit of this database already, the outer unit is joined.

        `nonce` (digest, expires_at_us) is a transport nonce, consumed by this unit.

        Raises:
            AuthenticationFailed: (on exit) the nonce was already used.
        """
        return UnitScope(self, nonce)

    def read(self) -> Block:
        """`async with db.read() as conn:` a block that only reads."""
        return Block(self, False)

    def transaction(self) -> Block:
        """`async with db.transaction() as conn:` a block that writes: its work is committed
        (with its unit's) unless it raises."""
        return Block(self, True)

    async def dispose(self) -> None:
        self._disposed = True
        idle, self._idle = self._idle, []
        for conn, _since in idle:
            await conn.close()
        await self.engine.dispose()


def usable(conn: AsyncConnection) -> bool:
    """Whether a connection may serve another unit of work: open, valid, no transaction."""
    if conn.closed or conn.invalidated:
        return False
    driver = driver_of(conn)
    return driver.usable() and not driver.in_transaction()


class UnitScope:
    """The context manager of `Database.unit()` (a class: the request path enters several)."""

    __slots__ = ("db", "nonce", "token", "unit")

    def __init__(self, db: Database, nonce: tuple[str, int] | None) -> None:
        self.db = db
        self.nonce = nonce
        self.unit: Unit | None = None
        self.token: contextvars.Token[Unit | None] | None = None

    async def __aenter__(self) -> None:
        if joinable(self.db) is not None:
            assert self.nonce is None, "a nonce belongs to the outermost unit"
            return
        self.unit = Unit(self.db, self.nonce)
        self.token = current_unit.set(self.unit)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.token is None or self.unit is None:
            return
        current_unit.reset(self.token)
        self.token = None
        await self.unit.finish(exc if exc_type is not None else None)


class Block:
    """The context manager of `Database.read()` and `Database.transaction()`: joins the current
    unit, or is a unit of its own."""

    __slots__ = ("db", "own", "unit", "write")

    def __init__(self, db: Database, write: bool) -> None:
        self.db = db
        self.write = write
        self.own: UnitScope | None = None
        self.unit: Unit | None = None

    async def __aenter__(self) -> AsyncConnection:
        unit = joinable(self.db)
        if unit is None:
            self.own = UnitScope(self.db, None)
            await self.own.__aenter__()
            unit = self.own.unit
            assert unit is not None
        try:
            conn = await unit.enter(self.write)
        except BaseException as exc:
            if self.own is not None:
                await self.own.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self.unit = unit
        return conn

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self.unit is not None
        try:
            await self.unit.leave(self.write, failed=exc_type is not None)
        finally:
            if self.own is not None:
                await self.own.__aexit__(exc_type, exc, tb)
