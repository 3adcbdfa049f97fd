"""The database driver's own connection, for the statements of the request path.

SQLAlchemy's execution layer costs about 100 µs of CPU per statement on top of the driver's
30 µs (asyncpg), and an authenticated write runs about eight statements: the statements every
request runs (transaction control, the transport nonce, the tenant check, the write path of a
commit) are plain SQL executed here on the driver connection under the SQLAlchemy connection, in
the same transaction; everything else stays SQLAlchemy Core on that connection.

SQL is written once with PostgreSQL's numbered parameters (`$1`); the SQLite text is derived
(`?1`). Differences between the drivers are named here:

* parameters: `$n` (asyncpg) and `?n` (sqlite3);
* JSON columns: asyncpg decodes them (SQLAlchemy's codec, set on connect), sqlite3 returns text;
  both take JSON text as a parameter;
* booleans: sqlite3 returns 0/1.
"""

from __future__ import annotations

import abc
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

logger = logging.getLogger(__name__)

_PARAM = re.compile(r"\$(\d+)")
_HEX = re.compile(r"[0-9a-f]{1,128}")
_DID_LITERAL = re.compile(r"did:[a-z0-9]{1,64}:[A-Za-z0-9._:%-]{1,2000}")
_INFO_KEY = "identity_hub.driver"


class Sql:
    """One statement in both dialects' parameter styles."""

    __slots__ = ("pg", "sqlite")

    def __init__(self, text: str, *, sqlite: str | None = None) -> None:
        self.pg = text
        self.sqlite = _PARAM.sub(r"?\1", sqlite if sqlite is not None else text)


class Driver(abc.ABC):
    """Runs `Sql` on one driver connection; made once per pooled connection (`driver_of`)."""

    sqlite = False

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    @abc.abstractmethod
    async def fetch(self, q: Sql, *args: Any) -> Sequence[Sequence[Any]]:
        """All rows of `q`."""

    async def fetchrow(self, q: Sql, *args: Any) -> Sequence[Any] | None:
        rows = await self.fetch(q, *args)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def control(self, statement: str) -> None:
        """BEGIN, COMMIT or ROLLBACK."""

    async def begin_insert(self, begin: str, insert: Sql, literals: tuple[str, int]) -> bool:
        """`begin`, then `insert` (an INSERT ... ON CONFLICT DO NOTHING RETURNING of the two
        parameters `literals`, a hex digest and an integer); False when it inserted nothing."""
        await self.control(begin)
        return await self.fetchrow(insert, *literals) is not None

    async def begin_insert_probe(self, begin: str, insert: Sql, literals: tuple[str, int],
                                 probe: Sql, value: str) -> tuple[bool, bool] | None:
        """`begin_insert`, and whether `probe` (a SELECT of one parameter, `value`) returns a
        row, in one round trip: (inserted, found). None when this driver cannot combine them
        (nothing was sent then)."""
        return None

    @abc.abstractmethod
    def in_transaction(self) -> bool:
        """Whether the connection is inside a transaction."""

    def usable(self) -> bool:
        """False once the connection is known to be closed."""
        return True

    def json_value(self, value: Any) -> Any:
        """A JSON column's value as Python data."""
        return value


class AsyncpgDriver(Driver):
    async def fetch(self, q: Sql, *args: Any) -> Sequence[Sequence[Any]]:
        return await self.raw.fetch(q.pg, *args)  # type: ignore[no-any-return]

    async def fetchrow(self, q: Sql, *args: Any) -> Sequence[Any] | None:
        return await self.raw.fetchrow(q.pg, *args)  # type: ignore[no-any-return]

    async def control(self, statement: str) -> None:
        await self.raw.execute(statement)

    async def begin_insert(self, begin: str, insert: Sql, literals: tuple[str, int]) -> bool:
        """One round trip: both statements as one simple query, the values as literals (only
        a hex digest and an integer are ever inlined; anything else takes two round trips)."""
        digest, number = literals
        if not (isinstance(digest, str) and _HEX.fullmatch(digest) and type(number) is int):
            return await super().begin_insert(begin, insert, literals)
        text = insert.pg.replace(" RETURNING 1", "").replace("$1", f"'{digest}'")
        status = await self.raw.execute(f"{begin}; {text.replace('$2', str(number))}")
        return bool(status == "INSERT 0 1")

    async def begin_insert_probe(self, begin: str, insert: Sql, literals: tuple[str, int],
                                 probe: Sql, value: str) -> tuple[bool, bool] | None:
        """One simple query whose row count answers both: the insert's rows once, and once
        more if the probe finds a row too (0: not inserted, 1: inserted, 2: and found). Only a
        hex digest, an integer and a DID-syntax value (no quote, no backslash) are inlined."""
        digest, number = literals
        if not (isinstance(digest, str) and _HEX.fullmatch(digest) and type(number) is int
                and isinstance(value, str) and _DID_LITERAL.fullmatch(value)):
            return None
        cte = insert.pg.replace("$1", f"'{digest}'").replace("$2", str(number))
        found = probe.pg.replace("$1", f"'{value}'")
        status = await self.raw.execute(
            f"{begin}; WITH n AS ({cte}) SELECT 1 FROM n UNION ALL "
            f"SELECT 1 FROM n CROSS JOIN ({found}) AS p")
        rows = int(status.rsplit(" ", 1)[1]) if status.startswith("SELECT ") else -1
        if rows not in (0, 1, 2):
            raise RuntimeError(f"unexpected status {status!r}")
        return rows > 0, rows == 2

    def in_transaction(self) -> bool:
        return bool(self.raw.is_in_transaction())

    def usable(self) -> bool:
        return not self.raw.is_closed()


class SqliteDriver(Driver):
    sqlite = True

    async def fetch(self, q: Sql, *args: Any) -> Sequence[Sequence[Any]]:
        return list(await self.raw.execute_fetchall(q.sqlite, args))

    async def control(self, statement: str) -> None:
        await self.raw.execute_fetchall(statement)

    def in_transaction(self) -> bool:
        return bool(self.raw.in_transaction)

    def json_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


def driver_of(conn: AsyncConnection) -> Driver:
    """The driver of a connection checked out by `Database` (cached for the pooled connection)."""
    sync = conn.sync_connection
    assert sync is not None
    info = sync.info
    driver: Driver | None = info.get(_INFO_KEY)
    if driver is None:
        raw = sync.connection.driver_connection
        driver = SqliteDriver(raw) if sync.dialect.name == "sqlite" else AsyncpgDriver(raw)
        info[_INFO_KEY] = driver
    return driver


def json_param(value: Any) -> str:
    """A JSON column's parameter, as SQLAlchemy's JSON type writes it (None is JSON null)."""
    return json.dumps(value)
