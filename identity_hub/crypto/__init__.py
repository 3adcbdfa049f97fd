"""The JOSE layer of the single-URL transport: JWS and JWE on `cryptography` primitives.

Requests arrive as compact JWE(compact JWS(request JSON)); responses go back the same way; commits
are flattened JWS JSON. Keys are `(family, cryptography key object)` pairs, family being one of
"RSA", "Ed25519", "X25519", "secp256k1", "P-256", "P-384". Every failure is a `JoseError`, whose
message is for logs only.

Typical hub use, with the hub key converted once at start-up::

    family, hub_key = private_key_from_jwk(hub_jwk)
    jwe = parse_compact_jwe(body)                      # then pick the hub key by jwe.header["kid"]
    jws = parse_compact_jws(decrypt_jwe(jwe, family, hub_key))
    verify_jws(jws, requester_family, requester_public_key)
"""

from __future__ import annotations

from identity_hub.crypto.common import (
    DEFAULT_LIMITS,
    JoseError,
    Limits,
    b64url_decode,
    b64url_encode,
    strict_json_loads,
)
from identity_hub.crypto.jwe import (
    DEFAULT_ALGS,
    ParsedJwe,
    decrypt_jwe,
    encrypt_jwe,
    jwe_kid,
    parse_compact_jwe,
)
from identity_hub.crypto.jws import (
    ALG_FOR_FAMILY,
    ALGS_FOR_FAMILY,
    ParsedJws,
    parse_compact_jws,
    parse_flattened_jws,
    sign_compact_jws,
    sign_flattened_jws,
    verify_jws,
)
from identity_hub.crypto.keys import (
    FAMILIES,
    family_of,
    load_public_key,
    private_key_from_jwk,
    public_jwk_from_key,
    public_key_from_jwk,
)

__all__ = [
    "ALGS_FOR_FAMILY",
    "ALG_FOR_FAMILY",
    "DEFAULT_ALGS",
    "DEFAULT_LIMITS",
    "FAMILIES",
    "JoseError",
    "Limits",
    "ParsedJwe",
    "ParsedJws",
    "b64url_decode",
    "b64url_encode",
    "decrypt_jwe",
    "encrypt_jwe",
    "family_of",
    "jwe_kid",
    "load_public_key",
    "parse_compact_jwe",
    "parse_compact_jws",
    "parse_flattened_jws",
    "private_key_from_jwk",
    "public_jwk_from_key",
    "public_key_from_jwk",
    "sign_compact_jws",
    "sign_flattened_jws",
    "strict_json_loads",
    "verify_jws",
]
