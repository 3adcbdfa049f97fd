"""Rich object queries as SQL: one SQLAlchemy Core SELECT over `objects`, for SQLite and
PostgreSQL (semantics in `storage/query.py` and docs/queries.md).

Dialect differences, by name (each is one method of `_Dialect`):
* JSON_MEMBER: SQLite `json_extract(data, '$."a"."b"')` / `json_type(…)`; PostgreSQL
  `data -> 'a' -> 'b'` / `jsonb_typeof(…)`. Paths are inlined as SQL literals (their characters
  are restricted), so that expression indexes match the query's expression.
* JSON_SCALAR_EQ: SQLite compares the extracted SQL value under a `json_type` guard (its
  `json_extract` turns `true` into 1); PostgreSQL compares jsonb values (`= '3'::jsonb`), which
  are typed already. Not `data @> …`: a btree expression index gives pages in index order,
  and the redundant containment made the planner misestimate (docs/queries.md).
* JSON_NUMBER: the numeric sort value is SQLite's INTEGER/REAL, PostgreSQL's `numeric`.
* TEXT_ORDER_BINARY: string ranges, prefixes and sorts compare code points: SQLite's BINARY
  collation; PostgreSQL `COLLATE "C"` (the database's collation may be a locale's).

A cursor on plain columns in one direction is a row comparison (`(updated_at_us, object_id) <
(…)`), which an index range serves: a deep page costs what the first costs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.errors import BadRequest
from identity_hub.storage.query import (
    RANGES,
    TEXT_FIELDS,
    TIME_FIELDS,
    Condition,
    RichQuery,
    next_skip_token,
    parse_field,
)
from identity_hub.storage.tables import objects

logger = logging.getLogger(__name__)

SQLITE, POSTGRES = "sqlite", "postgresql"


def _literal(text: str) -> Any:
    # Paths are made of SEGMENT characters only (no quote can occur): inlined, not bound, so
    # that an expression index on the same path matches the query's expression.
    return sa.literal_column("'" + text.replace("'", "''") + "'")


def _jsonb(value: Any) -> Any:
    return sa.cast(sa.literal(json.dumps(value), sa.Text), postgresql.JSONB)


class _Dialect:
    """The JSON expressions of one database (the named differences of the module doc)."""

    def __init__(self, name: str) -> None:
        if name not in (SQLITE, POSTGRES):
            raise ValueError(f"unsupported dialect {name}")
        self.pg = name == POSTGRES

    # JSON_MEMBER
    def member(self, path: tuple[str, ...]) -> Any:
        """PostgreSQL: the jsonb value at path (NULL if absent)."""
        expr: Any = objects.c.data
        for segment in path:
            expr = expr.op("->", return_type=postgresql.JSONB)(_literal(segment))
        return expr

    def sqlite_path(self, path: tuple[str, ...]) -> Any:
        return _literal("$." + ".".join(f'"{s}"' for s in path))

    def json_type(self, path: tuple[str, ...]) -> Any:
        if self.pg:
            return sa.func.jsonb_typeof(self.member(path))
        return sa.func.json_type(objects.c.data, self.sqlite_path(path))

    def extract(self, path: tuple[str, ...]) -> Any:
        """SQLite: json_extract (the SQL value of a scalar)."""
        return sa.func.json_extract(objects.c.data, self.sqlite_path(path))

    def is_type(self, path: tuple[str, ...], kind: str) -> Any:
        types = {"number": ("integer", "real"), "string": ("text",), "true": ("true",),
                 "false": ("false",)}
        if self.pg:
            return self.json_type(path) == ("boolean" if kind in ("true", "false") else kind)
        return self.json_type(path).in_(types[kind])

    # TEXT_ORDER_BINARY
    def text(self, path: tuple[str, ...]) -> Any:
        if self.pg:
            parent = self.member(path[:-1]) if len(path) > 1 else objects.c.data
            return parent.op("->>", return_type=sa.Text)(_literal(path[-1])).collate("C")
        return self.extract(path)

    def text_column(self, column: Any) -> Any:
        return column.collate("C") if self.pg else column

    # JSON_NUMBER
    def number(self, path: tuple[str, ...]) -> Any:
        if self.pg:
            return sa.cast(self.member(path), sa.Numeric)
        return self.extract(path)

    def number_param(self, value: Decimal | float) -> Any:
        if self.pg:
            return sa.literal(Decimal(str(value)), sa.Numeric)
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        return value

    # JSON_SCALAR_EQ
    def equals(self, path: tuple[str, ...], value: Any) -> Any:
        if self.pg:
            return self.member(path) == _jsonb(value)
        if isinstance(value, bool):
            return self.is_type(path, "true" if value else "false")
        kind = "string" if isinstance(value, str) else "number"
        return sa.and_(self.is_type(path, kind), self.extract(path) == value)

    def one_of(self, path: tuple[str, ...], values: tuple[Any, ...]) -> Any:
        if self.pg:
            return self.member(path).in_([_jsonb(v) for v in values])
        strings = [v for v in values if isinstance(v, str)]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        flags = sorted({"true" if v else "false" for v in values if isinstance(v, bool)})
        parts = []
        if strings:
            parts.append(sa.and_(self.is_type(path, "string"), self.extract(path).in_(strings)))
        if numbers:
            parts.append(sa.and_(self.is_type(path, "number"), self.extract(path).in_(numbers)))
        if flags:
            parts.append(self.json_type(path).in_(flags))
        return sa.or_(*parts)

    def compare(self, path: tuple[str, ...], op: str, value: Any) -> Any:
        sql_op = RANGES[op]
        if isinstance(value, str):  # an ISO date: code point order
            return sa.and_(self.is_type(path, "string"), self.text(path).op(sql_op)(value))
        if self.pg:
            return sa.and_(self.is_type(path, "number"), self.member(path).op(sql_op)(
                _jsonb(value)))
        return sa.and_(self.is_type(path, "number"), self.extract(path).op(sql_op)(value))

    def exists(self, path: tuple[str, ...]) -> Any:
        if self.pg:
            return self.member(path).is_not(None)
        return self.json_type(path).is_not(None)

    # sort values of a data field: (rank, number, text); other types and absence rank last
    def sort_values(self, path: tuple[str, ...]) -> tuple[Any, Any, Any]:
        rank = sa.case((self.is_type(path, "number"), 0), (self.is_type(path, "string"), 1),
                       else_=2)
        number = sa.case((self.is_type(path, "number"), self.number(path)))
        text = sa.case((self.is_type(path, "string"), self.text(path)))
        return rank, number, text


def _successor(prefix: str) -> str | None:
    """The least string greater than every string starting with prefix (None: no bound)."""
    chars = list(prefix)
    while chars:
        cp = ord(chars[-1]) + 1
        if cp == 0xD800:
            cp = 0xE000
        if cp <= 0x10FFFF:
            chars[-1] = chr(cp)
            return "".join(chars)
        chars.pop()
    return None


def _prefix(text: Any, prefix: str) -> Any:
    upper = _successor(prefix)
    return sa.and_(text >= prefix, *([text < upper] if upper is not None else []))


def _condition_sql(d: _Dialect, c: Condition) -> Any:
    if c.field.name in TIME_FIELDS or c.field.name in TEXT_FIELDS:
        column: Any = TIME_FIELDS.get(c.field.name, TEXT_FIELDS.get(c.field.name))
        if c.op == "exists":
            return sa.true() if c.value else sa.false()
        if c.op == "eq":
            return column == c.value
        if c.op == "in":
            return column.in_(list(c.value))
        if c.op == "prefix":
            return _prefix(d.text_column(column), c.value)
        return column.op(RANGES[c.op])(c.value)
    path = c.field.path
    if c.op == "exists":
        return d.exists(path) if c.value else sa.not_(d.exists(path))
    if c.op == "eq":
        return d.equals(path, c.value)
    if c.op == "in":
        return d.one_of(path, c.value)
    if c.op == "prefix":
        return sa.and_(d.is_type(path, "string"), _prefix(d.text(path), c.value))
    return d.compare(path, c.op, c.value)


@dataclasses.dataclass
class _Key:
    """One sort key as SQL: its expressions (one, or rank/number/text for data), direction."""

    exprs: tuple[Any, ...]
    descending: bool
    data: bool


def _keys(d: _Dialect, rq: RichQuery) -> list[_Key]:
    out = []
    for key in rq.keys:
        if key.field is None:
            out.append(_Key((objects.c.create_seq,), False, False))
        elif key.field.is_data:
            out.append(_Key(d.sort_values(key.field.path), key.descending, True))
        elif key.field.name in TIME_FIELDS:
            out.append(_Key((TIME_FIELDS[key.field.name],), key.descending, False))
        else:
            out.append(_Key((d.text_column(TEXT_FIELDS[key.field.name]),), key.descending,
                            False))
    return out


def _beyond(expr: Any, value: Any, descending: bool) -> Any:
    return expr < value if descending else expr > value


def _keyset(d: _Dialect, rq: RichQuery, keys: list[_Key]) -> Any:
    """The rows after the cursor in the order (keys…, object_id)."""
    assert rq.after is not None
    values, object_id = rq.after
    if not rq.sort:  # create_seq is unique per owner
        return objects.c.create_seq > values[0]
    last_desc = keys[-1].descending
    if all(not k.data and k.descending == last_desc for k in keys):
        # one direction, plain columns: a row comparison, which an index range can serve
        left = sa.tuple_(*(k.exprs[0] for k in keys), objects.c.object_id)
        right = sa.tuple_(*values, object_id)
        return left < right if last_desc else left > right
    afters, equals = [], []
    for key, value in zip(keys, values, strict=True):
        if not key.data:
            afters.append(_beyond(key.exprs[0], value, key.descending))
            equals.append(key.exprs[0] == value)
            continue
        rank, number, text = key.exprs
        r, n, s = value
        if r == 0:
            inner = _beyond(number, d.number_param(n), key.descending)
            same = number == d.number_param(n)
        elif r == 1:
            inner, same = _beyond(text, s, key.descending), text == s
        else:  # other types and absence: ordered by object_id only
            inner, same = sa.false(), sa.true()
        afters.append(sa.or_(rank > r, sa.and_(rank == r, inner)))
        equals.append(sa.and_(rank == r, same))
    ors = [sa.and_(*equals[:i], afters[i]) for i in range(len(keys))]
    ors.append(sa.and_(*equals, _beyond(objects.c.object_id, object_id, last_desc)))
    return sa.or_(*ors)


def compile_object_query(
    rq: RichQuery,
    *,
    dialect: str,
    owner_id: int,
    interface: str,
    context: str | None = None,
    type_: str | None = None,
    object_ids: Sequence[str] | None = None,
    scope: Any = None,
    extra: Sequence[Any] = (),
    page_size: int = 100,
) -> sa.Select[Any]:
    """The SELECT of one page (`limit` or `page_size` rows, plus one to tell if more follow)
    of the owner's live objects matching the query; `scope` is a requester's permission
    condition, `extra` further conditions (e.g. on a type IRI column). The rows carry every
    `objects` column plus the sort values (`_k0`, or `_k0r`/`_k0n`/`_k0s` for data fields).

    Raises:
        ValueError: an unsupported dialect.
    """
    d = _Dialect(dialect)
    keys = _keys(d, rq)
    labels: list[Any] = []
    order: list[Any] = []
    for i, key in enumerate(keys):
        if key.data:  # ordered by the select list's values, computed once
            rank, number, text = (e.label(f"_k{i}{s}")
                                  for e, s in zip(key.exprs, "rns", strict=True))
            labels += [rank, number, text]
            order += [rank.asc()] + [e.desc() if key.descending else e.asc()
                                     for e in (number, text)]
        else:
            labels.append(key.exprs[0].label(f"_k{i}"))
            order.append(key.exprs[0].desc() if key.descending else key.exprs[0].asc())
    q = sa.select(objects, *labels).where(
        objects.c.owner_id == owner_id,
        objects.c.interface == interface,
        objects.c.has_create.is_(True),
        objects.c.deleted.is_(False),
    )
    if context is not None:
        q = q.where(objects.c.context == context, objects.c.type == type_)
    if object_ids is not None:
        q = q.where(objects.c.object_id.in_(list(object_ids)))
    if scope is not None:
        q = q.where(scope)
    for condition in extra:
        q = q.where(condition)
    for c in rq.conditions:
        q = q.where(_condition_sql(d, c))
    if rq.after is not None:
        q = q.where(_keyset(d, rq, keys))
    if rq.sort:
        order.append(objects.c.object_id.desc() if keys[-1].descending
                     else objects.c.object_id.asc())
    return q.order_by(*order).limit((rq.limit or page_size) + 1)


async def run_object_query(conn: AsyncConnection, rq: RichQuery, *, owner_id: int,
                           interface: str, context: str | None = None, type_: str | None = None,
                           object_ids: Sequence[str] | None = None, scope: Any = None,
                           extra: Sequence[Any] = (), page_size: int = 100
                           ) -> tuple[list[Any], str | None]:
    """One page of objects and the skip_token of the next page (None: this is the last)."""
    size = rq.limit or page_size
    q = compile_object_query(rq, dialect=conn.dialect.name, owner_id=owner_id,
                             interface=interface, context=context, type_=type_,
                             object_ids=object_ids, scope=scope, extra=extra,
                             page_size=page_size)
    rows = list(await conn.execute(q))
    if len(rows) <= size:
        return rows, None
    rows = rows[:size]
    return rows, next_skip_token(rq, rows[-1])


def field_index_sql(dialect: str, field: str, *, name: str | None = None,
                    sort: str = "updated_at",
                    type_columns: Sequence[str] = ("context", "type")) -> str:
    """DDL of the index that serves "type + equality (or range) on `field`, sorted by `sort`"
    in O(page): its expression is exactly the one the compiler emits for `field`.
    `type_columns`: how the query selects the type (`("type_iri",)` once that column exists).

    Raises:
        BadRequest: `field` is not a data path; KeyError: an unsupported sort;
        ValueError: an unsupported dialect.
    """
    parsed = parse_field(field, "field")
    if not parsed.is_data:
        raise BadRequest("field_index_sql is for data fields", target="field")
    column = {"updated_at": "updated_at_us", "created_at": "created_at_us"}[sort]
    d = _Dialect(dialect)
    expr = d.member(parsed.path) if d.pg else d.extract(parsed.path)
    dialect_obj: Any = postgresql.dialect() if d.pg else sqlite.dialect()  # type: ignore[no-untyped-call]
    sql_expr = str(expr.compile(dialect=dialect_obj)).replace("objects.data", "data")
    slug = re.sub(r"[^a-z0-9]+", "_", parsed.name.lower()).strip("_")[:40]
    index = name or f"ix_objects_{slug}_{sort}"
    return (f"CREATE INDEX {index} ON objects (owner_id, interface, {', '.join(type_columns)}, "
            f"({sql_expr}), {column}, object_id)")
