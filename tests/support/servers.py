"""Real servers on 127.0.0.1 for tests: a hub (the app factory) and a 2019-style universal
resolver (`GET /1.0/identifiers/{did}` answering `{"document": …}`)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from identity_hub import appkeys
from identity_hub.app import create_app
from identity_hub.runtime import Runtime
from identity_hub.settings import Settings, load_settings


class UniversalResolver:
    """Serves registered DID documents; counts requests (to prove when none were made)."""

    def __init__(self, shape: str = "document") -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.shape = shape
        self.hits = 0
        self.server: TestServer | None = None

    def add(self, doc: dict[str, Any]) -> None:
        self.docs[doc["id"]] = doc

    async def _resolve(self, request: web.Request) -> web.Response:
        self.hits += 1
        did = request.match_info["did"]
        doc = self.docs.get(did)
        if doc is None:
            return web.json_response({"error": "notFound"}, status=404)
        if self.shape == "document":
            return web.json_response({"document": doc, "resolverMetadata": {}})
        return web.json_response({"didDocument": doc, "didResolutionMetadata": {},
                                  "didDocumentMetadata": {}})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/1.0/identifiers/{did}", self._resolve)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return f"http://127.0.0.1:{self.server.port}"

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    @property
    def host(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.port}"


class RunningHub:
    def __init__(self, server: TestServer, settings: Settings) -> None:
        self.server = server
        self.settings = settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/.identity"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def runtime(self) -> Runtime:
        return self.server.app[appkeys.RUNTIME]  # type: ignore[index]

    @property
    def did(self) -> str:
        return self.runtime.identity.did


@contextlib.asynccontextmanager
async def running_hub(data_dir: Path, db_url: str, identity_dir: Path, **overrides: Any
                      ) -> AsyncIterator[RunningHub]:
    """The real app on 127.0.0.1, using a prepared hub identity (copied into its data dir)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for item in identity_dir.iterdir():
        target = data_dir / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    flags = {"data_dir": str(data_dir), "database_url": db_url, **overrides}
    settings = load_settings(flags, environ={})
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        yield RunningHub(server, settings)
    finally:
        await server.close()
