"""Strict JSON for untrusted input, and canonical JSON for what the hub writes.

Python's `json` accepts NaN/Infinity, keeps the last of duplicate keys (a second `sub` would win),
turns `1e999999` into `inf`, and accepts NUL and lone surrogates that PostgreSQL `jsonb` rejects.
`loads_strict` refuses all of these and bounds the nesting depth.
"""

from __future__ import annotations

import json
import math
from typing import Any

from identity_hub.errors import BadRequest

MAX_INT_DIGITS = 40


class JsonError(BadRequest):
    default_message = "Malformed JSON"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise JsonError(f"Duplicate key in JSON object: {key[:64]!r}")
        obj[key] = value
    return obj


def _refuse_constant(name: str) -> Any:
    raise JsonError(f"Non-finite number in JSON: {name}")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonError("Number out of range in JSON")
    return value


def _parse_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise JsonError("Integer too long in JSON")
    return int(text)


def _bad_string(s: str) -> bool:
    if "\x00" in s:
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_depth_and_strings(value: Any, max_depth: int) -> None:
    """Walk parsed JSON iteratively; refuse nesting deeper than max_depth and bad strings."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                raise JsonError(f"JSON nested deeper than {max_depth} levels")
            for key, child in item.items():
                if _bad_string(key):
                    raise JsonError("JSON string contains NUL or a lone surrogate")
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
                elif isinstance(child, str) and _bad_string(child):
                    raise JsonError("JSON string contains NUL or a lone surrogate")
        elif isinstance(item, list):
            if depth > max_depth:
                raise JsonError(f"JSON nested deeper than {max_depth} levels")
            for child in item:
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
                elif isinstance(child, str) and _bad_string(child):
                    raise JsonError("JSON string contains NUL or a lone surrogate")
        elif isinstance(item, str) and _bad_string(item):
            raise JsonError("JSON string contains NUL or a lone surrogate")


def loads_strict(data: str | bytes, *, max_depth: int = 64) -> Any:
    """Parse untrusted JSON: finite numbers, no duplicate keys, bounded depth, clean strings.

    Raises:
        JsonError: (a BadRequest) for anything malformed.
    """
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise JsonError("JSON is not valid UTF-8") from None
    try:
        value = json.loads(
            data,
            object_pairs_hook=_no_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except JsonError:
        raise
    except RecursionError:
        raise JsonError(f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, TypeError):
        raise JsonError("Malformed JSON") from None
    check_depth_and_strings(value, max_depth)
    return value


def dumps(value: Any) -> str:
    """Compact JSON with stable key order (what the hub stores and sends)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
