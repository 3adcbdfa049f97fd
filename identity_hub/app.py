"""The one app factory, used by `identity-hub serve`, the tests and e2e."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from identity_hub import appkeys
from identity_hub.runtime import open_runtime
from identity_hub.settings import Settings
from identity_hub.storage import store
from identity_hub.sync.service import SyncConfig
from identity_hub.sync.wiring import attach_write_hints, running_sync
from identity_hub.transport.http import endpoint
from identity_hub.transport.pipeline import Pipeline

logger = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers and its database does too. No secrets."""
    runtime = request.app[appkeys.RUNTIME]
    try:
        async with runtime.db.read() as conn:
            await conn.exec_driver_sql("SELECT 1")
    except Exception:
        logger.exception("health check: database unreachable")
        return web.json_response({"status": "unavailable"}, status=503)
    return web.json_response({"status": "ok"})


async def well_known_did(request: web.Request) -> web.Response:
    runtime = request.app[appkeys.RUNTIME]
    if not runtime.identity.did.startswith("did:web:"):
        raise web.HTTPNotFound()
    # static_document() adds the `publicKey` array, the only part the 2019 clients read.
    return web.json_response(runtime.identity.static_document())


async def resolve_self(request: web.Request) -> web.Response:
    """`GET /1.0/identifiers/{did}` for this hub's own DID, in the 2019 universal-resolver shape,
    so that a 2019 client can be pointed at the hub as its resolver. Any other DID: 404."""
    runtime = request.app[appkeys.RUNTIME]
    did = request.match_info["did"]
    identity = runtime.identity
    names = {identity.did}
    if identity.did.startswith("did:ion:"):
        names.add(identity.did.rsplit(":", 1)[0])  # the short form of a long-form did:ion
    if did not in names:
        raise web.HTTPNotFound()
    document = identity.static_document()
    return web.json_response({"document": document, "didDocument": document,
                              "resolverMetadata": {}, "didDocumentMetadata": {}})


async def _purge_nonces(db: object, every: float = 60.0) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await store.purge_nonces(db)  # type: ignore[arg-type]
        except Exception:
            logger.exception("purging expired nonces failed")


async def well_known_hub(request: web.Request) -> web.Response:
    """The hub's DID, DID document and endpoint: what `identity-hub info --json` prints."""
    runtime = request.app[appkeys.RUNTIME]
    return web.json_response({"did": runtime.identity.did,
                              "didDocument": runtime.identity.static_document(),
                              "endpoint": runtime.settings.endpoint})


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[appkeys.SETTINGS] = settings

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            app[appkeys.RUNTIME] = runtime
            app[appkeys.PIPELINE] = Pipeline(runtime)
            purger = asyncio.create_task(_purge_nonces(runtime.db))
            yield
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger

    async def sync_ctx(app: web.Application) -> AsyncIterator[None]:
        """Replication with the owners' peer hubs (docs/replication.md)."""
        runtime = app[appkeys.RUNTIME]
        config = SyncConfig(interval=settings.sync_interval_seconds,
                            page_size=settings.sync_page_commits,
                            max_page_bytes=settings.sync_max_page_bytes)
        async with running_sync(runtime.hub.commits, runtime.resolver, settings,
                                runtime.identity, config) as service:
            attach_write_hints(runtime.hub.commits, service)
            app[appkeys.SYNC] = service
            yield

    app.cleanup_ctx.append(runtime_ctx)
    app.cleanup_ctx.append(sync_ctx)
    for path in settings.paths:
        app.router.add_post(path, endpoint)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/.well-known/did.json", well_known_did)
    app.router.add_get("/.well-known/identity-hub", well_known_hub)
    app.router.add_get("/1.0/identifiers/{did}", resolve_self)
    return app
