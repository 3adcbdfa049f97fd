"""JWE (RFC 7516): parsing (compact and flattened JSON), decryption and encryption.

Key management: RSA-OAEP and RSA-OAEP-256 for RSA keys; ECDH-ES, ECDH-ES+A128KW/A192KW/A256KW for
X25519, P-256, P-384 and secp256k1 keys. Content: A128/192/256GCM and A128CBC-HS256,
A192CBC-HS384, A256CBC-HS512. Everything else (none, dir, RSA1_5, PBES2, A*KW, A*GCMKW) is refused,
as are `zip`, `crit` and key-carrying header members.

What we send: RSA keys get RSA-OAEP (SHA-1) + A128GCM, the only combination the 2019 clients
decrypt reliably. EC/OKP keys get ECDH-ES (direct key agreement) + A256GCM: it skips generating
and wrapping a separate CEK, so it is the cheapest ECDH variant, and the recipient is single anyway.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

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
    strict_json_loads,
)
from identity_hub.crypto.jwa import (
    ECDH_ALGS,
    ECDH_FAMILIES,
    ENC,
    MAX_ENC_OVERHEAD,
    RSA_ALGS,
    decrypt_content,
    ecdh_unwrap_cek,
    ecdh_wrap_cek,
    encrypt_content,
)
from identity_hub.crypto.keys import coerce_private_key, coerce_public_key, public_jwk_from_key

logger = logging.getLogger(__name__)

_OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
_OAEP_SHA256 = padding.OAEP(
    mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)
_FLATTENED_MEMBERS = frozenset(
    {"protected", "unprotected", "header", "encrypted_key", "iv", "ciphertext", "tag"}
)
_UNPROTECTED_ALLOWED = frozenset({"epk", "kid", "apu", "apv"})

#: Default algorithms per recipient family: (alg, enc).
DEFAULT_ALGS = {
    "RSA": ("RSA-OAEP", "A128GCM"),
    "X25519": ("ECDH-ES", "A256GCM"),
    "P-256": ("ECDH-ES", "A256GCM"),
    "P-384": ("ECDH-ES", "A256GCM"),
    "secp256k1": ("ECDH-ES", "A256GCM"),
}


@dataclass(frozen=True, slots=True)
class ParsedJwe:
    """A parsed JWE. `header` is the protected header (plus, in the flattened form only, the few
    unprotected members allowed there; see `parse_compact_jwe`)."""

    header: dict[str, Any]
    protected_b64: str
    encrypted_key: bytes
    iv: bytes
    ciphertext: bytes
    tag: bytes


def _check_jwe_header(header: dict[str, Any]) -> None:
    alg, enc = header.get("alg"), header.get("enc")
    if alg not in RSA_ALGS and alg not in ECDH_ALGS:
        raise JoseError(f"JWE: alg {alg!r} is not accepted")
    if enc not in ENC:
        raise JoseError(f"JWE: enc {enc!r} is not accepted")
    if "epk" in header and alg not in ECDH_ALGS:
        raise JoseError("JWE: epk without ECDH-ES")


def _flattened_parts(raw: bytes) -> tuple[list[bytes], dict[str, Any]]:
    obj = strict_json_loads(raw, "JWE JSON", max_depth=3)
    if not isinstance(obj, dict):
        raise JoseError("JWE: JSON form is not an object")
    if "recipients" in obj:
        raise JoseError("JWE: general serialization (recipients) is not accepted")
    if set(obj) - _FLATTENED_MEMBERS:
        raise JoseError("JWE: unexpected member in flattened JWE")
    parts = []
    for name in ("protected", "encrypted_key", "iv", "ciphertext", "tag"):
        value = obj.get(name, "" if name == "encrypted_key" else None)
        if not isinstance(value, str):
            raise JoseError(f"JWE: {name} missing or not a string")
        parts.append(as_ascii_bytes(value, f"JWE {name}"))
    unprotected: dict[str, Any] = {}
    for name in ("unprotected", "header"):
        members = obj.get(name, {})
        if not isinstance(members, dict):
            raise JoseError(f"JWE: {name} is not an object")
        if set(members) - _UNPROTECTED_ALLOWED or set(members) & set(unprotected):
            raise JoseError(f"JWE: member of {name} not accepted")
        unprotected.update(members)
    return parts, unprotected


def parse_compact_jwe(token: str | bytes, limits: Limits = DEFAULT_LIMITS) -> ParsedJwe:
    """Parse a compact JWE (five parts), or the flattened JSON form (`{"protected": ...}`).

    Checks, in order: total length (before decoding anything), structure, protected header (size,
    JSON object, allowed alg/enc, no zip/crit/jku/x5u/x5c/jwk), then the binary parts, refusing a
    ciphertext longer than `limits.max_plaintext` allows. In the flattened form, `alg`, `enc` and
    everything else that matters must be protected; only `epk`, `kid`, `apu` and `apv` may sit in
    `unprotected`/`header` (jwcrypto puts `epk` there), since changing them can only make
    decryption fail. They are merged into `header`; `aad` is refused.

    Raises:
        JoseError: on any of those failures.
    """
    if not isinstance(token, str | bytes):
        raise JoseError("JWE: token is not text")
    if len(token) > limits.max_token_bytes:
        raise JoseError("JWE: token too large")
    raw = as_ascii_bytes(token, "JWE")
    stripped = raw.lstrip()
    unprotected: dict[str, Any] = {}
    if stripped.startswith(b"{"):
        parts, unprotected = _flattened_parts(stripped)
    else:
        parts = raw.split(b".")
        if len(parts) != 5:
            raise JoseError("JWE: compact form needs exactly five parts")
    protected, encrypted_key, iv, ciphertext, tag = parts
    header = decode_protected_header(protected, limits, "JWE")
    if unprotected:
        if set(unprotected) & set(header):
            raise JoseError("JWE: unprotected member repeats a protected one")
        header.update(unprotected)
        check_header_members(header, "JWE")
    _check_jwe_header(header)
    if len(ciphertext) > ((limits.max_plaintext + MAX_ENC_OVERHEAD) * 4 + 2) // 3:
        raise JoseError("JWE: ciphertext too large")
    return ParsedJwe(
        header=header,
        protected_b64=protected.decode("ascii"),
        encrypted_key=b64url_decode(encrypted_key, "JWE encrypted key"),
        iv=b64url_decode(iv, "JWE iv"),
        ciphertext=b64url_decode(ciphertext, "JWE ciphertext"),
        tag=b64url_decode(tag, "JWE tag"),
    )


def _rsa_cek(alg: str, key: Any, encrypted_key: bytes, cek_len: int) -> bytes:
    """Unwrap an RSA-OAEP CEK. On failure return a random CEK (RFC 7516 §11.5), so that a bad
    key fails at the tag check like any other tampering, and not earlier."""
    # did-auth-jose 0.1.14 produces "RSA-OAEP-256" with SHA-1 OAEP: try that first, then SHA-256.
    paddings = (_OAEP_SHA1,) if alg == "RSA-OAEP" else (_OAEP_SHA1, _OAEP_SHA256)
    for pad in paddings:
        try:
            cek = key.decrypt(encrypted_key, pad)
        except (ValueError, TypeError):
            continue
        if len(cek) == cek_len:
            return cek  # type: ignore[no-any-return]
    return os.urandom(cek_len)


def decrypt_jwe(
    parsed: ParsedJwe, family: str, private_key: object, limits: Limits = DEFAULT_LIMITS
) -> bytes:
    """Decrypt a parsed JWE with the recipient's private key of `family`.

    `private_key` is a `cryptography` private key (fast path) or a private JWK (converted on every
    call: convert once with `private_key_from_jwk` instead). The alg must fit the family.

    Raises:
        JoseError: on any failure; the cause is in the message, for logs only.
    """
    header = parsed.header
    _check_jwe_header(header)
    if FORBIDDEN_HEADER_MEMBERS.intersection(header):
        raise JoseError("JWE: forbidden header member")
    alg, enc = header["alg"], header["enc"]
    if (alg in RSA_ALGS) != (family == "RSA") or (alg in ECDH_ALGS and family not in ECDH_FAMILIES):
        raise JoseError(f"JWE: alg {alg} does not fit a {family} key")
    cek_len = ENC[enc][0]
    if len(parsed.ciphertext) > limits.max_plaintext + (0 if ENC[enc][3] is None else 16):
        raise JoseError("JWE: plaintext over the limit")
    key = coerce_private_key(family, private_key)
    try:
        if family == "RSA":
            cek = _rsa_cek(alg, key, parsed.encrypted_key, cek_len)
        else:
            cek = ecdh_unwrap_cek(header, family, key, parsed.encrypted_key)
            if len(cek) != cek_len:
                raise JoseError("JWE: CEK has the wrong length")
        plaintext = decrypt_content(
            enc, cek, parsed.iv, parsed.ciphertext, parsed.tag, parsed.protected_b64.encode("ascii")
        )
    except JoseError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise JoseError(f"JWE: decryption failed ({type(exc).__name__})") from None
    if len(plaintext) > limits.max_plaintext:
        raise JoseError("JWE: plaintext over the limit")
    return plaintext


def encrypt_jwe(
    plaintext: bytes,
    family: str,
    public_key: object,
    kid: str,
    *,
    compat_2019: bool = False,
    alg: str | None = None,
    enc: str | None = None,
) -> str:
    """Encrypt `plaintext` to a recipient key of `family`; returns a compact JWE.

    Defaults: RSA -> RSA-OAEP (SHA-1) + A128GCM; X25519/P-256/P-384/secp256k1 -> ECDH-ES + A256GCM.
    The protected header is `{"kid", "alg", "enc"[, "epk"]}`, in that order (the 2019 clients'
    order). `compat_2019=True` insists on what did-auth-jose 0.1.9/0.1.14 can decrypt: an RSA
    recipient, RSA-OAEP and a GCM enc. `alg`/`enc` override the defaults (any supported pair
    that fits the family; "RSA-OAEP-256" here means genuine SHA-256 OAEP).

    Raises:
        JoseError: for a family that cannot receive (Ed25519), a bad key or a bad alg/enc.
    """
    if not isinstance(kid, str) or not kid:
        raise JoseError("JWE: kid must be a non-empty string")
    if not isinstance(plaintext, bytes):
        raise JoseError("JWE: plaintext must be bytes")
    if family not in DEFAULT_ALGS:
        raise JoseError(f"JWE: a {family} key cannot receive encrypted messages")
    alg = alg or DEFAULT_ALGS[family][0]
    enc = enc or DEFAULT_ALGS[family][1]
    if (
        enc not in ENC
        or (alg in RSA_ALGS) != (family == "RSA")
        or (alg not in RSA_ALGS and alg not in ECDH_ALGS)
    ):
        raise JoseError(f"JWE: alg {alg!r} / enc {enc!r} not usable with a {family} key")
    if compat_2019 and (alg != "RSA-OAEP" or not enc.endswith("GCM")):
        raise JoseError("JWE: the 2019 clients only receive RSA-OAEP with AES-GCM")
    key: Any = coerce_public_key(family, public_key)
    header: dict[str, Any] = {"kid": kid, "alg": alg, "enc": enc}
    try:
        if family == "RSA":
            cek = os.urandom(ENC[enc][0])
            pad = _OAEP_SHA1 if alg == "RSA-OAEP" else _OAEP_SHA256
            encrypted_key = key.encrypt(cek, pad)
        else:
            cek, encrypted_key, ephemeral = ecdh_wrap_cek(alg, enc, family, key)
            header["epk"] = public_jwk_from_key(ephemeral)
        protected = b64url_encode(dumps_header(header))
        iv, ciphertext, tag = encrypt_content(enc, cek, plaintext, protected.encode("ascii"))
    except JoseError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm, OverflowError) as exc:
        raise JoseError(f"JWE: encryption failed ({type(exc).__name__})") from None
    return ".".join(
        (
            protected,
            b64url_encode(encrypted_key),
            b64url_encode(iv),
            b64url_encode(ciphertext),
            b64url_encode(tag),
        )
    )


def jwe_kid(parsed: ParsedJwe) -> str | None:
    """The recipient key id named in the protected header, if any (to pick the hub key)."""
    kid = parsed.header.get("kid")
    return kid if isinstance(kid, str) else None
