"""Rich object queries: ObjectQueryRequest's `where` / `sort` / `limit` extension (docs/queries.md):
what a query may say, and its cursor. `storage/query_sql.py` compiles it to SQL.

`parse_rich_query(query)` checks a request's query and returns a `RichQuery` (with the position
its `skip_token` names); `query_sql.run_object_query(conn, rq, …)` returns a page and the next
`skip_token`; `where_from_cli` reads command-line conditions (`numTracks>3`).

Semantics, the same on both databases (a property test compares them with a Python filter):
a condition's JSON type is the query value's: a number matches numbers only (3 == 3.0), a
string strings only, a boolean booleans only. Ranges take numbers, or ISO dates compared as
strings in code point order. Paths address object members only (arrays are not traversed).
A sort on a data field puts numbers first, then strings, then everything else (absent last);
ties are broken by object_id in the direction of the last key. The cursor holds the last row's
sort values and object_id, so creates and deletes between pages move nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from identity_hub.errors import BadRequest, MissingParameter, WrongType
from identity_hub.protocol.commit import parse_time
from identity_hub.protocol.schemas import is_iso_date_or_time
from identity_hub.storage.tables import objects

logger = logging.getLogger(__name__)

OPERATORS = ("eq", "in", "lt", "lte", "gt", "gte", "exists", "prefix")
RANGES = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
TIME_FIELDS = {"created_at": objects.c.created_at_us, "updated_at": objects.c.updated_at_us}
TEXT_FIELDS = {"created_by": objects.c.created_by}
SEGMENT = re.compile(r"^[A-Za-z_@$][A-Za-z0-9_@$:-]{0,63}$")
MAX_SAFE_NUMBER = 2 ** 53
TOKEN_KIND = "r"


@dataclasses.dataclass(frozen=True)
class QueryLimits:
    """What one query may ask for (the JSON Schema in schemas/json/ says the same)."""

    max_conditions: int = 16
    max_path_depth: int = 8
    max_in: int = 100
    max_limit: int = 1000
    max_sort_keys: int = 4
    max_string: int = 1024


DEFAULT_LIMITS = QueryLimits()


@dataclasses.dataclass(frozen=True)
class Field:
    """`created_at`/`updated_at`/`created_by`, or a path into the object's data."""

    name: str  # canonical: the metadata name, or "data.a.b"
    path: tuple[str, ...] = ()

    @property
    def is_data(self) -> bool:
        return bool(self.path)


@dataclasses.dataclass(frozen=True)
class Condition:
    field: Field
    op: str
    value: Any  # times already in microseconds


@dataclasses.dataclass(frozen=True)
class SortKey:
    field: Field | None  # None: the order of creation (create_seq), the protocol's default
    descending: bool = False


@dataclasses.dataclass(frozen=True)
class RichQuery:
    conditions: tuple[Condition, ...] = ()
    sort: tuple[SortKey, ...] = ()
    limit: int | None = None
    after: tuple[tuple[Any, ...], str] | None = None  # the last row's sort values, object_id

    @property
    def keys(self) -> tuple[SortKey, ...]:
        return self.sort or (SortKey(None),)


# --- parsing -------------------------------------------------------------------------------------

def parse_field(text: Any, target: str, limits: QueryLimits = DEFAULT_LIMITS) -> Field:
    """A field name of `where`/`sort`.

    Raises:
        BadRequest
    """
    if not isinstance(text, str):
        raise WrongType(target=target)
    if text in TIME_FIELDS or text in TEXT_FIELDS:
        return Field(text)
    parts = text.split(".")
    if parts[0] == "data" and len(parts) > 1:
        parts = parts[1:]
    if len(parts) > limits.max_path_depth:
        raise BadRequest(f"{text[:80]} is deeper than {limits.max_path_depth} members",
                         target=target)
    if not all(SEGMENT.match(p) for p in parts):
        raise BadRequest(f"{text[:80]} is not a field: created_at, updated_at, created_by or "
                         "a member path of the data (letters, digits, _ @ $ : -, not starting "
                         "with a digit)", target=target)
    return Field("data." + ".".join(parts), tuple(parts))


def _scalar(value: Any, target: str, limits: QueryLimits) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if not abs(value) <= MAX_SAFE_NUMBER:
            raise BadRequest("Numbers in queries are limited to ±2^53", target=target)
        return value
    if isinstance(value, str):
        if len(value) > limits.max_string:
            raise BadRequest(f"At most {limits.max_string} characters", target=target)
        return value
    raise WrongType(target=target)


def _time_us(value: Any, target: str) -> int:
    if not is_iso_date_or_time(value):
        raise BadRequest("created_at and updated_at take ISO-8601 dates or date-times",
                         target=target)
    text = value if "T" in value.upper() else value + "T00:00:00Z"
    return parse_time(text)


def _known_operator(op: str, target: str) -> None:
    if op not in OPERATORS:
        raise BadRequest(f"Unknown operator {op[:40]!r}: one of {', '.join(OPERATORS)}",
                         target=target)


def _condition(field: Field, op: str, value: Any, target: str, limits: QueryLimits
               ) -> Condition:
    if op == "exists":
        if not isinstance(value, bool):
            raise WrongType(target=target)
        return Condition(field, op, value)
    if op == "in":
        if not isinstance(value, list):
            raise WrongType(target=target)
        if not 1 <= len(value) <= limits.max_in:
            raise BadRequest(f"in takes 1 to {limits.max_in} values", target=target)
        items = [_scalar(v, f"{target}[{i}]", limits) for i, v in enumerate(value)]
        if field.name in TIME_FIELDS:
            items = [_time_us(v, f"{target}[{i}]") for i, v in enumerate(items)]
        elif field.name in TEXT_FIELDS and not all(isinstance(v, str) for v in items):
            raise WrongType(f"{field.name} takes strings", target=target)
        return Condition(field, op, tuple(items))
    value = _scalar(value, target, limits)
    if op == "prefix":
        if not isinstance(value, str) or field.name in TIME_FIELDS:
            raise BadRequest("prefix takes a string, on a string field", target=target)
        return Condition(field, op, value)
    if field.name in TIME_FIELDS:
        return Condition(field, op, _time_us(value, target))
    if field.name in TEXT_FIELDS:
        if op != "eq" or not isinstance(value, str):
            raise BadRequest(f"{field.name} takes eq, in, prefix and exists with strings",
                             target=target)
        return Condition(field, op, value)
    if op in RANGES and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                             or is_iso_date_or_time(value)):
        raise BadRequest("Ranges take a number or an ISO-8601 date or date-time",
                         target=target)
    return Condition(field, op, value)


def _conditions(where: Any, target: str, limits: QueryLimits) -> tuple[Condition, ...]:
    out: list[Condition] = []
    if isinstance(where, dict):
        for name, spec in where.items():
            t = f"{target}.{name}"
            field = parse_field(name, target, limits)
            if isinstance(spec, dict):
                if not spec:
                    raise BadRequest(f"{t} must not be empty", target=t)
                for op, v in spec.items():
                    _known_operator(op, t)
                    out.append(_condition(field, op, v, f"{t}.{op}", limits))
            elif spec is None:
                raise WrongType("Use exists to ask for a member's presence", target=t)
            else:
                out.append(_condition(field, "eq", spec, t, limits))
    elif isinstance(where, list):
        for i, item in enumerate(where):
            t = f"{target}[{i}]"
            if not isinstance(item, dict):
                raise WrongType(target=t)
            for name in ("field", "op", "value"):
                if name not in item:
                    raise MissingParameter(target=f"{t}.{name}")
            if extra := set(item) - {"field", "op", "value"}:
                raise BadRequest(f"Unexpected member {min(extra)[:40]} in {t}", target=t)
            if not isinstance(item["op"], str):
                raise WrongType(target=f"{t}.op")
            _known_operator(item["op"], f"{t}.op")
            field = parse_field(item["field"], f"{t}.field", limits)
            out.append(_condition(field, item["op"], item["value"], f"{t}.value", limits))
    else:
        raise WrongType(target=target)
    if len(out) > limits.max_conditions:
        raise BadRequest(f"At most {limits.max_conditions} conditions", target=target)
    return tuple(out)


def _sort(sort: Any, target: str, limits: QueryLimits) -> tuple[SortKey, ...]:
    items = [sort] if isinstance(sort, str) else sort
    if not isinstance(items, list) or not items:
        raise WrongType(target=target)
    if len(items) > limits.max_sort_keys:
        raise BadRequest(f"At most {limits.max_sort_keys} sort keys", target=target)
    keys: list[SortKey] = []
    for i, item in enumerate(items):
        t = target if isinstance(sort, str) else f"{target}[{i}]"
        if not isinstance(item, str):
            raise WrongType(target=t)
        desc = item.startswith("-")
        keys.append(SortKey(parse_field(item[1:] if desc else item, t, limits), desc))
    if len({k.field for k in keys}) != len(keys):
        raise BadRequest("A field appears twice in sort", target=target)
    return tuple(keys)


def parse_rich_query(query: Mapping[str, Any], *, limits: QueryLimits = DEFAULT_LIMITS,
                     target: str = "query") -> RichQuery:
    """The `where`, `sort`, `limit` and `skip_token` of an ObjectQueryRequest's query.

    A `skip_token` of the protocol's plain pages (kind "o", by create_seq) is accepted when no
    `sort` is given, so the plain and rich paths can share this compiler.

    Raises:
        BadRequest: (or MissingParameter / WrongType) naming the member at fault.
    """
    conditions: tuple[Condition, ...] = ()
    if query.get("where") is not None:
        conditions = _conditions(query["where"], f"{target}.where", limits)
    sort: tuple[SortKey, ...] = ()
    if query.get("sort") is not None:
        sort = _sort(query["sort"], f"{target}.sort", limits)
    limit = query.get("limit")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise WrongType(target=f"{target}.limit")
        if not 1 <= limit <= limits.max_limit:
            raise BadRequest(f"limit must be 1 to {limits.max_limit}", target=f"{target}.limit")
    rq = RichQuery(conditions, sort, limit)
    token = query.get("skip_token")
    if token is not None:
        if not isinstance(token, str):
            raise WrongType(target=f"{target}.skip_token")
        rq = dataclasses.replace(rq, after=decode_cursor(rq, token, f"{target}.skip_token"))
    return rq


_CLI_CONDITION = re.compile(r"^\s*([^\s<>=^!?]+)\s*(>=|<=|\^=|=|<|>|!\?|\?| in )\s*(.*?)\s*$")
_CLI_OPS = {">=": "gte", "<=": "lte", "^=": "prefix", "=": "eq", "<": "lt", ">": "gt",
            "?": "exists", "!?": "exists", " in ": "in"}


def _cli_value(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (str, int, float, bool)) else text


def where_from_cli(expressions: Sequence[str]) -> dict[str, Any]:
    """`where` from command-line conditions: `numTracks>3`, `name=Road trip`,
    `byArtist.name^=Ni` (prefix), `genre in jazz,rock`, `name?` / `name!?` (present / absent).
    A value that reads as JSON (3, true, "3") is that JSON value, anything else a string.

    Raises:
        BadRequest: an expression that is none of these (target `where`).
    """
    where: dict[str, Any] = {}
    for expr in expressions:
        m = _CLI_CONDITION.match(expr)
        if m is None or (m[2] in ("?", "!?")) != (m[3] == ""):
            raise BadRequest(f"Not a condition: {expr[:80]!r} (e.g. numTracks>3, name=Road, "
                             "genre in jazz,rock, name?)", target="where")
        field, op = m[1], _CLI_OPS[m[2]]
        value: Any = (m[2] == "?") if op == "exists" else (
            [_cli_value(v.strip()) for v in m[3].split(",")] if op == "in"
            else m[3] if op == "prefix" else _cli_value(m[3]))
        where.setdefault(field, {})[op] = value
    return where


# --- the cursor ------------------------------------------------------------------------------

def _signature(rq: RichQuery) -> str:
    spec = ",".join(("-" if k.descending else "") + (k.field.name if k.field else "@seq")
                    for k in rq.keys)
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def encode_cursor(rq: RichQuery, values: Sequence[Any], object_id: str) -> str:
    """The skip_token after a row: its sort values and object_id, bound to the sort order."""
    wire: list[Any] = []
    for key, value in zip(rq.keys, values, strict=True):
        if key.field is not None and key.field.is_data:
            rank, num, text = value
            wire.append([rank, None if num is None else str(num), text])
        else:
            wire.append(value)
    return _b64({"k": TOKEN_KIND, "h": _signature(rq), "v": wire, "i": object_id})


def _number(text: Any) -> Decimal:
    if not isinstance(text, str) or len(text) > 64:
        raise ValueError
    number = Decimal(text)
    if not number.is_finite():
        raise ValueError
    return number


def decode_cursor(rq: RichQuery, token: str, target: str) -> tuple[tuple[Any, ...], str]:
    """The position a skip_token names, checked against this query's sort order.

    Raises:
        BadRequest: a token not made by this hub for this sort order.
    """
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        if not isinstance(data, dict):
            raise TypeError
        if data.get("k") == "o" and not rq.sort:  # a plain page's token: create_seq
            seq = data["p"]
            if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
                raise ValueError
            return (seq,), ""
        if data.get("k") != TOKEN_KIND or data.get("h") != _signature(rq):
            raise ValueError
        object_id, wire = data["i"], data["v"]
        if not isinstance(object_id, str) or not isinstance(wire, list):
            raise TypeError
        values: list[Any] = []
        for key, value in zip(rq.keys, wire, strict=True):
            if key.field is None or key.field.name in TIME_FIELDS:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError
                values.append(value)
            elif key.field.name in TEXT_FIELDS:
                if not isinstance(value, str):
                    raise ValueError
                values.append(value)
            else:
                rank, num, text = value
                if rank not in (0, 1, 2) or isinstance(rank, bool):
                    raise ValueError
                num = _number(num) if rank == 0 else None
                if (rank == 1) != isinstance(text, str):
                    raise ValueError
                values.append((rank, num, text if rank == 1 else None))
        return tuple(values), object_id
    except (ValueError, KeyError, TypeError, UnicodeError, InvalidOperation):
        raise BadRequest("Invalid skip_token", target=target) from None


def _row_values(rq: RichQuery, row: Any) -> list[Any]:
    m = row._mapping
    out: list[Any] = []
    for i, key in enumerate(rq.keys):
        if key.field is not None and key.field.is_data:
            out.append((m[f"_k{i}r"], m[f"_k{i}n"], m[f"_k{i}s"]))
        else:
            out.append(m[f"_k{i}"])
    return out


def next_skip_token(rq: RichQuery, row: Any) -> str:
    """The skip_token of the page after `row` (the last row of a page)."""
    return encode_cursor(rq, _row_values(rq, row), row.object_id)
