"""The protocol's error vocabulary: one exception hierarchy, rendered in one place.

Error codes follow hub-common-js `HubErrorCode`. A `HubError` raised anywhere below the transport
becomes a signed and encrypted `ErrorResponse` (HTTP 200), except `AuthenticationFailed`, which the
transport answers with HTTP 401 and the plain JSON `{"error_code": "authentication_failed"}` and
no hint of which check failed.
"""

from __future__ import annotations

import enum
from typing import Any

PROTOCOL_CONTEXT = "https://schema.identity.foundation/0.1"


class ErrorCode(enum.StrEnum):
    AUTHENTICATION_FAILED = "authentication_failed"
    BAD_REQUEST = "bad_request"
    NOT_FOUND = "not_found"
    NOT_IMPLEMENTED = "not_implemented"
    PERMISSIONS_REQUIRED = "permissions_required"
    TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"
    TOO_MANY_REQUESTS = "too_many_requests"
    SERVER_ERROR = "server_error"
    SERVICE_UNAVAILABLE = "service_unavailable"


class HubError(Exception):
    """An error with a protocol error code, an optional JSON-path target and a safe message.

    The message is shown to the client: never put library text, SQL or secrets in it.
    """

    code: ErrorCode = ErrorCode.SERVER_ERROR
    http_status: int = 200
    default_message = "Server error"

    def __init__(self, message: str | None = None, *, target: str | None = None) -> None:
        self.message = message or self.default_message
        self.target = target
        # Extension members of the ErrorResponse (e.g. `excluded`: the requester's commits of
        # the object named that no longer count, docs/replication.md). Never library text.
        self.extra: dict[str, Any] = {}
        super().__init__(self.message)

    def to_response(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "@context": PROTOCOL_CONTEXT,
            "@type": "ErrorResponse",
            "error_code": self.code.value,
            "developer_message": self.message,
        }
        if self.target is not None:
            body["target"] = self.target
        for name, value in self.extra.items():
            body.setdefault(name, value)
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, target={self.target!r})"


class BadRequest(HubError):
    code = ErrorCode.BAD_REQUEST
    default_message = "Bad request"


class MissingDependencies(BadRequest):
    """An automerge change whose dependencies the hub does not hold (yet): refused to a client;
    a replicated one is parked until they arrive (sync/receiver.py)."""


class MissingParameter(BadRequest):
    default_message = "Required parameter is missing"


class WrongType(BadRequest):
    default_message = "Required parameter is of the incorrect type"


class NotFound(HubError):
    code = ErrorCode.NOT_FOUND
    default_message = "Not found"


class NotImplementedByHub(HubError):
    code = ErrorCode.NOT_IMPLEMENTED
    default_message = "Not Implemented"


class PermissionsRequired(HubError):
    code = ErrorCode.PERMISSIONS_REQUIRED
    default_message = "Permissions required"


class TooManyRequests(HubError):
    code = ErrorCode.TOO_MANY_REQUESTS
    http_status = 429
    default_message = "Too many requests"


class RateLimited(TooManyRequests):
    """A rate limit (identity_hub/ratelimit.py) refused the request: answered with HTTP 429, a
    `Retry-After` header and this ErrorResponse as plain JSON (it may come before the request
    is decrypted, so it cannot be sealed to the requester)."""

    def __init__(self, limit: str, scope: str, retry_after: int, setting: str) -> None:
        self.limit = limit
        self.scope = scope
        self.retry_after = retry_after
        self.setting = setting
        per = "source address" if scope == "address" else "requester DID"
        what = "automerge worker seconds" if limit == "automerge" else f"{limit} requests"
        super().__init__(f"Rate limit exceeded: {what} per {per} ({setting}); "
                         f"retry after {retry_after} s")


class ServiceUnavailable(HubError):
    code = ErrorCode.SERVICE_UNAVAILABLE
    http_status = 503
    default_message = "Service unavailable"


class TemporarilyUnavailable(HubError):
    """Something the hub needs is out of reach for now (e.g. a did:web host); try again later."""

    code = ErrorCode.TEMPORARILY_UNAVAILABLE
    default_message = "Temporarily unavailable"


class ServerError(HubError):
    code = ErrorCode.SERVER_ERROR
    default_message = "Server error"


class AuthenticationFailed(HubError):
    """Every authentication failure looks the same from outside (no decryption oracle).

    The message is for the hub's own log only; the transport never sends it.
    """

    code = ErrorCode.AUTHENTICATION_FAILED
    http_status = 401
    default_message = "Authentication failed"

    def to_response(self) -> dict[str, Any]:
        return {"error_code": self.code.value}
