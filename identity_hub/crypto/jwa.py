"""JWE algorithms (RFC 7518) on `cryptography` primitives: content encryption (AES-GCM,
AES-CBC-HMAC-SHA2), the Concat KDF, ECDH-ES key agreement and AES key wrap.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from identity_hub.crypto.common import JoseError, b64url_decode
from identity_hub.crypto.keys import FAMILY_TO_CURVE, public_key_from_jwk

logger = logging.getLogger(__name__)

#: enc -> (CEK length in bytes, IV length, tag length, HMAC hash or None for GCM)
ENC: dict[str, tuple[int, int, int, Any]] = {
    "A128GCM": (16, 12, 16, None),
    "A192GCM": (24, 12, 16, None),
    "A256GCM": (32, 12, 16, None),
    "A128CBC-HS256": (32, 16, 16, hashlib.sha256),
    "A192CBC-HS384": (48, 16, 24, hashlib.sha384),
    "A256CBC-HS512": (64, 16, 32, hashlib.sha512),
}

#: ECDH-ES variants -> key-wrap key length in bytes (0 = direct key agreement).
ECDH_ALGS = {"ECDH-ES": 0, "ECDH-ES+A128KW": 16, "ECDH-ES+A192KW": 24, "ECDH-ES+A256KW": 32}
RSA_ALGS = frozenset({"RSA-OAEP", "RSA-OAEP-256"})
ECDH_FAMILIES = frozenset({"X25519", "P-256", "P-384", "secp256k1"})

#: The largest CBC overhead (a full padding block): used for limits before decrypting.
MAX_ENC_OVERHEAD = 16


def encrypt_content(
    enc: str, cek: bytes, plaintext: bytes, aad: bytes
) -> tuple[bytes, bytes, bytes]:
    """Encrypt with content-encryption algorithm `enc`; returns `(iv, ciphertext, tag)`."""
    _key_len, iv_len, tag_len, digest = ENC[enc]
    iv = os.urandom(iv_len)
    if digest is None:
        sealed = AESGCM(cek).encrypt(iv, plaintext, aad)
        return iv, sealed[:-tag_len], sealed[-tag_len:]
    mac_key, enc_key = cek[: len(cek) // 2], cek[len(cek) // 2 :]
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return iv, ciphertext, _cbc_tag(digest, mac_key, aad, iv, ciphertext, tag_len)


def _cbc_tag(digest: Any, mac_key: bytes, aad: bytes, iv: bytes, ct: bytes, tag_len: int) -> bytes:
    mac = hmac.new(mac_key, aad, digest)
    mac.update(iv)
    mac.update(ct)
    mac.update(struct.pack(">Q", len(aad) * 8))
    return mac.digest()[:tag_len]


def decrypt_content(
    enc: str, cek: bytes, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes
) -> bytes:
    """Authenticate and decrypt; the tag is checked before any CBC padding is looked at.

    Raises:
        JoseError: on a wrong IV or tag length, or when authentication fails.
    """
    key_len, iv_len, tag_len, digest = ENC[enc]
    if len(cek) != key_len or len(iv) != iv_len or len(tag) != tag_len:
        raise JoseError("JWE: wrong key, IV or tag length")
    try:
        if digest is None:
            return AESGCM(cek).decrypt(iv, ciphertext + tag, aad)
        if not ciphertext or len(ciphertext) % 16:
            raise JoseError("JWE: CBC ciphertext length")
        mac_key, enc_key = cek[: key_len // 2], cek[key_len // 2 :]
        expected = _cbc_tag(digest, mac_key, aad, iv, ciphertext, tag_len)
        if not hmac.compare_digest(expected, tag):
            raise JoseError("JWE: decryption failed")
        decryptor = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except (InvalidTag, ValueError, TypeError, OverflowError):
        raise JoseError("JWE: decryption failed") from None


def concat_kdf(z: bytes, algorithm_id: str, key_len: int, apu: bytes, apv: bytes) -> bytes:
    """Concat KDF with SHA-256 as JWA uses it (RFC 7518 §4.6.2), deriving `key_len` bytes."""
    alg_id = algorithm_id.encode("ascii")
    other_info = b"".join(
        (
            struct.pack(">I", len(alg_id)),
            alg_id,
            struct.pack(">I", len(apu)),
            apu,
            struct.pack(">I", len(apv)),
            apv,
            struct.pack(">I", key_len * 8),
        )
    )
    return ConcatKDFHash(hashes.SHA256(), key_len, other_info).derive(z)


def _party_info(header: Mapping[str, Any], name: str) -> bytes:
    value = header.get(name)
    if value is None:
        return b""
    if not isinstance(value, str):
        raise JoseError(f"JWE: {name} is not a string")
    return b64url_decode(value, f"JWE {name}")


def epk_public_key(epk: object, family: str) -> Any:
    """Import the sender's ephemeral public key; it must be a public key of the recipient's curve.

    Raises:
        JoseError: for anything else (oct, private members, another curve, a point off the curve).
    """
    if not isinstance(epk, dict):
        raise JoseError("JWE: epk is not an object")
    epk_family, key = public_key_from_jwk(epk)
    if epk_family != family:
        raise JoseError("JWE: epk is not on the recipient's curve")
    return key


def ecdh_shared_secret(family: str, private_key: Any, public_key: Any) -> bytes:
    """ECDH (X25519 or an EC curve); refuses low-order and invalid points.

    Raises:
        JoseError: when the exchange fails.
    """
    try:
        if family == "X25519":
            return private_key.exchange(public_key)  # type: ignore[no-any-return]
        return private_key.exchange(ec.ECDH(), public_key)  # type: ignore[no-any-return]
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise JoseError("JWE: key agreement failed") from None


def ecdh_unwrap_cek(
    header: Mapping[str, Any], family: str, private_key: Any, encrypted_key: bytes
) -> bytes:
    """Derive (ECDH-ES) or unwrap (ECDH-ES+A*KW) the CEK of a JWE addressed to `private_key`.

    Raises:
        JoseError: on a bad epk, a failed agreement or a failed unwrap.
    """
    alg, enc = header["alg"], header["enc"]
    if "epk" not in header:
        raise JoseError("JWE: ECDH-ES without epk")
    z = ecdh_shared_secret(family, private_key, epk_public_key(header["epk"], family))
    apu, apv = _party_info(header, "apu"), _party_info(header, "apv")
    kw_len = ECDH_ALGS[alg]
    if kw_len == 0:
        if encrypted_key:
            raise JoseError("JWE: ECDH-ES direct with an encrypted key")
        return concat_kdf(z, enc, ENC[enc][0], apu, apv)
    kek = concat_kdf(z, alg, kw_len, apu, apv)
    try:
        return aes_key_unwrap(kek, encrypted_key)
    except (InvalidUnwrap, ValueError):
        raise JoseError("JWE: key unwrap failed") from None


def ecdh_wrap_cek(alg: str, enc: str, family: str, recipient: Any) -> tuple[bytes, bytes, Any]:
    """Make an ephemeral key and the CEK for `recipient`; returns `(cek, encrypted_key, ephemeral)`.

    Raises:
        JoseError: when the exchange fails.
    """
    if family == "X25519":
        ephemeral: Any = x25519.X25519PrivateKey.generate()
    else:
        ephemeral = ec.generate_private_key(FAMILY_TO_CURVE[family])
    z = ecdh_shared_secret(family, ephemeral, recipient)
    kw_len = ECDH_ALGS[alg]
    if kw_len == 0:
        return concat_kdf(z, enc, ENC[enc][0], b"", b""), b"", ephemeral
    cek = os.urandom(ENC[enc][0])
    return cek, aes_key_wrap(concat_kdf(z, alg, kw_len, b"", b""), cek), ephemeral
