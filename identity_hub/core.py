"""The core request API: an authenticated request in, the protocol response out.

`Hub.handle(requester, request)` takes the DID that signed the request (the transport has
decrypted and verified it) and the request JSON, and returns the response JSON. Every HubError
becomes an ErrorResponse here; any other exception becomes a bare `server_error` (logged, never
shown). The encrypted HTTP transport wraps this; tests and the CLI may call it directly.

Once a request names an owner this hub serves, a request by anyone else gets exactly one entry
in that owner's audit log (docs/permissions.md): the handler appends it in the transaction of the
access; a refused request is recorded here, after its work was rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from identity_hub.commits.service import CommitService
from identity_hub.did import DidResolver
from identity_hub.errors import (
    AuthenticationFailed,
    BadRequest,
    HubError,
    MissingParameter,
    ServerError,
    WrongType,
)
from identity_hub.interfaces.audit_query import handle_audit_query
from identity_hub.interfaces.base import PROTOCOL_CONTEXT, RequestContext
from identity_hub.interfaces.commit_query import handle_commit_query
from identity_hub.interfaces.objects import handle_object_query, handle_write
from identity_hub.jsonld import default_jsonld
from identity_hub.permissions import audit
from identity_hub.permissions.audit import AuditRecord
from identity_hub.permissions.authorization import Authorizer
from identity_hub.protocol.schemas import REQUEST_TYPES, validate_request
from identity_hub.settings import Settings
from identity_hub.storage import store
from identity_hub.storage.engine import Database
from identity_hub.sync.routes import SYNC_ROUTES

logger = logging.getLogger(__name__)

Handler = Callable[[RequestContext], Awaitable[dict[str, Any]]]

ROUTES: dict[str, Handler] = {
    "WriteRequest": handle_write,
    "ObjectQueryRequest": handle_object_query,
    "CommitQueryRequest": handle_commit_query,
    "AuditQueryRequest": handle_audit_query,  # extension: the owner's audit log
    **SYNC_ROUTES,  # extension: hub-to-hub replication (docs/replication.md)
}

MAX_DID_LENGTH = 2048


class Hub:
    """The hub's services, and the one entry point for authenticated requests."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        resolver: DidResolver,
        hub_did: str,
        *,
        authorizer: Authorizer | None = None,
        hub_dids: frozenset[str] = frozenset(),
    ) -> None:
        self.settings = settings
        self.db = db
        self.resolver = resolver
        self.did = hub_did
        self.accepted_auds = frozenset({hub_did}) | hub_dids
        self.authorizer = authorizer or Authorizer()
        self.commits = CommitService(db)
        # JSON-LD over the shipped contexts; the runtime replaces it with one that also serves
        # the owner's contexts in <data dir>/contexts and follows the unknown-context policy.
        self.jsonld = default_jsonld()

    async def serves(self, sub: str) -> bool:
        """Whether this hub keeps data for `sub` (a registered tenant, or open tenancy)."""
        if self.settings.open_tenancy:
            return True
        return await store.is_tenant(self.db, sub)

    async def handle(self, requester: str, request: Any) -> dict[str, Any]:
        """Answer one authenticated request; never raises except AuthenticationFailed.

        The request's database work is one unit of work (storage/unit.py), joined with the
        caller's when there is one (the transport's, which holds the request's nonce); it is
        committed before this returns, or before the caller's unit ends.
        """
        try:
            async with self.db.unit():
                try:
                    return await self._handle(requester, request)
                except AuthenticationFailed:
                    raise
                except HubError as exc:
                    return exc.to_response()
                except Exception:
                    logger.exception("unexpected error handling a request")
                    return ServerError().to_response()
        except AuthenticationFailed:
            raise
        except Exception:  # the unit's commit failed: the request's work was rolled back
            logger.exception("could not commit a request's work")
            return ServerError().to_response()

    async def _handle(self, requester: str, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise BadRequest("The request must be a JSON object")
        context = request.get("@context")
        if context != PROTOCOL_CONTEXT:
            raise BadRequest(f"@context must be {PROTOCOL_CONTEXT}", target="@context")
        type_ = request.get("@type")
        if not isinstance(type_, str):
            raise MissingParameter(target="@type")
        handler = ROUTES.get(type_)
        if handler is None:
            raise BadRequest(f"Request format unknown: {type_[:64]}", target="@type")
        if type_ in REQUEST_TYPES:
            # Every protocol message is checked against its JSON Schema (schemas/json) before a
            # handler sees it; the error names the failing property.
            validate_request(request)
        for name in ("iss", "aud", "sub"):
            if name not in request:
                raise MissingParameter(target=name)
            value = request[name]
            if not isinstance(value, str) or not value:
                raise WrongType(target=name)
            if len(value) > MAX_DID_LENGTH:
                raise BadRequest(f"{name} is too long", target=name)
        # The reference hub trusts `iss`; here it must be the DID that signed the request.
        if request["iss"] != requester:
            raise AuthenticationFailed("iss is not the signer")
        if request["aud"] not in self.accepted_auds:
            raise BadRequest("aud is not this hub", target="aud")
        sub = request["sub"]
        if not await self.serves(sub):
            raise BadRequest("This hub does not serve that sub", target="sub")
        if requester == sub:
            return await handler(RequestContext(hub=self, requester=requester, sub=sub,
                                                request=request))
        record = AuditRecord(type_)
        ctx = RequestContext(hub=self, requester=requester, sub=sub, request=request,
                             audit=record)
        try:
            response = await handler(ctx)
        except HubError as exc:
            await self._audit_refusal(ctx, record, exc.code.value)
            raise
        except Exception:
            await self._audit_refusal(ctx, record, "server_error")
            raise
        if not record.recorded:  # every handler records its own success; never skip one
            logger.error("%s answered without an audit entry", type_)
            await audit.record(self.db, sub, requester, record, allowed=True, outcome="ok")
        return response

    async def _audit_refusal(self, ctx: RequestContext, record: AuditRecord, outcome: str
                             ) -> None:
        if record.recorded:
            return
        try:
            await audit.record(self.db, ctx.sub, ctx.requester, record, allowed=False,
                               outcome=outcome)
        except AuthenticationFailed:
            raise  # a replayed request (storage/unit.py): nothing of it is kept
        except Exception:
            logger.exception("could not record a refused request in the audit log")
