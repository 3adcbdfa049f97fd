"""ECDSA signature encodings: JOSE `r || s` (RFC 7518 §3.4) and ASN.1 DER (what OpenSSL and the
2019 did-auth-jose clients use for ES256K).

The DER parsing itself is `cryptography`'s (strict DER); this module only converts and checks.
"""

from __future__ import annotations

import logging

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from identity_hub.crypto.common import JoseError

logger = logging.getLogger(__name__)

# Group orders, for range checks and low-S normalisation.
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)

#: Longest DER ECDSA signature for a 256-bit curve: 2 + 2 * (2 + 33) bytes.
MAX_DER_256 = 72


def raw_to_der(signature: bytes, size: int) -> bytes:
    """Convert a JOSE `r || s` signature (each `size` bytes) to DER.

    Raises:
        JoseError: when the length is not `2 * size` or r or s is zero.
    """
    if len(signature) != 2 * size:
        raise JoseError("ECDSA signature has the wrong length")
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    if r == 0 or s == 0:
        raise JoseError("ECDSA signature has a zero component")
    return encode_dss_signature(r, s)


def der_to_rs(signature: bytes) -> tuple[int, int]:
    """Parse a strict-DER ECDSA signature into `(r, s)`.

    Raises:
        JoseError: when it is not canonical DER.
    """
    try:
        r, s = decode_dss_signature(signature)
    except (ValueError, TypeError):
        raise JoseError("ECDSA signature is not DER") from None
    # Re-encoding must give the same bytes: refuses non-minimal integers and trailing data.
    if encode_dss_signature(r, s) != signature:
        raise JoseError("ECDSA signature is not canonical DER")
    return r, s


def der_to_raw(signature: bytes, size: int) -> bytes:
    """Convert a DER ECDSA signature to the JOSE `r || s` form.

    Raises:
        JoseError: when it is not canonical DER or a component does not fit in `size` bytes.
    """
    r, s = der_to_rs(signature)
    try:
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    except OverflowError:
        raise JoseError("ECDSA signature component too large") from None


def low_s(r: int, s: int, order: int) -> tuple[int, int]:
    """Return the signature with `s` in the lower half of the group (BIP-62 / noble default)."""
    return (r, order - s) if s > order // 2 else (r, s)
