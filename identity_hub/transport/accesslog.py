"""The access log: one line per request, written by an aiohttp middleware (docs/logs.md).

Each line has the request id (also sent back as `X-Request-Id`), the method and the matched
route (never the raw path: a path such as /1.0/identifiers/{did} would name a DID, and an
unmatched one is a stranger's bytes), the HTTP status, the protocol error code of a refusal, the
message type once the request is decrypted, the elapsed milliseconds and the bytes in and out.

A refusal after authentication travels as an encrypted ErrorResponse with HTTP status 200; the
pipeline puts its error code on the request's `AccessRecord`, so the line still says
`error_code=permissions_required`. By default no line names a DID or an object id: the single
URL exists so that an observer learns neither who asks nor about whom, and the operator's logs
are part of that. `log_requester_dids` adds the requester's DID.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from identity_hub.logs import REQUEST_ID, log_access, new_request_id, quote

logger = logging.getLogger(__name__)

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
MAX_ERROR_BODY = 4096


@dataclasses.dataclass
class AccessRecord:
    """What the handler learned about a request, for its access line."""

    message_type: str | None = None   # the protocol message type, once decrypted
    error_code: str | None = None     # the protocol error code of a refusal
    reason: str | None = None         # a fixed category of an authentication failure
    bytes_in: int | None = None       # the body bytes read
    requester: str | None = None      # logged only with log_requester_dids


# Here rather than in appkeys.py: appkeys imports the pipeline, which fills this record, so a
# key in appkeys would make accesslog → appkeys → pipeline → accesslog a cycle.
ACCESS = web.RequestKey("access", AccessRecord)


Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def access_middleware(*, log_dids: bool = False) -> Middleware:
    """The middleware: times the handler and logs one line however it ends."""

    @web.middleware
    async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = new_request_id()
        token = REQUEST_ID.set(request_id)
        record = AccessRecord()
        request[ACCESS] = record
        start = time.perf_counter()
        response: web.StreamResponse | None = None
        status = 500
        try:
            response = await handler(request)
            status = response.status
            response.headers["X-Request-Id"] = request_id
            return response
        except web.HTTPException as exc:
            response, status = exc, exc.status
            exc.headers["X-Request-Id"] = request_id
            raise
        except asyncio.CancelledError:
            status, record.error_code = 499, "client_disconnected"
            raise
        finally:
            ms = round((time.perf_counter() - start) * 1000, 1)
            fields = {
                "request_id": request_id,
                "method": request.method if request.method in KNOWN_METHODS else "OTHER",
                "route": _route(request),
                "status": status,
                "error_code": record.error_code or _error_code(response, status),
                "message_type": record.message_type,
                "ms": ms,
                "bytes_in": record.bytes_in if record.bytes_in is not None
                else request.content_length,
                "bytes_out": _size(response),
            }
            if record.reason:
                fields["reason"] = record.reason
            if log_dids and record.requester:
                fields["requester"] = quote(record.requester, 256)
            log_access(fields)
            REQUEST_ID.reset(token)

    return access_log


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "-"


def _size(response: web.StreamResponse | None) -> int | None:
    if response is None:
        return None
    try:
        return response.content_length
    except (TypeError, ValueError):
        return None


def _error_code(response: web.StreamResponse | None, status: int) -> str | None:
    """The error code of a plain (unencrypted) refusal: the JSON body's `error_code` when the
    hub wrote one, else the HTTP reason phrase (`not_found`, `method_not_allowed`)."""
    if status < 400:
        return None
    body = getattr(response, "body", None)
    if isinstance(body, bytes) and len(body) <= MAX_ERROR_BODY and body[:1] == b"{":
        try:
            code = json.loads(body).get("error_code")
        except (ValueError, AttributeError):
            code = None
        if isinstance(code, str) and code.replace("_", "").isalnum() and len(code) <= 64:
            return code
    try:
        return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return None
