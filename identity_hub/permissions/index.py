"""The grant index: every version of every PermissionGrant, in `grant_versions`.

A grant's state at time t is the basic fold (`commits.fold.basic`) of its commits whose
`committed_at` is at most t. Each change of that state starts a version, in force until the next
change; a delete ends the last version and marks them all `revoked`. The versions are a pure
function of the grant's commits, recomputed (in the writing transaction) whenever one of them is
stored, so every replica holding the same commits holds the same index.

A grant covers a type by its expanded type IRI (`identity_hub.jsonld`), as queries match objects:
`https://schema.org` + MusicPlaylist and `http://schema.org/` + MusicPlaylist are one type. Each
version row stores the IRI of its grant's context + type (`type_iri`, NULL when the hub's contexts
do not define it: such a grant covers nothing), and `scope_key` is the SHA-256 of that IRI.

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
from identity_hub.jsonld import JsonLd, default_jsonld
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


def scope_key(type_iri: str) -> str:
    """The fixed-size index key of a type IRI."""
    return hashlib.sha256(type_iri.encode("utf-8")).hexdigest()


def unexpanded_scope_key(context: str, type_: str) -> str:
    """The index key of a grant whose context + type do not expand (no lookup by IRI finds it:
    an IRI has no NUL)."""
    return hashlib.sha256(f"{context}\x00{type_}".encode()).hexdigest()


async def grant_type_iri(jsonld: JsonLd | None, context: str, type_: str) -> str | None:
    """The type IRI a grant of `context`/`type_` covers; None when the hub's contexts do not
    define it (such a grant covers nothing)."""
    try:
        return await (jsonld or default_jsonld()).type_iri_async(context, type_)
    except BadRequest as exc:
        logger.info("a grant's type %.100s of %.100s does not expand: %s", type_, context,
                    exc.message)
        return None


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


def _row_of(oid: int, v: GrantVersion, iri: str | None) -> dict[str, Any]:
    t = v.terms
    return {
        "owner_id": oid, "grant_id": v.grant_id, "valid_from_us": v.valid_from_us,
        "valid_until_us": v.valid_until_us, "grantee_key": grantee_key(t.grantee),
        "scope_key": scope_key(iri) if iri is not None else unexpanded_scope_key(t.context,
                                                                                 t.type),
        "type_iri": iri, "grantee": t.grantee,
        "context": t.context, "type": t.type, "rev": v.rev, "revoked": v.revoked,
        "can_create": t.allows("create"), "can_read": t.allows("read"),
        "can_update": t.allows("update"), "can_delete": t.allows("delete"),
        "object_ids": list(t.object_ids) if t.object_ids is not None else None,
        "created_by": t.created_by, "not_before_us": t.not_before_us,
        "expires_us": t.expires_us, "unrevocable_until_us": t.unrevocable_until_us,
    }


async def reindex_grant(conn: AsyncConnection, oid: int, grant_id: str,
                        rows: Sequence[Any] | None = None, *, jsonld: JsonLd | None = None
                        ) -> list[GrantVersion]:
    """Recompute one grant's versions from its commits (`rows`: the object's commit rows;
    `jsonld`: the hub's, which expands the grant's context + type; the shipped contexts if
    None)."""
    if rows is None:
        rows = await store.object_commits_rows(conn, oid, grant_id)
    versions = versions_of(grant_id, [store.view_from_row(r) for r in rows])
    await conn.execute(sa.delete(grant_versions).where(gv.owner_id == oid,
                                                       gv.grant_id == grant_id))
    if versions:
        iris: dict[tuple[str, str], str | None] = {}
        for v in versions:
            key = (v.terms.context, v.terms.type)
            if key not in iris:
                iris[key] = await grant_type_iri(jsonld, *key)
        await conn.execute(sa.insert(grant_versions), [
            _row_of(oid, v, iris[(v.terms.context, v.terms.type)]) for v in versions])
    return versions


async def grantees_of(conn: AsyncConnection, oid: int, grant_id: str) -> set[str]:
    """The grantees the grant's indexed versions name (a grant's change re-judges their
    commits: permissions/exclusion.py)."""
    rows = await conn.execute(sa.select(gv.grantee).where(gv.owner_id == oid,
                                                          gv.grant_id == grant_id).distinct())
    return {r[0] for r in rows}


async def after_commit_stored(conn: AsyncConnection, oid: int, object_id: str,
                              interface: str, *, jsonld: JsonLd | None = None) -> set[str]:
    """Keep the index in step after a commit was stored and folded (same transaction).

    Returns the grantees whose grants this changed (before or after; empty for a commit that is
    not a grant's).
    """
    if interface != "Permissions":
        return set()
    before = await grantees_of(conn, oid, object_id)
    versions = await reindex_grant(conn, oid, object_id, jsonld=jsonld)
    return before | {v.terms.grantee for v in versions}


async def after_object_refolded(conn: AsyncConnection, oid: int, object_id: str,
                                rows: Sequence[Any], *, jsonld: JsonLd | None = None) -> None:
    """Keep the index in step after an object was folded from its whole log."""
    if any(r.interface == "Permissions" for r in rows):
        await reindex_grant(conn, oid, object_id, rows, jsonld=jsonld)


def _in_force(at: Any) -> sa.ColumnElement[bool]:
    """SQL: a version in force at `at` (its window and the grant's not_before/expires)."""
    return sa.and_(
        gv.valid_from_us <= at,
        sa.or_(gv.valid_until_us.is_(None), gv.valid_until_us > at),
        sa.or_(gv.not_before_us.is_(None), gv.not_before_us <= at),
        sa.or_(gv.expires_us.is_(None), gv.expires_us > at),
    )


def in_force(row: Any, at_us: int) -> bool:
    """`_in_force` of a grant_versions row, in Python."""
    return (row.valid_from_us <= at_us
            and (row.valid_until_us is None or row.valid_until_us > at_us)
            and (row.not_before_us is None or row.not_before_us <= at_us)
            and (row.expires_us is None or row.expires_us > at_us))


def _base(operation: str, scoped: bool) -> sa.Select[Any]:
    q = sa.select(grant_versions).where(
        gv.owner_id == sa.bindparam("oid"), gv.grantee_key == sa.bindparam("gkey"),
        gv.grantee == sa.bindparam("grantee"), FLAG_COLUMN[operation].is_(True))
    if scoped:
        q = q.where(gv.scope_key == sa.bindparam("skey"), gv.type_iri == sa.bindparam("iri"))
    return q


def _lookup(operation: str, scoped: bool, current_only: bool) -> sa.Select[Any]:
    """The lookup statement, with bound parameters: oid, gkey, grantee, at (and skey, iri when
    `scoped`). Built once per shape, so a check costs one execution."""
    q = _base(operation, scoped).where(_in_force(sa.bindparam("at", type_=sa.BigInteger)))
    if current_only:
        q = q.where(gv.revoked.is_(False))
    return q.order_by(gv.grant_id)


def _lookup_then_and_now(operation: str) -> sa.Select[Any]:
    """One statement for both instants of a client's commit: versions in force at `at`, or in
    force at `now` and not revoked (bound parameters as `_lookup`'s, and now)."""
    now = sa.bindparam("now", type_=sa.BigInteger)
    return _base(operation, True).where(sa.or_(
        _in_force(sa.bindparam("at", type_=sa.BigInteger)),
        sa.and_(_in_force(now), gv.revoked.is_(False)),
    )).order_by(gv.grant_id)


_LOOKUPS = {(op, scoped, current): _lookup(op, scoped, current)
            for op in FLAG_COLUMN for scoped in (False, True) for current in (False, True)}
_LOOKUPS_THEN_AND_NOW = {op: _lookup_then_and_now(op) for op in FLAG_COLUMN}


async def grants_at(conn: AsyncConnection, oid: int, grantee: str, context: str | None,
                    type_: str | None, operation: str, at_us: int, *,
                    current_only: bool = False, jsonld: JsonLd | None = None) -> list[Any]:
    """Grant versions in force at `at_us` that let `grantee` do `operation` on context/type.

    Context/type are compared by type IRI (expanded by `jsonld`, the hub's; the shipped
    contexts if None): a grant of `http://schema.org/` + MusicPlaylist covers a commit of
    `https://schema.org` + MusicPlaylist. A context/type that does not expand is covered by no
    grant (empty list). With context/type None: for every type. `current_only` also drops
    grants that have since been revoked (reads are judged at the hub's now, by the grants as
    they are).
    """
    if context is not None and type_ is not None:
        iri = await grant_type_iri(jsonld, context, type_)
        if iri is None:
            return []
        return await grants_for_iri(conn, oid, grantee, iri, operation, at_us,
                                    current_only=current_only)
    return await grants_for_iri(conn, oid, grantee, None, operation, at_us,
                                current_only=current_only)


async def grants_for_iri(conn: AsyncConnection, oid: int, grantee: str, type_iri: str | None,
                         operation: str, at_us: int, *, current_only: bool = False
                         ) -> list[Any]:
    """`grants_at` for a type IRI already expanded (None: every type)."""
    scoped = type_iri is not None
    params: dict[str, Any] = {"oid": oid, "gkey": grantee_key(grantee), "grantee": grantee,
                              "at": at_us}
    if type_iri is not None:
        params.update(skey=scope_key(type_iri), iri=type_iri)
    stmt = _LOOKUPS[(operation, scoped, current_only)]
    return list(await conn.execute(stmt, params))


async def grants_then_and_now(conn: AsyncConnection, oid: int, grantee: str, context: str,
                              type_: str, operation: str, at_us: int, now_us: int, *,
                              jsonld: JsonLd | None = None) -> tuple[list[Any], list[Any]]:
    """For a commit a client sends: (the versions `grants_at(…, at_us)` finds, the versions
    `grants_at(…, now_us, current_only=True)` finds), in one lookup."""
    iri = await grant_type_iri(jsonld, context, type_)
    if iri is None:
        return [], []
    params = {"oid": oid, "gkey": grantee_key(grantee), "grantee": grantee, "at": at_us,
              "now": now_us, "skey": scope_key(iri), "iri": iri}
    rows = list(await conn.execute(_LOOKUPS_THEN_AND_NOW[operation], params))
    return ([r for r in rows if in_force(r, at_us)],
            [r for r in rows if not r.revoked and in_force(r, now_us)])


def grant_ids_naming(oid: int, grantee: str) -> sa.Select[Any]:
    """SQL: the ids of every grant (any version, revoked too) that names `grantee`."""
    return (sa.select(gv.grant_id)
            .where(gv.owner_id == oid, gv.grantee_key == grantee_key(grantee),
                   gv.grantee == grantee)
            .distinct())
