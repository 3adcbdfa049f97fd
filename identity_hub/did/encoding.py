"""Small encoders shared by the DID methods: base64url, base58btc multibase, varints, strict JSON,
and the generic DID syntax check."""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any

import base58

from identity_hub.did.errors import InvalidDid, InvalidDocument
from identity_hub.protocol.jsonutil import StrictJsonError, parse_strict

logger = logging.getLogger(__name__)

MAX_DID_LENGTH = 16384
"""Longest DID accepted (long-form did:ion DIDs are 1-3 KB; the delta limit bounds them)."""

MAX_JSON_DEPTH = 64

_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")
# DID Core ABNF: did:<method-name>:<method-specific-id>, idchar = ALPHA / DIGIT / "." / "-" / "_"
# / pct-encoded, and ":" only between idchars.
_DID_RE = re.compile(
    r"did:([a-z0-9]+):((?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2}|:)*(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2}))"
)


def is_b64url(text: str) -> bool:
    """True if `text` is non-empty and uses only the base64url alphabet (no padding)."""
    return bool(_B64URL_RE.fullmatch(text))


def b64url_encode(data: bytes) -> str:
    """base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict base64url: only `[A-Za-z0-9_-]`, no padding, canonical trailing bits.

    Raises:
        ValueError: anything else.
    """
    if not isinstance(text, str) or not is_b64url(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_encode(data) != text:
        raise ValueError("non-canonical base64url")
    return data


def b64url_decode_lenient(text: str) -> bytes:
    """base64url as Node's `base64url` package decodes it (Sidetree's `Encoder`): the alphabet is
    checked, but a dangling final character and non-zero trailing bits are ignored.

    Raises:
        ValueError: a character outside the base64url alphabet, or an empty string.
    """
    if not isinstance(text, str) or not is_b64url(text):
        raise ValueError("not base64url")
    if len(text) % 4 == 1:
        text = text[:-1]
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def b64url_uint(value: int) -> str:
    """A JWK Base64urlUInt (big-endian, minimal length, at least one byte)."""
    return b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, max_bytes: int = 9, *, strict: bool = True) -> tuple[int, int]:
    """Decode an unsigned LEB128 varint at the start of `data`.

    Returns:
        (value, number of bytes consumed)

    Raises:
        ValueError: truncated or over-long encodings; non-minimal ones too when `strict`.
    """
    value = 0
    for i, byte in enumerate(data[:max_bytes]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if strict and i > 0 and byte == 0:
                raise ValueError("non-minimal varint")
            return value, i + 1
    raise ValueError("truncated varint")


def multibase_b58_decode(value: str) -> bytes:
    """Decode a base58btc multibase value (`z...`).

    Raises:
        InvalidDid: another multibase prefix, an empty value or a character outside the alphabet.
    """
    if not isinstance(value, str) or not value.startswith("z") or len(value) < 2:
        raise InvalidDid("the multibase value must be base58btc ('z' prefix)")
    try:
        return base58.b58decode(value[1:].encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidDid("the multibase value is not valid base58btc") from exc


def multibase_b58_encode(data: bytes) -> str:
    """`z` + base58btc(data)."""
    return "z" + base58.b58encode(data).decode("ascii")


def parse_did(did: str) -> tuple[str, str]:
    """Check the generic DID syntax and split the DID.

    Returns:
        (method name, method-specific id)

    Raises:
        InvalidDid: not a DID (a DID URL with path, query or fragment is not a DID either).
    """
    if not isinstance(did, str):
        raise InvalidDid("a DID must be a string")
    if len(did) > MAX_DID_LENGTH:
        raise InvalidDid(f"DID longer than {MAX_DID_LENGTH} characters")
    match = _DID_RE.fullmatch(did)
    if match is None:
        raise InvalidDid("not a valid DID")
    return match.group(1), match.group(2)


def split_kid(kid: str) -> tuple[str, str]:
    """Split a key id `did#fragment` at the first `#`.

    Raises:
        InvalidDid: no `#`, an empty fragment, or an invalid DID part.
    """
    if not isinstance(kid, str) or "#" not in kid:
        raise InvalidDid("a key id must be a DID URL with a fragment (did#key)")
    did, fragment = kid.split("#", 1)
    if not fragment:
        raise InvalidDid("empty key fragment")
    parse_did(did)
    return did, fragment


def strict_json_loads(data: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted JSON (`identity_hub.protocol.jsonutil.parse_strict`).

    Raises:
        InvalidDocument: anything that is not such JSON (including invalid UTF-8).
    """
    try:
        return parse_strict(data, max_depth=max_depth)
    except StrictJsonError as exc:
        raise InvalidDocument(f"response is not valid JSON: {exc}") from None


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars), faster than `copy.deepcopy`."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) for v in value]
    return value
