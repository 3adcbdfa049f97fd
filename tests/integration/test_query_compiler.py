"""The rich-query compiler on SQLite and PostgreSQL (rows inserted into `objects` directly):

* every random query gives the objects, in the order, that a plain Python filter over the same
  objects gives (hypothesis), paging through all of its pages;
* a cursor survives objects created and deleted between pages: nothing skipped, nothing twice;
* EXPLAIN of the common shape (type + one field, sorted by updated_at) uses the proposed
  indexes, without a sort of all matching rows.
"""

from __future__ import annotations

import base64
import functools
import json
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from identity_hub.errors import BadRequest
from identity_hub.storage.query import parse_rich_query, where_from_cli
from identity_hub.storage.query_sql import compile_object_query, field_index_sql, run_object_query
from identity_hub.storage.tables import objects

OWNER, OTHER_OWNER = 1, 2
CTX, TYPE = "https://schema.org", "MusicPlaylist"
T0 = 1_780_000_000_000_000  # microseconds
NAMES = ["Road trip", "Road", "road", "Ro", "Rock", "Zed", "ä", "😀 x", "", "2026-01-01"]
NUMBERS = [0, 1, 2, 3, 3.0, 2.5, -1, 10, 1e3]
DATES = ["2026-01-01", "2026-01-01T10:00:00Z", "2025-12-31", "2026-02-01T00:00:00.000Z",
         "2027-06-30"]
SCALARS = [*NAMES[:5], *NUMBERS[:6], True, False, None]
DIDS = ["did:jwk:Abc", "did:jwk:abc", "did:key:z6Mk", "did:web:example.com"]


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(db_url)
    yield eng
    await eng.dispose()


def oid(n: int) -> str:
    return f"{n:064x}"


def row(n: int, data: Any, *, owner: int = OWNER, interface: str = "Collections",
        type_: str = TYPE, deleted: bool = False, created_by: str = DIDS[0],
        created_us: int | None = None, updated_us: int | None = None) -> dict[str, Any]:
    created = T0 + n * 1_000_000 if created_us is None else created_us
    return {"owner_id": owner, "object_id": oid(n), "has_create": True, "interface": interface,
            "context": CTX, "type": type_, "commit_strategy": "basic", "created_by": created_by,
            "created_at": datetime.fromtimestamp(created / 1e6, UTC).isoformat(),
            "created_at_us": created, "create_seq": n, "deleted": deleted,
            "updated_at_us": created if updated_us is None else updated_us,
            "win_rev": oid(n), "win_operation": "create", "win_committed_at_us": created,
            "data": data, "commit_count": 1}


# The values each member takes in the data set (queries draw from the same pools, so that
# they hit: true vs 1, "3" vs 3, 3 vs 3.0, arrays, null, nested and absent members).
POOLS: dict[str, list[Any]] = {
    "name": NAMES + [7], "numTracks": NUMBERS + ["3", True, None, [3]],
    "genre": SCALARS + [["jazz"], {"x": 1}], "datePublished": DATES + [20260101],
    "flag": [True, False, 1, 0, "true"], "byArtist.name": NAMES,
    "data.byArtist.age": NUMBERS + ["30"],
}


def random_data(rnd: random.Random) -> dict[str, Any]:
    data: dict[str, Any] = {"@context": CTX, "@type": TYPE}
    for key in ("name", "numTracks", "genre", "datePublished", "flag"):
        if rnd.random() < 0.8:
            data[key] = rnd.choice(POOLS[key])
    artist = rnd.random()
    if artist < 0.6:
        data["byArtist"] = {k: rnd.choice(POOLS[p]) for k, p in
                            (("name", "byArtist.name"), ("age", "data.byArtist.age"))
                            if rnd.random() < 0.8}
    elif artist < 0.75:
        data["byArtist"] = rnd.choice(NAMES)
    return data


def dataset() -> list[dict[str, Any]]:
    rnd = random.Random(8)
    rows = []
    for n in range(1, 61):
        rows.append(row(n, random_data(rnd), created_by=rnd.choice(DIDS),
                        updated_us=T0 + rnd.randrange(0, 40) * 1_000_000))
    # never in a result: deleted, another type, another interface, another owner
    rows.append(row(61, {"name": "Road", "numTracks": 3}, deleted=True))
    rows.append(row(62, {"name": "Road", "numTracks": 3}, type_="MusicAlbum"))
    rows.append(row(63, {"name": "Road", "numTracks": 3}, interface="Profile"))
    rows.append(row(64, {"name": "Road", "numTracks": 3}, owner=OTHER_OWNER))
    return rows


async def insert(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.insert(objects), rows)


# --- the Python model ----------------------------------------------------------------------

MISSING = object()


def get(data: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return MISSING
        data = data[part]
    return data


def is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def same(x: Any, v: Any) -> bool:
    if isinstance(v, bool):
        return isinstance(x, bool) and x == v
    if isinstance(v, str):
        return isinstance(x, str) and x == v
    return is_num(x) and x == v


def iso_us(text: str) -> int:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1_000_000)


OPS = {"lt": lambda a, b: a < b, "lte": lambda a, b: a <= b, "gt": lambda a, b: a > b,
       "gte": lambda a, b: a >= b}


def holds(r: dict[str, Any], field: str, op: str, v: Any) -> bool:
    if field in ("created_at", "updated_at"):
        x: Any = r[f"{field}_us"]
        v = [iso_us(i) for i in v] if op == "in" else (v if op == "exists" else iso_us(v))
    elif field == "created_by":
        x = r["created_by"]
    else:
        x = get(r["data"], field.removeprefix("data.").split("."))
    if op == "exists":
        return bool((x is not MISSING) == v)
    if x is MISSING:
        return False
    if op == "eq":
        return same(x, v)
    if op == "in":
        return any(same(x, i) for i in v)
    if op == "prefix":
        return isinstance(x, str) and x.startswith(v)
    if is_num(v) or field in ("created_at", "updated_at"):
        return is_num(x) and OPS[op](x, v)
    return isinstance(x, str) and OPS[op](x, v)


def sort_value(r: dict[str, Any], field: str) -> Any:
    if field in ("created_at", "updated_at"):
        return r[f"{field}_us"]
    if field == "created_by":
        return r["created_by"]
    x = get(r["data"], field.removeprefix("data.").split("."))
    if is_num(x):
        return (0, x, "")
    if isinstance(x, str):
        return (1, 0, x)
    return (2, 0, "")


def model(rows: list[dict[str, Any]], conditions: list[tuple[str, str, Any]],
          sort: list[str]) -> list[str]:
    live = [r for r in rows if r["owner_id"] == OWNER and r["interface"] == "Collections"
            and r["type"] == TYPE and not r["deleted"]]
    found = [r for r in live if all(holds(r, f, op, v) for f, op, v in conditions)]
    if not sort:
        return [r["object_id"] for r in sorted(found, key=lambda r: r["create_seq"])]

    def cmp(a: dict[str, Any], b: dict[str, Any]) -> int:
        for key in sort:
            desc, field = key.startswith("-"), key.lstrip("-")
            x, y = sort_value(a, field), sort_value(b, field)
            if isinstance(x, tuple):
                if x[0] != y[0]:  # other types and absence last, in both directions
                    return -1 if x[0] < y[0] else 1
                x, y = x[1:], y[1:]
            if x != y:
                return (-1 if x < y else 1) * (-1 if desc else 1)
        desc = sort[-1].startswith("-")
        a_id, b_id = a["object_id"], b["object_id"]
        return 0 if a_id == b_id else (-1 if a_id < b_id else 1) * (-1 if desc else 1)

    return [r["object_id"] for r in sorted(found, key=functools.cmp_to_key(cmp))]


async def run_all(engine: AsyncEngine, query: dict[str, Any], *, max_pages: int = 200
                  ) -> list[str]:
    """Every page of the query, following skip_token; the object ids in order."""
    out: list[str] = []
    q = dict(query)
    for _ in range(max_pages):
        rq = parse_rich_query(q)
        async with engine.connect() as conn:
            rows, token = await run_object_query(conn, rq, owner_id=OWNER,
                                                 interface="Collections", context=CTX,
                                                 type_=TYPE, page_size=5)
        out += [r.object_id for r in rows]
        if token is None:
            return out
        q["skip_token"] = token
    raise AssertionError("too many pages")


# --- random queries ------------------------------------------------------------------------

DATA_FIELDS = ["name", "numTracks", "genre", "datePublished", "flag", "byArtist.name",
               "data.byArtist.age", "byArtist", "missing.member"]


@st.composite
def conditions(draw: Any) -> tuple[str, str, Any]:
    field = draw(st.sampled_from(DATA_FIELDS + ["created_at", "updated_at", "created_by"]))
    if field in ("created_at", "updated_at"):
        op = draw(st.sampled_from(["eq", "in", "lt", "lte", "gt", "gte", "exists"]))
        stamp = st.integers(-2, 62).map(
            lambda s: datetime.fromtimestamp(T0 / 1e6 + s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        value: Any = (draw(st.lists(stamp, min_size=1, max_size=3)) if op == "in"
                      else draw(st.booleans()) if op == "exists" else draw(stamp))
        return field, op, value
    if field == "created_by":
        op = draw(st.sampled_from(["eq", "in", "prefix", "exists"]))
        did = st.sampled_from(DIDS + ["did:jwk:", "did:", "x"])
        value = (draw(st.lists(did, min_size=1, max_size=3)) if op == "in"
                 else True if op == "exists" else draw(did))
        return field, op, value
    op = draw(st.sampled_from(["eq", "eq", "in", "in", "lt", "lte", "gt", "gte", "exists",
                               "prefix"]))
    own = [v for v in POOLS.get(field, []) if v is None or isinstance(v, (str, int, float))]
    scalar = st.one_of(st.sampled_from([v for v in own if v is not None] or NAMES),
                       st.sampled_from(NAMES + NUMBERS + [True, False, 1, 0, "jazz", "3"]))
    if op == "exists":
        return field, op, draw(st.booleans())
    if op == "in":
        return field, op, draw(st.lists(scalar, min_size=1, max_size=4))
    if op == "prefix":
        return field, op, draw(st.sampled_from(["", "R", "Ro", "road", "Road ", "ä", "😀",
                                                "2026-01", "\U0010ffff"]))
    if op in ("lt", "lte", "gt", "gte"):
        bound = st.one_of(st.sampled_from(NUMBERS), st.integers(-2, 12),
                          st.sampled_from(DATES + ["2026-01-01T00:00:00Z", "2026-01-02"]))
        return field, op, draw(bound)
    return field, op, draw(scalar)


sorts = st.lists(st.tuples(st.sampled_from(DATA_FIELDS + ["created_at", "updated_at",
                                                          "created_by"]), st.booleans()),
                 max_size=3, unique_by=lambda t: t[0]).map(
    lambda keys: [("-" if desc else "") + field for field, desc in keys])


def as_where(conds: list[tuple[str, str, Any]], list_form: bool) -> Any:
    if list_form:
        return [{"field": f, "op": op, "value": v} for f, op, v in conds]
    where: dict[str, Any] = {}
    for f, op, v in conds:
        where.setdefault(f, {})[op] = v
    return where


_loaded: set[str] = set()


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(conds=st.lists(conditions(), max_size=3, unique_by=lambda c: (c[0], c[1])),
       sort=sorts, limit=st.integers(2, 9), list_form=st.booleans())
async def test_queries_match_a_python_filter(engine: AsyncEngine, db_url: str,
                                             conds: list[tuple[str, str, Any]], sort: list[str],
                                             limit: int, list_form: bool) -> None:
    rows = dataset()
    if db_url not in _loaded:
        await insert(engine, rows)
        _loaded.add(db_url)
    query: dict[str, Any] = {"limit": limit}
    if conds:
        query["where"] = as_where(conds, list_form)
    if sort:
        query["sort"] = sort
    got = await run_all(engine, query)
    want = model(rows, conds, sort)
    assert got == want, (query, got, want)


async def test_hand_picked_semantics(engine: AsyncEngine) -> None:
    rows = [row(1, {"n": 3}), row(2, {"n": 3.0}), row(3, {"n": "3"}), row(4, {"n": True}),
            row(5, {"n": 1}), row(6, {"n": [3]}), row(7, {"n": None}), row(8, {}),
            row(9, {"n": {"m": 3}}), row(10, {"a": {"b": {"c": "x"}}}), row(11, {"a": "x"})]
    await insert(engine, rows)

    async def ids(where: Any, sort: Any = None) -> list[int]:
        q: dict[str, Any] = {"where": where}
        if sort:
            q["sort"] = sort
        return [int(i, 16) for i in await run_all(engine, q)]

    assert await ids({"n": 3}) == [1, 2]  # numbers only, 3 == 3.0
    assert await ids({"n": "3"}) == [3]
    assert await ids({"n": True}) == [4]  # not 1
    assert await ids({"n": 1}) == [5]  # not true
    assert await ids({"n": {"in": [3, True]}}) == [1, 2, 4]
    assert await ids({"n": {"gte": 2}}) == [1, 2]
    assert await ids({"n": {"exists": True}}) == [1, 2, 3, 4, 5, 6, 7, 9]  # null is present
    assert await ids({"n": {"exists": False}}) == [8, 10, 11]
    assert await ids({"a.b.c": "x"}) == [10]
    assert await ids({"data.a.b": {"exists": True}}) == [10]
    assert await ids({"a.b": {"exists": True}, "a": {"prefix": ""}}) == []
    # 3 and 3.0 tie: object_id breaks it, in the direction of the last key
    assert await ids({"n": {"exists": True}}, sort=["-n"]) == [2, 1, 5, 3, 9, 7, 6, 4]


async def test_skip_token_of_plain_pages_and_forged_tokens(engine: AsyncEngine) -> None:
    await insert(engine, [row(n, {"n": n}) for n in range(1, 8)])
    plain = json.dumps({"k": "o", "p": 3}).encode()
    token = base64.urlsafe_b64encode(plain).rstrip(b"=").decode()
    assert [int(i, 16) for i in await run_all(engine, {"skip_token": token})] == [4, 5, 6, 7]
    first = parse_rich_query({"sort": "-n", "limit": 2})
    async with engine.connect() as conn:
        _, next_token = await run_object_query(conn, first, owner_id=OWNER,
                                               interface="Collections")
    assert next_token is not None
    for query in ({"sort": "n", "skip_token": next_token},  # another order
                  {"sort": "-n", "skip_token": token},  # a plain token with a sort
                  {"sort": "-n", "skip_token": next_token[:-3]},
                  {"skip_token": "eyJrIjoiciJ9"}):
        with pytest.raises(BadRequest) as info:
            parse_rich_query(query)
        assert info.value.target == "query.skip_token"


@pytest.mark.parametrize("query,target", [
    ({"where": {"n": {"gt": "soon"}}}, "query.where.n.gt"),
    ({"where": {"created_at": {"gt": 5}}}, "query.where.created_at.gt"),
    ({"where": {"created_by": {"gt": "did:"}}}, "query.where.created_by.gt"),
    ({"where": {"n": {"in": list(range(101))}}}, "query.where.n.in"),
    ({"where": {"n": {"eq": 2 ** 60}}}, "query.where.n.eq"),
    ({"where": {".".join("abcdefghi"): 1}}, "query.where"),
    ({"where": {"a.0": 1}}, "query.where"),
    ({"where": [{"field": "n", "op": "near", "value": 1}]}, "query.where[0].op"),
    ({"where": {"n": {"near": 1}}}, "query.where.n"),
    ({"where": {f"f{i}": i for i in range(17)}}, "query.where"),
    ({"sort": ["n", "-n"]}, "query.sort"),
    ({"limit": 1001}, "query.limit"),
])
def test_limits_and_refusals(query: dict[str, Any], target: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_rich_query(query)
    assert info.value.target == target


def test_schema_limits_are_the_compiler_limits() -> None:
    from identity_hub.protocol.schemas import SCHEMA_DIR
    from identity_hub.storage.query import DEFAULT_LIMITS as L

    schema = json.loads((SCHEMA_DIR / "ObjectQueryRequest.json").read_text())
    defs, query = schema["$defs"], schema["properties"]["query"]["properties"]
    assert query["limit"]["maximum"] == L.max_limit
    assert defs["where"]["anyOf"][0]["maxProperties"] == L.max_conditions
    assert defs["where"]["anyOf"][1]["maxItems"] == L.max_conditions
    assert defs["operators"]["properties"]["in"]["maxItems"] == L.max_in
    assert query["sort"]["anyOf"][1]["maxItems"] == L.max_sort_keys
    assert defs["path"]["pattern"].endswith(f"{{0,{L.max_path_depth - 1}}}$")


# --- cursor stability ----------------------------------------------------------------------

@pytest.mark.parametrize("sort", [None, "-updated_at", ["numTracks", "-created_at"], "name",
                                  "-created_by"])
async def test_cursor_survives_creates_and_deletes(engine: AsyncEngine, sort: Any) -> None:
    rnd = random.Random(5)
    live: dict[str, dict[str, Any]] = {}

    def make(n: int) -> dict[str, Any]:
        data = {"numTracks": rnd.choice([1, 2, 3, 3, 4, "x"]), "name": rnd.choice(NAMES)}
        return row(n, data, created_by=rnd.choice(DIDS),
                   updated_us=T0 + rnd.randrange(0, 10) * 1_000_000)  # many equal keys

    first = [make(n) for n in range(1, 41)]
    await insert(engine, first)
    live.update({r["object_id"]: r for r in first})
    always = set(live)  # present from the first page to the last
    query: dict[str, Any] = {"limit": 4, "where": {"numTracks": {"exists": True}}}
    if sort is not None:
        query["sort"] = sort
    seen: list[str] = []
    next_n = 100
    for _page in range(100):
        rq = parse_rich_query(query)
        async with engine.connect() as conn:
            rows, token = await run_object_query(conn, rq, owner_id=OWNER,
                                                 interface="Collections")
        seen += [r.object_id for r in rows]
        if token is None:
            break
        query["skip_token"] = token
        # between pages: delete two objects (seen or not; one marked deleted as the fold
        # does, one row removed), create three
        async with engine.begin() as conn:
            gone, marked = rnd.sample(sorted(live), 2)
            await conn.execute(sa.delete(objects).where(objects.c.object_id == gone))
            await conn.execute(sa.update(objects).where(objects.c.object_id == marked)
                               .values(deleted=True))
            for victim in (gone, marked):
                live.pop(victim)
                always.discard(victim)
            fresh = [make(next_n + i) for i in range(3)]
            next_n += 3
            await conn.execute(sa.insert(objects), fresh)
            live.update({r["object_id"]: r for r in fresh})
    assert token is None
    assert len(seen) == len(set(seen)), "an object was returned twice"
    missed = always - set(seen)
    assert not missed, f"{len(missed)} objects present throughout were skipped"


# --- EXPLAIN: the common shape uses the proposed indexes -----------------------------------

# The indexes proposed in docs/queries.md (migration ops in the same place), same on both.
PROPOSED_INDEXES = [
    ("CREATE INDEX ix_objects_type_updated ON objects "
     "(owner_id, interface, context, type, updated_at_us, object_id)"),
    ("CREATE INDEX ix_objects_type_created ON objects "
     "(owner_id, interface, context, type, created_at_us, object_id)"),
]


async def plan(engine: AsyncEngine, query: dict[str, Any]) -> str:
    rq = parse_rich_query(query)
    async with engine.connect() as conn:
        q = compile_object_query(rq, dialect=conn.dialect.name, owner_id=OWNER,
                                 interface="Collections", context=CTX, type_=TYPE)
        sql = str(q.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        if conn.dialect.name == "sqlite":
            result = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)
            return "\n".join(str(r[-1]) for r in result)
        result = await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql)
        return json.dumps(result.scalar())


def in_index_order(dialect: str, explained: str) -> bool:
    """No sort of the matching rows: the page comes out of the index in order."""
    if dialect == "sqlite":
        return "TEMP B-TREE" not in explained
    return '"Node Type": "Sort"' not in explained and '"Seq Scan"' not in explained


async def test_explain_common_shapes_use_the_indexes(engine: AsyncEngine) -> None:
    rnd = random.Random(3)
    rows = []
    for n in range(1, 3001):
        type_ = ("MusicPlaylist", "MusicAlbum", "Person")[n % 3]
        owner = OWNER if n % 5 else OTHER_OWNER
        rows.append(row(n, {"numTracks": rnd.randrange(10), "name": f"n{n}"}, owner=owner,
                        type_=type_, updated_us=T0 + rnd.randrange(10 ** 9)))
    await insert(engine, rows)
    dialect = engine.dialect.name
    async with engine.begin() as conn:
        for ddl in PROPOSED_INDEXES:
            await conn.exec_driver_sql(ddl)
        await conn.exec_driver_sql("ANALYZE")

    # a type's objects, newest first: the (type, updated_at) index, read backwards
    newest = await plan(engine, {"sort": "-updated_at", "limit": 20})
    assert "ix_objects_type_updated" in newest and in_index_order(dialect, newest), newest
    oldest = await plan(engine, {"sort": "created_at", "limit": 20})
    assert "ix_objects_type_created" in oldest and in_index_order(dialect, oldest), oldest

    # type + one field, sorted by updated_at: the field's index (field_index_sql), O(page)
    common = {"where": {"numTracks": 7}, "sort": "-updated_at", "limit": 20}
    async with engine.begin() as conn:
        await conn.exec_driver_sql(field_index_sql(dialect, "numTracks"))
        await conn.exec_driver_sql("ANALYZE")
    shaped = await plan(engine, common)
    assert "ix_objects_data_numtracks_updated_at" in shaped, shaped
    assert in_index_order(dialect, shaped), shaped
    # and so is the next page (a row comparison after the cursor)
    rq = parse_rich_query(common)
    async with engine.connect() as conn:
        page, token = await run_object_query(conn, rq, owner_id=OWNER,
                                             interface="Collections", context=CTX, type_=TYPE)
    assert len(page) == 20 and token is not None
    assert [r.updated_at_us for r in page] == sorted((r.updated_at_us for r in page),
                                                     reverse=True)
    following = await plan(engine, {**common, "skip_token": token})
    assert "ix_objects_data_numtracks_updated_at" in following, following
    assert in_index_order(dialect, following), following


def test_where_from_the_command_line() -> None:
    where = where_from_cli(["numTracks>3", "name=Road trip", "byArtist.name^=Ni",
                            "genre in jazz, rock,3", "datePublished>=2026-01-01", "flag=true",
                            'code="3"', "name?", "draft!?"])
    assert where == {"numTracks": {"gt": 3}, "name": {"eq": "Road trip", "exists": True},
                     "byArtist.name": {"prefix": "Ni"}, "genre": {"in": ["jazz", "rock", 3]},
                     "datePublished": {"gte": "2026-01-01"}, "flag": {"eq": True},
                     "code": {"eq": "3"}, "draft": {"exists": False}}
    assert len(parse_rich_query({"where": where}).conditions) == 9
    for bad in ("numTracks", ">3", "name?x"):
        with pytest.raises(BadRequest):
            where_from_cli([bad])
