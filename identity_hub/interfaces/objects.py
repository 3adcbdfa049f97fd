"""Writes and object queries of the object interfaces: Collections, Profile, Permissions.

The three share one write path and one query path; what differs is a per-interface write rule
(`check_write`): a Profile is unique per owner, context and type; Permissions objects must be
PermissionGrants.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.commits.verify import verify_commit
from identity_hub.errors import (
    BadRequest,
    HubError,
    MissingParameter,
    NotFound,
    NotImplementedByHub,
)
from identity_hub.interfaces.base import (
    PROTOCOL_CONTEXT,
    RequestContext,
    check_committed_at,
    opt_str,
    opt_str_list,
    page_response,
    req_str,
)
from identity_hub.permissions import audit, exclusion
from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE, parse_grant, weakened
from identity_hub.permissions.index import grant_type_iri
from identity_hub.protocol.commit import Commit, format_time, parse_commit
from identity_hub.storage import store
from identity_hub.storage.query import parse_rich_query
from identity_hub.storage.query_sql import run_object_query
from identity_hub.storage.tables import objects as objects_table

logger = logging.getLogger(__name__)

OBJECT_INTERFACES = ("Collections", "Profile", "Permissions")
RICH_MEMBERS = ("where", "sort", "limit")  # the rich-query extension (docs/queries.md)


def _check_payload(ctx: RequestContext, commit: Commit) -> dict[str, Any] | None:
    """A create/update payload is a JSON-LD object matching the commit's context and type.
    Returns it decoded (None for deletes and automerge commits)."""
    if commit.operation == "delete" or commit.commit_strategy == "automerge":
        return None  # automerge bytes are checked by the commit service, merged with their object
    payload = commit.payload_json(ctx.hub.settings.max_json_depth)
    if not isinstance(payload, dict):
        raise BadRequest("The payload must be a JSON object", target="commit.payload")
    if "@context" not in payload or "@type" not in payload:
        raise BadRequest("The payload must have @context and @type", target="commit.payload")
    # By IRI: `https://schema.org` + MusicPlaylist, `http://schema.org/` + MusicPlaylist and a
    # payload @type of `http://schema.org/MusicPlaylist` agree. Contexts load only from files.
    if not ctx.hub.jsonld.payload_matches(payload, commit.context, commit.type):
        raise BadRequest("The payload's @context/@type contradict the commit's context/type",
                         target="commit.payload")
    if commit.interface == "Permissions":
        terms = parse_grant(payload)
        if terms.owner != commit.sub:
            raise BadRequest("A PermissionGrant's owner must be the hub owner",
                             target="commit.payload.owner")
    return payload


def check_commit_shape(ctx: RequestContext, commit: Commit) -> dict[str, Any] | None:
    """Rules that need no database: interface-specific headers, payload, clock skew.
    Returns the payload decoded, when the rules decoded it.

    Raises:
        BadRequest, NotImplementedByHub
    """
    if commit.interface == "Actions":
        raise NotImplementedByHub(target="commit.protected.interface")
    if commit.interface == "Permissions":
        if commit.context != GRANT_CONTEXT or commit.type != GRANT_TYPE:
            raise BadRequest("Permissions objects are PermissionGrants of "
                             f"{GRANT_CONTEXT}", target="commit.protected.type")
        if commit.commit_strategy != "basic":
            raise BadRequest("Permissions commits must use the basic strategy",
                             target="commit.protected.commit_strategy")
    check_committed_at(commit.committed_at_us, ctx.hub.settings.clock_skew_seconds)
    return _check_payload(ctx, commit)


async def check_grant_type(ctx: RequestContext, payload: dict[str, Any]) -> None:
    """A grant's context + type must expand to a type IRI with the hub's contexts: grants cover
    objects by that IRI, as queries find them, so a grant that does not expand would cover
    nothing (docs/permissions.md).

    Raises:
        BadRequest: at `commit.payload.context` or `commit.payload.type`.
    """
    terms = parse_grant(payload)
    try:
        iri = await ctx.hub.jsonld.type_iri_async(terms.context, terms.type,
                                                  target="commit.payload")
    except BadRequest as exc:
        raise BadRequest("A PermissionGrant covers objects by type IRI, and its context and "
                         f"type do not expand to one: {exc.message}", target=exc.target) from None
    if iri == await ctx.hub.jsonld.type_iri_async(GRANT_CONTEXT, GRANT_TYPE):
        raise BadRequest("Grants cannot cover PermissionGrants: only the owner writes grants",
                         target="commit.payload.type")


def _check_grant_change(commit: Commit, row: Any, max_depth: int) -> None:
    """An update keeps a grant's owner, grantee, context and type; before `unrevocable_until`
    a grant may be neither deleted nor weakened."""
    try:
        old = parse_grant(row.data)
    except BadRequest:
        return  # the stored state is no valid grant (it grants nothing): nothing to protect
    new = None if commit.operation == "delete" else parse_grant(commit.payload_json(max_depth))
    if new is not None and new.key != old.key:
        raise BadRequest("A grant's grantee, context and type cannot change: create a new "
                         "grant (and revoke this one)", target="commit.payload")
    until = old.unrevocable_until_us
    if until is None or min(store.now_us(), commit.committed_at_us) >= until:
        return
    if new is None:
        raise BadRequest(f"This grant is unrevocable until {format_time(until)}: it cannot be "
                         "deleted before then", target="commit.protected.operation")
    lost = weakened(old, new)
    if lost:
        raise BadRequest(f"This grant is unrevocable until {format_time(until)}: it cannot be "
                         f"weakened before then ({', '.join(lost)})", target="commit.payload")


def _precondition(ctx: RequestContext, commit: Commit, excluded: list[Any]) -> Any:
    """The checks made under the owner's lock, before the commit is stored: the grant check
    and audit entry of a non-owner, then the object rules. `excluded` receives the non-owner's
    own commits of the object that no longer count (permissions/exclusion.py)."""

    async def check(conn: AsyncConnection, oid: int, row: Any) -> None:
        if ctx.audit is not None:
            if commit.operation != "create":
                excluded[:] = await exclusion.excluded_of(
                    conn, oid, signer=ctx.requester, object_ids=[commit.object_id],
                    limit=ctx.hub.settings.page_size)
            ctx.audit.grant_ids = await ctx.hub.authorizer.authorize_write(
                ctx, conn, oid, commit, row)
        await _object_rules(conn, oid, row)
        if ctx.audit is not None:
            await audit.append(conn, oid, ctx.requester, ctx.audit)

    async def _object_rules(conn: AsyncConnection, oid: int, row: Any) -> None:
        if commit.operation == "create":
            if commit.interface == "Profile":
                existing = await store.find_live_object(conn, oid, "Profile", commit.context,
                                                        commit.type, other_than=commit.object_id)
                if existing is not None:
                    raise BadRequest(
                        "Profile already exists. Please issue update for object_id: "
                        f"'{existing.object_id}'", target="commit.protected.operation")
            return
        if (
            row is None
            or not row.has_create
            or row.interface != commit.interface
            or row.context != commit.context
            or row.type != commit.type
        ):
            raise NotFound(f"No object {commit.object_id[:80]} to {commit.operation}",
                           target="commit.protected.object_id")
        if row.commit_strategy != commit.commit_strategy:
            raise BadRequest("commit_strategy differs from the object's",
                             target="commit.protected.commit_strategy")
        if commit.interface == "Permissions" and not row.deleted:
            _check_grant_change(commit, row, ctx.hub.settings.max_json_depth)
            await _no_backdated_weakening(conn, oid, row)

    async def _no_backdated_weakening(conn: AsyncConnection, oid: int, row: Any) -> None:
        """A grantee's commit is judged by the grants in force at its committed_at. A revocation
        (or weakening) dated before a commit the hub already accepted under the grant would
        leave the hub holding a commit its own rule calls unauthorized: refuse it."""
        try:
            old = parse_grant(row.data)
        except BadRequest:
            return
        if commit.operation != "delete":
            new = parse_grant(commit.payload_json(ctx.hub.settings.max_json_depth))
            if not weakened(old, new):
                return
        iri = await grant_type_iri(ctx.hub.jsonld, old.context, old.type)
        latest = await store.latest_commit_by(conn, oid, old.grantee, old.context, old.type,
                                              type_iri=iri)
        if latest is not None and commit.committed_at_us < latest:
            raise BadRequest(
                f"This grant covers a commit dated {format_time(latest)}: a revocation or "
                "weakening cannot be dated before it; use a later committed_at",
                target="commit.protected.committed_at")

    return check


async def handle_write(ctx: RequestContext) -> dict[str, Any]:
    """WriteRequest → WriteResponse (protocol doc §c.1)."""
    if "commit" not in ctx.request:
        raise MissingParameter(target="commit")
    commit = parse_commit(ctx.request["commit"], max_bytes=ctx.hub.settings.max_commit_bytes)
    if ctx.audit is not None:
        ctx.audit.interface, ctx.audit.operation = commit.interface, commit.operation
        ctx.audit.context, ctx.audit.type = commit.context, commit.type
        ctx.audit.object_ids, ctx.audit.rev = [commit.object_id], commit.rev
    if commit.signer != ctx.request.get("iss"):
        raise BadRequest("The commit must be signed by the request issuer", target="commit")
    if commit.sub != ctx.sub:
        raise BadRequest("The commit's sub must be the request's sub",
                         target="commit.protected.sub")
    ctx.hub.authorizer.check_write_shape(ctx, commit)
    type_iri = None
    if commit.operation != "delete" and commit.commit_strategy != "automerge":
        # Expand the header context/type off the event loop (cached after the first time), so
        # the payload check in check_commit_shape finds it cached. Unknown contexts: bad_request.
        # A create stores it with its object (its collection: identity_hub/jsonld).
        type_iri = await ctx.hub.jsonld.type_iri_async(commit.context, commit.type)
    payload = check_commit_shape(ctx, commit)
    if commit.interface == "Permissions" and payload is not None:
        await check_grant_type(ctx, payload)
    await verify_commit(commit, ctx.hub.resolver)
    excluded: list[Any] = []
    try:
        result = await ctx.hub.commits.write(ctx.sub, commit,
                                             _precondition(ctx, commit, excluded),
                                             payload=payload, type_iri=type_iri)
    except HubError as exc:
        if excluded:  # why the grantee's object is gone, or its grant no longer covers it
            exc.extra["excluded"] = excluded
        raise
    if ctx.audit is not None:
        if result.stored:
            ctx.audit.recorded = True  # appended in the write's own transaction
        else:
            await _audit_repeat(ctx, commit)
    response = {"@context": PROTOCOL_CONTEXT, "@type": "WriteResponse",
                "revisions": result.revisions}
    if excluded:
        response["excluded"] = excluded
    return response


async def _audit_repeat(ctx: RequestContext, commit: Commit) -> None:
    """A non-owner re-sent a commit the hub already holds: nothing was written. Its own earlier
    commit was judged at its committed_at, so the same grants still cover it; record that."""
    assert ctx.audit is not None
    async with ctx.hub.db.transaction() as conn:
        oid = await store.ensure_owner(ctx.hub.db, conn, ctx.sub)
        row = await store.load_object(conn, oid, commit.object_id)
        ctx.audit.grant_ids = await ctx.hub.authorizer.authorize_write(ctx, conn, oid, commit,
                                                                       row, arriving=False)
        await audit.append(conn, oid, ctx.requester, ctx.audit, outcome="already_held")
    ctx.audit.recorded = True


def object_metadata(row: Any, sub: str, include_data: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "interface": row.interface,
        "context": row.context,
        "type": row.type,
        "id": row.object_id,
        "created_by": row.created_by,
        "created_at": row.created_at,
        "sub": sub,
        "commit_strategy": row.commit_strategy,
    }
    if row.meta is not None:
        meta["meta"] = row.meta
    if include_data:
        meta["data"] = row.data
    return meta


async def handle_object_query(ctx: RequestContext) -> dict[str, Any]:
    """ObjectQueryRequest → ObjectQueryResponse (protocol doc §c.2).

    Extensions: `query.include_data: true` adds each object's folded state as `data`;
    `query.where` / `sort` / `limit` filter, order and size the page (docs/queries.md), with
    `skip_token` a cursor of that sort order. A query without them is answered as in 2019.
    """
    query = ctx.request.get("query")
    if query is None:
        raise MissingParameter(target="query")
    if not isinstance(query, dict):
        raise BadRequest("query must be an object", target="query")
    interface = req_str(query, "interface", "query.interface")
    if interface == "Actions":
        raise NotImplementedByHub(target="query.interface")
    if interface not in OBJECT_INTERFACES:
        raise BadRequest(f"Unknown interface: {interface[:40]}", target="query.interface")
    context = opt_str(query, "context", "query.context")
    type_ = opt_str(query, "type", "query.type")
    if (context is None) != (type_ is None):
        raise BadRequest("context and type must be given together",
                         target="query.context, query.type")
    if interface == "Permissions" and context is not None and (
            context != GRANT_CONTEXT or type_ != GRANT_TYPE):
        raise BadRequest("Permissions queries are for PermissionGrants", target="query.type")
    object_ids = opt_str_list(query, "object_id", "query.object_id")
    filters = query.get("filters")
    if filters is not None and not isinstance(filters, list):
        raise BadRequest("filters must be an array", target="query.filters")
    include_data = query.get("include_data", False)
    if not isinstance(include_data, bool):
        raise BadRequest("include_data must be a boolean", target="query.include_data")
    token = opt_str(query, "skip_token", "query.skip_token")
    # The rich-query extension (docs/queries.md): parsed before any database work, so a
    # malformed where/sort/limit/skip_token is bad_request naming the member at fault.
    rich = (parse_rich_query(query) if any(query.get(m) is not None for m in RICH_MEMBERS)
            else None)
    after = 0 if rich is not None else store.decode_skip_token("o", token, "query.skip_token")
    page_size = ctx.hub.settings.page_size
    # By type IRI: every spelling of the context (`https://schema.org`, `http://schema.org/`,
    # `schema.org`) and of the type finds the same objects. Unknown contexts: bad_request.
    iri = (None if context is None or type_ is None
           else await ctx.hub.jsonld.type_iri_async(context, type_, target="query"))

    async def page(conn: AsyncConnection, oid: int, where: Any) -> tuple[list[Any], str | None]:
        if rich is not None:
            return await run_object_query(
                conn, rich, owner_id=oid, interface=interface, object_ids=object_ids,
                scope=where, page_size=page_size,
                extra=[] if iri is None else [objects_table.c.type_iri == iri])
        rows = await store.query_objects(conn, oid, interface=interface, context=None,
                                         type_=None, type_iri=iri, object_ids=object_ids,
                                         after=after, limit=page_size + 1, where=where)
        if len(rows) <= page_size:
            return rows, None
        rows = rows[:page_size]
        return rows, store.encode_skip_token("o", rows[-1].create_seq)

    excluded: list[Any] = []
    if ctx.audit is None:
        async with ctx.hub.db.read() as conn:
            oid = await store.owner_id(conn, ctx.sub)
            rows, next_token = ([], None) if oid is None else await page(conn, oid, None)
    else:
        ctx.audit.interface, ctx.audit.operation = interface, "read"
        ctx.audit.context, ctx.audit.type, ctx.audit.object_ids = context, type_, object_ids
        async with ctx.hub.db.transaction() as conn:  # the read and its audit entry
            oid = await store.ensure_owner(ctx.hub.db, conn, ctx.sub)
            excluded = await exclusion.excluded_of(conn, oid, signer=ctx.requester,
                                                   object_ids=object_ids, limit=page_size)
            try:
                allowed = await ctx.hub.authorizer.object_scope(ctx, conn, oid, interface,
                                                                context, type_)
            except HubError as exc:
                if excluded:
                    exc.extra["excluded"] = excluded
                raise
            # The grantee's scope is part of the same SQL WHERE as the filters and the sort:
            # a page never holds, or is bounded by, an object the grantee may not read.
            rows, next_token = await page(conn, oid, allowed.where)
            ctx.audit.grant_ids = allowed.grant_ids
            ctx.audit.object_ids = [r.object_id for r in rows]
            await audit.append(conn, oid, ctx.requester, ctx.audit)
        ctx.audit.recorded = True
    objects = [object_metadata(r, ctx.sub, include_data) for r in rows]
    response = page_response("ObjectQueryResponse", "objects", objects, next_token)
    if excluded:  # the requester's own commits of the objects asked for that no longer count
        response["excluded"] = excluded
    return response
