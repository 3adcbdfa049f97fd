"""The statements of a commit's write, for both dialects (`CommitService.write`).

They run on the driver connection (`storage/driver.py`) and are as few as the database allows:
on PostgreSQL, data-modifying WITH combines the owner's lock, the commit and a new object's row
into one statement, and an object's update with the read of its revisions. SQLite, without
data-modifying WITH, runs them one by one. `storage/store.py` re-exports the public ones.
"""

from __future__ import annotations

import collections
import enum
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.commits.fold.basic import CommitView, ObjectState
from identity_hub.protocol.jsonutil import dumps
from identity_hub.storage.driver import Driver, Sql, driver_of, json_param
from identity_hub.storage.tables import objects

if TYPE_CHECKING:
    from identity_hub.storage.engine import Database


def now_us() -> int:
    return time.time_ns() // 1000


# --- owners --------------------------------------------------------------------------------------

_OWNER_ID = Sql("SELECT id FROM owners WHERE did = $1")
_OWNER_ADD = Sql("INSERT INTO owners (did, last_seq) VALUES ($1, 0) ON CONFLICT DO NOTHING")
_OWNER_NEXT_SEQ = Sql("UPDATE owners SET last_seq = last_seq + 1 WHERE did = $1 "
                      "RETURNING id, last_seq")


async def lock_owner(db: Database, conn: AsyncConnection, did: str) -> tuple[int, int]:
    """Take the owner's write lock and draw the next sequence number: (owner_id, seq)."""
    driver = driver_of(conn)
    row = await driver.fetchrow(_OWNER_NEXT_SEQ, did)
    if row is None:
        await driver.fetch(_OWNER_ADD, did)
        row = await driver.fetchrow(_OWNER_NEXT_SEQ, did)
    assert row is not None
    return int(row[0]), int(row[1])


# --- commits -------------------------------------------------------------------------------------

COMMIT_COLUMNS = ("rev", "object_id", "interface", "context", "type", "operation",
                  "commit_strategy", "committed_at", "committed_at_us", "signer", "protected",
                  "payload", "signature", "header")
_COMMIT_ADD = Sql(
    "INSERT INTO commits (owner_id, seq, received_at_us, " + ", ".join(COMMIT_COLUMNS)
    + ") VALUES (" + ", ".join(f"${i}" for i in range(1, len(COMMIT_COLUMNS) + 4))
    + ") ON CONFLICT (owner_id, rev) DO NOTHING RETURNING id")


async def append_commit(conn: AsyncConnection, oid: int, seq: int, row: dict[str, Any]
                        ) -> tuple[bool, Any]:
    """Append a commit to the log, and read the commit's object as it was before
    (`load_object`): one round trip on PostgreSQL. (False, None) when the owner already holds
    the commit (nothing is stored then).

    Run after `lock_owner`: the object is read in a snapshot taken once the lock is held.
    """
    driver = driver_of(conn)
    args = [row[name] for name in COMMIT_COLUMNS]
    if driver.sqlite:  # SQLite has no data-modifying WITH
        if await driver.fetchrow(_COMMIT_ADD, oid, seq, now_us(), *args) is None:
            return False, None
        return True, await load_object(conn, oid, row["object_id"])
    found = await driver.fetchrow(_COMMIT_ADD_AND_OBJECT, oid, seq, now_us(), *args)
    assert found is not None
    if found[0] is None:
        return False, None
    return True, None if found[1] is None else _object_row(driver, found[1:])


def commit_row(c: Any) -> dict[str, Any]:
    """The `commits` columns of a parsed `Commit`."""
    return {
        "rev": c.rev, "object_id": c.object_id, "interface": c.interface, "context": c.context,
        "type": c.type, "operation": c.operation, "commit_strategy": c.commit_strategy,
        "committed_at": c.committed_at, "committed_at_us": c.committed_at_us, "signer": c.signer,
        "protected": c.protected, "payload": c.payload, "signature": c.signature,
        "header": dumps({k: v for k, v in c.client_header.items()
                         if k not in ("iss", "rev", "object_id")}),
    }


_REVISIONS = Sql("SELECT rev FROM commits WHERE owner_id = $1 AND object_id = $2 ORDER BY seq")
# One row instead of one per commit (10,000 rows cost asyncpg ~8 ms of CPU, one string ~1 ms).
# PostgreSQL only: SQLite's group_concat takes no ORDER BY before 3.44.
_REVISIONS_JOINED = Sql("SELECT string_agg(rev, ',' ORDER BY seq) FROM commits "
                        "WHERE owner_id = $1 AND object_id = $2")


async def object_revisions(conn: AsyncConnection, oid: int, object_id: str) -> list[str]:
    """Every revision of an object, in the order the hub stored them (revs are hex)."""
    driver = driver_of(conn)
    if driver.sqlite:
        return [r[0] for r in await driver.fetch(_REVISIONS, oid, object_id)]
    joined = await driver.fetchrow(_REVISIONS_JOINED, oid, object_id)
    return [] if joined is None or joined[0] is None else joined[0].split(",")


# --- objects -------------------------------------------------------------------------------------

OBJECT_COLUMNS = tuple(c.name for c in objects.columns)
ObjectRow = collections.namedtuple("ObjectRow", OBJECT_COLUMNS)  # type: ignore[misc]
_BOOL_COLUMNS = frozenset(c.name for c in objects.columns if isinstance(c.type, sa.Boolean))
_JSON_COLUMNS = frozenset(c.name for c in objects.columns if isinstance(c.type, sa.JSON))
_OBJECT_GET = Sql(f"SELECT {', '.join(OBJECT_COLUMNS)} FROM objects "
                  "WHERE owner_id = $1 AND object_id = $2")


_COMMIT_ADD_AND_OBJECT = Sql(
    f"WITH c AS ({_COMMIT_ADD.pg}) SELECT (SELECT id FROM c), "
    + ", ".join(f"o.{name}" for name in OBJECT_COLUMNS)
    + " FROM (SELECT 1) AS one LEFT JOIN objects AS o ON o.owner_id = $1 AND o.object_id = $5")


def _object_row(driver: Driver, row: Sequence[Any]) -> Any:
    values = list(row)
    if driver.sqlite:
        for i, name in enumerate(OBJECT_COLUMNS):
            if name in _BOOL_COLUMNS and values[i] is not None:
                values[i] = bool(values[i])
    for i, name in enumerate(OBJECT_COLUMNS):
        if name in _JSON_COLUMNS:
            values[i] = driver.json_value(values[i])
    return ObjectRow._make(values)


async def load_object(conn: AsyncConnection, oid: int, object_id: str) -> Any:
    """The materialized row of an object (attributes named as the columns), or None."""
    driver = driver_of(conn)
    row = await driver.fetchrow(_OBJECT_GET, oid, object_id)
    return None if row is None else _object_row(driver, row)


def state_from_row(row: Any) -> ObjectState:
    """Rebuild the fold state of an object from its materialized row (no commit is read)."""
    create = None
    winner = None
    if row.has_create:
        create = CommitView(
            rev=row.object_id, object_id=row.object_id, operation="create",
            interface=row.interface, context=row.context, type=row.type,
            commit_strategy=row.commit_strategy, committed_at=row.created_at,
            committed_at_us=row.created_at_us, signer=row.created_by, meta=None, payload="",
        )
        winner = CommitView(
            rev=row.win_rev, object_id=row.object_id, operation=row.win_operation,
            interface=row.interface, context=row.context, type=row.type,
            commit_strategy=row.commit_strategy, committed_at="",
            committed_at_us=row.win_committed_at_us, signer="", meta=row.meta, payload="",
        )
    return ObjectState(row.object_id, create, winner, row.updated_at_us, row.commit_count)


_SAVE_SQL: dict[tuple[bool, tuple[str, ...]], Sql] = {}


def _save_sql(insert: bool, names: tuple[str, ...]) -> Sql:
    """INSERT or UPDATE of the objects row setting `names`, built once per shape."""
    key = (insert, names)
    q = _SAVE_SQL.get(key)
    if q is None:
        if insert:
            cols = ("owner_id", "object_id", *names)
            text = (f"INSERT INTO objects ({', '.join(cols)}) VALUES ("
                    + ", ".join(f"${i}" for i in range(1, len(cols) + 1)) + ")")
        else:
            sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, 3))
            text = f"UPDATE objects SET {sets} WHERE owner_id = $1 AND object_id = $2"
        q = _SAVE_SQL[key] = Sql(text)
    return q


class _Keep(enum.Enum):
    KEEP = "keep"


KEEP_TYPE_IRI = _Keep.KEEP  # `type_iri` argument: leave the object's column as it is
TypeIri = str | None | _Keep


def _object_values(state: ObjectState, create_seq: int | None, data: Any, data_changed: bool,
                   type_iri: TypeIri = KEEP_TYPE_IRI) -> dict[str, Any]:
    """The `objects` columns (as parameters) a folded state sets (`type_iri`: the expanded type
    of its create's context + type, set with them unless KEEP_TYPE_IRI)."""
    values: dict[str, Any] = {
        "has_create": state.create is not None,
        "updated_at_us": state.updated_at_us,
        "commit_count": state.commit_count,
        "deleted": state.deleted,
    }
    if state.create is not None:
        c = state.create
        values.update(interface=c.interface, context=c.context, type=c.type,
                      commit_strategy=c.commit_strategy, created_by=c.signer,
                      created_at=c.committed_at, created_at_us=c.committed_at_us)
        if type_iri is not KEEP_TYPE_IRI:
            values["type_iri"] = type_iri
        if create_seq is not None:
            values["create_seq"] = create_seq
    else:  # no create (not held, or excluded): nothing of one stays behind
        values.update(interface=None, context=None, type=None, commit_strategy=None,
                      created_by=None, created_at=None, created_at_us=None, type_iri=None,
                      create_seq=None)
    if state.winner is None and data_changed:
        values.update(win_rev=None, win_operation=None, win_committed_at_us=None,
                      meta=None, data=None)
    if state.winner is not None and data_changed:
        w = state.winner
        values.update(win_rev=w.rev, win_operation=w.operation,
                      win_committed_at_us=w.committed_at_us, meta=json_param(w.meta),
                      data=json_param(data))
    return values


async def save_object(
    db: Database,
    conn: AsyncConnection,
    oid: int,
    state: ObjectState,
    *,
    create_seq: int | None,
    data: Any,
    data_changed: bool,
    exists: bool | None = None,
    type_iri: TypeIri = KEEP_TYPE_IRI,
) -> None:
    """Insert or update the materialized row of an object (`exists`: whether it has a row,
    when the caller knows; `type_iri`: the expanded type of its create, when it has one)."""
    values = _object_values(state, create_seq, data, data_changed, type_iri)
    if exists is None:
        exists = await load_object(conn, oid, state.object_id) is not None
    await driver_of(conn).fetch(_save_sql(not exists, tuple(values)), oid, state.object_id,
                                *values.values())


_UPDATE_REVISIONS_SQL: dict[tuple[str, ...], Sql] = {}


async def update_object(conn: AsyncConnection, oid: int, state: ObjectState, *, data: Any,
                        data_changed: bool) -> list[str]:
    """`save_object` of an object that has a row, then `object_revisions` (what a write answers
    with): one round trip on PostgreSQL."""
    driver = driver_of(conn)
    values = _object_values(state, None, data, data_changed)
    names = tuple(values)
    if driver.sqlite:
        await driver.fetch(_save_sql(False, names), oid, state.object_id, *values.values())
        return await object_revisions(conn, oid, state.object_id)
    q = _UPDATE_REVISIONS_SQL.get(names)
    if q is None:
        q = _UPDATE_REVISIONS_SQL[names] = Sql(
            f"WITH u AS ({_save_sql(False, names).pg}) {_REVISIONS_JOINED.pg}")
    joined = await driver.fetchrow(q, oid, state.object_id, *values.values())
    return [] if joined is None or joined[0] is None else joined[0].split(",")


_FIRST_SQL: dict[tuple[bool, tuple[str, ...]], Sql] = {}
_FIRST_OBJECT = "INSERT INTO objects ({cols}) {values} ON CONFLICT (owner_id, object_id) DO NOTHING"


def _first_sql(locking: bool, names: tuple[str, ...]) -> Sql:
    """The INSERT of an object's first row, setting `names`, unless the object has a row; when
    `locking` (PostgreSQL) in one statement with `lock_owner`'s UPDATE and the commit's INSERT,
    the owner's key and seq coming from the UPDATE. Built once per shape."""
    key = (locking, names)
    q = _FIRST_SQL.get(key)
    if q is not None:
        return q
    cols = ", ".join(("owner_id", "object_id", *names))
    if not locking:
        params = ", ".join(f"${i}" for i in range(1, len(names) + 3))
        text = _FIRST_OBJECT.format(cols=cols, values=f"VALUES ({params})") + " RETURNING 1"
    else:
        n = len(COMMIT_COLUMNS) + 3  # $1 owner DID, $2 received_at_us, then the commit's columns
        first_param = iter(range(n, n + len(names)))
        exprs = ", ".join("o.last_seq" if name == "create_seq" else f"${next(first_param)}"
                          for name in names)
        commit_params = ", ".join(f"${i}" for i in range(3, n))
        object_id = 3 + COMMIT_COLUMNS.index("object_id")
        text = (
            "WITH o AS (UPDATE owners SET last_seq = last_seq + 1 WHERE did = $1 "
            "RETURNING id, last_seq), "
            "c AS (INSERT INTO commits (owner_id, seq, received_at_us, "
            f"{', '.join(COMMIT_COLUMNS)}) SELECT o.id, o.last_seq, $2, {commit_params} FROM o "
            "ON CONFLICT (owner_id, rev) DO NOTHING RETURNING id), "
            "n AS (" + _FIRST_OBJECT.format(
                cols=cols, values=f"SELECT o.id, ${object_id}, {exprs} FROM o")
            + " RETURNING 1) "
            "SELECT o.id, o.last_seq, (SELECT id FROM c), (SELECT count(*) FROM n) FROM o")
    q = _FIRST_SQL[key] = Sql(text)
    return q


async def append_first_commit(db: Database, conn: AsyncConnection, owner: str,
                              row: dict[str, Any], state: ObjectState, data: Any,
                              type_iri: str | None = None) -> tuple[int, int, bool, bool]:
    """`lock_owner`, the commit appended to the log, and the object's row as `state` (the fold
    of this commit alone, `data` its JSON, `type_iri` its expanded type; its create_seq the seq
    drawn) unless the object has a row already: one round trip on PostgreSQL.

    Returns (owner_id, seq, stored, first): `stored` is False when the owner already holds the
    commit (nothing is written then, but the seq drawn: roll back); `first` is False when the
    object had a row (commits of it arrived before this one): that row is left as it was.
    """
    driver = driver_of(conn)
    args = [row[name] for name in COMMIT_COLUMNS]
    values = _object_values(state, 0, data, True, type_iri)
    names = tuple(values)
    if driver.sqlite:  # SQLite has no data-modifying WITH
        oid, seq = await lock_owner(db, conn, owner)
        if await driver.fetchrow(_COMMIT_ADD, oid, seq, now_us(), *args) is None:
            return oid, seq, False, False
        if "create_seq" in values:
            values["create_seq"] = seq
        added = await driver.fetchrow(_first_sql(False, names), oid, state.object_id,
                                      *values.values())
        return oid, seq, True, added is not None
    values.pop("create_seq", None)
    q = _first_sql(True, names)
    found = await driver.fetchrow(q, owner, now_us(), *args, *values.values())
    if found is None:  # the owner's first write: add its row, then as above
        await driver.fetch(_OWNER_ADD, owner)
        found = await driver.fetchrow(q, owner, now_us(), *args, *values.values())
    assert found is not None
    return int(found[0]), int(found[1]), found[2] is not None, bool(found[3])
