"""Key import/export of identity_hub.crypto, cross-checked with jwcrypto and third-party JWKs."""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from jwcrypto import jwk  # type: ignore[import-untyped]

from identity_hub.crypto import (
    JoseError,
    family_of,
    load_public_key,
    private_key_from_jwk,
    public_jwk_from_key,
    public_key_from_jwk,
    sign_compact_jws,
    verify_jws,
)
from identity_hub.crypto import parse_compact_jws as parse_jws

VECTORS = pathlib.Path(__file__).parents[1] / "vectors" / "did" / "vectors.json"

SPECS: dict[str, dict[str, Any]] = {
    "RSA": {"kty": "RSA", "size": 2048},
    "Ed25519": {"kty": "OKP", "crv": "Ed25519"},
    "X25519": {"kty": "OKP", "crv": "X25519"},
    "secp256k1": {"kty": "EC", "crv": "secp256k1"},
    "P-256": {"kty": "EC", "crv": "P-256"},
    "P-384": {"kty": "EC", "crv": "P-384"},
}


@pytest.fixture(scope="module")
def jwks() -> dict[str, jwk.JWK]:
    return {family: jwk.JWK.generate(**spec) for family, spec in SPECS.items()}


@pytest.mark.parametrize("family", list(SPECS))
def test_public_and_private_import_match_jwcrypto(jwks: dict[str, jwk.JWK], family: str) -> None:
    key = jwks[family]
    pub_family, public = public_key_from_jwk(key.export_public(as_dict=True))
    priv_family, private = private_key_from_jwk(key)
    assert pub_family == priv_family == family
    assert family_of(public) == family_of(private) == family
    # Our export of the public half equals jwcrypto's, member for member.
    ours = public_jwk_from_key(private)
    theirs = key.export_public(as_dict=True)
    assert ours == {k: v for k, v in theirs.items() if k in ours}
    assert public_jwk_from_key(public) == ours
    # A private JWK dict gives the same key as the jwcrypto object.
    _, from_dict = private_key_from_jwk(key.export_private(as_dict=True))
    assert public_jwk_from_key(from_dict) == ours


@pytest.mark.parametrize("crv", ["secp256k1", "P-256K", "K-256"])
def test_secp256k1_curve_aliases(jwks: dict[str, jwk.JWK], crv: str) -> None:
    data = jwks["secp256k1"].export_public(as_dict=True)
    data["crv"] = crv
    family, key = public_key_from_jwk(data)
    assert family == "secp256k1"
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256k1"


def test_rsa_private_key_without_crt_parameters(jwks: dict[str, jwk.JWK]) -> None:
    full = jwks["RSA"].export_private(as_dict=True)
    minimal = {k: full[k] for k in ("kty", "n", "e", "d")}
    family, key = private_key_from_jwk(minimal)
    assert family == "RSA"
    token = sign_compact_jws(b"x", {}, "RSA", key)
    verify_jws(
        parse_jws(token), "RSA", public_key_from_jwk(jwks["RSA"].export_public(as_dict=True))[1]
    )


def _public(jwks: dict[str, jwk.JWK], family: str) -> dict[str, Any]:
    return dict(jwks[family].export_public(as_dict=True))


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda j: {"kty": "oct", "k": "c2VjcmV0"}, id="oct"),
        pytest.param(lambda j: {**j["RSA"], "d": "AQAB"}, id="rsa-private-d"),
        pytest.param(lambda j: {**j["RSA"], "p": "AQAB"}, id="rsa-private-p"),
        pytest.param(lambda j: {**j["P-256"], "d": "AQAB"}, id="ec-private"),
        pytest.param(lambda j: {**j["Ed25519"], "d": "AQAB"}, id="okp-private"),
        pytest.param(lambda j: {**j["P-256"], "crv": "P-521"}, id="p521"),
        pytest.param(lambda j: {**j["P-256"], "crv": "brainpoolP256r1"}, id="brainpool"),
        pytest.param(lambda j: {**j["Ed25519"], "crv": "Ed448"}, id="ed448"),
        pytest.param(lambda j: {**j["X25519"], "crv": "X448"}, id="x448"),
        pytest.param(lambda j: {**j["Ed25519"], "x": j["Ed25519"]["x"][:-2]}, id="okp-short"),
        pytest.param(lambda j: {**j["P-256"], "y": j["P-256"]["x"]}, id="ec-off-curve"),
        pytest.param(lambda j: {**j["P-256"], "x": j["P-384"]["x"]}, id="ec-long-x"),
        pytest.param(lambda j: {**j["P-256"], "x": 5}, id="ec-x-not-string"),
        pytest.param(lambda j: {**j["RSA"], "n": j["RSA"]["n"] + "="}, id="rsa-padded-n"),
        pytest.param(lambda j: {**j["RSA"], "e": "AQAA"}, id="rsa-even-e"),
        pytest.param(lambda j: {k: v for k, v in j["RSA"].items() if k != "e"}, id="rsa-no-e"),
        pytest.param(lambda j: {"kty": "EC"}, id="ec-empty"),
        pytest.param(lambda j: {"kty": "XYZ"}, id="unknown-kty"),
        pytest.param(lambda j: ["kty", "RSA"], id="not-object"),
    ],
)
def test_public_key_from_jwk_refusals(jwks: dict[str, jwk.JWK], mutate: Any) -> None:
    publics = {family: _public(jwks, family) for family in SPECS}
    with pytest.raises(JoseError):
        public_key_from_jwk(mutate(publics))


def test_rsa_1024_refused() -> None:
    small = rsa.generate_private_key(65537, 1024)
    data = public_jwk_from_key(small)
    with pytest.raises(JoseError):
        public_key_from_jwk(data)


def test_private_key_refusals(jwks: dict[str, jwk.JWK]) -> None:
    with pytest.raises(JoseError):
        private_key_from_jwk(_public(jwks, "P-256"))  # no d
    with pytest.raises(JoseError):
        private_key_from_jwk(jwk.JWK.from_json(jwks["RSA"].export_public()))
    with pytest.raises(JoseError):
        private_key_from_jwk(jwk.JWK.generate(kty="oct", size=256))
    mismatched = jwks["P-256"].export_private(as_dict=True)
    mismatched["x"] = _public(jwks, "secp256k1")["x"]
    with pytest.raises(JoseError):
        private_key_from_jwk(mismatched)
    okp = jwks["Ed25519"].export_private(as_dict=True)
    okp["x"] = jwk.JWK.generate(kty="OKP", crv="Ed25519").export_public(as_dict=True)["x"]
    with pytest.raises(JoseError):
        private_key_from_jwk(okp)


@dataclass
class FakeVerificationKey:
    """Shaped like a DID verification method (duck-typed; identity_hub.did is not imported)."""

    id: str
    public_key_jwk: dict[str, Any]


def test_load_public_key_accepts_the_usual_shapes(jwks: dict[str, jwk.JWK]) -> None:
    pub = _public(jwks, "Ed25519")
    key = jwks["Ed25519"]
    expected = public_jwk_from_key(public_key_from_jwk(pub)[1])
    for obj in (
        pub,
        key,  # a private jwcrypto JWK: its public half is used
        jwk.JWK(**pub),
        FakeVerificationKey("did:ex:a#k", pub),
        public_key_from_jwk(pub)[1],
    ):
        family, loaded = load_public_key(obj)
        assert family == "Ed25519"
        assert public_jwk_from_key(loaded) == expected
    with pytest.raises(JoseError):
        load_public_key(private_key_from_jwk(key)[1])
    with pytest.raises(JoseError):
        load_public_key(object())
    with pytest.raises(JoseError):
        load_public_key(jwk.JWK.generate(kty="oct", size=256))


@dataclass
class FakeResolvedKey:
    """Shaped like identity_hub.did's VerificationKey: a built key plus its declared family."""

    id: str
    key_family: str
    crypto_key: object
    public_jwk: dict[str, Any]


def test_load_public_key_prefers_a_built_crypto_key(jwks: dict[str, jwk.JWK]) -> None:
    pub = _public(jwks, "P-256")
    family, key = public_key_from_jwk(pub)
    loaded = load_public_key(FakeResolvedKey("did:ex:a#k", "P-256", key, pub))
    assert loaded == ("P-256", key)  # the very object: no per-request conversion
    with pytest.raises(JoseError):  # the declared family must agree with the key
        load_public_key(FakeResolvedKey("did:ex:a#k", "secp256k1", key, pub))
    with pytest.raises(JoseError):
        load_public_key(FakeResolvedKey("did:ex:a#k", "P-256", "not a key", pub))


def test_small_rsa_key_objects_refused() -> None:
    small = rsa.generate_private_key(65537, 1024)
    token = sign_compact_jws(b"x", {}, "RSA", small)
    with pytest.raises(JoseError):
        verify_jws(parse_jws(token), "RSA", small.public_key())
    with pytest.raises(JoseError):
        load_public_key(small.public_key())


def test_family_of_refuses_other_objects() -> None:
    with pytest.raises(JoseError):
        family_of(b"key")
    with pytest.raises(JoseError):
        family_of(ec.generate_private_key(ec.SECP521R1()))
    assert family_of(ed25519.Ed25519PrivateKey.generate()) == "Ed25519"
    assert family_of(x25519.X25519PrivateKey.generate().public_key()) == "X25519"


def test_third_party_did_vector_keys() -> None:
    """Every JWK produced by the third-party DID tools (ion-sdk, web5, digitalbazaar) loads, and
    each private JWK matches its published public key."""
    data = json.loads(VECTORS.read_text())
    seen = 0
    for case in data["cases"]:
        if case["kind"] != "valid":
            continue
        publics = {}
        for vm in case["expected"]["normalized"]["verificationMethods"]:
            if "publicKeyJwk" in vm:
                publics[vm["id"]] = public_key_from_jwk(vm["publicKeyJwk"])
                seen += 1
        for vm_id, private_jwk in case.get("privateJwks", {}).items():
            family, private = private_key_from_jwk(private_jwk)
            if vm_id in publics:
                assert publics[vm_id][0] == family
                assert public_jwk_from_key(private) == public_jwk_from_key(publics[vm_id][1])
    assert seen >= 10
