"""did:key, did:jwk and long-form did:ion: creation round trips, invalid inputs and the Sidetree
error order (did-methods.md §1, §2, §4.3)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto import jwk, jws

from identity_hub.did import (
    DidError,
    DidResolver,
    InvalidDid,
    InvalidPublicKey,
    InvalidPublicKeyLength,
    KeyNotAuthorized,
    KeyNotFound,
    MethodNotSupported,
    UnsupportedPublicKeyType,
    resolve,
)
from identity_hub.did.encoding import b64url_encode, encode_varint, multibase_b58_encode
from identity_hub.did.keygen import create_did_ion, create_did_jwk, create_did_key, public_dict
from identity_hub.did.methods import ion
from identity_hub.did.methods.jwk import did_jwk_from_public

ALGS = {"Ed25519": "EdDSA", "secp256k1": "ES256K", "P-256": "ES256", "P-384": "ES384",
        "RSA": "RS256"}


@pytest.fixture
def resolver() -> DidResolver:
    return DidResolver(offline=True)


def did_key_of(codec: int, raw: bytes) -> str:
    return "did:key:" + multibase_b58_encode(encode_varint(codec) + raw)


def sign_and_verify(private: jwk.JWK, public: jwk.JWK, alg: str) -> None:
    token = jws.JWS(b"payload")
    token.add_signature(private, alg, json.dumps({"alg": alg}))
    check = jws.JWS()
    check.deserialize(token.serialize(compact=True))
    check.verify(public, alg)


# --- did:key ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["Ed25519", "secp256k1", "P-256", "P-384", "RSA"])
async def test_did_key_round_trip_signs(family: str, resolver: DidResolver) -> None:
    did, keys = create_did_key(family)
    kid, private = keys[0]
    key = await resolver.key(kid, "sign")
    assert key.key_family == family and key.did == did
    sign_and_verify(private, key.jwk, ALGS[family])
    rels = {"authentication", "assertionMethod", "capabilityInvocation", "capabilityDelegation"}
    assert rels <= key.relationships


async def test_did_key_ed25519_derives_key_agreement(resolver: DidResolver) -> None:
    did, keys = create_did_key("Ed25519")
    (ed_kid, _), (x_kid, x_private) = keys
    assert x_kid.split("#")[1].startswith("z6LS")
    x_key = await resolver.key(x_kid, "encrypt")
    assert x_key.key_family == "X25519"
    assert x_key.public_jwk["x"] == x_private.export_public(as_dict=True)["x"]
    with pytest.raises(KeyNotAuthorized):
        await resolver.key(ed_kid, "encrypt")  # Ed25519 never encrypts
    with pytest.raises(KeyNotAuthorized):
        await resolver.key(x_kid, "sign")  # X25519 never signs


async def test_did_key_x25519_is_key_agreement_only(resolver: DidResolver) -> None:
    raw = bytes(range(1, 33))
    did = did_key_of(0xEC, raw)
    doc = await resolver.resolve(did)
    assert set(doc) >= {"keyAgreement"} and "authentication" not in doc
    assert [k.key_family for k in await resolver.keys(did, "encrypt")] == ["X25519"]
    assert await resolver.keys(did, "sign") == []


async def test_did_key_version_one_prefix(resolver: DidResolver) -> None:
    did, _ = create_did_key("P-256")
    mb = did.split(":")[-1]
    doc = await resolver.resolve(f"did:key:1:{mb}")
    assert doc["verificationMethod"][0]["id"] == f"did:key:1:{mb}#{mb}"
    with pytest.raises(InvalidDid):
        await resolver.resolve(f"did:key:2:{mb}")


def _not_on_curve_x(curve: ec.EllipticCurve) -> bytes:
    for x in range(2, 500):
        raw = b"\x02" + x.to_bytes(32, "big")
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(curve, raw)
        except ValueError:
            return raw
    raise AssertionError("no invalid x found")


@pytest.mark.parametrize(
    ("did", "error"),
    [
        ("did:key:", "invalidDid"),
        ("did:key:f" + "ed01" + "00" * 32, "invalidDid"),  # hex multibase, not base58btc
        ("did:key:z6Mk0OIl", "invalidDid"),  # 0, O, I, l are not base58
        (did_key_of(0x1300, b"\x01" * 32), "invalidDid"),  # unknown multicodec
        (did_key_of(0xED, b"\x01" * 31), "invalidPublicKeyLength"),
        (did_key_of(0xE7, b"\x02" + b"\x01" * 31), "invalidPublicKeyLength"),
        (did_key_of(0xE7, _not_on_curve_x(ec.SECP256K1())), "invalidPublicKey"),
        (did_key_of(0x1200, _not_on_curve_x(ec.SECP256R1())), "invalidPublicKey"),
        (did_key_of(0x1200, b"\x05" + b"\x01" * 32), "invalidPublicKey"),  # not 02/03
        (did_key_of(0xED, b"\x01" + b"\x00" * 31), "invalidPublicKey"),  # small-order point
        (did_key_of(0x1205, b"\x30\x03\x02\x01\x01"), "invalidPublicKey"),
    ],
)
async def test_did_key_invalid(did: str, error: str, resolver: DidResolver) -> None:
    with pytest.raises(DidError) as info:
        await resolver.resolve(did)
    assert info.value.error == error


async def test_did_key_small_rsa_refused(resolver: DidResolver) -> None:
    small = rsa.generate_private_key(65537, 1024).public_key()
    der = small.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    with pytest.raises(InvalidPublicKey):
        await resolver.resolve(did_key_of(0x1205, der))


# --- did:jwk ------------------------------------------------------------------------------


@pytest.mark.parametrize(("use", "sign", "encrypt"),
                         [(None, True, True), ("sig", True, False), ("enc", False, True)])
async def test_did_jwk_use(use: str | None, sign: bool, encrypt: bool,
                           resolver: DidResolver) -> None:
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    public = public_dict(key) | ({"use": use} if use else {})
    did = did_jwk_from_public(public)
    assert bool(await resolver.keys(did, "sign")) is sign
    assert bool(await resolver.keys(did, "encrypt")) is encrypt


async def test_did_jwk_ed25519_never_encrypts(resolver: DidResolver) -> None:
    did, [(kid, private)] = create_did_jwk("Ed25519")
    doc = await resolver.resolve(did)
    assert doc["keyAgreement"] == [kid]  # the did:jwk document lists it (spec) ...
    with pytest.raises(KeyNotAuthorized):
        await resolver.key(kid, "encrypt")  # ... but the hub never does ECDH with Ed25519
    sign_and_verify(private, (await resolver.key(kid)).jwk, "EdDSA")


def _did_jwk_raw(value: Any) -> str:
    return "did:jwk:" + b64url_encode(json.dumps(value).encode())


@pytest.mark.parametrize(
    ("did", "error"),
    [
        (_did_jwk_raw(jwk.JWK.generate(kty="OKP", crv="Ed25519").export_private(as_dict=True)),
         "invalidDid"),
        (_did_jwk_raw({"kty": "oct", "k": "c2VjcmV0"}), "invalidDid"),
        (_did_jwk_raw({"kty": "oct"}), "unsupportedPublicKeyType"),
        (_did_jwk_raw(["not", "an", "object"]), "invalidDid"),
        (_did_jwk_raw({"kty": "EC", "crv": "P-256", "x": b64url_encode(b"\x01" * 32),
                       "y": b64url_encode(b"\x02" * 32)}), "invalidPublicKey"),
        (_did_jwk_raw({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}), "invalidPublicKeyLength"),
        ("did:jwk:" + b64url_encode(b'{"kty":"OKP","crv":"Ed25519","x":"a","x":"b"}'),
         "invalidDid"),
        ("did:jwk:eyJrdHkiOiJPS1AifQ=", "invalidDid"),
        ("did:jwk:eyJrdHkiOiJPS1A", "invalidDid"),
    ],
)
async def test_did_jwk_invalid(did: str, error: str, resolver: DidResolver) -> None:
    with pytest.raises(DidError) as info:
        await resolver.resolve(did)
    assert info.value.error == error


# --- did:ion ------------------------------------------------------------------------------


async def test_did_ion_round_trip(resolver: DidResolver) -> None:
    did, keys, ops = create_did_ion("secp256k1")
    (sign_kid, signer), (enc_kid, _) = keys
    key = await resolver.key(sign_kid, "sign")
    sign_and_verify(signer, key.jwk, "ES256K")
    short_kid = ion.short_form(did) + "#key-1"
    assert (await resolver.key(short_kid)).id == sign_kid
    assert (await resolver.key(enc_kid, "encrypt")).key_family == "X25519"
    result = await resolver.resolve_result(did)
    meta = result["didDocumentMetadata"]
    assert meta["equivalentId"] == [ion.short_form(did)]
    assert meta["method"]["published"] is False
    assert meta["method"]["updateCommitment"] == ion.commitment(public_dict(ops["update"]))
    assert meta["method"]["recoveryCommitment"] == ion.commitment(public_dict(ops["recovery"]))


async def test_did_ion_testnet(resolver: DidResolver) -> None:
    did, keys, _ = create_did_ion("Ed25519", testnet=True)
    assert did.startswith("did:ion:test:")
    assert (await resolver.key(keys[0][0])).key_family == "Ed25519"
    assert ion.short_form(did).count(":") == 3


def _state(delta: Any, suffix_data: Any) -> str:
    return b64url_encode(ion.jcs({"delta": delta, "suffixData": suffix_data}))


def _good_delta(**document: Any) -> dict[str, Any]:
    key = public_dict(jwk.JWK.generate(kty="OKP", crv="Ed25519"))
    doc = {"publicKeys": [{"id": "key-1", "type": "JsonWebKey2020", "publicKeyJwk": key,
                           "purposes": ["authentication"]}]} | document
    return {"patches": [{"action": "replace", "document": doc}],
            "updateCommitment": ion.multihash(b"update")}


def build_ion(delta: Any, suffix_data: Any = None, suffix: str | None = None,
              state: str | None = None) -> str:
    if suffix_data is None:
        suffix_data = {"deltaHash": ion.multihash(ion.jcs(delta)),
                       "recoveryCommitment": ion.multihash(b"recovery")}
    if suffix is None:
        suffix = ion.multihash(ion.jcs(suffix_data))
    return f"did:ion:{suffix}:{state or _state(delta, suffix_data)}"


def _reason(did: str) -> str:
    with pytest.raises(InvalidDid) as info:
        ion.resolve_long_form(did)
    assert info.value.error == "invalidDid"
    return str(info.value.reason)


def test_ion_builder_is_valid() -> None:
    did = build_ion(_good_delta())
    doc = ion.resolve_long_form(did)["didDocument"]
    assert doc["authentication"] == [f"{did}#key-1"]


def test_ion_error_order() -> None:
    good = _good_delta()
    big = _good_delta(services=[{"id": f"s{i}", "type": "T", "serviceEndpoint": "https://x/" * 9}
                                for i in range(12)])
    wrong_suffix = ion.multihash(b"something else")
    extra = {"deltaHash": ion.multihash(ion.jcs(good)), "recoveryCommitment": ion.multihash(b"r"),
             "anchorOrigin": "x"}
    pretty = b64url_encode(json.dumps({"suffixData": {}, "delta": good}, indent=1).encode())
    # oversized delta beats a wrong suffix (the delta is checked first)
    assert _reason(build_ion(big, suffix=wrong_suffix)) == "delta_exceeds_maximum_size"
    # a forbidden suffixData property beats a wrong suffix
    assert _reason(build_ion(good, extra, suffix=wrong_suffix)) == \
        "input_validator_input_contains_now_allowed_property"
    # non-JCS beats everything after it
    assert _reason(build_ion(big, state=pretty)) == "did_initial_state_jcs_is_not_jcs"
    assert _reason(f"did:ion:{wrong_suffix}:eyJ+") == \
        "encoder_validate_base64_url_string_input_not_base64_url_string"
    assert _reason(f"did:ion:{wrong_suffix}:" + b64url_encode(b"{not json")) == \
        "did_initial_state_jcs_is_not_json"
    bad_action = {"patches": [{"action": "ietf-json-patch"}], "updateCommitment": "x"}
    assert _reason(build_ion(bad_action, suffix=wrong_suffix)) == \
        "document_composer_patch_missing_or_unknown_action"
    bad_commitment = dict(good, updateCommitment="EiAshort")
    assert _reason(build_ion(bad_commitment)) == "multihash_string_not_a_multihash"
    assert _reason(build_ion(good, suffix=wrong_suffix)) == \
        "did_unique_suffix_from_initial_state_mismatch"
    assert _reason(build_ion(good, suffix="notAMultihash")) == \
        "did_unique_suffix_from_initial_state_mismatch"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"publicKeys": [{"id": "k" * 51, "type": "T", "publicKeyJwk": {}}]},
         "document_composer_id_too_long"),
        ({"publicKeys": [{"id": "a b", "type": "T", "publicKeyJwk": {}}]},
         "document_composer_id_not_using_base64url_character_set"),
        ({"publicKeys": [{"id": "k", "type": "T", "publicKeyJwk": {}, "controller": "x"}]},
         "document_composer_public_key_unknown_property"),
        ({"publicKeys": [{"id": "k", "type": "T", "publicKeyJwk": [1]}]},
         "input_validator_input_cannot_be_an_array"),
        ({"publicKeys": [{"id": "k", "type": "T", "publicKeyJwk": {},
                          "purposes": ["authentication", "authentication"]}]},
         "document_composer_public_key_purposes_duplicated"),
        ({"publicKeys": [{"id": "k", "type": "T", "publicKeyJwk": {}, "purposes": ["owner"]}]},
         "document_composer_public_key_invalid_purpose"),
        ({"publicKeys": [{"id": "k", "type": "T", "publicKeyJwk": {}},
                         {"id": "k", "type": "T", "publicKeyJwk": {}}]},
         "document_composer_public_key_id_duplicated"),
        ({"services": [{"id": "s", "type": "T", "serviceEndpoint": ["https://a"]}]},
         "document_composer_patch_service_endpoint_cannot_be_an_array"),
        ({"services": [{"id": "s", "type": "T" * 31, "serviceEndpoint": "https://a"}]},
         "document_composer_patch_service_type_too_long"),
        ({"services": [{"id": "s", "type": "T"}]},
         "document_composer_service_has_missing_or_unknown_property"),
        ({"alsoKnownAs": []}, "document_composer_unknown_property_in_document"),
    ],
)
def test_ion_document_schema(document: dict[str, Any], reason: str) -> None:
    delta = {"patches": [{"action": "replace", "document": document}],
             "updateCommitment": ion.multihash(b"u")}
    assert _reason(build_ion(delta)) == reason


def test_ion_suffix_data_type() -> None:
    delta = _good_delta()
    base = {"deltaHash": ion.multihash(ion.jcs(delta)), "recoveryCommitment": ion.multihash(b"r")}
    assert ion.resolve_long_form(build_ion(delta, base | {"type": "abcd"}))
    assert _reason(build_ion(delta, base | {"type": "abcde"})) == \
        "suffix_data_type_length_greater_than_four"


async def test_ion_tampered_delta_resolves_to_empty_document(resolver: DidResolver) -> None:
    """deltaHash mismatch: Sidetree keeps the DID with an empty document (acceptError)."""
    delta = _good_delta(services=[{"id": "hub", "type": "IdentityHub",
                                   "serviceEndpoint": "https://hub.example"}])
    suffix_data = {"deltaHash": ion.multihash(b"another delta"),
                   "recoveryCommitment": ion.multihash(b"r")}
    did = build_ion(delta, suffix_data)
    result = await resolver.resolve_result(did)
    assert result["didDocument"]["id"] == did
    assert "verificationMethod" not in result["didDocument"]
    assert "service" not in result["didDocument"]
    assert "updateCommitment" not in result["didDocumentMetadata"]["method"]
    assert await resolver.keys(did, "sign") == []
    with pytest.raises(KeyNotFound):
        await resolver.key(f"{did}#key-1")


def test_ion_patches_apply_in_order() -> None:
    k1, k2 = (public_dict(jwk.JWK.generate(kty="OKP", crv="Ed25519")) for _ in range(2))
    delta = {"patches": [
        {"action": "replace", "document": {"publicKeys": [
            {"id": "a", "type": "T", "publicKeyJwk": k1, "purposes": ["authentication"]}]}},
        {"action": "add-public-keys", "publicKeys": [
            {"id": "b", "type": "T", "publicKeyJwk": k2, "purposes": ["assertionMethod"]}]},
        {"action": "remove-public-keys", "ids": ["a"]},
        {"action": "add-services", "services": [
            {"id": "s", "type": "T", "serviceEndpoint": {"nodes": ["https://n"]}}]},
    ], "updateCommitment": ion.multihash(b"u")}
    did = build_ion(delta)
    doc = ion.resolve_long_form(did)["didDocument"]
    assert [m["id"] for m in doc["verificationMethod"]] == [f"{did}#b"]
    assert doc["assertionMethod"] == [f"{did}#b"] and "authentication" not in doc
    assert doc["service"] == [{"id": f"{did}#s", "type": "T",
                               "serviceEndpoint": {"nodes": ["https://n"]}}]


def test_ion_create_refuses_oversized_delta() -> None:
    op_key = public_dict(jwk.JWK.generate(kty="EC", crv="secp256k1"))
    keys: list[dict[str, Any]] = [
        {"id": f"key-{i}", "type": "T", "purposes": ["authentication"],
         "publicKeyJwk": public_dict(jwk.JWK.generate(kty="EC", crv="secp256k1"))}
        for i in range(8)]
    with pytest.raises(ValueError, match="1000"):
        ion.create_long_form(keys, [], op_key, op_key)


async def test_ion_short_form_needs_a_universal_resolver(resolver: DidResolver) -> None:
    did, _, _ = create_did_ion("Ed25519")
    with pytest.raises(MethodNotSupported, match="universal"):
        await DidResolver().resolve(ion.short_form(did))


# --- module-level resolve ------------------------------------------------------------------


async def test_module_resolve_is_offline() -> None:
    did, _ = create_did_key("Ed25519")
    assert (await resolve(did))["id"] == did
    with pytest.raises(MethodNotSupported):
        await resolve("did:web:example.com")
    with pytest.raises(MethodNotSupported):
        await resolve("did:example:123")


@pytest.mark.parametrize("bad", ["", "did:", "did:key", "did:KEY:z6Mk", "did:key:z6Mk#frag",
                                 "did:key:z6Mk/path", "did:key:a b", "x" * 20000])
async def test_not_a_did(bad: str, resolver: DidResolver) -> None:
    with pytest.raises(InvalidDid):
        await resolver.resolve(bad)


async def test_unsupported_key_error_class() -> None:
    assert issubclass(UnsupportedPublicKeyType, InvalidDid)
    assert issubclass(InvalidPublicKeyLength, InvalidDid)
    assert UnsupportedPublicKeyType("x").error == "unsupportedPublicKeyType"
