"""Shared pieces of the JOSE layer: the error type, size limits, strict base64url and strict JSON.

Everything here is deliberately strict. A token that a lenient decoder would accept in several
spellings (padding, the standard alphabet, stray bits in the last character, duplicate JSON keys)
is refused, so that exactly one byte string corresponds to each accepted token.
"""

from __future__ import annotations

import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any

from identity_hub.protocol.jsonutil import StrictJsonError, parse_strict

logger = logging.getLogger(__name__)

#: Header members we never honour. `zip` would mean inflating attacker data; `crit` names
#: extensions we do not implement; `jku`/`x5u` would make us fetch URLs; `jwk`/`x5c` would let the
#: sender pick the verification key; `b64` (RFC 7797) changes what is signed.
FORBIDDEN_HEADER_MEMBERS = frozenset({"zip", "crit", "jku", "x5u", "x5c", "jwk", "b64"})

#: Deepest nesting accepted in a JOSE header (the deepest legitimate one is `epk`, depth 2).
MAX_HEADER_DEPTH = 8


class JoseError(Exception):
    """Any failure to parse, verify, decrypt, sign or encrypt.

    The message is meant for logs only. Callers answer every JoseError in the same way, so that a
    client cannot learn which step failed.
    """


@dataclass(frozen=True)
class Limits:
    """Size limits applied before any expensive work is done."""

    max_token_bytes: int = 1_048_576 * 2
    max_plaintext: int = 1_048_576
    max_header_bytes: int = 8192


DEFAULT_LIMITS = Limits()

# Maps the base64url alphabet to the standard one, and `+`, `/` and `=` (not base64url, but valid
# for binascii) to `!`, which binascii's strict mode refuses like every other foreign byte.
_TO_STD_ALPHABET = bytes.maketrans(b"-_+/=", b"+/!!!")
_FROM_STD_ALPHABET = bytes.maketrans(b"+/", b"-_")
_PADDING = (b"", b"", b"==", b"=")
_URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# The characters allowed last in an unpadded group of 2 or 3 characters: the bits below the data
# must be zero (value & 0x0F == 0, resp. value & 0x03 == 0).
_CANONICAL_LAST = {
    2: frozenset(c for i, c in enumerate(_URL_ALPHABET) if not i & 0x0F),
    3: frozenset(c for i, c in enumerate(_URL_ALPHABET) if not i & 0x03),
}


def as_ascii_bytes(value: str | bytes, what: str) -> bytes:
    """Return `value` as ASCII bytes, or raise JoseError when it holds anything else."""
    if isinstance(value, bytes):
        if not value.isascii():
            raise JoseError(f"{what}: not ASCII")
        return value
    if isinstance(value, str):
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            raise JoseError(f"{what}: not ASCII") from None
    raise JoseError(f"{what}: expected str or bytes, got {type(value).__name__}")


def b64url_decode(value: str | bytes, what: str = "base64url") -> bytes:
    """Decode unpadded base64url strictly (RFC 7515 §2).

    Refuses padding, the `+`/`/` alphabet, whitespace, other characters, impossible lengths and
    non-zero spare bits in the last character.

    Raises:
        JoseError: on any deviation.
    """
    if isinstance(value, str):
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise JoseError(f"{what}: not ASCII") from None
    elif isinstance(value, bytes):
        raw = value
    else:
        raise JoseError(f"{what}: expected str or bytes, got {type(value).__name__}")
    rem = len(raw) & 3
    if rem:
        if rem == 1:
            raise JoseError(f"{what}: impossible base64url length")
        if raw[-1] not in _CANONICAL_LAST[rem]:
            raise JoseError(f"{what}: non-canonical base64url")
    # One pass: translate (foreign bytes, non-ASCII included, stay foreign or become `!`), then
    # binascii's strict mode refuses anything outside the standard alphabet.
    try:
        return binascii.a2b_base64(raw.translate(_TO_STD_ALPHABET) + _PADDING[rem],
                                   strict_mode=True)
    except (binascii.Error, ValueError):
        raise JoseError(f"{what}: not base64url") from None


def b64url_encode(data: bytes) -> str:
    """Encode bytes as unpadded base64url text."""
    return (
        binascii.b2a_base64(data, newline=False)
        .translate(_FROM_STD_ALPHABET)
        .rstrip(b"=")
        .decode("ascii")
    )


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def strict_json_loads(data: bytes | str, what: str, max_depth: int = MAX_HEADER_DEPTH) -> Any:
    """Parse JSON strictly (`identity_hub.protocol.jsonutil.parse_strict`): UTF-8, no duplicate
    keys, finite numbers, bounded depth, no NUL or lone surrogate in strings.

    Raises:
        JoseError: when the text is not such JSON.
    """
    try:
        return parse_strict(data, max_depth=max_depth)
    except StrictJsonError as exc:
        raise JoseError(f"{what}: {exc}") from None


def decode_protected_header(b64: bytes, limits: Limits, what: str) -> dict[str, Any]:
    """Decode and parse a base64url protected header into a JSON object, refusing oversize input.

    Raises:
        JoseError: when the header is too long, not base64url, not a JSON object or carries a
            member from FORBIDDEN_HEADER_MEMBERS.
    """
    # Checked on the encoded length, before decoding: 4 characters carry 3 bytes.
    if len(b64) > (limits.max_header_bytes * 4 + 2) // 3:
        raise JoseError(f"{what}: header too large")
    if not b64:
        raise JoseError(f"{what}: empty protected header")
    header = strict_json_loads(b64url_decode(b64, what), what)
    if not isinstance(header, dict):
        raise JoseError(f"{what}: header is not a JSON object")
    check_header_members(header, what)
    return header


def check_header_members(header: dict[str, Any], what: str) -> None:
    """Refuse forbidden members and a non-string `alg` or `kid`.

    Raises:
        JoseError: when the header is unacceptable.
    """
    bad = FORBIDDEN_HEADER_MEMBERS.intersection(header)
    if bad:
        raise JoseError(f"{what}: header member {sorted(bad)[0]!r} is not accepted")
    if "kid" in header and not isinstance(header["kid"], str):
        raise JoseError(f"{what}: kid is not a string")


def dumps_header(header: dict[str, Any]) -> bytes:
    """Serialise a header compactly (UTF-8, no spaces, member order kept).

    Raises:
        JoseError: when the header cannot be serialised as JSON.
    """
    try:
        return _ENCODER.encode(header).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        raise JoseError("header is not serialisable as JSON") from None
