"""The access log against the real aiohttp server on 127.0.0.1: one line per request with the
right status and error code for each kind of refusal, no DID or object id in any line, and
malformed HTTP from raw sockets logged as one quoted line without a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from identity_hub.client import HubErrorResponse
from identity_hub.storage import store
from tests.integration.test_transport import PLAYLIST, client_for, enrol
from tests.support.identities import identity_for
from tests.support.servers import RunningHub, UniversalResolver, running_hub

CANARY = b"CANARY5e1d"


@pytest.fixture
async def resolver_server() -> AsyncIterator[UniversalResolver]:
    ur = UniversalResolver()
    await ur.start()
    yield ur
    await ur.close()


@pytest.fixture
async def hub(db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path,
              resolver_server: UniversalResolver) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path / "hub", db_url, hub_identity_dir,
                           universal_resolver=f"http://{resolver_server.host}",
                           allow_hosts=resolver_server.host) as h:
        yield h


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.access for r in caplog.records  # type: ignore[attr-defined]
            if r.name == "identity_hub.access"]


class Counter:
    """Asserts that the block logs exactly one access line, and returns it."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def __call__(self) -> _One:
        return _One(self.caplog)


class _One:
    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.line: dict[str, Any] = {}

    def __enter__(self) -> _One:
        self.before = len(access_lines(self.caplog))
        return self

    def __exit__(self, *exc: object) -> None:
        new = access_lines(self.caplog)[self.before:]
        assert len(new) == 1, new
        self.line = new[0]


async def raw_post(hub: RunningHub, body: bytes) -> tuple[int, dict[str, Any], str]:
    async with aiohttp.ClientSession() as http, http.post(hub.url, data=body) as resp:
        return resp.status, json.loads(await resp.read()), resp.headers["X-Request-Id"]


async def test_every_refusal_logs_one_access_line(hub: RunningHub,
                                                  resolver_server: UniversalResolver,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)  # every logger's INFO lines, not only the access log's
    one = Counter(caplog)
    owner = await enrol(hub, resolver_server, "Ed25519")
    other = identity_for("Ed25519")
    not_a_tenant = identity_for("Ed25519")
    await store.add_tenant(hub.runtime.db, other.did)
    secrets = [owner.did, other.did, not_a_tenant.did]

    # Authentication failures: plain JSON, HTTP 401; too large: 413.
    with one() as line:
        status, body, request_id = await raw_post(hub, b"not a JWE " + CANARY)
    assert (status, body["error_code"]) == (401, "authentication_failed")
    assert line.line["status"] == 401 and line.line["error_code"] == "authentication_failed"
    assert line.line["request_id"] == request_id and line.line["reason"] == "JWE parse"
    assert line.line["bytes_in"] == len(b"not a JWE ") + len(CANARY)
    with one() as line:
        status, body, _ = await raw_post(hub, b"x" * (hub.settings.max_body_bytes + 1))
    assert status == 413
    assert line.line["status"] == 413 and line.line["error_code"] == body["error_code"]

    async with client_for(hub, owner, resolver_server) as mine, \
            client_for(hub, other, resolver_server) as theirs:
        await mine._ensure_token()  # discovery, then the handshake that issues a token
        await theirs._ensure_token()
        tokens = [t for t in access_lines(caplog)[-4:] if t["method"] == "POST"]
        assert [t["message_type"] for t in tokens] == ["token", "token"]
        with one() as line:
            object_id = await mine.create(PLAYLIST)
        secrets.append(object_id)
        assert (line.line["status"], line.line["message_type"]) == (200, "WriteRequest")
        assert line.line["error_code"] is None

        # Refusals after authentication: HTTP 200 carrying an encrypted ErrorResponse.
        refusals: list[tuple[Any, str, str]] = [
            (mine.create(PLAYLIST, sub=not_a_tenant.did), "WriteRequest", "bad_request"),
            (theirs.create(PLAYLIST, sub=owner.did), "WriteRequest", "permissions_required"),
            (mine.update(object_id[:-1] + "0", PLAYLIST), "WriteRequest", "not_found"),
            (mine.send({**mine.request("ObjectQueryRequest"), "@type": "Evil" + object_id}),
             "unknown", "bad_request"),
            (theirs.query_objects(sub=owner.did, context="https://schema.org",
                                  type_="MusicPlaylist"), "ObjectQueryRequest",
             "permissions_required"),
        ]
        for call, message_type, code in refusals:
            with one() as line, pytest.raises(HubErrorResponse) as err:
                await call
            assert err.value.error_code == code
            got = (line.line["status"], line.line["message_type"], line.line["error_code"])
            assert got == (200, message_type, code)

    with one() as line:
        async with aiohttp.ClientSession() as http, \
                http.get(f"{hub.base}/1.0/identifiers/{owner.did}") as resp:
            assert resp.status == 404
    assert line.line["route"] == "/1.0/identifiers/{did}" and line.line["error_code"] == "not_found"
    with one() as line:
        async with aiohttp.ClientSession() as http, \
                http.get(f"{hub.base}/nothing-{CANARY.decode()}") as resp:
            assert resp.status == 404
    assert line.line["route"] == "-"

    text = caplog.text
    for secret in secrets:  # no line names a DID or an object id
        assert secret not in text
    assert CANARY.decode() not in text


async def test_log_requester_dids_names_the_requester(
        db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path,
        resolver_server: UniversalResolver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="identity_hub.access")
    async with running_hub(tmp_path / "hub", db_url, hub_identity_dir,
                           universal_resolver=f"http://{resolver_server.host}",
                           allow_hosts=resolver_server.host, log_requester_dids=True) as h:
        owner = await enrol(h, resolver_server, "Ed25519")
        async with client_for(h, owner, resolver_server) as client:
            await client.create(PLAYLIST)
    posts = [line for line in access_lines(caplog) if line["method"] == "POST"]
    assert [line.get("requester") for line in posts] == [repr(owner.did)] * 2


async def raw_exchange(hub: RunningHub, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.server.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


MALFORMED = [
    b"GARBAGE\x00" + CANARY + b"\x1b[31m\x07 / HTTP/1.1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Canary: " + (CANARY + b"\x1b\x07") * 2000
    + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + CANARY * 2000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX" + CANARY + b"\x01\x1b: v\r\n\r\n",
    # a keep-alive connection's second request: aiohttp logs this one at ERROR with a traceback
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + CANARY + b"\x00\x1b[2J / HTTP/1.1\r\n\r\n",
    b"GET /healthz\x1b" + CANARY + b" HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_malformed_http_is_logged_quoted_without_a_traceback(
        hub: RunningHub, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="identity_hub.access")
    for data in MALFORMED:
        reply = await raw_exchange(hub, data)
        assert b" 400 " in reply or b" 431 " in reply, reply[:200]
    text = caplog.text
    assert "Traceback" not in text and all(r.exc_info is None for r in caplog.records)
    for raw in (b"\x00", b"\x01", b"\x07", b"\x1b", CANARY + b"\x1b"):
        assert raw.decode() not in text, raw
    refused = [line for line in access_lines(caplog) if line["error_code"] == "malformed_http"]
    assert len(refused) == len(MALFORMED), access_lines(caplog)
    assert all(len(line["detail"]) <= 65 and line["status"] in (400, 431) for line in refused)
    # The hub still answers.
    async with aiohttp.ClientSession() as http, http.get(f"{hub.base}/healthz") as resp:
        assert resp.status == 200
