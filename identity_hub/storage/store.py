"""All SQL the hub runs, as functions of a connection, for both dialects.

Write functions run inside `Database.transaction()`; `lock_owner` must be the first statement of
a commit's write: it takes the owner's row lock (PostgreSQL; SQLite's writing transactions hold
the database write lock from their start) before the object is read, so that each owner's writes
serialize and `seq` follows commit order.

The statements of the request path (owners, tenants, and `storage/writes.py`: the write of a
commit and its object) are plain SQL run on the driver connection (`storage/driver.py`); the
rest is SQLAlchemy Core.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.commits.fold.basic import CommitView
from identity_hub.errors import AuthenticationFailed, BadRequest
from identity_hub.storage.driver import Sql, driver_of, json_param
from identity_hub.storage.engine import Database
from identity_hub.storage.tables import audit_log, commits, nonces, objects, owners, tenants
from identity_hub.storage.unit import joinable
from identity_hub.storage.writes import (
    _OWNER_ADD,
    _OWNER_ID,
    COMMIT_COLUMNS,
    KEEP_TYPE_IRI,
    ObjectRow,
    append_commit,
    append_first_commit,
    commit_row,
    load_object,
    lock_owner,
    now_us,
    object_revisions,
    save_object,
    state_from_row,
    update_object,
)

__all__ = [  # with what storage/writes.py holds: callers use store.X
    "COMMIT_COLUMNS",
    "KEEP_TYPE_IRI",
    "ObjectRow",
    "add_tenant",
    "all_object_ids",
    "all_owners",
    "append_audit",
    "append_commit",
    "append_first_commit",
    "commit_row",
    "commit_wire",
    "decode_skip_token",
    "encode_skip_token",
    "ensure_owner",
    "find_live_object",
    "is_tenant",
    "list_tenants",
    "load_commit",
    "load_object",
    "lock_owner",
    "lock_owner_only",
    "now_us",
    "object_commits_rows",
    "object_revisions",
    "owner_id",
    "purge_nonces",
    "query_commits",
    "query_objects",
    "register_nonce",
    "remove_tenant",
    "save_object",
    "state_from_row",
    "update_object",
    "view_from_row",
]


# --- skip tokens -------------------------------------------------------------------------------

def encode_skip_token(kind: str, position: int) -> str:
    raw = json.dumps({"k": kind, "p": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_skip_token(kind: str, token: str | None, target: str) -> int:
    """The position after which the next page starts (0 for the first page).

    Raises:
        BadRequest: the token was not made by this hub for this kind of query.
    """
    if token is None:
        return 0
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if data["k"] != kind or not isinstance(data["p"], int) or data["p"] < 0:
            raise ValueError
        return int(data["p"])
    except (ValueError, KeyError, TypeError, UnicodeError):
        raise BadRequest("Invalid skip_token", target=target) from None


# --- owners and tenants ------------------------------------------------------------------------

_IS_TENANT = Sql("SELECT 1 FROM tenants WHERE did = $1")


async def owner_id(conn: AsyncConnection, did: str) -> int | None:
    row = await driver_of(conn).fetchrow(_OWNER_ID, did)
    return None if row is None else int(row[0])


async def ensure_owner(db: Database, conn: AsyncConnection, did: str) -> int:
    """The owner's key, adding the `owners` row if this owner has never written (no lock taken)."""
    found = await owner_id(conn, did)
    if found is not None:
        return found
    await driver_of(conn).fetch(_OWNER_ADD, did)
    found = await owner_id(conn, did)
    assert found is not None
    return found


async def lock_owner_only(conn: AsyncConnection, did: str) -> None:
    """Take the owner's write lock without drawing a sequence number (maintenance work)."""
    await conn.execute(sa.update(owners).where(owners.c.did == did)
                       .values(last_seq=owners.c.last_seq))


async def add_tenant(db: Database, did: str) -> bool:
    async with db.transaction() as conn:
        result = await conn.execute(
            db.insert_ignore(tenants).values(did=did, added_at_us=now_us()).on_conflict_do_nothing()
        )
        return bool(result.rowcount)


async def remove_tenant(db: Database, did: str) -> bool:
    async with db.transaction() as conn:
        result = await conn.execute(sa.delete(tenants).where(tenants.c.did == did))
        return bool(result.rowcount)


async def list_tenants(db: Database) -> list[str]:
    async with db.read() as conn:
        rows = await conn.execute(sa.select(tenants.c.did).order_by(tenants.c.added_at_us))
        return [r[0] for r in rows]


async def is_tenant(db: Database, did: str) -> bool:
    unit = joinable(db)
    if unit is not None:  # a request's first statement: asked with its nonce, one round trip
        found = await unit.probe(_IS_TENANT, did)
        if found is not None:
            return found
    async with db.read() as conn:
        return await driver_of(conn).fetchrow(_IS_TENANT, did) is not None


# --- commits -------------------------------------------------------------------------------------

def view_from_row(row: Any) -> CommitView:
    return CommitView(
        rev=row.rev,
        object_id=row.object_id,
        operation=row.operation,
        interface=row.interface,
        context=row.context,
        type=row.type,
        commit_strategy=row.commit_strategy,
        committed_at=row.committed_at,
        committed_at_us=row.committed_at_us,
        signer=row.signer,
        meta=_meta_of(row.protected),
        payload=row.payload,
    )


def _meta_of(protected_b64: str) -> Any:
    padded = protected_b64 + "=" * (-len(protected_b64) % 4)
    return json.loads(base64.urlsafe_b64decode(padded)).get("meta")


async def object_commits_rows(conn: AsyncConnection, oid: int, object_id: str) -> list[Any]:
    q = (
        sa.select(commits)
        .where(commits.c.owner_id == oid, commits.c.object_id == object_id)
        .order_by(commits.c.seq)
    )
    return list(await conn.execute(q))


async def load_commit(conn: AsyncConnection, oid: int, rev: str) -> Any:
    """One stored commit's row, or None."""
    q = sa.select(commits).where(commits.c.owner_id == oid, commits.c.rev == rev)
    return (await conn.execute(q)).first()


async def query_commits(
    conn: AsyncConnection,
    oid: int,
    *,
    object_ids: Sequence[str] | None,
    revisions: Sequence[str] | None,
    interfaces: Sequence[str] | None = None,
    after: int,
    limit: int,
    where: Any = None,
) -> list[Any]:
    """A page of the owner's commits; `where` is an extra SQL condition (a requester's scope)."""
    q = sa.select(commits).where(commits.c.owner_id == oid, commits.c.seq > after)
    if where is not None:
        q = q.where(where)
    if interfaces is not None:
        q = q.where(commits.c.interface.in_(list(interfaces)))
    if object_ids is not None:
        q = q.where(commits.c.object_id.in_(list(object_ids)))
    if revisions is not None:
        q = q.where(commits.c.rev.in_(list(revisions)))
    q = q.order_by(commits.c.seq).limit(limit)
    return list(await conn.execute(q))


def commit_wire(row: Any) -> dict[str, Any]:
    """A stored commit as the protocol returns it: header with iss, rev (+ object_id on create)."""
    header = json.loads(row.header)
    header["iss"] = row.signer
    header["rev"] = row.rev
    if row.operation == "create":
        header["object_id"] = row.object_id
    return {"protected": row.protected, "header": header, "payload": row.payload,
            "signature": row.signature}


# --- objects -------------------------------------------------------------------------------------

async def find_live_object(
    conn: AsyncConnection, oid: int, interface: str, context: str, type_: str, *,
    other_than: str | None = None,
) -> Any:
    """A live object of the owner with this interface, context and type (other than the object
    `other_than`), or None."""
    q = (
        sa.select(objects.c.object_id)
        .where(objects.c.owner_id == oid, objects.c.interface == interface,
               objects.c.context == context, objects.c.type == type_,
               objects.c.has_create.is_(True), objects.c.deleted.is_(False))
        .limit(1)
    )
    if other_than is not None:
        q = q.where(objects.c.object_id != other_than)
    return (await conn.execute(q)).first()


async def query_objects(
    conn: AsyncConnection,
    oid: int,
    *,
    interface: str,
    context: str | None,
    type_: str | None,
    object_ids: Sequence[str] | None,
    after: int,
    limit: int,
    where: Any = None,
    type_iri: str | None = None,
) -> list[Any]:
    """A page of live objects; `where` is an extra SQL condition (a requester's scope).

    `context` + `type_` match as spelled; `type_iri` matches the objects' expanded type (every
    spelling of it: what a query by context + type asks for, see identity_hub/jsonld)."""
    q = sa.select(objects).where(
        objects.c.owner_id == oid,
        objects.c.interface == interface,
        objects.c.has_create.is_(True),
        objects.c.deleted.is_(False),
        objects.c.create_seq > after,
    )
    if context is not None:
        q = q.where(objects.c.context == context, objects.c.type == type_)
    if type_iri is not None:
        q = q.where(objects.c.type_iri == type_iri)
    if object_ids is not None:
        q = q.where(objects.c.object_id.in_(list(object_ids)))
    if where is not None:
        q = q.where(where)
    q = q.order_by(objects.c.create_seq).limit(limit)
    return list(await conn.execute(q))


async def all_object_ids(conn: AsyncConnection, oid: int) -> list[str]:
    q = sa.select(commits.c.object_id).where(commits.c.owner_id == oid).distinct()
    return [r[0] for r in await conn.execute(q)]


async def all_owners(conn: AsyncConnection) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in await conn.execute(sa.select(owners.c.id, owners.c.did))]


# --- audit log -----------------------------------------------------------------------------------

_AUDIT_COLUMNS = tuple(c.name for c in audit_log.columns if c.name != "id")
_AUDIT_JSON = frozenset(c.name for c in audit_log.columns if isinstance(c.type, sa.JSON))
_AUDIT_ADD = Sql(f"INSERT INTO audit_log ({', '.join(_AUDIT_COLUMNS)}) VALUES ("
                 + ", ".join(f"${i}" for i in range(1, len(_AUDIT_COLUMNS) + 1)) + ")")


async def append_audit(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Add an `audit_log` row (`values`: every column but `id`) in the caller's transaction."""
    await driver_of(conn).fetch(_AUDIT_ADD, *(
        json_param(values[name]) if name in _AUDIT_JSON else values[name]
        for name in _AUDIT_COLUMNS))


# --- transport nonces ----------------------------------------------------------------------------

async def register_nonce(db: Database, digest: str, expires_at_us: int) -> bool:
    """Record a request nonce in a transaction of its own; False if it was already seen (a
    replay). A request's own unit of work records its nonce with the request's work instead
    (`Database.unit(nonce=...)`)."""
    try:
        async with db.unit(nonce=(digest, expires_at_us)):
            pass
    except AuthenticationFailed:
        return False
    return True


async def purge_nonces(db: Database) -> int:
    async with db.transaction() as conn:
        result = await conn.execute(sa.delete(nonces).where(nonces.c.expires_at_us < now_us()))
        return int(result.rowcount or 0)


async def latest_commit_by(conn: AsyncConnection, oid: int, signer: str, context: str,
                           type_: str, *, type_iri: str | None = None) -> int | None:
    """The latest committed_at (µs) of the counting (not excluded) commits `signer` made to the
    owner's objects of `context`/`type_` (with `type_iri`: to the objects of that type IRI,
    whatever the spelling of their context), or None (the grant-change rule in
    interfaces/objects.py)."""
    q = sa.select(sa.func.max(commits.c.committed_at_us)).where(
        commits.c.owner_id == oid, commits.c.signer == signer, commits.c.excluded.is_(False))
    if type_iri is None:
        q = q.where(commits.c.context == context, commits.c.type == type_)
    else:
        q = q.where(commits.c.object_id.in_(sa.select(objects.c.object_id).where(
            objects.c.owner_id == oid, objects.c.type_iri == type_iri)))
    value = (await conn.execute(q)).scalar()
    return None if value is None else int(value)
