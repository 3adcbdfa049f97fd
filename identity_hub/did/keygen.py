"""Key generation and DID creation for the CLI and the hub identity (did:key, did:jwk, did:ion).

Private keys are jwcrypto JWKs without `kid` or `use`, so jwcrypto never refuses an operation
because of a `use` constraint; the DID document is what authorizes each key.
"""

from __future__ import annotations

import logging
from typing import Any

import nacl.bindings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwcrypto.jwk import JWK

from identity_hub.did.encoding import b64url_decode, b64url_encode
from identity_hub.did.methods import ion
from identity_hub.did.methods.jwk import did_jwk_from_public
from identity_hub.did.methods.key import multibase_of, x25519_from_ed25519

logger = logging.getLogger(__name__)

SIGNING_FAMILIES = ("Ed25519", "secp256k1", "P-256", "P-384", "RSA")
FAMILIES = (*SIGNING_FAMILIES, "X25519")
RSA_BITS = 2048
_GENERATE: dict[str, dict[str, Any]] = {
    "Ed25519": {"kty": "OKP", "crv": "Ed25519"},
    "X25519": {"kty": "OKP", "crv": "X25519"},
    "secp256k1": {"kty": "EC", "crv": "secp256k1"},
    "P-256": {"kty": "EC", "crv": "P-256"},
    "P-384": {"kty": "EC", "crv": "P-384"},
    "RSA": {"kty": "RSA", "size": RSA_BITS},
}
ION_TYPES = {
    "secp256k1": "EcdsaSecp256k1VerificationKey2019",
    "Ed25519": "JsonWebKey2020",
    "P-256": "JsonWebKey2020",
    "P-384": "JsonWebKey2020",
    "RSA": "JsonWebKey2020",
    "X25519": "JsonWebKey2020",
}


def generate(family: str) -> JWK:
    """A new private key of `family` (RSA keys have 2048 bits).

    Raises:
        ValueError: unknown family.
    """
    if family not in _GENERATE:
        raise ValueError(f"unknown key type {family!r}; choose one of {', '.join(FAMILIES)}")
    return JWK.generate(**_GENERATE[family])


def public_dict(key: JWK) -> dict[str, Any]:
    """The public members of `key` (`kty`, `crv`, `x`, `y`, `n`, `e`)."""
    exported = key.export_public(as_dict=True)
    return {k: exported[k] for k in ("kty", "crv", "x", "y", "n", "e") if k in exported}


def private_dict(key: JWK) -> dict[str, Any]:
    """The private JWK as a dict, without `kid`."""
    exported = dict(key.export_private(as_dict=True))
    exported.pop("kid", None)
    return exported


def raw_public(family: str, key: JWK) -> bytes:
    """The raw multikey bytes of a public key (compressed EC point, 32-byte OKP, PKCS#1 RSA)."""
    if family in ("Ed25519", "X25519"):
        return b64url_decode(public_dict(key)["x"])
    public = key.get_op_key("verify")
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public.public_bytes(serialization.Encoding.X962,
                                   serialization.PublicFormat.CompressedPoint)
    if isinstance(public, rsa.RSAPublicKey):
        return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    raise ValueError(f"no multikey form for {family}")


def derive_x25519(ed25519_key: JWK) -> JWK:
    """The X25519 private key paired with an Ed25519 key (libsodium's ed25519_sk_to_curve25519:
    clamp(SHA-512(seed)[0:32])); its public key is the did:key derived keyAgreement key."""
    exported = ed25519_key.export_private(as_dict=True)
    seed, public = b64url_decode(exported["d"]), b64url_decode(exported["x"])
    scalar = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(seed + public)
    u = x25519_from_ed25519(public)
    return JWK(kty="OKP", crv="X25519", d=b64url_encode(scalar), x=b64url_encode(u))


def create_did_key(family: str) -> tuple[str, list[tuple[str, JWK]]]:
    """A new did:key and its private keys as (kid, JWK); Ed25519 adds the derived X25519 key."""
    key = generate(family)
    mb = multibase_of(family, raw_public(family, key))
    did = f"did:key:{mb}"
    keys = [(f"{did}#{mb}", key)]
    if family == "Ed25519":
        x_key = derive_x25519(key)
        keys.append((f"{did}#{multibase_of('X25519', raw_public('X25519', x_key))}", x_key))
    return did, keys


def create_did_jwk(family: str) -> tuple[str, list[tuple[str, JWK]]]:
    """A new did:jwk (no `use`, so every relationship its key type allows) and its key `#0`."""
    key = generate(family)
    did = did_jwk_from_public(public_dict(key))
    return did, [(f"{did}#0", key)]


def ion_public_key(fragment: str, family: str, key: JWK, purposes: list[str],
                   **jwk_extra: str) -> dict[str, Any]:
    """A Sidetree public key entry `{id, type, publicKeyJwk, purposes}`."""
    return {
        "id": fragment,
        "type": ION_TYPES[family],
        "publicKeyJwk": {**public_dict(key), **jwk_extra},
        "purposes": purposes,
    }


def create_did_ion(
    family: str, *, testnet: bool = False
) -> tuple[str, list[tuple[str, JWK]], dict[str, JWK]]:
    """A new long-form did:ion: `key-1` of `family` for authentication and assertionMethod,
    `key-2` X25519 for keyAgreement.

    Returns:
        (DID, [(kid, private JWK)], {"update": JWK, "recovery": JWK} Sidetree operation keys)

    Raises:
        ValueError: the document would break a Sidetree rule.
    """
    signing, agreement = generate(family), generate("X25519")
    update, recovery = generate("secp256k1"), generate("secp256k1")
    entries = [
        ion_public_key("key-1", family, signing, ["authentication", "assertionMethod"]),
        ion_public_key("key-2", "X25519", agreement, ["keyAgreement"]),
    ]
    did = ion.create_long_form(entries, [], public_dict(update), public_dict(recovery),
                               testnet=testnet)
    return did, [(f"{did}#key-1", signing), (f"{did}#key-2", agreement)], {
        "update": update, "recovery": recovery}
