"""The HTTP face of the hub: one POST endpoint. It reads bytes, calls the pipeline, writes bytes."""

from __future__ import annotations

import json
import logging

from aiohttp import web

from identity_hub import appkeys
from identity_hub.transport.accesslog import ACCESS, AccessRecord

logger = logging.getLogger(__name__)

TOO_LARGE = json.dumps({"error_code": "bad_request",
                        "developer_message": "Request body too large"}).encode()


async def endpoint(request: web.Request) -> web.Response:
    settings = request.app[appkeys.SETTINGS]
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        return web.Response(status=413, body=TOO_LARGE, content_type="application/json")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return web.Response(status=413, body=TOO_LARGE, content_type="application/json")
    access = request.get(ACCESS) or AccessRecord()
    access.bytes_in = len(body)
    pipeline = request.app[appkeys.PIPELINE]
    try:
        status, content_type, out = await pipeline.handle(body, access)
    except Exception:
        # Never a 500 with a stack: an unexpected failure (the database is down, say) is logged
        # and the client is told to come back later.
        logger.exception("request pipeline failed")
        status, content_type, out = 503, "application/json", json.dumps(
            {"error_code": "service_unavailable"}).encode()
    return web.Response(status=status, body=out, content_type=content_type)
