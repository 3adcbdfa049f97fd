"""The one pipeline for a request body: open the envelope, authenticate, dispatch, seal."""

from __future__ import annotations

import collections
import json
import logging
from typing import Any

from identity_hub.auth.envelope import (
    KeyRing,
    OpenedRequest,
    issue_token,
    nonce_digest,
    open_request,
    seal_response,
    verify_token,
)
from identity_hub.core import ROUTES
from identity_hub.crypto import Limits
from identity_hub.errors import AuthenticationFailed, HubError, ServerError, TooManyRequests
from identity_hub.metrics import Metrics
from identity_hub.protocol.jsonutil import loads_strict
from identity_hub.ratelimit import CPU_METER, CpuMeter, RateLimiter, parse_proxies
from identity_hub.runtime import Runtime
from identity_hub.storage import store
from identity_hub.transport.accesslog import AccessRecord
from identity_hub.transport.gate import RateGate

logger = logging.getLogger(__name__)

AUTH_FAILED_BODY = json.dumps({"error_code": "authentication_failed"}).encode()


class Pipeline:
    """Turns request bodies into (HTTP status, content type, response body)."""

    def __init__(self, runtime: Runtime, metrics: Metrics | None = None) -> None:
        self.rt = runtime
        settings = runtime.settings
        self.metrics = metrics
        # Rate limits (docs/rate-limits.md); raises ValueError for a malformed setting.
        self.gate = RateGate(RateLimiter.from_settings(settings), runtime.db,
                             open_tenancy=settings.open_tenancy, metrics=metrics,
                             max_keys=settings.rate_limit_max_keys)
        self.trusted_proxies = parse_proxies(settings.trusted_proxies)
        self.keys = KeyRing(runtime.identity)
        self.limits = Limits(max_token_bytes=settings.max_body_bytes,
                             max_plaintext=settings.max_plaintext_bytes)
        self.inflight: collections.Counter[str] = collections.Counter()

    async def handle(self, body: bytes, source: str = "unknown",
                     access: AccessRecord | None = None) -> tuple[int, str, bytes]:
        """One request body from `source` (the client's address) → (status, type, body).
        `access` (the access log's record of this request) learns the message type and the
        error code of a refusal.

        Raises:
            RateLimited: a rate limit refused it (the transport answers 429 + Retry-After).
        """
        settings = self.rt.settings
        access = access if access is not None else AccessRecord()
        try:
            try:
                opened = await open_request(body, self.keys, self.rt.resolver, self.limits,
                                            skew_seconds=settings.clock_skew_seconds)
                access.requester = opened.requester
                if opened.token is not None:
                    verify_token(opened.token, self.keys, opened.requester,
                                 self.rt.identity.did,
                                 skew_seconds=settings.clock_skew_seconds,
                                 lifetime_seconds=settings.token_lifetime_seconds)
            except AuthenticationFailed:
                self.gate.auth_failed(source)
                raise
            if opened.token is None:
                access.message_type = "token"  # the handshake that issues an access token
                await self.gate.handshake(opened.requester, source)
                payload = issue_token(self.keys, opened, self.rt.identity.did,
                                      settings.token_lifetime_seconds).encode("ascii")
                await self._register_nonce(opened)
            else:
                request, bad = self._parse(opened, access)
                # Counted before the unit of work: a refused request consumes no nonce and
                # stores nothing.
                charge = None if bad is not None else await self.gate.request(
                    opened.requester, request, source)
                meter = CpuMeter()
                # The nonce is consumed in the request's own transaction (storage/unit.py): a
                # replay is refused at the request's first database access, or when it ends.
                try:
                    reset = CPU_METER.set(meter)
                    try:
                        async with self.rt.db.unit(nonce=self._nonce(opened)):
                            payload = bad or await self._dispatch(opened, request, access)
                    finally:
                        CPU_METER.reset(reset)
                        self.gate.spent(charge, meter.seconds)
                except AuthenticationFailed:
                    raise
                except Exception:  # the commit failed: nothing of the request was kept
                    logger.exception("could not commit a request's work")
                    access.error_code = ServerError.code.value
                    payload = _dump(ServerError().to_response())
            sealed = await seal_response(payload, opened, self.keys, self.rt.resolver,
                                         settings.compat_2019)
        except AuthenticationFailed as exc:
            access.error_code = exc.code.value
            access.reason = _reason(exc)
            return 401, "application/json", AUTH_FAILED_BODY
        return 200, "application/jwt", sealed

    def _nonce(self, opened: OpenedRequest) -> tuple[str, int]:
        lifetime_us = self.rt.settings.token_lifetime_seconds * 1_000_000
        return nonce_digest(opened.requester, opened.nonce), store.now_us() + lifetime_us

    async def _register_nonce(self, opened: OpenedRequest) -> None:
        if not await store.register_nonce(self.rt.db, *self._nonce(opened)):
            raise AuthenticationFailed("replayed did-requester-nonce")

    def _parse(self, opened: OpenedRequest, access: AccessRecord) -> tuple[Any, bytes | None]:
        """The request JSON, or (None, the error response) when it does not parse."""
        try:
            return loads_strict(opened.payload, max_depth=self.rt.settings.max_json_depth), None
        except HubError as exc:
            return None, _dump(_noted(exc.to_response(), access))

    async def _dispatch(self, opened: OpenedRequest, request: Any,
                        access: AccessRecord) -> bytes:
        requester = opened.requester
        if self.inflight[requester] >= self.rt.settings.max_concurrent_per_requester:
            return _dump(_noted(TooManyRequests().to_response(), access))
        self.inflight[requester] += 1
        try:
            type_ = request.get("@type") if isinstance(request, dict) else None
            # Only a type the hub routes is logged: anything else is a stranger's text.
            access.message_type = type_ if isinstance(type_, str) and type_ in ROUTES else "unknown"
            return _dump(_noted(await self.rt.hub.handle(requester, request), access))
        finally:
            self.inflight[requester] -= 1
            if not self.inflight[requester]:
                del self.inflight[requester]


def _noted(response: dict[str, Any], access: AccessRecord) -> dict[str, Any]:
    """The response, with its error code (if it is an ErrorResponse) noted for the access log."""
    if response.get("@type") == "ErrorResponse":
        code = response.get("error_code")
        access.error_code = code if isinstance(code, str) else None
    return response


def _reason(exc: AuthenticationFailed) -> str:
    """The fixed category of an authentication failure ('JWE parse', 'token expired'): the
    part of its message before any library text, which may quote the request or name a DID."""
    return exc.message.split(":", 1)[0][:48]


def _dump(response: dict[str, Any]) -> bytes:
    return json.dumps(response, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
