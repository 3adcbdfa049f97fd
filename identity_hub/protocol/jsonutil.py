"""Strict JSON for untrusted input, and canonical JSON for what the hub writes.

Python's `json` accepts NaN/Infinity, keeps the last of duplicate keys (a second `sub` would win),
turns `1e999999` into `inf`, and accepts NUL and lone surrogates that PostgreSQL `jsonb` rejects.
`parse_strict` refuses all of these and bounds the nesting depth; it is the one strict parser of
the project (request bodies here, JOSE headers in `crypto`, DID documents in `did` wrap it with
their own error types).
"""

from __future__ import annotations

import json
import math
from typing import Any

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


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJsonError("Number out of range in JSON")
    return value


def _parse_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise StrictJsonError("Integer too long in JSON")
    return int(text)


_DECODER = json.JSONDecoder(
    object_pairs_hook=_no_duplicates,
    parse_constant=_refuse_constant,
    parse_float=_parse_float,
    parse_int=_parse_int,
)


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


def parse_strict(data: str | bytes, *, max_depth: int = 64) -> Any:
    """Parse untrusted JSON: UTF-8, finite numbers, no duplicate keys, bounded depth, strings
    without NUL or lone surrogates.

    Raises:
        StrictJsonError: for anything else.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise StrictJsonError("JSON is not valid UTF-8") from None
    try:
        value = _DECODER.decode(data)
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


def loads_strict(data: str | bytes, *, max_depth: int = 64) -> Any:
    """`parse_strict` for protocol messages.

    Raises:
        JsonError: (a BadRequest) for anything malformed.
    """
    try:
        return parse_strict(data, max_depth=max_depth)
    except StrictJsonError as exc:
        raise JsonError(str(exc)) from None


def dumps(value: Any) -> str:
    """Compact JSON with stable key order (what the hub stores and sends)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
