"""The one encrypted URL, end to end through the real aiohttp server on 127.0.0.1 with the Python
client, for each requester key type and on both backends; and the refusals."""

from __future__ import annotations

import json
import pathlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from jwcrypto import jwe, jwk, jws

from identity_hub.client import HubClient, HubClientError, HubErrorResponse
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.storage import store
from identity_hub.storage.tables import commits
from tests.support.identities import Identity, b64u, identity_for, legacy_rsa
from tests.support.servers import RunningHub, UniversalResolver, running_hub

FAMILIES = ["Ed25519", "secp256k1", "P-256", "RSA"]
PLAYLIST = {"@context": "https://schema.org", "@type": "MusicPlaylist", "name": "Mix",
            "numTracks": 2}


@pytest.fixture
async def resolver_server() -> AsyncIterator[UniversalResolver]:
    ur = UniversalResolver()
    await ur.start()
    yield ur
    await ur.close()


@pytest.fixture
async def hub(db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path,
              resolver_server: UniversalResolver) -> AsyncIterator[RunningHub]:
    base = f"http://{resolver_server.host}"
    async with running_hub(tmp_path / "hub", db_url, hub_identity_dir,
                           universal_resolver=base, allow_hosts=resolver_server.host) as h:
        yield h


async def enrol(hub: RunningHub, ur: UniversalResolver, family: str) -> Identity:
    who = identity_for(family)
    if who.document is not None:
        ur.add(who.document)
    await store.add_tenant(hub.runtime.db, who.did)
    return who


def client_for(hub: RunningHub, who: Identity, ur: UniversalResolver) -> HubClient:
    resolver = DidResolver(ResolverConfig(universal_resolver=f"http://{ur.host}",
                                          allow_hosts=frozenset({ur.host})))
    return HubClient(hub.url, who.did, who.keys, resolver=resolver)


@pytest.mark.parametrize("family", FAMILIES)
async def test_crud_through_the_encrypted_url(hub: RunningHub, resolver_server: UniversalResolver,
                                              family: str) -> None:
    who = await enrol(hub, resolver_server, family)
    async with client_for(hub, who, resolver_server) as client:
        object_id = await client.create(PLAYLIST)
        [obj] = await client.query_objects(context="https://schema.org", type_="MusicPlaylist",
                                           include_data=True)
        assert obj["id"] == object_id and obj["data"]["numTracks"] == 2
        revs = await client.update(object_id, {**PLAYLIST, "numTracks": 3})
        assert len(revs) == 2
        history = await client.query_commits(object_ids=[object_id])
        assert [c["header"]["rev"] for c in history] == revs
        await client.delete(object_id, context="https://schema.org", type_="MusicPlaylist")
        assert await client.query_objects() == []
        with pytest.raises(HubErrorResponse) as err:
            await client.update(object_id + "0", PLAYLIST)
        assert err.value.error_code == "not_found"
    await client.resolver.aclose()


async def test_a_2019_document_whose_one_rsa_key_says_use_enc(
        hub: RunningHub, resolver_server: UniversalResolver) -> None:
    """did-auth-jose 0.1.11+ and the ION/Sidetree test documents publish one RSA key with JWK
    `use: "enc"` and no relationships; hub-sdk-js 0.1.2 signs with it (RS256 request, RSA-OAEP
    to the hub's RSA key). The hub accepts the request and the commit, and answers to that key."""
    from identity_hub.crypto import b64url_decode
    from identity_hub.storage.tables import owners

    who = legacy_rsa(use="enc")
    assert who.document is not None
    assert who.document["publicKey"][0]["publicKeyJwk"]["use"] == "enc"
    resolver_server.add(who.document)
    await store.add_tenant(hub.runtime.db, who.did)
    resolver = DidResolver(ResolverConfig(universal_resolver=f"http://{resolver_server.host}",
                                          allow_hosts=frozenset({resolver_server.host})))
    async with HubClient(hub.url, who.did, who.keys, resolver=resolver,
                         compat_2019=True) as client:
        object_id = await client.create(PLAYLIST)
        [obj] = await client.query_objects(context="https://schema.org", type_="MusicPlaylist",
                                           include_data=True)
        assert obj["id"] == object_id and obj["data"] == PLAYLIST
    await resolver.aclose()
    async with hub.runtime.db.read() as conn:
        rows = (await conn.execute(
            sa.select(commits.c.signer, commits.c.protected).join(
                owners, owners.c.id == commits.c.owner_id).where(owners.c.did == who.did))).all()
    [row] = rows
    assert row.signer == who.did
    assert json.loads(b64url_decode(row.protected))["kid"] == who.kid


async def test_the_access_token_is_small_and_bound_to_requester_and_hub(
        hub: RunningHub, resolver_server: UniversalResolver) -> None:
    """The token rides in every request's header: with the default long-form did:ion hub DID
    (~1.4 KB) it still stays small, naming the hub by digest and its key by fragment."""
    from identity_hub.auth.envelope import did_digest
    from identity_hub.crypto import b64url_decode

    who = await enrol(hub, resolver_server, "Ed25519")
    token = await token_for(hub, who, resolver_server)
    header, claims = (json.loads(b64url_decode(part)) for part in token.split(".")[:2])
    assert len(hub.did) > 1000 and len(token) < 600
    assert claims["sub"] == who.did and claims["aud"] == did_digest(hub.did)
    assert header["kid"].startswith("#") and hub.did + header["kid"] in json.dumps(
        hub.runtime.identity.static_document())


async def test_token_is_renewed_after_a_401(hub: RunningHub, resolver_server: UniversalResolver
                                            ) -> None:
    who = await enrol(hub, resolver_server, "Ed25519")
    async with client_for(hub, who, resolver_server) as client:
        await client.create(PLAYLIST)
        first_token = client._token
        client._token = first_token[:-4] + "AAAA"  # type: ignore[index]  # a broken token
        assert len(await client.query_objects()) == 1  # 401, new handshake, retried
        assert client._token not in (None, first_token[:-4] + "AAAA")  # type: ignore[index]
    await client.resolver.aclose()


# --- raw requests, built with jwcrypto (independent of the hub's crypto) -------------------------

def hub_x25519(hub: RunningHub) -> tuple[str, jwk.JWK]:
    doc = hub.runtime.identity.document
    for vm in doc["verificationMethod"]:
        if vm["publicKeyJwk"].get("crv") == "X25519":
            return vm["id"], jwk.JWK(**vm["publicKeyJwk"])
    raise AssertionError("hub has no X25519 key")


def signed(who: Identity, payload: bytes, header: dict[str, Any], alg: str = "EdDSA",
           key: jwk.JWK | None = None) -> str:
    token = jws.JWS(payload)
    token.add_signature(key or who.key, None, protected=json.dumps({"alg": alg, **header}))
    return token.serialize(compact=True)


def encrypted(hub: RunningHub, plaintext: bytes, *, extra: dict[str, Any] | None = None,
              key: jwk.JWK | None = None, kid: str | None = None) -> bytes:
    hub_kid, hub_key = hub_x25519(hub)
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": kid or hub_kid, **(extra or {})}
    token = jwe.JWE(plaintext, protected=json.dumps(header))
    token.add_recipient(key or hub_key)
    return token.serialize(compact=True).encode()


async def post(hub: RunningHub, body: bytes) -> tuple[int, bytes, float]:
    start = time.perf_counter()
    async with aiohttp.ClientSession() as session, session.post(
            hub.url, data=body, headers={"Content-Type": "application/jwt"}) as resp:
        return resp.status, await resp.read(), time.perf_counter() - start


async def token_for(hub: RunningHub, who: Identity, ur: UniversalResolver) -> str:
    client = client_for(hub, who, ur)
    try:
        await client._ensure_token()
        assert client._token
        return client._token
    finally:
        await client.aclose()


async def commit_count(hub: RunningHub) -> int:
    async with hub.runtime.db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(commits))).scalar()
                   or 0)


def write_request(hub: RunningHub, who: Identity, *, iss: str | None = None) -> bytes:
    from tests.support.actors import iso

    protected = {"interface": "Collections", "context": "https://schema.org",
                 "type": "MusicPlaylist", "operation": "create", "committed_at": iso(),
                 "commit_strategy": "basic", "sub": who.did, "kid": who.kid, "alg": "EdDSA"}
    token = jws.JWS(json.dumps(PLAYLIST).encode())
    token.add_signature(who.key, None, protected=json.dumps(protected))
    commit = json.loads(token.serialize(compact=False))
    return json.dumps({"@context": "https://schema.identity.foundation/0.1",
                       "@type": "WriteRequest", "iss": iss or who.did, "aud": hub.did,
                       "sub": who.did, "commit": commit}).encode()


async def test_refusals_are_clean_cheap_and_store_nothing(
        hub: RunningHub, resolver_server: UniversalResolver) -> None:
    who = await enrol(hub, resolver_server, "Ed25519")
    other = await enrol(hub, resolver_server, "Ed25519")
    token = await token_for(hub, who, resolver_server)
    request = write_request(hub, who)

    def inner(payload: bytes = request, **header: Any) -> bytes:
        h = {"did-requester-nonce": str(uuid.uuid4()), "did-access-token": token,
             "kid": who.kid, **header}
        return signed(who, payload, h).encode()

    good = encrypted(hub, inner())
    parts = good.split(b".")
    tampered_ct = b".".join(parts[:3] + [parts[3][:-6] + (b"AAAAAA" if parts[3][-6:] != b"AAAAAA"
                                                         else b"BBBBBB"), parts[4]])
    inner_sig = inner().split(b".")
    bad_sig = b".".join(inner_sig[:2] + [inner_sig[2][::-1]])
    wrong_key = jwk.JWK.generate(kty="OKP", crv="X25519")
    expired = await expired_token(hub, who)
    none_jws = (b64u(json.dumps({"alg": "none", "kid": who.kid,
                                 "did-requester-nonce": "n1", "did-access-token": token}).encode())
                + "." + b64u(request) + ".").encode()
    published = jwk.JWK(kty="oct", k=b64u(b"published-secret-published-secret"))
    hs256 = signed(who, request, {"kid": who.kid, "did-requester-nonce": "n2",
                                  "did-access-token": token}, alg="HS256", key=published).encode()
    many_sigs = json.dumps({"payload": b64u(request), "signatures": [
        {"protected": b64u(b'{"alg":"EdDSA"}'), "signature": b64u(b"x" * 64)}] * 1000}).encode()

    cases: list[tuple[str, bytes, int]] = [
        ("wrong recipient key", encrypted(hub, inner(), key=wrong_key), 401),
        ("unknown hub kid", encrypted(hub, inner(), kid=hub.did + "#nope"), 401),
        ("tampered ciphertext", tampered_ct, 401),
        ("tampered signature", encrypted(hub, bad_sig), 401),
        ("expired token", encrypted(hub, inner(**{"did-access-token": expired})), 401),
        ("token of another requester", encrypted(hub, signed(
            other, request, {"kid": other.kid, "did-requester-nonce": "n3",
                             "did-access-token": token}).encode()), 401),
        ("alg none", encrypted(hub, none_jws), 401),
        ("HS256 with a published key", encrypted(hub, hs256), 401),
        ("zip bomb", encrypted(hub, b"\0" * 20_000_000, extra={"zip": "DEF"}), 401),
        ("1000 signatures", encrypted(hub, many_sigs), 401),
        ("not a JWE at all", b"garbage" * 10, 401),
        ("empty body", b"", 401),
        ("oversized body", b"x" * (hub.settings.max_body_bytes + 1), 413),
    ]
    for name, body, status in cases:
        got, answer, seconds = await post(hub, body)
        assert got == status, (name, got, answer[:200])
        if status == 401:
            assert json.loads(answer) == {"error_code": "authentication_failed"}, name
        assert seconds < 1.0, (name, seconds)
    assert await commit_count(hub) == 0

    # iss is not the signer: bob signs a request claiming to be alice
    spoof = write_request(hub, other, iss=who.did)
    got, _, _ = await post(hub, encrypted(hub, signed(other, spoof, {
        "kid": other.kid, "did-requester-nonce": str(uuid.uuid4()),
        "did-access-token": await token_for(hub, other, resolver_server)}).encode()))
    assert got == 401

    # a replayed body is refused the second time
    once = encrypted(hub, inner())
    assert (await post(hub, once))[0] == 200
    assert (await post(hub, once))[0] == 401
    assert await commit_count(hub) == 1

    async with aiohttp.ClientSession() as session, session.get(hub.base + "/healthz") as resp:
        assert resp.status == 200


async def expired_token(hub: RunningHub, who: Identity) -> str:
    """A token the hub itself signed, but whose exp has passed."""
    from identity_hub import crypto
    from identity_hub.auth.envelope import did_digest
    from identity_hub.protocol.commit import format_time

    kid, key = hub.runtime.identity.signing_key("Ed25519")
    family, private = crypto.private_key_from_jwk(key)
    past = (time.time_ns() // 1000) - 10 * 60 * 1_000_000
    claims = {"sub": who.did, "aud": did_digest(hub.did), "iat": format_time(past),
              "exp": format_time(past + 300 * 1_000_000)}
    return crypto.sign_compact_jws(json.dumps(claims).encode(), {"kid": kid}, family, private)


async def test_unregistered_sub_is_refused(hub: RunningHub, resolver_server: UniversalResolver
                                           ) -> None:
    stranger = identity_for("Ed25519")
    async with client_for(hub, stranger, resolver_server) as client:
        with pytest.raises(HubErrorResponse) as err:
            await client.create(PLAYLIST)
        assert err.value.error_code == "bad_request" and err.value.target == "sub"
    await client.resolver.aclose()
    assert await commit_count(hub) == 0


async def test_no_resolver_configured_means_legacy_dids_fail_cleanly(
        db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path,
        resolver_server: UniversalResolver) -> None:
    async with running_hub(tmp_path / "hub2", db_url, hub_identity_dir) as plain:
        who = await enrol(plain, resolver_server, "RSA")
        async with client_for(plain, who, resolver_server) as client:
            with pytest.raises(HubClientError, match="401"):
                await client.create(PLAYLIST)
        await client.resolver.aclose()


async def test_the_hub_publishes_its_document_for_2019_clients(hub: RunningHub) -> None:
    """The 2019 clients read only `publicKey`, and resolve the hub through a resolver URL."""
    short = hub.did.rsplit(":", 1)[0]
    async with aiohttp.ClientSession() as session:
        for did in (hub.did, short):
            async with session.get(f"{hub.base}/1.0/identifiers/{did}") as resp:
                assert resp.status == 200
                doc = (await resp.json())["document"]
            first = doc["publicKey"][0]
            assert first["type"] == "RsaVerificationKey2018"
            assert first["publicKeyJwk"]["use"] == "enc"
            assert first["id"].endswith(first["publicKeyJwk"]["kid"])
        async with session.get(f"{hub.base}/1.0/identifiers/did:example:other") as resp:
            assert resp.status == 404
        async with session.get(f"{hub.base}/.well-known/identity-hub") as resp:
            info = await resp.json()
        assert info["did"] == hub.did and info["didDocument"]["publicKey"]


async def test_the_client_caps_what_it_reads() -> None:
    """A hub's (or a peer's) answer is a stranger's input: the client stops reading at its cap."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    async def flood(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to refuse up front
        await resp.prepare(request)
        for _ in range(64):
            await resp.write(b"A" * 65536)
        return resp

    app = web.Application()
    app.router.add_post("/.identity", flood)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    who = identity_for("Ed25519")
    client = HubClient(f"http://127.0.0.1:{server.port}/.identity", who.did, who.keys,
                       max_response_bytes=1_000_000)
    try:
        async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{server.port}/.identity", data=b"x") as resp:
            with pytest.raises(HubClientError, match="over 1000000 bytes"):
                await client._read_capped(resp)
    finally:
        await client.aclose()
        await server.close()


def hub_signed_token(hub: RunningHub, who: Identity, iat: Any, exp_us: int) -> str:
    """A token the hub's own key signed, with the `iat` given (as is) and `exp` at `exp_us`."""
    from identity_hub import crypto
    from identity_hub.auth.envelope import did_digest
    from identity_hub.protocol.commit import format_time

    kid, key = hub.runtime.identity.signing_key("Ed25519")
    family, private = crypto.private_key_from_jwk(key)
    claims = {"sub": who.did, "aud": did_digest(hub.did), "iat": iat, "exp": format_time(exp_us)}
    return crypto.sign_compact_jws(json.dumps(claims).encode(), {"kid": kid}, family, private)


async def nonce_count(hub: RunningHub) -> int:
    from identity_hub.storage.tables import nonces

    async with hub.runtime.db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(nonces))).scalar()
                   or 0)


async def test_iat_outside_the_clock_skew_window_is_refused(
        hub: RunningHub, resolver_server: UniversalResolver) -> None:
    """An `iat` in a request JWS (the 2019 clients send none; absent is fine) or in an access
    token must lie within `clock_skew_seconds` of the hub's clock: years in the past or the
    future is the plain 401 of every authentication failure, and nothing is stored."""
    from identity_hub.protocol.commit import format_time

    who = await enrol(hub, resolver_server, "Ed25519")
    token = await token_for(hub, who, resolver_server)
    skew = hub.settings.clock_skew_seconds
    now = int(time.time())
    now_us = time.time_ns() // 1000
    year = 365 * 86_400

    def body(token: str | None = token, **header: Any) -> bytes:
        h = {"did-requester-nonce": str(uuid.uuid4()), "kid": who.kid, **header}
        if token is not None:
            h["did-access-token"] = token
        return encrypted(hub, signed(who, write_request(hub, who), h).encode())

    nonces_before = await nonce_count(hub)
    refused = {
        "request iat 10 years ago": body(iat=now - 10 * year),
        "request iat 10 years ahead": body(iat=now + 10 * year),
        "request iat just past the window": body(iat=now - skew - 60),
        "request iat just ahead of the window": body(iat=now + skew + 60),
        "request iat 3 years ago, as did-auth-jose writes it": body(iat=str(now - 3 * year)),
        "request iat ISO-8601, 3 years ahead": body(iat=format_time(now_us + 3 * year * 10**6)),
        "request iat not a time": body(iat="yesterday"),
        "request iat a boolean": body(iat=True),
        "handshake iat 10 years ago": body(None, iat=now - 10 * year),
        "handshake iat 10 years ahead": body(None, iat=now + 10 * year),
        "token iat 10 years ago, exp ahead": body(hub_signed_token(
            hub, who, format_time(now_us - 10 * year * 10**6), now_us + 300 * 10**6)),
        "token iat 10 years ahead": body(hub_signed_token(
            hub, who, format_time(now_us + 10 * year * 10**6), now_us + 11 * year * 10**6)),
        "token without iat": body(hub_signed_token(hub, who, None, now_us + 300 * 10**6)),
    }
    for name, request in refused.items():
        status, answer, _ = await post(hub, request)
        assert status == 401, (name, status, answer[:200])
        assert json.loads(answer) == {"error_code": "authentication_failed"}, name
    assert await commit_count(hub) == 0
    assert await nonce_count(hub) == nonces_before

    # a current iat is accepted, in each form; so is none, and a fresh hub token with its iat
    accepted = [body(iat=now), body(iat=str(now - skew // 2)), body(iat=format_time(now_us)),
                body(), body(hub_signed_token(hub, who, format_time(now_us), now_us + 300 * 10**6),
                             iat=now + skew // 2)]
    for request in accepted:
        status, answer, _ = await post(hub, request)
        assert status == 200, answer[:200]
    assert await commit_count(hub) == len(accepted)
