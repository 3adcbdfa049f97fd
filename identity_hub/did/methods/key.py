"""did:key (offline): `did:key:z<base58btc(varint(multicodec) || raw public key)>`.

Documents use `JsonWebKey2020` methods (the key bytes are what matters; tests compare key
material). Ed25519 keys get the derived X25519 `keyAgreement` key of did-methods.md §1.3; an X25519
did:key is key agreement only; every other key type gets the four signature relationships.
"""

from __future__ import annotations

import logging
from typing import Any

import nacl.bindings
import nacl.exceptions

from identity_hub.did.encoding import (
    b64url_decode,
    b64url_encode,
    encode_varint,
    multibase_b58_encode,
)
from identity_hub.did.errors import InvalidDid, InvalidPublicKey
from identity_hub.did.keys import CODEC_OF_FAMILY, decode_multikey

logger = logging.getLogger(__name__)

DID_V1 = "https://www.w3.org/ns/did/v1"
JWS_2020 = "https://w3id.org/security/suites/jws-2020/v1"
SIGNATURE_RELATIONSHIPS = (
    "authentication",
    "assertionMethod",
    "capabilityInvocation",
    "capabilityDelegation",
)


def multibase_of(family: str, raw: bytes) -> str:
    """The did:key multibase value of a raw public key (compressed point for EC keys)."""
    return multibase_b58_encode(encode_varint(CODEC_OF_FAMILY[family]) + raw)


def x25519_from_ed25519(raw: bytes) -> bytes:
    """The Montgomery u-coordinate of an Ed25519 public key (u = (1+y)/(1-y) mod p).

    Raises:
        InvalidPublicKey: not a valid Ed25519 point.
    """
    try:
        return bytes(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(raw))
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError) as exc:
        raise InvalidPublicKey("cannot derive an X25519 key from this Ed25519 key") from exc


def _method(did: str, fragment: str, jwk: dict[str, str]) -> dict[str, Any]:
    return {
        "id": f"{did}#{fragment}",
        "type": "JsonWebKey2020",
        "controller": did,
        "publicKeyJwk": jwk,
    }


def resolve_did_key(did: str) -> dict[str, Any]:
    """Resolve a did:key offline.

    Returns:
        A DID resolution result `{didDocument, didDocumentMetadata, didResolutionMetadata}`.

    Raises:
        InvalidDid: malformed DID, wrong multibase, bad base58, unknown multicodec.
        InvalidPublicKeyLength: wrong key length for the multicodec.
        InvalidPublicKey: bytes that are not a valid key.
    """
    if not did.startswith("did:key:"):
        raise InvalidDid("not a did:key")
    parts = did[len("did:key:"):].split(":")
    if len(parts) == 2 and parts[0] == "1":
        parts = parts[1:]
    if len(parts) != 1 or not parts[0]:
        raise InvalidDid("did:key must be did:key:[1:]<multibase>")
    mb_value = parts[0]
    jwk, family, _key = decode_multikey(mb_value)
    doc: dict[str, Any] = {"@context": [DID_V1, JWS_2020], "id": did}
    method = _method(did, mb_value, jwk)
    if family == "X25519":
        doc["verificationMethod"] = [method]
        doc["keyAgreement"] = [method["id"]]
    else:
        doc["verificationMethod"] = [method]
        for rel in SIGNATURE_RELATIONSHIPS:
            doc[rel] = [method["id"]]
        if family == "Ed25519":
            u = x25519_from_ed25519(b64url_decode(jwk["x"]))
            x_jwk = {"kty": "OKP", "crv": "X25519", "x": b64url_encode(u)}
            x_method = _method(did, multibase_of("X25519", u), x_jwk)
            doc["verificationMethod"].append(x_method)
            doc["keyAgreement"] = [x_method["id"]]
    return {
        "didDocument": doc,
        "didDocumentMetadata": {},
        "didResolutionMetadata": {"contentType": "application/did+json"},
    }
