"""Requester identities for transport tests, built with jwcrypto/pynacl/base58 directly (not with
the hub's DID code), so that the hub is checked against independent implementations.

* did:key Ed25519 (its X25519 keyAgreement key derived as libsodium does);
* did:jwk secp256k1 / P-256 (no `use`: the key signs and receives ECDH-ES);
* legacy 2019 documents (`publicKey` with RsaVerificationKey2018 / Secp256k1VerificationKey2018),
  served by a universal resolver on 127.0.0.1, as the 2019 clients expect.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import base58
import nacl.bindings
from jwcrypto import jwk


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Identity:
    """A DID, its private keys by kid, and (for legacy DIDs) the document to serve."""

    def __init__(self, did: str, keys: list[tuple[str, jwk.JWK]],
                 document: dict[str, Any] | None = None, family: str = "") -> None:
        self.did = did
        self.keys = keys
        self.document = document
        self.family = family

    @property
    def kid(self) -> str:
        return self.keys[0][0]

    @property
    def key(self) -> jwk.JWK:
        return self.keys[0][1]

    def key_file(self, path: Any) -> str:
        data = {"did": self.did, "keys": [{"kid": kid, "privateJwk": json.loads(k.export_private())}
                                          for kid, k in self.keys]}
        path.write_text(json.dumps(data))
        path.chmod(0o600)
        return str(path)


def did_key_ed25519() -> Identity:
    seed = nacl.bindings.randombytes(32)
    pk, sk = nacl.bindings.crypto_sign_seed_keypair(seed)
    mb = "z" + base58.b58encode(b"\xed\x01" + pk).decode()
    did = f"did:key:{mb}"
    x_pk = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(pk)
    x_sk = nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(sk)
    x_mb = "z" + base58.b58encode(b"\xec\x01" + x_pk).decode()
    ed = jwk.JWK(kty="OKP", crv="Ed25519", x=b64u(pk), d=b64u(seed))
    x = jwk.JWK(kty="OKP", crv="X25519", x=b64u(x_pk), d=b64u(x_sk))
    return Identity(did, [(f"{did}#{mb}", ed), (f"{did}#{x_mb}", x)], family="Ed25519")


def did_jwk(family: str) -> Identity:
    crv = {"secp256k1": "secp256k1", "P-256": "P-256"}[family]
    key = jwk.JWK.generate(kty="EC", crv=crv)
    public = {k: v for k, v in json.loads(key.export_public()).items() if k != "kid"}
    did = "did:jwk:" + b64u(json.dumps(public, separators=(",", ":")).encode())
    return Identity(did, [(did + "#0", key)], family=family)


def legacy_rsa(use: str | None = None) -> Identity:
    """A 2019-style DID: one RSA key that signs and receives (no relationships, no `use`; with
    `use="enc"`, what did-auth-jose 0.1.11+ and the ION/Sidetree test documents published)."""
    did = f"did:test:{uuid.uuid4().hex}"
    key = jwk.JWK.generate(kty="RSA", size=2048)
    public = json.loads(key.export_public())
    public["kid"] = "key-1"
    if use is not None:
        public["use"] = use
    doc = {"@context": "https://w3id.org/did/v1", "id": did,
           "publicKey": [{"id": f"{did}#key-1", "type": "RsaVerificationKey2018",
                          "controller": did, "publicKeyJwk": public}]}
    return Identity(did, [(f"{did}#key-1", key)], doc, family="RSA")


def identity_for(family: str) -> Identity:
    if family == "Ed25519":
        return did_key_ed25519()
    if family == "RSA":
        return legacy_rsa()
    return did_jwk(family)
