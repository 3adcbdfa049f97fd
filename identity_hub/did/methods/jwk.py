"""did:jwk (offline): `did:jwk:<base64url(UTF-8 JSON of a public JWK)>`.

The DID string is kept exactly as given (the JSON need not be canonical). One verification method
`<did>#0`; relationships follow the JWK `use`: none -> all five, `sig` -> all but `keyAgreement`,
`enc` -> `keyAgreement` only. A JWK with private members makes the DID invalid (the did:jwk spec
says it must be rejected).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from identity_hub.did.encoding import b64url_encode, is_b64url, strict_json_loads
from identity_hub.did.errors import InvalidDid, InvalidDocument
from identity_hub.did.keys import PRIVATE_MEMBERS, RELATIONSHIPS, validate_public_jwk
from identity_hub.did.methods.key import DID_V1, JWS_2020

logger = logging.getLogger(__name__)


def did_jwk_from_public(jwk: dict[str, Any]) -> str:
    """The did:jwk of a public JWK (compact JSON, keys in the given order)."""
    return "did:jwk:" + b64url_encode(json.dumps(jwk, separators=(",", ":")).encode("utf-8"))


def resolve_did_jwk(did: str) -> dict[str, Any]:
    """Resolve a did:jwk offline.

    Returns:
        A DID resolution result.

    Raises:
        InvalidDid: not base64url, not JSON, not an object, private members, unknown `use`.
        InvalidPublicKey / InvalidPublicKeyLength / UnsupportedPublicKeyType: a bad public key.
    """
    if not did.startswith("did:jwk:"):
        raise InvalidDid("not a did:jwk")
    value = did[len("did:jwk:"):]
    if not is_b64url(value) or len(value) % 4 == 1:
        raise InvalidDid("did:jwk value is not base64url")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidDid("did:jwk value is not base64url") from exc
    try:
        jwk = strict_json_loads(raw)
    except InvalidDocument as exc:
        raise InvalidDid("did:jwk value is not a JSON JWK") from exc
    if not isinstance(jwk, dict):
        raise InvalidDid("did:jwk value is not a JSON object")
    if PRIVATE_MEMBERS.intersection(jwk):
        raise InvalidDid("did:jwk must not contain private key material")
    validate_public_jwk(jwk)
    use = jwk.get("use")
    if use is None:
        relationships: tuple[str, ...] = RELATIONSHIPS
    elif use == "sig":
        relationships = tuple(r for r in RELATIONSHIPS if r != "keyAgreement")
    elif use == "enc":
        relationships = ("keyAgreement",)
    else:
        raise InvalidDid(f"did:jwk JWK has an unsupported use {use!r}")
    kid = f"{did}#0"
    doc: dict[str, Any] = {
        "@context": [DID_V1, JWS_2020],
        "id": did,
        "verificationMethod": [
            {"id": kid, "type": "JsonWebKey2020", "controller": did, "publicKeyJwk": jwk}
        ],
    }
    for rel in relationships:
        doc[rel] = [kid]
    return {
        "didDocument": doc,
        "didDocumentMetadata": {},
        "didResolutionMetadata": {"contentType": "application/did+json"},
    }
