"""All SQL the hub runs, as functions of a connection, for both dialects.

Write functions run inside `Database.transaction()`; `lock_owner` must be the first statement of a
write transaction: it takes the owner's row lock (PostgreSQL) or the database write lock (SQLite)
before anything is read, so that each owner's writes serialize and `seq` follows commit order.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.commits.fold.basic import CommitView, ObjectState
from identity_hub.errors import BadRequest
from identity_hub.protocol.jsonutil import dumps
from identity_hub.storage.engine import Database
from identity_hub.storage.tables import commits, nonces, objects, owners, tenants


def now_us() -> int:
    return time.time_ns() // 1000


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

async def owner_id(conn: AsyncConnection, did: str) -> int | None:
    return (await conn.execute(sa.select(owners.c.id).where(owners.c.did == did))).scalar()


async def lock_owner(db: Database, conn: AsyncConnection, did: str) -> tuple[int, int]:
    """Take the owner's write lock and draw the next sequence number: (owner_id, seq)."""
    stmt = (
        sa.update(owners)
        .where(owners.c.did == did)
        .values(last_seq=owners.c.last_seq + 1)
        .returning(owners.c.id, owners.c.last_seq)
    )
    row = (await conn.execute(stmt)).first()
    if row is None:
        await conn.execute(db.insert_ignore(owners).values(did=did, last_seq=0)
                           .on_conflict_do_nothing())
        row = (await conn.execute(stmt)).first()
    assert row is not None
    return int(row[0]), int(row[1])


async def ensure_owner(db: Database, conn: AsyncConnection, did: str) -> int:
    """The owner's key, adding the `owners` row if this owner has never written (no lock taken)."""
    found = await owner_id(conn, did)
    if found is not None:
        return found
    await conn.execute(db.insert_ignore(owners).values(did=did, last_seq=0)
                       .on_conflict_do_nothing())
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
    async with db.read() as conn:
        found = await conn.execute(sa.select(tenants.c.did).where(tenants.c.did == did))
        return found.first() is not None


# --- commits -------------------------------------------------------------------------------------

async def commit_exists(conn: AsyncConnection, oid: int, rev: str) -> bool:
    q = sa.select(commits.c.id).where(commits.c.owner_id == oid, commits.c.rev == rev)
    return (await conn.execute(q)).first() is not None


async def insert_commit(conn: AsyncConnection, oid: int, seq: int, row: dict[str, Any]) -> None:
    await conn.execute(sa.insert(commits).values(owner_id=oid, seq=seq,
                                                 received_at_us=now_us(), **row))


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


async def object_revisions(conn: AsyncConnection, oid: int, object_id: str) -> list[str]:
    q = (
        sa.select(commits.c.rev)
        .where(commits.c.owner_id == oid, commits.c.object_id == object_id)
        .order_by(commits.c.seq)
    )
    return [r[0] for r in await conn.execute(q)]


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

async def load_object(conn: AsyncConnection, oid: int, object_id: str) -> Any:
    q = sa.select(objects).where(objects.c.owner_id == oid, objects.c.object_id == object_id)
    return (await conn.execute(q)).first()


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


async def save_object(
    db: Database,
    conn: AsyncConnection,
    oid: int,
    state: ObjectState,
    *,
    create_seq: int | None,
    data: Any,
    data_changed: bool,
) -> None:
    """Insert or update the materialized row of an object."""
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
        if create_seq is not None:
            values["create_seq"] = create_seq
    if state.winner is not None and data_changed:
        w = state.winner
        values.update(win_rev=w.rev, win_operation=w.operation,
                      win_committed_at_us=w.committed_at_us, meta=w.meta, data=data)
    existing = await load_object(conn, oid, state.object_id)
    if existing is None:
        await conn.execute(sa.insert(objects).values(owner_id=oid, object_id=state.object_id,
                                                     **values))
    else:
        await conn.execute(
            sa.update(objects)
            .where(objects.c.owner_id == oid, objects.c.object_id == state.object_id)
            .values(**values)
        )


async def find_live_object(
    conn: AsyncConnection, oid: int, interface: str, context: str, type_: str
) -> Any:
    q = (
        sa.select(objects.c.object_id)
        .where(objects.c.owner_id == oid, objects.c.interface == interface,
               objects.c.context == context, objects.c.type == type_,
               objects.c.has_create.is_(True), objects.c.deleted.is_(False))
        .limit(1)
    )
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
) -> list[Any]:
    """A page of live objects; `where` is an extra SQL condition (a requester's scope)."""
    q = sa.select(objects).where(
        objects.c.owner_id == oid,
        objects.c.interface == interface,
        objects.c.has_create.is_(True),
        objects.c.deleted.is_(False),
        objects.c.create_seq > after,
    )
    if context is not None:
        q = q.where(objects.c.context == context, objects.c.type == type_)
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


# --- transport nonces ----------------------------------------------------------------------------

async def register_nonce(db: Database, digest: str, expires_at_us: int) -> bool:
    """Record a request nonce; False if it was already seen (a replay)."""
    async with db.transaction() as conn:
        result = await conn.execute(
            db.insert_ignore(nonces).values(digest=digest, expires_at_us=expires_at_us)
            .on_conflict_do_nothing()
        )
        return bool(result.rowcount)


async def purge_nonces(db: Database) -> int:
    async with db.transaction() as conn:
        result = await conn.execute(sa.delete(nonces).where(nonces.c.expires_at_us < now_us()))
        return int(result.rowcount or 0)
