"""The sync messages, carried like every request (signed by the hub's DID, encrypted).

    SyncPullRequest  {sub, query: {after: seq, limit: n}}
    SyncPullResponse {commits: [{seq, commit}], last_seq}   # the owner's commits after `after`,
                                                             # in seq order, at most `limit`
    SyncHintRequest  {sub, last_seq}  → SyncHintResponse {accepted: bool}

The server side (`handle_sync_pull`, `handle_sync_hint`) runs behind the core API's routing;
the client side (`pull_request`, `parse_pull_response`) checks a peer's answer before anything
of it is used: a page that is not exactly what was asked for is refused as a whole.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from identity_hub.errors import BadRequest, PermissionsRequired, WrongType
from identity_hub.permissions import audit
from identity_hub.protocol.commit import COMMIT_MEMBERS
from identity_hub.storage import store
from identity_hub.storage.tables import owners
from identity_hub.sync import trust

if TYPE_CHECKING:
    from identity_hub.request_context import RequestContext
    from identity_hub.storage.engine import Database

logger = logging.getLogger(__name__)

PROTOCOL_CONTEXT = "https://schema.identity.foundation/0.1"
PULL_REQUEST = "SyncPullRequest"
PULL_RESPONSE = "SyncPullResponse"
HINT_REQUEST = "SyncHintRequest"
HINT_RESPONSE = "SyncHintResponse"
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
MAX_COMMIT_CHARS = 4 * 1024 * 1024  # one commit's members together, as received
DEFAULT_MAX_PAGE_BYTES = 8 * 1024 * 1024  # the sync_max_page_bytes setting
# A page travels as JSON in a JWS in a JWE, each base64url (4/3): about 16/9 of the JSON, plus
# the JOSE headers. A puller asks for pages whose JSON fits its byte limit with this margin.
_JOSE_OVERHEAD = 8192

# Hint receivers by database: the service of the hub whose core API answers the hint.
_HINT_TARGETS: weakref.WeakKeyDictionary[Any, Callable[[str, str], Awaitable[bool]]] = (
    weakref.WeakKeyDictionary())


class SyncProtocolError(Exception):
    """A peer's answer is not a valid page of what was asked."""


def register_hint_target(db: Database, target: Callable[[str, str], Awaitable[bool]]
                         ) -> None:
    """`await target(owner, peer_did)` is called for each SyncHintRequest this hub accepts."""
    _HINT_TARGETS[db] = target


def unregister_hint_target(db: Database) -> None:
    _HINT_TARGETS.pop(db, None)


# --- server side ---------------------------------------------------------------------------------

def _int(value: Any, target: str, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise WrongType(target=target)
    if value < low or (high is not None and value > high):
        raise BadRequest(f"{target.rsplit('.', 1)[-1]} out of range", target=target)
    return value


async def handle_sync_pull(ctx: RequestContext) -> dict[str, Any]:
    """SyncPullRequest → SyncPullResponse: a page of the owner's commits, for the owner or a
    hub it authorized (sync/trust.py); every pull by a hub is in the owner's audit log.

    Raises:
        BadRequest: a malformed query.
        PermissionsRequired: the requester holds no HubSync grant of the owner.
    """
    query = ctx.request.get("query")
    if not isinstance(query, dict):
        raise WrongType(target="query")
    after = _int(query.get("after", 0), "query.after", low=0)
    limit = _int(query.get("limit", DEFAULT_LIMIT), "query.limit", low=1, high=MAX_LIMIT)
    max_bytes = _int(query.get("max_bytes", 0), "query.max_bytes", low=0)
    if ctx.audit is not None:
        ctx.audit.operation, ctx.audit.interface = "read", "Sync"
    async with ctx.hub.db.transaction() as conn:
        oid = await store.ensure_owner(ctx.hub.db, conn, ctx.sub)
        grant_ids = await trust.may_pull(conn, oid, ctx.sub, ctx.requester)
        if not grant_ids:
            raise PermissionsRequired("No HubSync grant of the owner names this hub",
                                      target="sub")
        rows = await store.query_commits(conn, oid, object_ids=None, revisions=None,
                                         after=after, limit=limit)
        last_seq = int((await conn.execute(sa.select(owners.c.last_seq)
                                           .where(owners.c.id == oid))).scalar_one())
        if ctx.audit is not None:
            ctx.audit.grant_ids = grant_ids
            await audit.append(conn, oid, ctx.requester, ctx.audit)
    if ctx.audit is not None:
        ctx.audit.recorded = True
    return {"@context": PROTOCOL_CONTEXT, "@type": PULL_RESPONSE,
            "commits": [{"seq": r.seq, "commit": store.commit_wire(r)}
                        for r in _within(rows, max_bytes)],
            "last_seq": last_seq}


def _within(rows: list[Any], max_bytes: int) -> list[Any]:
    """The first rows whose commits' JSON fits in `max_bytes` (0: no byte budget), at least one:
    the puller's page byte limit (docs/replication.md)."""
    if not max_bytes:
        return rows
    total = 0
    for n, row in enumerate(rows):
        total += (len(row.protected) + len(row.payload) + len(row.signature) + len(row.header)
                  + len(row.signer) + 256)  # seq, rev, object_id, member names
        if total > max_bytes and n:
            return rows[:n]
    return rows


async def handle_sync_hint(ctx: RequestContext) -> dict[str, Any]:
    """SyncHintRequest → SyncHintResponse: a configured peer of the owner says it has new
    commits; this hub pulls from it soon. Anyone else's hint is ignored (accepted: false)."""
    last_seq = ctx.request.get("last_seq", 0)
    _int(last_seq, "last_seq", low=0)
    target = _HINT_TARGETS.get(ctx.hub.db)
    accepted = bool(target is not None and ctx.requester != ctx.sub
                    and await target(ctx.sub, ctx.requester))
    if ctx.audit is not None:
        ctx.audit.operation, ctx.audit.interface = "hint", "Sync"
        await audit.record(ctx.hub.db, ctx.sub, ctx.requester, ctx.audit, allowed=accepted,
                           outcome="ok" if accepted else "ignored")
    return {"@context": PROTOCOL_CONTEXT, "@type": HINT_RESPONSE, "accepted": accepted}


# --- client side ---------------------------------------------------------------------------------

def pull_request(iss: str, aud: str, owner: str, after: int, limit: int,
                 max_page_bytes: int | None = None) -> dict[str, Any]:
    """A SyncPullRequest; with `max_page_bytes` (the puller's sync_max_page_bytes) it asks the
    peer for a page whose encrypted answer fits in it (`query.max_bytes`, the JSON's budget)."""
    query: dict[str, Any] = {"after": after, "limit": limit}
    if max_page_bytes is not None:
        query["max_bytes"] = json_budget(max_page_bytes)
    return {"@context": PROTOCOL_CONTEXT, "@type": PULL_REQUEST, "iss": iss, "aud": aud,
            "sub": owner, "query": query}


def json_budget(max_page_bytes: int) -> int:
    """The page JSON size whose encrypted answer fits in `max_page_bytes`."""
    return max(1, (max_page_bytes - _JOSE_OVERHEAD) * 9 // 16)


def link_limits(max_page_bytes: int) -> dict[str, Any]:
    """The `HubClient` options of a sync link: the answer is read up to `max_page_bytes` and
    given up on beyond, naming the setting; its JSON is parsed strictly (bounded depth)."""
    return {"max_response_bytes": max_page_bytes, "response_limit_name": "sync_max_page_bytes"}


def check_limits(page_commits: int, max_page_bytes: int, max_commit_bytes: int) -> None:
    """The sync settings in range.

    Raises:
        ValueError: sync_page_commits outside 1..MAX_LIMIT, or sync_max_page_bytes too small
            for a page of one commit of max_commit_bytes (4x it, with the JOSE margin).
    """
    if not 1 <= page_commits <= MAX_LIMIT:
        raise ValueError(f"sync_page_commits must be between 1 and {MAX_LIMIT}")
    least = 4 * max_commit_bytes + 2 * _JOSE_OVERHEAD
    if max_page_bytes < least:
        raise ValueError(f"sync_max_page_bytes must be at least {least} "
                         f"(4 x max_commit_bytes + {2 * _JOSE_OVERHEAD})")


def hint_request(iss: str, aud: str, owner: str, last_seq: int) -> dict[str, Any]:
    return {"@context": PROTOCOL_CONTEXT, "@type": HINT_REQUEST, "iss": iss, "aud": aud,
            "sub": owner, "last_seq": last_seq}


@dataclasses.dataclass(frozen=True)
class Page:
    """A checked page: (seq, wire commit) in strictly increasing seq order after the cursor."""

    commits: list[tuple[int, dict[str, Any]]]
    last_seq: int


def parse_pull_response(response: Any, *, after: int, limit: int) -> Page:
    """Check a peer's SyncPullResponse against the request (`after`, `limit`).

    Raises:
        SyncProtocolError: anything else than a page of at most `limit` commits with seqs
        increasing from above `after`, each a JSON object with only commit members, and a
        `last_seq` at least the last of them.
    """
    if not isinstance(response, dict) or response.get("@type") != PULL_RESPONSE:
        raise SyncProtocolError("not a SyncPullResponse")
    items = response.get("commits")
    last_seq = response.get("last_seq")
    if not isinstance(items, list) or isinstance(last_seq, bool) or not isinstance(last_seq, int):
        raise SyncProtocolError("a SyncPullResponse needs commits and last_seq")
    if len(items) > limit:
        raise SyncProtocolError(f"oversized page: {len(items)} commits for a limit of {limit}")
    out: list[tuple[int, dict[str, Any]]] = []
    previous = after
    for item in items:
        if not isinstance(item, dict):
            raise SyncProtocolError("a page item is not an object")
        seq, commit = item.get("seq"), item.get("commit")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq <= previous:
            raise SyncProtocolError("page seqs must increase from the cursor")
        if not isinstance(commit, dict) or not set(commit) <= COMMIT_MEMBERS:
            raise SyncProtocolError("a page item's commit is not a commit object")
        size = sum(len(v) for v in commit.values() if isinstance(v, str))
        if size > MAX_COMMIT_CHARS:
            raise SyncProtocolError("a commit in the page is too large")
        previous = seq
        out.append((seq, commit))
    if last_seq < previous:
        raise SyncProtocolError("last_seq is below the page's last seq")
    return Page(out, last_seq)
