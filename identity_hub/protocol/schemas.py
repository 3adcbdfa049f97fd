"""JSON Schemas of the protocol's messages and the hub's own objects (`schemas/json/`), and the
one place where a schema failure becomes a `BadRequest`.

`validate_request(obj)` checks a request's envelope (`@context`, `@type`, `iss`, `aud`, `sub`),
then the schema of its `@type`, and raises the protocol's error for the first failing property:
`MissingParameter`/`WrongType`/`BadRequest` whose `target` is its JSON path (`query.object_id`,
`query.where[1].op`; `query.context, query.type` when one of the pair is missing). The messages
are the hub's own, never jsonschema's text. Validators are compiled once per process; `$ref`s
resolve only within `schemas/json/` (nothing is ever fetched).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

from identity_hub.errors import PROTOCOL_CONTEXT, BadRequest, MissingParameter, WrongType
from identity_hub.protocol.commit import parse_time

logger = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "json"
BASE_URI = "https://schemas.identity-hub.invalid/json/"
REQUEST_TYPES = ("WriteRequest", "ObjectQueryRequest", "CommitQueryRequest", "AuditQueryRequest")
RESPONSE_TYPES = ("WriteResponse", "ObjectQueryResponse", "CommitQueryResponse",
                  "AuditQueryResponse", "ErrorResponse")
OBJECT_SCHEMAS = ("PermissionGrant", "Profile", "JsonLdObject", "CommitHeader")
# Which failing property is reported first: the order in which the hub checks them.
_FIRST = ("@context", "@type", "iss", "aud", "sub", "commit", "query", "fields")

_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def is_iso_date_or_time(value: Any) -> bool:
    """An ISO-8601 date (`2026-11-21`) or date-time (`2026-11-21T18:30:06.289Z`)."""
    if not isinstance(value, str):
        return False
    m = _ISO_DATE.match(value)
    if m:
        try:
            date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError:
            return False
        return True
    return is_date_time(value)


def is_date_time(value: Any) -> bool:
    """An ISO-8601 date-time the hub can read (`protocol.commit.parse_time`)."""
    if not isinstance(value, str) or "T" not in value.upper():
        return False
    try:
        parse_time(value)
    except (ValueError, OverflowError):
        return False
    return True


_FORMATS = FormatChecker(formats=())
# A format constrains strings only (the JSON type is the "type" keyword's business).
_FORMATS.checks("date-time")(lambda v: not isinstance(v, str) or is_date_time(v))
_FORMATS.checks("date-time-or-date")(lambda v: not isinstance(v, str) or is_iso_date_or_time(v))


@functools.cache
def _registry() -> Registry:
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((BASE_URI + path.name, Resource.from_contents(contents)))
    return Registry().with_resources(resources)


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """The compiled validator of `schemas/json/<name>.json` (one per process).

    Raises:
        KeyError: no such schema.
    """
    path = SCHEMA_DIR / f"{name}.json"
    if not path.is_file():
        raise KeyError(name)
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry(), format_checker=_FORMATS)


def _path(parts: Iterable[Any], base: str) -> str:
    out = base
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _priority(error: ValidationError) -> tuple[int, int]:
    path = list(error.absolute_path)
    first = path[0] if path else None
    if first is None and error.validator == "required":
        missing = [p for p in error.validator_value if p not in error.instance]
        first = missing[0] if missing else None
    rank = _FIRST.index(first) if first in _FIRST else len(_FIRST)
    return rank, len(path)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


_FORMAT_WORDS = {"date-time": "ISO-8601 date-time",
                 "date-time-or-date": "ISO-8601 date or date-time"}


def _branch(error: ValidationError) -> ValidationError:
    """Of an anyOf/oneOf failure, the error of the branch meant for the value: the branches that
    fail only on the value's JSON type are not it."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        depth = len(error.absolute_path)
        meant = [e for e in error.context
                 if not (e.validator == "type" and len(e.absolute_path) == depth)
                 and not (e.validator in ("anyOf", "oneOf") and len(e.absolute_path) == depth
                          and all(s.validator == "type" for s in e.context))]
        if not meant:
            return error
        error = max(meant, key=lambda e: len(e.absolute_path))
    return error


def _to_bad_request(error: ValidationError, base: str) -> BadRequest:
    """The protocol error for one jsonschema error (our wording, the failing path as target)."""
    error = _branch(error)
    target = _path(error.absolute_path, base)
    kind, value, instance = error.validator, error.validator_value, error.instance
    if kind in ("anyOf", "oneOf"):  # no branch takes a value of this JSON type
        return WrongType(target=target or None)
    if "propertyNames" in error.schema_path:
        return BadRequest(f"{_short(instance)} is not a valid field path in {target}",
                          target=target or None)
    if kind == "required":
        name = next((p for p in value if p not in instance), value[0])
        return MissingParameter(target=_path([*error.absolute_path, name], base))
    if kind == "dependentRequired":
        pairs = _pairs(value, instance)
        return BadRequest(f"{' and '.join(pairs)} must be given together",
                          target=", ".join(_path([*error.absolute_path, p], base)
                                           for p in pairs))
    if kind == "type":
        return WrongType(target=target or None)
    if kind == "additionalProperties":
        extra = sorted(k for k in instance if k not in error.schema.get("properties", {}))
        where = target or "the request"
        return BadRequest(f"Unexpected member {_short(extra[0]) if extra else ''} in {where}",
                          target=target or None)
    if target == "@context":
        return BadRequest(f"@context must be {PROTOCOL_CONTEXT}", target="@context")
    if target == "@type" and kind in ("enum", "const"):
        return BadRequest(f"Request format unknown: {_short(instance)}", target="@type")
    name = target or "the request"
    messages = {
        "enum": lambda: f"{name} must be one of {', '.join(map(str, value))[:200]}",
        "const": lambda: f"{name} must be {_short(value)}",
        "maxItems": lambda: f"At most {value} items in {name}",
        "minItems": lambda: f"At least {value} item{'s' if value != 1 else ''} in {name}",
        "maxProperties": lambda: f"At most {value} members in {name}",
        "minProperties": lambda: f"{name} must not be empty",
        "maxLength": lambda: f"{name} is too long (at most {value} characters)",
        "minLength": lambda: f"{name} must not be empty",
        "maximum": lambda: f"{name} must be at most {value}",
        "minimum": lambda: f"{name} must be at least {value}",
        "pattern": lambda: f"{name} is not well-formed",
        "format": lambda: f"{name} is not a valid {_FORMAT_WORDS.get(value, value)}",
        "propertyNames": lambda: f"{name} has a member name that is not allowed",
    }
    make = messages.get(kind)
    return BadRequest(make() if make else f"{name} is invalid", target=target or None)


def _pairs(value: dict[str, list[str]], instance: dict[str, Any]) -> list[str]:
    for key, deps in value.items():
        if key in instance and any(d not in instance for d in deps):
            return sorted({key, *deps})
    return sorted(value)


def check(name: str, obj: Any, *, base: str = "") -> None:
    """Validate `obj` against `schemas/json/<name>.json`; `base` prefixes error targets (e.g.
    `commit.payload` for a PermissionGrant payload).

    Raises:
        BadRequest: (or MissingParameter / WrongType) for the first failing property.
    """
    errors = list(validator(name).iter_errors(obj))
    if errors:
        raise _to_bad_request(min(errors, key=_priority), base)


# --- the fast path -------------------------------------------------------------------------------
# jsonschema walks $refs through its registry on every call (~250-550 µs a request, half the CPU
# budget of an authenticated write). The same schemas, with their $refs inlined, compiled to Python
# by fastjsonschema check a valid request in a few µs; only a request that fails is checked again
# by jsonschema, which names the failing property. Both read the same files in schemas/json.


def _inline(node: Any, doc: dict[str, Any], docs: dict[str, dict[str, Any]]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            file, _, fragment = node["$ref"].partition("#")
            target_doc = docs[file] if file else doc
            target: Any = target_doc
            for part in (x for x in fragment.split("/") if x):
                target = target[part]
            resolved = _inline(target, target_doc, docs)
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {"allOf": [resolved, _inline(rest, doc, docs)]} if rest else resolved
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("$defs", "$id", "$schema", "title", "description"):
                continue
            if key == "dependentRequired":  # its draft-07 spelling
                out["dependencies"] = value
            elif key == "pattern":
                # fastjsonschema turns every `$` into `\Z`: escape all but the final anchor.
                body, anchor = (value[:-1], "$") if value.endswith("$") else (value, "")
                out[key] = body.replace("\\$", "$").replace("$", "\\$") + anchor
            else:
                out[key] = _inline(value, doc, docs)
        return out
    if isinstance(node, list):
        return [_inline(item, doc, docs) for item in node]
    return node


@functools.cache
def _fast(name: str) -> Callable[[Any], Any]:
    """A compiled validator of `name` (raises fastjsonschema.JsonSchemaException when invalid)."""
    docs = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in SCHEMA_DIR.glob("*.json")}
    doc = docs[f"{name}.json"]
    schema = _inline(doc, doc, docs)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    return fastjsonschema.compile(schema, formats={
        "date-time": lambda v: not isinstance(v, str) or is_date_time(v),
        "date-time-or-date": lambda v: not isinstance(v, str) or is_iso_date_or_time(v),
    })


def _valid_fast(name: str, obj: Any) -> bool:
    try:
        _fast(name)(obj)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def validate_request(obj: Any) -> None:
    """Check a request against its schema before any handler sees it.

    Raises:
        BadRequest: (or MissingParameter / WrongType) with the failing property's JSON path as
            target; `@type` for an unknown request type.
    """
    if not isinstance(obj, dict):
        raise BadRequest("The request must be a JSON object")
    type_ = obj.get("@type")
    if type_ in REQUEST_TYPES and _valid_fast("Request", obj) and _valid_fast(type_, obj):
        return
    check("Request", obj)
    check(obj["@type"], obj)


def validate_response(obj: Any) -> None:
    """Check a response the hub is about to send (tests and debugging).

    Raises:
        BadRequest: as `check`.
    """
    if not isinstance(obj, dict) or obj.get("@type") not in RESPONSE_TYPES:
        raise BadRequest("Not a protocol response", target="@type")
    check(obj["@type"], obj)
