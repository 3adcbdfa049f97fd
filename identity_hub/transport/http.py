"""The HTTP face of the hub: one POST endpoint. It reads bytes, calls the pipeline, writes bytes."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from identity_hub import appkeys
from identity_hub.errors import RateLimited
from identity_hub.ratelimit import source_address
from identity_hub.transport.accesslog import ACCESS, AccessRecord

logger = logging.getLogger(__name__)

TOO_LARGE = json.dumps({"error_code": "bad_request",
                        "developer_message": "Request body too large"}).encode()


def too_many(exc: RateLimited, access: AccessRecord) -> web.Response:
    """HTTP 429 with Retry-After and the protocol's ErrorResponse (plain JSON, like a 401)."""
    access.error_code = exc.code.value
    return web.Response(status=429, body=json.dumps(exc.to_response()).encode(),
                        content_type="application/json",
                        headers={"Retry-After": str(exc.retry_after)})


async def endpoint(request: web.Request) -> web.Response:
    settings = request.app[appkeys.SETTINGS]
    pipeline = request.app[appkeys.PIPELINE]
    access = request.get(ACCESS) or AccessRecord()
    source = source_address(request.remote, request.headers.get("X-Forwarded-For"),
                            pipeline.trusted_proxies)
    try:
        pipeline.gate.admit(source)  # before the body is read: no crypto for a flooding address
    except RateLimited as exc:
        return too_many(exc, access)
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        return web.Response(status=413, body=TOO_LARGE, content_type="application/json")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.Response(status=413, body=TOO_LARGE, content_type="application/json")
    access.bytes_in = len(body)
    try:
        status, content_type, out = await pipeline.handle(body, source, access)
    except RateLimited as exc:
        return too_many(exc, access)
    except Exception:
        # Never a 500 with a stack: an unexpected failure (the database is down, say) is logged
        # and the client is told to come back later.
        logger.exception("request pipeline failed")
        status, content_type, out = 503, "application/json", json.dumps(
            {"error_code": "service_unavailable"}).encode()
    return web.Response(status=status, body=out, content_type=content_type)
