"""Strict JSON for untrusted input, and canonical JSON for what the hub writes.

Python's `json` accepts NaN/Infinity, keeps the last of duplicate keys (a second `sub` would win),
turns `1e999999` into `inf`, and accepts NUL and lone surrogates that PostgreSQL `jsonb` rejects.
`parse_strict` refuses all of these and bounds the nesting depth; it is the one strict parser of
the project (request bodies here, JOSE headers in `crypto`, DID documents in `did` wrap it with
their own error types).

Numbers of a commit payload (docs/protocol.md, "Numbers"), so that the fold, the canonical form
and every backend hold one value: integer literals are exact (at most 40 digits); other numbers
are IEEE doubles, as JavaScript reads them. A negative zero (`-0`, `-0.0`, `-0e5`, or `-1e-400`,
which underflows to it) is refused: PostgreSQL `jsonb` (numeric has no -0), `JSON.stringify` and
the automerge fold all drop its sign, SQLite's JSON text keeps it. A double of 1e16 or more in
magnitude (always integral) is the integer its shortest decimal names, as `jsonb` gives it back
(Python would write "1e+16"); one of 1e40 or more is refused like a 41-digit integer. That is
`numbers="payload"`; `"stored"` reads a payload stored before these rules alike but with a
negative zero as 0 (never refusing: the fold cannot refuse a stored commit); `"as_is"` (the
default: requests, JOSE, DID documents) keeps what Python's `json` reads.
"""

from __future__ import annotations

import decimal
import json
import math
from typing import Any, Literal

from identity_hub.errors import BadRequest

MAX_INT_DIGITS = 40


class StrictJsonError(ValueError):
    """Not strict JSON; the message says why (safe to show a client)."""


class JsonError(BadRequest):
    default_message = "Malformed JSON"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise StrictJsonError("Duplicate key in JSON object")
    return obj


def _refuse_constant(name: str) -> Any:
    raise StrictJsonError(f"Non-finite number in JSON: {name}")


NumberPolicy = Literal["as_is", "payload", "stored"]
# Python writes a float of this magnitude or more with an exponent ("1e+16"), and PostgreSQL
# `jsonb` gives it back as a plain integer ("10000000000000000"); every such double is integral.
_EXPONENT_FLOATS = 1e16
_MAX_NUMBER = 10.0**MAX_INT_DIGITS
NEGATIVE_ZERO_MESSAGE = "Negative zero in JSON (-0, -0.0 or an underflow to it): write 0"


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError("Number out of range in JSON")
    return value


def _parse_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise StrictJsonError("Integer too long in JSON")
    return int(text)


def _as_integer(value: float) -> int:
    """A double of 1e16 or more in magnitude as the integer its shortest decimal names (what
    PostgreSQL `jsonb` keeps of "1e+16": 10000000000000000)."""
    return int(decimal.Decimal(repr(value)))


def _payload_float(text: str) -> float | int:
    value = _parse_float(text)
    if value == 0.0 and text[0] == "-":
        raise StrictJsonError(NEGATIVE_ZERO_MESSAGE)
    if abs(value) >= _EXPONENT_FLOATS:
        if abs(value) >= _MAX_NUMBER:
            raise StrictJsonError(f"Number too large in JSON (at most {MAX_INT_DIGITS} digits)")
        return _as_integer(value)
    return value


def _payload_int(text: str) -> int:
    if text == "-0":
        raise StrictJsonError(NEGATIVE_ZERO_MESSAGE)
    return _parse_int(text)


def _stored_float(text: str) -> float | int:
    value = _parse_float(text) + 0.0  # -0.0 + 0.0 is 0.0 (IEEE 754 round-to-nearest)
    return _as_integer(value) if abs(value) >= _EXPONENT_FLOATS else value


def _decoder(parse_float: Any, parse_int: Any) -> json.JSONDecoder:
    return json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant,
                            parse_float=parse_float, parse_int=parse_int)


# (`-0` as an integer literal is int("-0") == 0 already.)
_DECODERS: dict[str, json.JSONDecoder] = {
    "as_is": _decoder(_parse_float, _parse_int),
    "payload": _decoder(_payload_float, _payload_int),
    "stored": _decoder(_stored_float, _parse_int),
}


def _bad_string(s: str) -> bool:
    if "\x00" in s:
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_depth_and_strings(value: Any, max_depth: int, *, strings: bool = True) -> None:
    """Walk parsed JSON iteratively; refuse nesting deeper than max_depth and bad strings.

    Raises:
        StrictJsonError
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                raise StrictJsonError(f"JSON nested deeper than {max_depth} levels")
            if strings and any(_bad_string(k) for k in item):
                raise StrictJsonError("JSON string contains NUL or a lone surrogate")
            children: Any = item.values()
        elif isinstance(item, list):
            if depth > max_depth:
                raise StrictJsonError(f"JSON nested deeper than {max_depth} levels")
            children = item
        else:
            if strings and isinstance(item, str) and _bad_string(item):
                raise StrictJsonError("JSON string contains NUL or a lone surrogate")
            continue
        for child in children:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
            elif strings and isinstance(child, str) and _bad_string(child):
                raise StrictJsonError("JSON string contains NUL or a lone surrogate")


def parse_strict(data: str | bytes, *, max_depth: int = 64,
                 numbers: NumberPolicy = "as_is") -> Any:
    """Parse untrusted JSON: UTF-8, finite numbers, no duplicate keys, bounded depth, strings
    without NUL or lone surrogates; numbers by `numbers` (module doc: "payload" for a commit
    payload that arrives, "stored" for one the fold reads back).

    Raises:
        StrictJsonError: for anything else.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise StrictJsonError("JSON is not valid UTF-8") from None
    try:
        value = _DECODERS[numbers].decode(data)
    except StrictJsonError:
        raise
    except RecursionError:
        raise StrictJsonError(f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, TypeError):
        raise StrictJsonError("Malformed JSON") from None
    # The decoder refuses raw control characters, so NUL and lone surrogates can only come from
    # escapes: look at the strings only when there is one. Every nesting level opens with `{` or
    # `[`, so when the text holds no more of them than max_depth (counting those inside strings
    # too), no value can be nested too deep and the walk has nothing to find.
    strings = "\\u" in data
    if strings or data.count("{") + data.count("[") > max_depth:
        check_depth_and_strings(value, max_depth, strings=strings)
    return value


def loads_strict(data: str | bytes, *, max_depth: int = 64,
                 numbers: NumberPolicy = "as_is") -> Any:
    """`parse_strict` for protocol messages.

    Raises:
        JsonError: (a BadRequest) for anything malformed.
    """
    try:
        return parse_strict(data, max_depth=max_depth, numbers=numbers)
    except StrictJsonError as exc:
        raise JsonError(str(exc)) from None


def dumps(value: Any) -> str:
    """Compact JSON with stable key order (what the hub stores and sends)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
