"""did:web and the universal resolver against real aiohttp servers on 127.0.0.1.

One HTTPS server (a trustme CA, certificate for `localhost` and 127.0.0.1) and one plain HTTP
server; each test installs the handlers it needs by path.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trustme
from aiohttp import web
from jwcrypto import jwk

from identity_hub.did import (
    DidNotFound,
    DidResolver,
    InvalidDid,
    InvalidDocument,
    MethodNotSupported,
    NetworkError,
    NetworkRefused,
    ResolutionTimeout,
    ResolverConfig,
    ResponseTooLarge,
)
from identity_hub.did.keygen import create_did_ion, public_dict
from identity_hub.did.methods import ion

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RSA_KEY = jwk.JWK.generate(kty="RSA", size=2048)
ED_KEY = jwk.JWK.generate(kty="OKP", crv="Ed25519")


class Server:
    """An aiohttp server whose routes the tests set; counts hits per path."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self.ssl_context = ssl_context
        self.routes: dict[str, Handler] = {}
        self.hits: dict[str, int] = {}
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] = self.hits.get(path, 0) + 1
        handler = self.routes.get(path)
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def json(self, path: str, body: Any, status: int = 200,
             headers: dict[str, str] | None = None) -> None:
        async def handler(_: web.Request) -> web.StreamResponse:
            return web.json_response(body, status=status, headers=headers)
        self.routes[path] = handler


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_ssl(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture(scope="module")
async def https(ca: trustme.CA) -> AsyncIterator[Server]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    server = Server(ctx)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[Server]:
    server = Server(None)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(autouse=True)
def _clear_routes(https: Server, http: Server) -> None:
    for server in (https, http):
        server.routes.clear()
        server.hits.clear()


def document(did: str) -> dict[str, Any]:
    return {
        "@context": "https://www.w3.org/ns/did/v1",
        "id": did,
        "verificationMethod": [{"id": f"{did}#key-1", "type": "JsonWebKey2020",
                                "controller": did, "publicKeyJwk": public_dict(ED_KEY)}],
        "authentication": [f"{did}#key-1"],
    }


def legacy_document(did: str) -> dict[str, Any]:
    return {"@context": "https://w3id.org/did/v1", "id": did, "publicKey": [
        {"id": "#key-1", "type": "RsaVerificationKey2018",
         "publicKeyJwk": public_dict(RSA_KEY) | {"kid": "key-1"}}]}


def web_resolver(https: Server, client_ssl: ssl.SSLContext, **config: Any) -> DidResolver:
    config.setdefault("allow_hosts", frozenset({f"localhost:{https.port}"}))
    config.setdefault("did_web", True)
    return DidResolver(ResolverConfig(ssl_context=client_ssl, **config))


def universal_resolver(http: Server, **config: Any) -> DidResolver:
    config.setdefault("allow_hosts", frozenset({f"127.0.0.1:{http.port}"}))
    return DidResolver(ResolverConfig(universal_resolver=f"http://127.0.0.1:{http.port}",
                                      **config))


# --- did:web over https -------------------------------------------------------------------


async def test_did_web_https(https: Server, client_ssl: ssl.SSLContext) -> None:
    did = f"did:web:localhost%3A{https.port}"
    https.json("/.well-known/did.json", document(did), headers={"Cache-Control": "max-age=60"})
    resolver = web_resolver(https, client_ssl)
    try:
        doc = await resolver.resolve(did)
        assert doc["id"] == did
        key = await resolver.key(f"{did}#key-1", "sign")
        assert key.key_family == "Ed25519"
        await resolver.resolve(did)
        assert https.hits["/.well-known/did.json"] == 1  # cached
    finally:
        await resolver.aclose()


async def test_did_web_path_and_legacy_document(https: Server, client_ssl: ssl.SSLContext) -> None:
    did = f"did:web:localhost%3A{https.port}:users:alice"
    https.json("/users/alice/did.json", legacy_document(did))
    resolver = web_resolver(https, client_ssl)
    try:
        key = await resolver.key(f"{did}#key-1", "encrypt")  # 2019 document: RSA, no `use`
        assert key.key_family == "RSA" and key.can_sign()
    finally:
        await resolver.aclose()


async def test_did_web_loopback_refused_unless_allow_listed(https: Server,
                                                            client_ssl: ssl.SSLContext) -> None:
    did = f"did:web:localhost%3A{https.port}"
    https.json("/.well-known/did.json", document(did))
    resolver = web_resolver(https, client_ssl, allow_hosts=frozenset())
    try:
        with pytest.raises(NetworkRefused):  # localhost resolves to 127.0.0.1
            await resolver.resolve(did)
        assert https.hits == {}
    finally:
        await resolver.aclose()


async def test_did_web_ip_literal_refused(https: Server, client_ssl: ssl.SSLContext) -> None:
    resolver = web_resolver(https, client_ssl, allow_hosts=frozenset())
    try:
        with pytest.raises(NetworkRefused):
            await resolver.resolve(f"did:web:127.0.0.1%3A{https.port}")
        assert https.hits == {}
    finally:
        await resolver.aclose()


async def test_did_web_id_mismatch_and_not_found(https: Server,
                                                 client_ssl: ssl.SSLContext) -> None:
    did = f"did:web:localhost%3A{https.port}"
    https.json("/.well-known/did.json", document(f"did:web:localhost%3A{https.port}:mallory"))
    resolver = web_resolver(https, client_ssl)
    try:
        with pytest.raises(InvalidDocument):
            await resolver.resolve(did)
        with pytest.raises(DidNotFound):
            await resolver.resolve(f"{did}:nobody")
    finally:
        await resolver.aclose()


async def test_did_web_untrusted_certificate(https: Server) -> None:
    did = f"did:web:localhost%3A{https.port}:x"
    https.json("/x/did.json", document(did))
    resolver = DidResolver(ResolverConfig(allow_hosts=frozenset({f"localhost:{https.port}"}),
                                          did_web=True))
    try:  # no test CA: verification fails; there is no http server on that port to fall back to
        with pytest.raises(NetworkError):
            await resolver.resolve(did)
    finally:
        await resolver.aclose()


async def test_did_web_plain_http_only_for_allow_listed(http: Server) -> None:
    did = f"did:web:localhost%3A{http.port}"
    http.json("/.well-known/did.json", document(did))
    resolver = DidResolver(ResolverConfig(allow_hosts=frozenset({f"localhost:{http.port}"}),
                                          did_web=True))
    try:
        assert (await resolver.resolve(did))["id"] == did  # https failed, http allowed
    finally:
        await resolver.aclose()


# --- universal resolver over allow-listed plain http ---------------------------------------


async def test_universal_current_shape(http: Server) -> None:
    did = "did:example:current"
    http.json(f"/1.0/identifiers/{did}", {
        "didDocument": document(did), "didResolutionMetadata": {"contentType": "application/did"},
        "didDocumentMetadata": {"created": "2024-01-01T00:00:00Z"}})
    resolver = universal_resolver(http)
    try:
        result = await resolver.resolve_result(did)
        assert result["didDocument"]["id"] == did
        assert result["didDocumentMetadata"]["created"] == "2024-01-01T00:00:00Z"
        assert (await resolver.key(f"{did}#key-1")).key_family == "Ed25519"
    finally:
        await resolver.aclose()


async def test_universal_2019_shape(http: Server) -> None:
    did = "did:test:hubref"
    http.json(f"/1.0/identifiers/{did}", {"redirect": None, "document": legacy_document(did),
                                         "resolverMetadata": {"driverId": "driver-did-test"}})
    resolver = universal_resolver(http)
    try:
        key = await resolver.key(f"{did}#key-1", "encrypt")
        assert key.key_family == "RSA" and key.type == "RsaVerificationKey2018"
        assert (await resolver.resolve(did))["verificationMethod"][0]["id"] == f"{did}#key-1"
    finally:
        await resolver.aclose()


async def test_universal_bare_document_and_encoding(http: Server) -> None:
    did = "did:example:a%3Ab"  # the % must reach the server encoded as %25
    http.json("/1.0/identifiers/did:example:a%3Ab", document(did))
    resolver = universal_resolver(http)
    try:
        assert (await resolver.resolve(did))["id"] == did
    finally:
        await resolver.aclose()


async def test_universal_id_checks(http: Server) -> None:
    alias, canonical = "did:example:alias", "did:example:canonical"
    http.json(f"/1.0/identifiers/{alias}", {"didDocument": document(canonical),
                                            "didDocumentMetadata": {"equivalentId": [alias]}})
    http.json("/1.0/identifiers/did:example:other", {"didDocument": document(canonical)})
    resolver = universal_resolver(http)
    try:
        key = await resolver.key(f"{alias}#key-1")  # the alias's kid maps to the document key
        assert key.id == f"{canonical}#key-1"
        with pytest.raises(InvalidDocument):
            await resolver.resolve("did:example:other")
    finally:
        await resolver.aclose()


async def test_universal_short_form_ion(http: Server) -> None:
    did, keys, _ = create_did_ion("Ed25519")
    short = ion.short_form(did)
    http.json(f"/1.0/identifiers/{short}", {"didDocument": document(short),
                                            "didDocumentMetadata": {"canonicalId": short}})
    resolver = universal_resolver(http)
    try:
        assert (await resolver.resolve(short))["id"] == short
        assert (await resolver.resolve(did))["id"] == did  # long form stays offline
        assert http.hits == {f"/1.0/identifiers/{short}": 1}
    finally:
        await resolver.aclose()


@pytest.mark.parametrize(("status", "body", "error"), [
    (404, {"didResolutionMetadata": {"error": "notFound"}}, DidNotFound),
    (404, None, DidNotFound),
    (410, {"didDocument": None, "didDocumentMetadata": {"deactivated": True}}, DidNotFound),
    (400, {"didResolutionMetadata": {"error": "invalidDid"}}, InvalidDid),
    (501, None, MethodNotSupported),
    (500, None, NetworkError),
    (200, {"didDocument": None, "didResolutionMetadata": {"error": "notFound"}}, DidNotFound),
    (200, {"unexpected": True}, InvalidDocument),
    (200, ["not", "an", "object"], InvalidDocument),
])
async def test_universal_errors(http: Server, status: int, body: Any,
                                error: type[Exception]) -> None:
    did = "did:example:err"
    http.json(f"/1.0/identifiers/{did}", body, status=status)
    resolver = universal_resolver(http)
    try:
        with pytest.raises(error):
            await resolver.resolve(did)
    finally:
        await resolver.aclose()


async def test_universal_host_not_allow_listed(http: Server) -> None:
    http.json("/1.0/identifiers/did:example:x", document("did:example:x"))
    resolver = universal_resolver(http, allow_hosts=frozenset())
    try:
        with pytest.raises(NetworkRefused):
            await resolver.resolve("did:example:x")
        assert http.hits == {}
    finally:
        await resolver.aclose()


async def test_timeout_and_negative_cache(http: Server) -> None:
    did = "did:example:slow"

    async def slow(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response(document(did))
    http.routes[f"/1.0/identifiers/{did}"] = slow
    resolver = universal_resolver(http, timeout=0.3, negative_ttl=30)
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ResolutionTimeout):
            await resolver.resolve(did)
        assert loop.time() - start < 1.5
        with pytest.raises(ResolutionTimeout):
            await resolver.resolve(did)  # remembered: no second request
        assert http.hits[f"/1.0/identifiers/{did}"] == 1
    finally:
        await resolver.aclose()


async def test_oversized_responses(http: Server) -> None:
    big = document("did:example:big") | {"padding": "x" * 50000}
    http.json("/1.0/identifiers/did:example:big", big)

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b'{"id": "did:example:chunked", "padding": "')
        for _ in range(100):
            await resp.write(b"x" * 4096)
        await resp.write(b'"}')
        return resp
    http.routes["/1.0/identifiers/did:example:chunked"] = chunked
    resolver = universal_resolver(http, max_response_bytes=10000)
    try:
        with pytest.raises(ResponseTooLarge):
            await resolver.resolve("did:example:big")  # refused from Content-Length
        with pytest.raises(ResponseTooLarge):
            await resolver.resolve("did:example:chunked")  # aborted while reading
    finally:
        await resolver.aclose()


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/1.0/identifiers/did:example:r",
    "https://localhost:{https_port}/1.0/identifiers/did:example:r",
    "ftp://example.com/x",
])
async def test_redirect_to_refused_address(http: Server, https: Server, target: str) -> None:
    async def redirect(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(target.format(https_port=https.port))
    http.routes["/1.0/identifiers/did:example:r"] = redirect
    https.json("/1.0/identifiers/did:example:r", document("did:example:r"))
    resolver = universal_resolver(http)
    try:
        with pytest.raises(NetworkRefused):
            await resolver.resolve("did:example:r")
        assert https.hits == {}
    finally:
        await resolver.aclose()


async def test_redirects_checked_and_limited(http: Server) -> None:
    async def hop(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/final")
    http.routes["/1.0/identifiers/did:example:hop"] = hop
    http.json("/final", document("did:example:hop"))

    async def loop_(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/1.0/identifiers/did:example:loop")
    http.routes["/1.0/identifiers/did:example:loop"] = loop_
    resolver = universal_resolver(http)
    try:
        assert (await resolver.resolve("did:example:hop"))["id"] == "did:example:hop"
        with pytest.raises(NetworkRefused, match="redirects"):
            await resolver.resolve("did:example:loop")
    finally:
        await resolver.aclose()


async def test_concurrent_resolves_share_one_fetch(http: Server) -> None:
    did = "did:example:popular"

    async def slowish(_: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.1)
        return web.json_response(document(did))
    http.routes[f"/1.0/identifiers/{did}"] = slowish
    resolver = universal_resolver(http)
    try:
        docs = await asyncio.gather(*(resolver.resolve(did) for _ in range(20)))
        assert all(d["id"] == did for d in docs)
        assert http.hits[f"/1.0/identifiers/{did}"] == 1
    finally:
        await resolver.aclose()


async def test_not_configured() -> None:
    resolver = DidResolver()
    with pytest.raises(MethodNotSupported, match="universal_resolver"):
        await resolver.resolve("did:example:123")


async def test_did_web_is_off_unless_configured(http: Server) -> None:
    did = f"did:web:localhost%3A{http.port}"
    http.json("/.well-known/did.json", document(did))
    resolver = DidResolver(ResolverConfig(allow_hosts=frozenset({f"localhost:{http.port}"})))
    try:
        with pytest.raises(MethodNotSupported, match="did_web"):
            await resolver.resolve(did)
        assert http.hits == {}
    finally:
        await resolver.aclose()
