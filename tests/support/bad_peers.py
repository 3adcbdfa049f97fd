"""Peers that misbehave, on 127.0.0.1: one that accepts connections and never answers, one that
answers raw random bytes, one that answers HTTP 200 with junk, and a closed port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestServer


class _Hanging:
    """Accepts TCP connections, reads what it is sent, answers nothing."""

    def __init__(self, answer: bytes | None = None) -> None:
        self.answer = answer
        self.server: asyncio.Server | None = None
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        with contextlib.suppress(Exception):
            if self.answer is not None:
                await reader.read(65536)
                writer.write(self.answer)
                await writer.drain()
                writer.close()
                return
            while await reader.read(65536):
                pass

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BadPeers:
    """The URLs of the four bad peers, by kind."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self.hanging = _Hanging()
        self.raw = _Hanging(answer=os.urandom(512))
        self._junk: TestServer | None = None

    async def _junk_answer(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, body=os.urandom(300), content_type="application/jwt")

    async def start(self) -> dict[str, str]:
        self.urls["hanging"] = f"http://127.0.0.1:{await self.hanging.start()}/.identity"
        self.urls["raw garbage"] = f"http://127.0.0.1:{await self.raw.start()}/.identity"
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._junk_answer)
        self._junk = TestServer(app, host="127.0.0.1")
        await self._junk.start_server()
        self.urls["http junk"] = f"http://127.0.0.1:{self._junk.port}/.identity"
        self.urls["down"] = f"http://127.0.0.1:{_closed_port()}/.identity"
        return self.urls

    async def close(self) -> None:
        await self.hanging.close()
        await self.raw.close()
        if self._junk is not None:
            await self._junk.close()


@contextlib.asynccontextmanager
async def bad_peers() -> AsyncIterator[BadPeers]:
    peers = BadPeers()
    await peers.start()
    try:
        yield peers
    finally:
        await peers.close()
