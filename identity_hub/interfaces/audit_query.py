"""AuditQueryRequest → AuditQueryResponse: the owner reads its audit log (an extension of the
protocol, docs/permissions.md).

    {"@context": "https://schema.identity.foundation/0.1", "@type": "AuditQueryRequest",
     "iss": OWNER, "aud": HUB, "sub": OWNER,
     "query": {"grantee": DID, "since": ISO-8601, "skip_token": "..."}}   (all optional)

    {"@type": "AuditQueryResponse", "entries": [{"id", "at", "requester", "request_type",
     "interface", "operation", "context", "type", "object_ids", "rev", "allowed", "outcome",
     "grant_ids"}, ...], "skip_token": null}

Only the owner may ask; anyone else gets `permissions_required` (and an audit entry).
"""

from __future__ import annotations

from typing import Any

from identity_hub.errors import BadRequest, PermissionsRequired
from identity_hub.interfaces.base import RequestContext, opt_str, page_response
from identity_hub.permissions import audit
from identity_hub.protocol.commit import parse_time
from identity_hub.storage import store


async def handle_audit_query(ctx: RequestContext) -> dict[str, Any]:
    """The owner's audit entries, oldest first, a page at a time."""
    if not ctx.is_owner:
        raise PermissionsRequired("Only the owner reads the audit log", target="sub")
    query = ctx.request.get("query") or {}
    if not isinstance(query, dict):
        raise BadRequest("query must be an object", target="query")
    grantee = opt_str(query, "grantee", "query.grantee")
    since = opt_str(query, "since", "query.since")
    since_us = None
    if since is not None:
        try:
            since_us = parse_time(since)
        except (ValueError, OverflowError):
            raise BadRequest("since must be an ISO-8601 date-time", target="query.since") from None
    token = opt_str(query, "skip_token", "query.skip_token")
    after = store.decode_skip_token("a", token, "query.skip_token")
    limit = ctx.hub.settings.page_size
    async with ctx.hub.db.read() as conn:
        oid = await store.owner_id(conn, ctx.sub)
        rows = [] if oid is None else await audit.query(
            conn, oid, requester=grantee, since_us=since_us, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_token = store.encode_skip_token("a", rows[-1].id) if more else None
    return page_response("AuditQueryResponse", "entries", [audit.entry_wire(r) for r in rows],
                         next_token)
