"""The grant index: every version of every PermissionGrant, in `grant_versions`.

A grant's state at time t is the basic fold (`commits.fold.basic`) of its commits whose
`committed_at` is at most t. Each change of that state starts a version, in force until the next
change; a delete ends the last version and marks them all `revoked`. The versions are a pure
function of the grant's commits, recomputed (in the writing transaction) whenever one of them is
stored, so every replica holding the same commits holds the same index.

Checking a request is one lookup on the index `(owner_id, grantee_key, scope_key, valid_from_us)`:
its cost does not depend on how many grants the owner has given to others or for other types.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.commits.fold.basic import CommitView, eligible, key_of
from identity_hub.errors import BadRequest
from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE, GrantTerms, parse_grant
from identity_hub.protocol.jsonutil import JsonError, loads_strict
from identity_hub.storage import store
from identity_hub.storage.tables import grant_versions

logger = logging.getLogger(__name__)

gv = grant_versions.c
FLAG_COLUMN = {"create": gv.can_create, "read": gv.can_read, "update": gv.can_update,
               "delete": gv.can_delete}


def grantee_key(did: str) -> str:
    """The fixed-size index key of a grantee DID."""
    return hashlib.sha256(did.encode("utf-8")).hexdigest()


def scope_key(context: str, type_: str) -> str:
    """The fixed-size index key of a context and type."""
    return hashlib.sha256(f"{context}\x00{type_}".encode()).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class GrantVersion:
    """One version of a grant: `terms` in force over [valid_from_us, valid_until_us)."""

    grant_id: str
    valid_from_us: int
    valid_until_us: int | None
    rev: str
    terms: GrantTerms
    revoked: bool = False


def _terms_of(view: CommitView) -> GrantTerms | None:
    try:
        raw = base64.urlsafe_b64decode(view.payload + "=" * (-len(view.payload) % 4))
        return parse_grant(loads_strict(raw))
    except (JsonError, ValueError, BadRequest):
        logger.warning("grant commit %s has no valid grant payload; it grants nothing",
                       view.rev[:12])
        return None


def versions_of(grant_id: str, views: Iterable[CommitView]) -> list[GrantVersion]:
    """The versions of one grant, from its commits (any order)."""
    views = [v for v in views if v.object_id == grant_id]
    create = next((v for v in views if v.operation == "create" and v.rev == grant_id), None)
    if (create is None or create.interface != "Permissions" or create.context != GRANT_CONTEXT
            or create.type != GRANT_TYPE or create.commit_strategy != "basic"):
        return []
    chosen = sorted((v for v in views if eligible(create, v)), key=lambda v: v.committed_at_us)
    out: list[GrantVersion] = []
    opened: GrantVersion | None = None
    winner: CommitView | None = None
    state_rev: str | None = None
    revoked = False
    i = 0
    while i < len(chosen):
        at = chosen[i].committed_at_us
        while i < len(chosen) and chosen[i].committed_at_us == at:
            if winner is None or key_of(chosen[i]) > key_of(winner):
                winner = chosen[i]
            i += 1
        if at < create.committed_at_us or winner is None or winner.rev == state_rev:
            continue  # no create yet, or the state did not change
        state_rev = winner.rev
        if opened is not None:
            out.append(dataclasses.replace(opened, valid_until_us=at))
            opened = None
        if winner.operation == "delete":
            revoked = True
            break
        terms = _terms_of(winner)
        if terms is not None:
            opened = GrantVersion(grant_id, at, None, winner.rev, terms)
    if opened is not None:
        out.append(opened)
    return [dataclasses.replace(v, revoked=revoked) for v in out] if revoked else out


def _row_of(oid: int, v: GrantVersion) -> dict[str, Any]:
    t = v.terms
    return {
        "owner_id": oid, "grant_id": v.grant_id, "valid_from_us": v.valid_from_us,
        "valid_until_us": v.valid_until_us, "grantee_key": grantee_key(t.grantee),
        "scope_key": scope_key(t.context, t.type), "grantee": t.grantee,
        "context": t.context, "type": t.type, "rev": v.rev, "revoked": v.revoked,
        "can_create": t.allows("create"), "can_read": t.allows("read"),
        "can_update": t.allows("update"), "can_delete": t.allows("delete"),
        "object_ids": list(t.object_ids) if t.object_ids is not None else None,
        "created_by": t.created_by, "not_before_us": t.not_before_us,
        "expires_us": t.expires_us, "unrevocable_until_us": t.unrevocable_until_us,
    }


async def reindex_grant(conn: AsyncConnection, oid: int, grant_id: str,
                        rows: Sequence[Any] | None = None) -> list[GrantVersion]:
    """Recompute one grant's versions from its commits (`rows`: the object's commit rows)."""
    if rows is None:
        rows = await store.object_commits_rows(conn, oid, grant_id)
    versions = versions_of(grant_id, [store.view_from_row(r) for r in rows])
    await conn.execute(sa.delete(grant_versions).where(gv.owner_id == oid,
                                                       gv.grant_id == grant_id))
    if versions:
        await conn.execute(sa.insert(grant_versions), [_row_of(oid, v) for v in versions])
    return versions


async def grantees_of(conn: AsyncConnection, oid: int, grant_id: str) -> set[str]:
    """The grantees the grant's indexed versions name (a grant's change re-judges their
    commits: permissions/exclusion.py)."""
    rows = await conn.execute(sa.select(gv.grantee).where(gv.owner_id == oid,
                                                          gv.grant_id == grant_id).distinct())
    return {r[0] for r in rows}


async def after_commit_stored(conn: AsyncConnection, oid: int, object_id: str,
                              interface: str) -> set[str]:
    """Keep the index in step after a commit was stored and folded (same transaction).

    Returns the grantees whose grants this changed (before or after; empty for a commit that is
    not a grant's).
    """
    if interface != "Permissions":
        return set()
    before = await grantees_of(conn, oid, object_id)
    versions = await reindex_grant(conn, oid, object_id)
    return before | {v.terms.grantee for v in versions}


async def after_object_refolded(conn: AsyncConnection, oid: int, object_id: str,
                                rows: Sequence[Any]) -> None:
    """Keep the index in step after an object was folded from its whole log."""
    if any(r.interface == "Permissions" for r in rows):
        await reindex_grant(conn, oid, object_id, rows)


def _lookup(operation: str, scoped: bool, current_only: bool) -> sa.Select[Any]:
    """The lookup statement, with bound parameters: oid, gkey, grantee, at (and skey, context,
    type when `scoped`). Built once per shape, so a check costs one execution."""
    at = sa.bindparam("at", type_=sa.BigInteger)
    q = sa.select(grant_versions).where(
        gv.owner_id == sa.bindparam("oid"), gv.grantee_key == sa.bindparam("gkey"),
        gv.grantee == sa.bindparam("grantee"), FLAG_COLUMN[operation].is_(True),
        gv.valid_from_us <= at,
        sa.or_(gv.valid_until_us.is_(None), gv.valid_until_us > at),
        sa.or_(gv.not_before_us.is_(None), gv.not_before_us <= at),
        sa.or_(gv.expires_us.is_(None), gv.expires_us > at),
    )
    if scoped:
        q = q.where(gv.scope_key == sa.bindparam("skey"), gv.context == sa.bindparam("context"),
                    gv.type == sa.bindparam("type"))
    if current_only:
        q = q.where(gv.revoked.is_(False))
    return q.order_by(gv.grant_id)


_LOOKUPS = {(op, scoped, current): _lookup(op, scoped, current)
            for op in FLAG_COLUMN for scoped in (False, True) for current in (False, True)}


async def grants_at(conn: AsyncConnection, oid: int, grantee: str, context: str | None,
                    type_: str | None, operation: str, at_us: int, *,
                    current_only: bool = False) -> list[Any]:
    """Grant versions in force at `at_us` that let `grantee` do `operation` on context/type.

    With context/type None: for every context and type. `current_only` also drops grants that
    have since been revoked (reads are judged at the hub's now, by the grants as they are).
    """
    scoped = context is not None and type_ is not None
    params: dict[str, Any] = {"oid": oid, "gkey": grantee_key(grantee), "grantee": grantee,
                              "at": at_us}
    if scoped:
        assert context is not None and type_ is not None
        params.update(skey=scope_key(context, type_), context=context, type=type_)
    stmt = _LOOKUPS[(operation, scoped, current_only)]
    return list(await conn.execute(stmt, params))


def grant_ids_naming(oid: int, grantee: str) -> sa.Select[Any]:
    """SQL: the ids of every grant (any version, revoked too) that names `grantee`."""
    return (sa.select(gv.grant_id)
            .where(gv.owner_id == oid, gv.grantee_key == grantee_key(grantee),
                   gv.grantee == grantee)
            .distinct())
