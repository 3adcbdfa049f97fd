"""Units of work: the database work of one request, on one connection, in one transaction.

A request's blocks (`Database.read()`, `Database.transaction()`) join the unit current in its
task (a context variable), so the tenant check, the permission checks, the write and its audit
entry share one pooled connection and one transaction, committed when the unit ends (before the
response leaves). Outside a unit each block is a unit of its own. The unit drives the transaction
itself (BEGIN/COMMIT/ROLLBACK on the driver connection, `storage/driver.py`); SQLAlchemy's
statements run inside it.

The rules that keep the semantics of separate transactions:

* a block that raises rolls the transaction back: the refused work leaves nothing (a later block
  of the same request, e.g. the audit entry of a refusal, starts a new transaction);
* a block entered after a write block completed commits that write first, so no later failure
  can undo it;
* a transport nonce (`nonce=`) is the first statement of every transaction of the unit until
  one commits: a replay is refused before anything else runs, and the nonce is consumed with the
  request's own commit. A request whose work was rolled back (or that never touched the
  database) stores its nonce in a transaction of its own when the unit ends. Two requests with
  one nonce: the second blocks on the first's uncommitted insert and is refused once it commits;
  if the first rolled back, the one whose nonce commits first is answered and the other refused.

SQLite has one writer: a unit that may write takes the database's asyncio write lock and
`BEGIN IMMEDIATE`, so that no transaction ever has to upgrade a read lock. On SQLite a unit that
read first and then writes commits the read transaction and begins a write transaction.

A unit belongs to the asyncio task that opened it: a task started inside a request (which
inherits the context variable) gets units of its own, so that one connection never serves two
tasks at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.errors import AuthenticationFailed
from identity_hub.storage.driver import Driver, Sql, driver_of


class UnitDatabase(Protocol):
    """What a unit needs of the database it runs on (storage/engine.py's Database has it).
    A protocol here, so that this module does not import the engine, which imports it."""

    sqlite: bool
    write_lock: asyncio.Lock | None

    def begin_statement(self, write: bool) -> str: ...

    async def checkout(self) -> AsyncConnection: ...

    async def checkin(self, conn: AsyncConnection) -> None: ...


logger = logging.getLogger(__name__)

current_unit: contextvars.ContextVar[Unit | None] = contextvars.ContextVar(
    "identity_hub_unit", default=None)


def joinable(db: UnitDatabase) -> Unit | None:
    """The unit the current task's blocks on `db` join, if any."""
    unit = current_unit.get()
    if unit is None or unit.db is not db or unit.task is not asyncio.current_task():
        return None
    return unit

NONCE_INSERT = Sql("INSERT INTO nonces (digest, expires_at_us) VALUES ($1, $2) "
                   "ON CONFLICT DO NOTHING RETURNING 1")


class Unit:
    """The state of one unit of work; use it through `Database.unit()`."""

    def __init__(self, db: UnitDatabase, nonce: tuple[str, int] | None) -> None:
        self.db = db
        self.task = asyncio.current_task()
        self.nonce = nonce
        self.conn: AsyncConnection | None = None
        self.driver: Driver | None = None
        self.open: str | None = None  # None, "read" or "write": the open transaction's kind
        self.depth = 0  # blocks entered and not left
        self.dirty = False  # a write block completed in the open transaction
        self.nonce_in_txn = False
        self.nonce_stored = nonce is None
        self.replayed = False
        self._locked = False

    # --- blocks ----------------------------------------------------------------------------------

    async def enter(self, write: bool) -> AsyncConnection:
        """The connection for a block, with a transaction open that allows its kind of work.

        Raises:
            AuthenticationFailed: the unit's nonce was already used.
        """
        if self.replayed:
            raise AuthenticationFailed("replayed did-requester-nonce")
        if self.depth == 0 and self.open is not None and (
                self.dirty or (write and self.open == "read" and self.db.sqlite)):
            await self._commit()
        if self.open is None:
            await self._begin(write or not self.nonce_stored)
        elif write and self.open == "read" and self.db.sqlite:
            await self._commit()  # a nested write block (no block nests today)
            await self._begin(True)
        self.depth += 1
        assert self.conn is not None
        return self.conn

    async def probe(self, query: Sql, value: str) -> bool | None:
        """Whether `query` (a SELECT of one parameter) finds a row, asked in the round trip that
        begins the unit's first transaction and consumes its nonce (the tenant check that
        starts every request: a database round trip saved). None when that cannot be combined
        (the unit has begun already, has no nonce, or the driver cannot): nothing was done then.

        Raises:
            AuthenticationFailed: the unit's nonce was already used.
        """
        if self.replayed:
            raise AuthenticationFailed("replayed did-requester-nonce")
        if (self.open is not None or self.depth or self.nonce is None or self.nonce_stored
                or self.db.sqlite):
            return None
        if self.conn is None:
            self.conn = await self.db.checkout()
            self.driver = driver_of(self.conn)
        assert self.driver is not None
        self.open = "write"
        try:
            answer = await self.driver.begin_insert_probe(
                self.db.begin_statement(True), NONCE_INSERT, self.nonce, query, value)
        except BaseException:
            await self._rollback()
            raise
        if answer is None:
            self.open = None
            return None
        fresh, found = answer
        if not fresh:
            await self._rollback()
            self.replayed = True
            raise AuthenticationFailed("replayed did-requester-nonce")
        self.nonce_in_txn = True
        return found

    async def leave(self, write: bool, failed: bool) -> None:
        self.depth -= 1
        if failed:
            if self.depth == 0:
                await self._rollback()
        elif write:
            self.dirty = True

    # --- the end of the unit ---------------------------------------------------------------------

    async def finish(self, exc: BaseException | None) -> None:
        """Commit (or, after an exception, roll back), store an unused nonce, release all.

        Raises:
            AuthenticationFailed: the nonce was already used.
        """
        try:
            if exc is not None:
                await self._rollback()
                if not self.nonce_stored and not self.replayed:
                    with contextlib.suppress(Exception):
                        await self._nonce_alone()
                return
            if self.open is not None:
                try:
                    await self._commit()
                except BaseException:
                    if not self.nonce_stored:
                        with contextlib.suppress(Exception):
                            await self._nonce_alone()
                    raise
            if not self.nonce_stored and not self.replayed:
                await self._nonce_alone()
            if self.replayed:
                raise AuthenticationFailed("replayed did-requester-nonce")
        finally:
            await self._close()

    async def _nonce_alone(self) -> None:
        await self._begin(True)
        await self._commit()

    # --- transaction control ---------------------------------------------------------------------

    async def _begin(self, write: bool) -> None:
        if self.conn is None:
            self.conn = await self.db.checkout()
            self.driver = driver_of(self.conn)
        assert self.driver is not None
        lock = self.db.write_lock
        if write and lock is not None:
            await lock.acquire()
            self._locked = True
        begin = self.db.begin_statement(write)
        if self.nonce is None or self.nonce_stored:
            try:
                await self.driver.control(begin)
            except BaseException:
                await self._broken()
                raise
            self.open = "write" if write else "read"
            return
        self.open = "write"
        try:
            fresh = await self.driver.begin_insert(begin, NONCE_INSERT, self.nonce)
        except BaseException:
            await self._rollback()
            raise
        if not fresh:
            await self._rollback()
            self.replayed = True
            raise AuthenticationFailed("replayed did-requester-nonce")
        self.nonce_in_txn = True

    async def _commit(self) -> None:
        assert self.driver is not None
        try:
            await self.driver.control("COMMIT")
        except BaseException:
            await self._rollback()
            raise
        if self.nonce_in_txn:
            self.nonce_stored = True
        self._ended()

    async def _rollback(self) -> None:
        """Roll the open transaction back; a connection that cannot is dropped (never raises:
        the caller is already handling the exception that led here)."""
        if self.open is None:
            return
        assert self.driver is not None
        try:
            if self.driver.in_transaction():
                await self.driver.control("ROLLBACK")
        except Exception:
            logger.warning("rollback failed; dropping the connection", exc_info=True)
            await self._broken()
        self._ended()

    def _ended(self) -> None:
        self.open = None
        self.dirty = False
        self.nonce_in_txn = False
        if self._locked:
            self._locked = False
            assert self.db.write_lock is not None
            self.db.write_lock.release()

    async def _broken(self) -> None:
        """The connection failed mid-transaction: never hand it to anyone again."""
        self._ended()
        conn, self.conn, self.driver = self.conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    async def _close(self) -> None:
        if self.open is not None:
            await self._rollback()
        self._ended()
        conn, driver = self.conn, self.driver
        self.conn = self.driver = None
        if conn is None:
            return
        if driver is not None and driver.usable() and not driver.in_transaction():
            try:
                await self.db.checkin(conn)
                return
            except Exception:
                logger.warning("could not return a connection to the pool", exc_info=True)
        with contextlib.suppress(Exception):
            await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()
