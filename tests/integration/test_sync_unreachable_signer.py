"""A peer's commit whose signer's DID document cannot be fetched right now (a did:web host is
down) is parked and stored once the host is back, instead of being refused while the cursor
moves past it."""

from __future__ import annotations

import json
import pathlib
import socket
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from jwcrypto import jwk

from identity_hub.commits.service import CommitService
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.storage.engine import Database
from identity_hub.sync import peers
from identity_hub.sync.receiver import Outcome, Receiver
from tests.support.actors import Actor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable_signer_is_parked_then_stored(db_url: str,
                                                       tmp_path: pathlib.Path) -> None:
    port = free_port()
    did = f"did:web:localhost%3A{port}"
    key = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    public = {k: v for k, v in json.loads(key.export_public()).items() if k != "kid"}
    document = {"@context": "https://www.w3.org/ns/did/v1", "id": did,
                "verificationMethod": [{"id": f"{did}#k", "type": "JsonWebKey2020",
                                        "controller": did, "publicKeyJwk": public}],
                "authentication": [f"{did}#k"]}
    owner = Actor("Ed25519", key)
    owner.did, owner.kid = did, f"{did}#k"
    wire: dict[str, Any] = owner.commit(did)

    db = Database(db_url)
    resolver = DidResolver(ResolverConfig(allow_hosts=frozenset({f"localhost:{port}"}),
                                          did_web=True, negative_ttl=0.001, timeout=2.0))
    receiver = Receiver(CommitService(db), resolver)
    server = None
    try:
        assert await receiver.apply(did, wire) is Outcome.PARKED  # nothing listens there
        assert await peers.parked_count(db, did) == 1

        async def did_json(_request: web.Request) -> web.Response:
            return web.json_response(document)

        app = web.Application()
        app.router.add_get("/.well-known/did.json", did_json)
        server = TestServer(app, host="127.0.0.1", port=port)
        await server.start_server()
        tally = await receiver.retry_parked(did)
        assert tally.stored == 1 and await peers.parked_count(db, did) == 0
    finally:
        if server is not None:
            await server.close()
        await resolver.aclose()
        await db.dispose()


async def test_a_peer_commit_in_an_unknown_context_is_parked(db_url: str) -> None:
    """Payloads from peers are matched to their headers by JSON-LD IRI, like a client's; a
    context this hub cannot expand (not shipped, not added by the owner) parks the commit
    instead of storing it unchecked or refusing what a peer accepted."""
    owner = Actor()
    wire = owner.commit(owner.did, context="https://example.com/unknown-vocab", type_="Thing",
                        payload={"@context": "https://example.com/unknown-vocab",
                                 "@type": "Thing"})
    db = Database(db_url)
    resolver = DidResolver(ResolverConfig())
    receiver = Receiver(CommitService(db), resolver)
    try:
        assert await receiver.apply(owner.did, wire) is Outcome.PARKED
        assert await peers.parked_count(db, owner.did) == 1
        known = owner.commit(owner.did)  # a schema.org MusicPlaylist: stored
        assert await receiver.apply(owner.did, known) is Outcome.STORED
    finally:
        await resolver.aclose()
        await db.dispose()
