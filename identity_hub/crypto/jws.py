"""JWS (RFC 7515): compact and flattened JSON parsing, verification and signing.

Algorithms: RS256, RS512 (RSA PKCS#1 v1.5), ES256K (JOSE `r||s` or DER), ES256, ES384, EdDSA.
The algorithm must fit the key family; nothing else (HS*, none, PS*) is accepted. The signature
operations call `cryptography` directly (jwcrypto stays off the request path), except the Ed25519
verification and signing, which are libsodium's (PyNaCl): its verification is twice as fast as
OpenSSL 3.0's (49 vs 91 µs here; a write verifies two signatures) and at least as strict
(canonical S, and no small-order key or R).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from identity_hub.crypto import der
from identity_hub.crypto.common import (
    DEFAULT_LIMITS,
    FORBIDDEN_HEADER_MEMBERS,
    JoseError,
    Limits,
    as_ascii_bytes,
    b64url_decode,
    b64url_encode,
    check_header_members,
    decode_protected_header,
    dumps_header,
)
from identity_hub.crypto.keys import coerce_private_key, coerce_public_key

logger = logging.getLogger(__name__)

#: The algorithm we sign with by default for each family.
ALG_FOR_FAMILY = {
    "RSA": "RS256",
    "Ed25519": "EdDSA",
    "secp256k1": "ES256K",
    "P-256": "ES256",
    "P-384": "ES384",
}

#: Every algorithm accepted (for verify and sign) for each family.
ALGS_FOR_FAMILY: dict[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS512"}),
    "Ed25519": frozenset({"EdDSA"}),
    "secp256k1": frozenset({"ES256K"}),
    "P-256": frozenset({"ES256"}),
    "P-384": frozenset({"ES384"}),
}

_RSA_HASH = {"RS256": hashes.SHA256(), "RS512": hashes.SHA512()}
# alg -> (ECDSA object, coordinate size, group order)
_ECDSA = {
    "ES256K": (ec.ECDSA(hashes.SHA256()), 32, der.SECP256K1_ORDER),
    "ES256": (ec.ECDSA(hashes.SHA256()), 32, der.P256_ORDER),
    "ES384": (ec.ECDSA(hashes.SHA384()), 48, der.P384_ORDER),
}
_PKCS1 = padding.PKCS1v15()
_FLATTENED_MEMBERS = frozenset({"protected", "payload", "signature", "header"})


@dataclass(frozen=True, slots=True)
class ParsedJws:
    """A parsed but not yet verified JWS. Trust nothing in it before `verify_jws` succeeds.

    `header` is the protected header only; the flattened form's unprotected `header` member is
    kept apart in `unprotected` (it is not covered by the signature).
    """

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes
    protected_b64: str
    payload_b64: str
    unprotected: dict[str, Any] = field(default_factory=dict)


def _parse_parts(
    protected: bytes, payload: bytes, signature: bytes, limits: Limits
) -> tuple[dict[str, Any], bytes, bytes]:
    header = decode_protected_header(protected, limits, "JWS")
    if not isinstance(header.get("alg"), str):
        raise JoseError("JWS: alg missing or not a string")
    if len(payload) > (limits.max_plaintext * 4 + 2) // 3:
        raise JoseError("JWS: payload too large")
    body = b64url_decode(payload, "JWS payload")
    sig = b64url_decode(signature, "JWS signature")
    if not sig:
        raise JoseError("JWS: empty signature")
    return header, body, sig


def parse_compact_jws(token: str | bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedJws:
    """Parse a compact JWS `protected.payload.signature` (the payload may be empty).

    Raises:
        JoseError: oversize token (checked first), wrong number of parts, bad base64url, a header
            that is not a JSON object or that carries a forbidden member.
    """
    if not isinstance(token, str | bytes):
        raise JoseError("JWS: token is not text")
    if len(token) > limits.max_token_bytes:
        raise JoseError("JWS: token too large")
    raw = as_ascii_bytes(token, "JWS")
    parts = raw.split(b".")
    if len(parts) != 3:
        raise JoseError("JWS: compact form needs exactly three parts")
    protected, payload, signature = parts
    header, body, sig = _parse_parts(protected, payload, signature, limits)
    return ParsedJws(
        header=header,
        payload=body,
        signing_input=raw[: len(protected) + 1 + len(payload)],
        signature=sig,
        protected_b64=protected.decode("ascii"),
        payload_b64=payload.decode("ascii"),
    )


def parse_flattened_jws(obj: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> ParsedJws:
    """Parse a flattened JSON JWS (a commit): `{protected, payload, signature, header?}`.

    The general form (`signatures`) and any other member are refused. `alg` must be in the
    protected header, and unprotected members may not repeat protected ones (RFC 7515 §7.2.1).

    Raises:
        JoseError: when the object is not such a JWS.
    """
    if not isinstance(obj, Mapping):
        raise JoseError("JWS: not a JSON object")
    if "signatures" in obj:
        raise JoseError("JWS: general serialization (signatures) is not accepted")
    extra = set(obj) - _FLATTENED_MEMBERS
    if extra:
        raise JoseError("JWS: unexpected member in flattened JWS")
    protected, payload, signature = obj.get("protected"), obj.get("payload"), obj.get("signature")
    if not (isinstance(protected, str) and isinstance(payload, str) and isinstance(signature, str)):
        raise JoseError("JWS: protected, payload and signature must be strings")
    if len(protected) + len(payload) + len(signature) > limits.max_token_bytes:
        raise JoseError("JWS: token too large")
    p_raw = as_ascii_bytes(protected, "JWS protected")
    pl_raw = as_ascii_bytes(payload, "JWS payload")
    header, body, sig = _parse_parts(p_raw, pl_raw, as_ascii_bytes(signature, "JWS sig"), limits)
    unprotected: dict[str, Any] = {}
    if "header" in obj:
        if not isinstance(obj["header"], dict):
            raise JoseError("JWS: unprotected header is not an object")
        unprotected = dict(obj["header"])
        check_header_members(unprotected, "JWS unprotected header")
        if "alg" in unprotected or set(unprotected) & set(header):
            raise JoseError("JWS: unprotected header repeats a protected member")
    return ParsedJws(
        header=header,
        payload=body,
        signing_input=p_raw + b"." + pl_raw,
        signature=sig,
        protected_b64=protected,
        payload_b64=payload,
        unprotected=unprotected,
    )


def _verify_ecdsa(alg: str, key: ec.EllipticCurvePublicKey, sig: bytes, data: bytes) -> None:
    ecdsa, size, _order = _ECDSA[alg]
    if len(sig) == 2 * size:
        try:
            key.verify(der.raw_to_der(sig, size), data, ecdsa)
            return
        except (InvalidSignature, JoseError):
            # A DER signature can be 64 bytes long too (short r and s); fall through for ES256K.
            if alg != "ES256K" or sig[0] != 0x30:
                raise JoseError("JWS: signature verification failed") from None
    if alg != "ES256K" or len(sig) > der.MAX_DER_256:
        raise JoseError("JWS: ECDSA signature has the wrong length")
    der.der_to_rs(sig)  # strict, canonical DER only
    key.verify(sig, data, ecdsa)


def _verify_ed25519(key: ed25519.Ed25519PublicKey, sig: bytes, data: bytes) -> None:
    if len(sig) != 64:
        raise JoseError("JWS: EdDSA signature has the wrong length")
    try:
        nacl.bindings.crypto_sign_open(sig + data, key.public_bytes_raw())
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise JoseError("JWS: signature verification failed") from None


def verify_jws(parsed: ParsedJws, family: str, public_key: object) -> None:
    """Verify `parsed` with a public key of `family`; the header's alg must fit the family.

    `public_key` is a `cryptography` public key (fast path) or anything `load_public_key`
    accepts. ES256K accepts both the JOSE `r||s` and the DER signature encodings.

    Raises:
        JoseError: when the algorithm does not fit the family or the signature is invalid.
    """
    alg = parsed.header.get("alg")
    allowed = ALGS_FOR_FAMILY.get(family)
    if allowed is None or alg not in allowed:
        raise JoseError(f"JWS: alg {alg!r} not accepted for a {family} key")
    if FORBIDDEN_HEADER_MEMBERS.intersection(parsed.header):
        raise JoseError("JWS: forbidden header member")
    key: Any = coerce_public_key(family, public_key)
    sig, data = parsed.signature, parsed.signing_input
    try:
        if alg in _RSA_HASH:
            key.verify(sig, data, _PKCS1, _RSA_HASH[alg])
        elif alg == "EdDSA":
            _verify_ed25519(key, sig, data)
        else:
            _verify_ecdsa(alg, key, sig, data)
    except JoseError:
        raise
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        raise JoseError("JWS: signature verification failed") from None


# libsodium secret keys (seed + public key) of the Ed25519 keys signed with, by key object: the
# hub signs every response with one of a few keys. The key object is kept with its secret key, so
# its id is not reused while the entry lives.
_SODIUM_KEYS: dict[int, tuple[ed25519.Ed25519PrivateKey, bytes]] = {}
_SODIUM_KEYS_MAX = 64


def _sign_ed25519(key: ed25519.Ed25519PrivateKey, data: bytes) -> bytes:
    """EdDSA with libsodium (21 µs here, OpenSSL 3.0 30 µs; the signature is the same bytes:
    Ed25519 is deterministic)."""
    entry = _SODIUM_KEYS.get(id(key))
    if entry is None or entry[0] is not key:
        if len(_SODIUM_KEYS) >= _SODIUM_KEYS_MAX:
            _SODIUM_KEYS.clear()
        _pk, secret = nacl.bindings.crypto_sign_seed_keypair(key.private_bytes_raw())
        entry = _SODIUM_KEYS[id(key)] = (key, secret)
    return nacl.bindings.crypto_sign(data, entry[1])[:64]


def _sign(alg: str, key: Any, data: bytes, der_es256k: bool) -> bytes:
    if alg in _RSA_HASH:
        return key.sign(data, _PKCS1, _RSA_HASH[alg])  # type: ignore[no-any-return]
    if alg == "EdDSA":
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return _sign_ed25519(key, data)
        return key.sign(data)  # type: ignore[no-any-return]
    ecdsa, size, order = _ECDSA[alg]
    r, s = der.der_to_rs(key.sign(data, ecdsa))
    if alg == "ES256K":
        # Low-S, because secp256k1 verifiers (noble, libsecp256k1) refuse high-S by default.
        r, s = der.low_s(r, s, order)
        if der_es256k:
            return encode_dss_signature(r, s)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _signed_parts(
    payload: bytes, header: Mapping[str, Any], family: str, private_key: object, der_es256k: bool
) -> tuple[str, str, str]:
    if not isinstance(payload, bytes):
        raise JoseError("JWS: payload must be bytes")
    hdr = dict(header)
    alg = hdr.setdefault("alg", ALG_FOR_FAMILY.get(family))
    if not isinstance(alg, str) or alg not in ALGS_FOR_FAMILY.get(family, ()):
        raise JoseError(f"JWS: alg {alg!r} not usable with a {family} key")
    key = coerce_private_key(family, private_key)
    protected = b64url_encode(dumps_header(hdr))
    body = b64url_encode(payload)
    try:
        sig = _sign(alg, key, f"{protected}.{body}".encode("ascii"), der_es256k)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise JoseError(f"JWS: signing failed ({type(exc).__name__})") from None
    return protected, body, b64url_encode(sig)


def sign_compact_jws(
    payload: bytes,
    header: Mapping[str, Any],
    family: str,
    private_key: object,
    *,
    der_es256k: bool = False,
) -> str:
    """Sign `payload` and return a compact JWS.

    `header` becomes the protected header, member order kept; `alg` defaults to
    `ALG_FOR_FAMILY[family]` (appended last) and must fit the family. ES256K signatures are low-S,
    DER-encoded when `der_es256k` (what the 2019 clients verify), JOSE `r||s` otherwise.

    Raises:
        JoseError: when the key or alg does not fit the family or the header is not JSON.
    """
    protected, body, sig = _signed_parts(payload, header, family, private_key, der_es256k)
    return f"{protected}.{body}.{sig}"


def sign_flattened_jws(
    payload: bytes,
    header: Mapping[str, Any],
    family: str,
    private_key: object,
    *,
    unprotected: Mapping[str, Any] | None = None,
    der_es256k: bool = False,
) -> dict[str, Any]:
    """Sign `payload` and return a flattened JSON JWS `{protected, payload, signature[, header]}`.

    Raises:
        JoseError: as `sign_compact_jws`.
    """
    protected, body, sig = _signed_parts(payload, header, family, private_key, der_es256k)
    out: dict[str, Any] = {"protected": protected, "payload": body, "signature": sig}
    if unprotected:
        out["header"] = dict(unprotected)
    return out
