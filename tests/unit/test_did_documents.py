"""Documents, keys and the resolver API: absolute ids, the 2019 `publicKey` documents and the
relationship policy, key validation, static documents, the cache."""

from __future__ import annotations

from typing import Any

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwcrypto import jwk

from identity_hub.did import (
    DidResolver,
    InvalidDid,
    InvalidDocument,
    InvalidPublicKey,
    KeyNotAuthorized,
    KeyNotFound,
    ResolverConfig,
    UnsupportedPublicKeyType,
)
from identity_hub.did.cache import TtlLru
from identity_hub.did.encoding import b64url_encode, strict_json_loads
from identity_hub.did.http import is_public_address
from identity_hub.did.keygen import public_dict
from identity_hub.did.methods.key import multibase_of
from identity_hub.did.methods.web import did_web_from_host, did_web_url, web_document_path
from identity_hub.settings import Settings

RSA_KEY = jwk.JWK.generate(kty="RSA", size=2048)
K1_KEY = jwk.JWK.generate(kty="EC", crv="secp256k1")
ED_KEY = jwk.JWK.generate(kty="OKP", crv="Ed25519")
X_KEY = jwk.JWK.generate(kty="OKP", crv="X25519")


def legacy_2019_document(did: str) -> dict[str, Any]:
    """What the 2019 JS clients and resolvers produced: only `publicKey`, no relationships."""
    return {
        "@context": "https://w3id.org/did/v1",
        "id": did,
        "publicKey": [
            {"id": f"{did}#key-1", "type": "RsaVerificationKey2018",
             "publicKeyJwk": public_dict(RSA_KEY) | {"kid": "key-1"}},
            {"id": "#key-enc", "type": "RsaVerificationKey2018",
             "publicKeyJwk": public_dict(RSA_KEY) | {"kid": "key-enc", "use": "enc"}},
            {"id": "key-sig", "type": "Secp256k1VerificationKey2018",
             "publicKeyJwk": public_dict(K1_KEY) | {"crv": "P-256K", "use": "sig",
                                                    "kid": "key-sig"}},
            {"id": "#key-ed", "type": "EdDsaSAPublicKeySecp256k1",
             "publicKeyJwk": public_dict(ED_KEY)},
        ],
    }


@pytest.fixture
def resolver() -> DidResolver:
    return DidResolver(offline=True)


async def test_legacy_2019_document_policy(resolver: DidResolver) -> None:
    did = "did:test:legacy"
    resolver.add_static(legacy_2019_document(did))
    doc = await resolver.resolve(did)
    assert "publicKey" not in doc
    ids = [m["id"] for m in doc["verificationMethod"]]
    assert ids == [f"{did}#key-1", f"{did}#key-enc", f"{did}#key-sig", f"{did}#key-ed"]
    # every key signs, whatever its `use` (the 2019 tooling signs with its one `use: "enc"` RSA
    # key); use sig: signing only; Ed25519: never encrypts
    assert [k.id for k in await resolver.keys(did, "sign")] == \
        [f"{did}#key-1", f"{did}#key-enc", f"{did}#key-sig", f"{did}#key-ed"]
    assert [k.id for k in await resolver.keys(did, "encrypt")] == [f"{did}#key-1", f"{did}#key-enc"]
    enc = await resolver.key(f"{did}#key-enc", "sign")
    assert enc.use == "enc" and enc.relationships >= {"authentication", "assertionMethod"}
    with pytest.raises(KeyNotAuthorized):
        await resolver.key(f"{did}#key-sig", "encrypt")
    k1 = await resolver.key(f"{did}#key-sig")
    assert k1.key_family == "secp256k1" and k1.public_jwk["crv"] == "secp256k1"
    assert k1.use == "sig" and "use" not in k1.jwk.export_public(as_dict=True)
    assert isinstance(k1.crypto_key, ec.EllipticCurvePublicKey)


async def test_a_use_enc_key_signs_only_where_the_document_has_no_relationships(
        resolver: DidResolver) -> None:
    """The 2019 `use: "enc"` leniency is for documents without relationships; where a document
    has them (even a 2019 one, with `publicKey`), they decide."""
    did = "did:test:rels-2019"
    key = {"id": "#key-1", "type": "RsaVerificationKey2018",
           "publicKeyJwk": public_dict(RSA_KEY) | {"kid": "key-1", "use": "enc"}}
    resolver.add_static({"id": did, "publicKey": [key],
                         "keyAgreement": ["#key-1"]})
    with pytest.raises(KeyNotAuthorized):
        await resolver.key(f"{did}#key-1", "sign")
    assert (await resolver.key(f"{did}#key-1", "encrypt")).use == "enc"
    listed = "did:test:rels-2019-auth"
    resolver.add_static({"id": listed, "publicKey": [key],
                         "authentication": [{"type": "RsaSignatureAuthentication2018",
                                             "publicKey": "#key-1"}]})
    assert (await resolver.key(f"{listed}#key-1", "sign")).relationships == {"authentication"}
    with pytest.raises(KeyNotAuthorized):
        await resolver.key(f"{listed}#key-1", "encrypt")


async def test_relationships_decide_when_present(resolver: DidResolver) -> None:
    did = "did:test:rels"
    resolver.add_static({
        "id": did,
        "verificationMethod": [
            {"id": "#signer", "type": "JsonWebKey2020", "publicKeyJwk": public_dict(ED_KEY)},
            {"id": "#orphan", "type": "JsonWebKey2020", "publicKeyJwk": public_dict(K1_KEY)},
            {"id": "#x", "type": "JsonWebKey2020", "publicKeyJwk": public_dict(X_KEY)},
        ],
        "authentication": ["#signer", "#x",
                           {"type": "RsaSignatureAuthentication2018", "publicKey": "#orphan2"}],
        "keyAgreement": [{"id": "#embedded", "type": "JsonWebKey2020",
                          "publicKeyJwk": public_dict(X_KEY)}],
    })
    assert (await resolver.key(f"{did}#signer")).relationships == {"authentication"}
    with pytest.raises(KeyNotAuthorized):
        await resolver.key(f"{did}#orphan")  # listed, in no relationship: unusable
    with pytest.raises(KeyNotAuthorized):
        await resolver.key(f"{did}#x")  # X25519 in authentication still never signs
    embedded = await resolver.key(f"{did}#embedded", "encrypt")
    assert embedded.key_family == "X25519"
    doc = await resolver.resolve(did)
    assert doc["authentication"][2] == f"{did}#orphan2"  # 2019 reference object -> id
    with pytest.raises(KeyNotFound):
        await resolver.key(f"{did}#orphan2")
    with pytest.raises(KeyNotFound):
        await resolver.key(f"{did}#nope")
    with pytest.raises(InvalidDid):
        await resolver.key(did)  # a kid without '#'
    assert await resolver.keys(did, "authentication") == [await resolver.key(f"{did}#signer")]


def _static_with(resolver: DidResolver, did: str, jwk_: dict[str, Any]) -> str:
    resolver.add_static({"id": did, "verificationMethod": [
        {"id": f"{did}#k", "type": "JsonWebKey2020", "publicKeyJwk": jwk_}],
        "authentication": [f"{did}#k"]})
    return f"{did}#k"


@pytest.mark.parametrize(
    ("jwk_", "error"),
    [
        ({"kty": "oct", "k": "c2VjcmV0"}, InvalidPublicKey),
        ({"kty": "oct", "alg": "HS256"}, UnsupportedPublicKeyType),
        (ED_KEY.export_private(as_dict=True), InvalidPublicKey),
        (RSA_KEY.export_private(as_dict=True), InvalidPublicKey),
        (public_dict(jwk.JWK.generate(kty="RSA", size=1024)), InvalidPublicKey),
        ({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}, UnsupportedPublicKeyType),
        ({"kty": "EC", "crv": "P-256", "x": b64url_encode(b"\x01" * 32),
          "y": b64url_encode(b"\x01" * 32)}, InvalidPublicKey),
        ({"kty": "OKP", "crv": "Ed448", "x": "AA"}, UnsupportedPublicKeyType),
        ({"kty": "OKP", "crv": "Ed25519", "x": "AA=="}, InvalidPublicKey),
    ],
)
async def test_unusable_key_material(jwk_: dict[str, Any], error: type[Exception],
                                     resolver: DidResolver) -> None:
    kid = _static_with(resolver, "did:test:bad", jwk_)
    with pytest.raises(error):
        await resolver.key(kid)
    assert await resolver.keys("did:test:bad", "sign") == []


@pytest.mark.parametrize("crv", ["secp256k1", "P-256K", "K-256"])
async def test_secp256k1_curve_names(crv: str, resolver: DidResolver) -> None:
    kid = _static_with(resolver, "did:test:k1", public_dict(K1_KEY) | {"crv": crv})
    key = await resolver.key(kid)
    assert key.key_family == "secp256k1"
    assert key.jwk.export_public(as_dict=True)["crv"] == "secp256k1"


async def test_multibase_and_base58_methods(resolver: DidResolver) -> None:
    raw = ED_KEY.get_op_key("verify").public_bytes_raw()
    resolver.add_static({"id": "did:test:mb", "verificationMethod": [
        {"id": "#a", "type": "Multikey", "publicKeyMultibase": multibase_of("Ed25519", raw)},
        {"id": "#b", "type": "Ed25519VerificationKey2018",
         "publicKeyBase58": base58.b58encode(raw).decode()},
        {"id": "#c", "type": "SomethingElse2099", "publicKeyBase58": "abc"}],
        "assertionMethod": ["#a", "#b", "#c"]})
    a, b = [await resolver.key(f"did:test:mb#{f}") for f in "ab"]
    assert a.public_jwk == b.public_jwk == public_dict(ED_KEY)
    assert isinstance(a.crypto_key, ed25519.Ed25519PublicKey)
    with pytest.raises(UnsupportedPublicKeyType):
        await resolver.key("did:test:mb#c")


async def test_verification_key_objects_are_built_once(resolver: DidResolver) -> None:
    kid = _static_with(resolver, "did:test:once", public_dict(RSA_KEY))
    first, second = await resolver.key(kid), await resolver.key(kid)
    assert first is second and first.jwk is second.jwk
    assert not first.jwk.has_private and isinstance(first.crypto_key, rsa.RSAPublicKey)
    assert first.can_sign() and not first.can_encrypt()


async def test_resolve_returns_a_copy(resolver: DidResolver) -> None:
    did = "did:test:copy"
    resolver.add_static({"id": did, "verificationMethod": [
        {"id": "#k", "type": "JsonWebKey2020", "publicKeyJwk": public_dict(ED_KEY)}],
        "authentication": ["#k"]})
    doc = await resolver.resolve(did)
    doc["authentication"].clear()
    doc["verificationMethod"][0]["publicKeyJwk"]["x"] = "tampered"
    again = await resolver.resolve(did)
    assert again["authentication"] == [f"{did}#k"]
    assert again["verificationMethod"][0]["publicKeyJwk"] == public_dict(ED_KEY)


async def test_add_static_replaces_and_validates(resolver: DidResolver) -> None:
    did = "did:test:swap"
    _static_with(resolver, did, public_dict(ED_KEY))
    first = await resolver.key(f"{did}#k")
    _static_with(resolver, did, public_dict(K1_KEY))
    assert (await resolver.key(f"{did}#k")).key_family == "secp256k1" != first.key_family
    with pytest.raises(InvalidDocument):
        resolver.add_static({"verificationMethod": []})
    with pytest.raises(InvalidDocument):
        resolver.add_static({"id": "did:test:x", "verificationMethod": {"id": "#k"}})


def test_config_from_settings() -> None:
    settings = Settings(data_dir="/tmp/x", universal_resolver="http://127.0.0.1:9/",
                        allow_hosts="LocalHost:8080, 127.0.0.1", resolver_timeout_seconds=2.5,
                        resolver_max_bytes=1000, resolver_cache_ttl_seconds=60)
    config = ResolverConfig.from_settings(settings)
    assert config.universal_resolver == "http://127.0.0.1:9/"
    assert config.allow_hosts == {"localhost:8080", "127.0.0.1"}
    assert (config.timeout, config.max_response_bytes, config.cache_ttl) == (2.5, 1000, 60.0)
    assert config.host_allowed("localhost", 8080) and not config.host_allowed("localhost", 8081)
    assert config.host_allowed("127.0.0.1", 1234)
    assert ResolverConfig(allow_hosts=frozenset({"[::1]:80"})).host_allowed("::1", 80)
    assert not ResolverConfig().host_allowed("localhost", 80)


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False),
    ("100.64.0.1", False), ("0.0.0.0", False), ("224.0.0.1", False), ("::1", False),
    ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
    ("::ffff:8.8.8.8", True), ("2002:7f00:1::", False), ("not-an-ip", False),
])
def test_public_address_check(address: str, public: bool) -> None:
    assert is_public_address(address) is public


def test_did_web_mapping() -> None:
    assert did_web_url("did:web:example.com:user:alice") == "https://example.com/user/alice/did.json"
    assert did_web_url("did:web:example.com%3A3000:user:alice") == \
        "https://example.com:3000/user/alice/did.json"
    assert web_document_path("did:web:example.com") == "/.well-known/did.json"
    assert did_web_from_host("Hub.Example.com:8443") == "did:web:hub.example.com%3A8443"
    assert did_web_from_host("example.com/users/bob") == "did:web:example.com:users:bob"
    for bad in ("did:web:exa_mple.com", "did:web:example.com:..:x", "did:web:example.com:a%2Fb",
                "did:web:example.com%3A99999", "did:web:user%40example.com"):
        with pytest.raises(InvalidDid):
            did_web_url(bad)


def test_strict_json() -> None:
    assert strict_json_loads(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    for bad in (b'{"a": NaN}', b'{"a": 1e999999}', b'{"a": 1, "a": 2}', b"[" * 100 + b"]" * 100,
                b"\xff", b"{"):
        with pytest.raises(InvalidDocument):
            strict_json_loads(bad)


def test_ttl_lru() -> None:
    now = [0.0]
    cache: TtlLru[int] = TtlLru(2, clock=lambda: now[0])
    cache.set("a", 1, 10)
    cache.set("b", 2, 10)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.set("c", 3, 10)  # evicts b
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    now[0] = 10.5
    assert cache.get("a") is None and len(cache) == 1
    cache.set("d", 4, 0)
    assert cache.get("d") is None


async def test_negative_results_are_cached(resolver: DidResolver) -> None:
    bad = "did:key:z6MkfjHG9wBfSVB5zp56UwhWBmEdP37zVa6R2KvdD3yLf8M"  # one char short
    with pytest.raises(InvalidDid) as first:
        await resolver.resolve(bad)
    with pytest.raises(InvalidDid) as second:
        await resolver.resolve(bad)
    assert first.value is not second.value and first.value.error == second.value.error
    assert isinstance(resolver._cache.get(bad), InvalidDid)  # the failure itself is remembered
