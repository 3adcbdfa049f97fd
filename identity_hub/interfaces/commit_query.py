"""CommitQueryRequest → CommitQueryResponse (protocol doc §c.3), across interfaces."""

from __future__ import annotations

from typing import Any

from identity_hub.errors import BadRequest, NotImplementedByHub
from identity_hub.interfaces.base import RequestContext, opt_str, opt_str_list, page_response
from identity_hub.permissions import audit, exclusion
from identity_hub.storage import store


async def handle_commit_query(ctx: RequestContext) -> dict[str, Any]:
    """Commits of the owner, by object_id or by revision, in the order the hub stored them.

    Unlike the reference, `object_id` and `revision` may be combined (both must match). A
    non-owner gets only the commits it may read (docs/permissions.md), filtered in the query.
    """
    query = ctx.request.get("query") or {}
    if not isinstance(query, dict):
        raise BadRequest("query must be an object", target="query")
    fields = ctx.request.get("fields")
    if fields is not None:
        if not isinstance(fields, list):
            raise BadRequest("fields must be an array", target="fields")
        if fields:
            raise NotImplementedByHub(target="fields")
    object_ids = opt_str_list(query, "object_id", "query.object_id")
    revisions = opt_str_list(query, "revision", "query.revision")
    token = opt_str(query, "skip_token", "query.skip_token")
    after = store.decode_skip_token("c", token, "query.skip_token")
    limit = ctx.hub.settings.page_size
    own_excluded: list[Any] = []
    if ctx.audit is None:
        async with ctx.hub.db.read() as conn:
            oid = await store.owner_id(conn, ctx.sub)
            rows = [] if oid is None else await store.query_commits(
                conn, oid, object_ids=object_ids, revisions=revisions, after=after,
                limit=limit + 1)
    else:
        ctx.audit.operation, ctx.audit.object_ids = "read", object_ids
        async with ctx.hub.db.transaction() as conn:  # the read and its audit entry
            oid = await store.ensure_owner(ctx.hub.db, conn, ctx.sub)
            allowed = await ctx.hub.authorizer.commit_scope(ctx, conn, oid)
            rows = await store.query_commits(
                conn, oid, object_ids=object_ids, revisions=revisions, after=after,
                limit=limit + 1, where=allowed.where)
            # The requester's own commits asked for that no longer count, even where it may no
            # longer read them (it signed them): how a grantee learns a revocation undid them.
            own_excluded = await exclusion.excluded_of(
                conn, oid, signer=ctx.requester, object_ids=object_ids, revisions=revisions,
                limit=limit)
            ctx.audit.grant_ids = allowed.grant_ids
            ctx.audit.object_ids = sorted({r.object_id for r in rows[:limit]})
            await audit.append(conn, oid, ctx.requester, ctx.audit)
        ctx.audit.recorded = True
    more = len(rows) > limit
    rows = rows[:limit]
    next_token = store.encode_skip_token("c", rows[-1].seq) if more else None
    response = page_response("CommitQueryResponse", "commits",
                             [store.commit_wire(r) for r in rows], next_token)
    excluded = exclusion.entries_of(rows)
    seen = {e["rev"] for e in excluded}
    excluded += [e for e in own_excluded if e["rev"] not in seen]
    if excluded:  # commits held but not folded (docs/replication.md, "Which commits count")
        response["excluded"] = excluded
    return response
