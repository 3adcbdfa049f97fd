"""Engines for both databases, with every dialect difference named here.

* SQLite: WAL journal with `synchronous=FULL` (an acknowledged write survives a crash),
  a busy timeout so that several processes can share the file, foreign keys on. SQLite has one
  writer at a time; within a process, writers also queue on an asyncio lock so that none of them
  spins on SQLITE_BUSY.
* PostgreSQL (asyncpg): `synchronous_commit=on`; several hub processes may share the database:
  each owner's writes serialize on that owner's row in `owners`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

logger = logging.getLogger(__name__)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
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
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": {"synchronous_commit": "on"}},
    )


def insert_ignore(engine_url: str, table: sa.Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING for the engine's dialect."""
    dialect_insert = sqlite.insert if is_sqlite(engine_url) else postgresql.insert
    return dialect_insert(table)


class Database:
    """An engine plus the two kinds of unit of work: `read()` and `transaction()`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self.engine = make_engine(url)
        self._write_lock = asyncio.Lock() if self.sqlite else None

    def insert_ignore(self, table: sa.Table) -> Any:
        return insert_ignore(self.url, table)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed when the block exits without an exception."""
        if self._write_lock is not None:
            async with self._write_lock, self.engine.begin() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()
