"""JSON Schemas of the protocol messages: they accept what the test actors and the Python client
really send, and refuse malformed requests with the protocol's error at the right target."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from identity_hub.client import HubClient, grant_payload
from identity_hub.errors import BadRequest, MissingParameter, WrongType
from identity_hub.protocol.schemas import (
    SCHEMA_DIR,
    check,
    is_iso_date_or_time,
    validate_request,
    validate_response,
    validator,
)
from tests.support.actors import Actor, playlist

HUB = "did:example:hub"


@pytest.fixture(scope="module")
def alice() -> Actor:
    return Actor("Ed25519")


class RecordingClient(HubClient):
    """The real client, whose transport records each request instead of sending it; answers
    with an empty response of the right type."""

    sent: list[dict[str, Any]]

    async def _discover(self) -> Any:
        return None

    async def send(self, request: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(json.loads(json.dumps(request)))
        kind = request["@type"].replace("Request", "Response")
        body: dict[str, Any] = {"@context": request["@context"], "@type": kind}
        if kind == "WriteResponse":
            body["revisions"] = ["0" * 64]
        else:
            body[{"ObjectQueryResponse": "objects", "CommitQueryResponse": "commits",
                  "AuditQueryResponse": "entries"}[kind]] = []
            body["skip_token"] = None
        return body


@pytest.fixture
def client(alice: Actor) -> RecordingClient:
    c = RecordingClient("http://127.0.0.1:1/.identity", alice.did,
                        [(alice.kid, json.loads(alice.private_jwk()))], hub_did=HUB)
    c.sent = []
    return c


def test_every_schema_is_valid_and_compiles() -> None:
    names = sorted(p.stem for p in SCHEMA_DIR.glob("*.json"))
    assert {"WriteRequest", "ObjectQueryRequest", "CommitQueryRequest", "AuditQueryRequest",
            "WriteResponse", "ObjectQueryResponse", "CommitQueryResponse", "AuditQueryResponse",
            "ErrorResponse", "PermissionGrant", "Profile", "CommitHeader"} <= set(names)
    for name in names:
        Draft202012Validator.check_schema(json.loads((SCHEMA_DIR / f"{name}.json").read_text()))
        assert validator(name) is validator(name)  # compiled once


# --- what the real clients send --------------------------------------------------------------

def actor_requests(alice: Actor, bob: Actor) -> list[dict[str, Any]]:
    oid = "a" * 64
    return [
        alice.write(HUB, alice.commit(alice.did)),
        alice.write(HUB, alice.commit(alice.did, operation="update", object_id=oid,
                                      payload=playlist("x", 4), meta={"title": "x"})),
        alice.write(HUB, alice.commit(alice.did, operation="delete", object_id=oid)),
        alice.write(HUB, alice.commit(alice.did, interface="Profile", type_="Person",
                                      payload={"@context": "https://schema.org",
                                               "@type": "Person", "name": "Alice"},
                                      header={"note": "kept"})),
        alice.write(HUB, alice.commit(alice.did, payload=b"\x85o\x00raw automerge bytes",
                                      strategy="automerge")),
        alice.object_query(HUB),
        alice.object_query(HUB, context="https://schema.org", type="MusicPlaylist"),
        alice.object_query(HUB, object_id=[oid], include_data=True, skip_token="eyJrIjoibyJ9"),
        alice.object_query(HUB, interface="Permissions", filters=[]),
        bob.object_query(HUB, alice.did, interface="Profile"),
        alice.commit_query(HUB),
        alice.commit_query(HUB, object_id=[oid], revision=[oid]),
        {**alice.commit_query(HUB), "fields": []},
        alice.request("AuditQueryRequest", HUB),
    ]


def test_actor_requests_are_accepted(alice: Actor) -> None:
    for request in actor_requests(alice, Actor("P-256")):
        validate_request(request)


async def test_client_requests_are_accepted(client: RecordingClient, alice: Actor) -> None:
    oid = await client.create(playlist("Road trip", 3), meta={"title": "Road"})
    await client.update(oid, playlist("Road trip", 4))
    await client.delete(oid, context="https://schema.org", type_="MusicPlaylist")
    await client.create({"@context": "https://schema.org", "@type": "Person", "name": "A"},
                        interface="Profile")
    await client.query_objects()
    await client.query_objects(context="https://schema.org", type_="MusicPlaylist",
                               object_ids=[oid], include_data=True)
    await client.query_commits(object_ids=[oid], revisions=[oid])
    await client.grant("did:example:app", context="https://schema.org", type_="MusicPlaylist",
                       allow="-R--", expires="2027-01-01T00:00:00Z")
    await client.grants(sub="did:example:owner")
    await client.audit(grantee="did:example:app", since="2026-01-01T00:00:00Z")
    kinds = {r["@type"] for r in client.sent}
    assert kinds == {"WriteRequest", "ObjectQueryRequest", "CommitQueryRequest",
                     "AuditQueryRequest"}
    for request in client.sent:
        validate_request(request)


def test_client_grant_payloads_match_the_grant_schema(alice: Actor) -> None:
    check("PermissionGrant", grant_payload(alice.did, "did:example:app", context="https://x",
                                           type_="T", allow="CR--", created_by="did:example:app",
                                           not_before="2026-01-01T00:00:00Z",
                                           unrevocable_until="2026-02-01T00:00:00.000Z"))
    check("PermissionGrant", grant_payload(alice.did, "did:example:app", context="https://x",
                                           type_="T", allow="-R-D", object_ids=["a" * 64]))


def test_profile_and_payload_schemas() -> None:
    check("Profile", {"@context": "https://schema.org", "@type": "Person", "name": "Alice",
                      "sameAs": ["https://alice.example"], "image": {"@type": "ImageObject"}})
    check("JsonLdObject", playlist())
    with pytest.raises(WrongType) as info:
        check("Profile", {"@context": "https://schema.org", "@type": "Person", "name": 5},
              base="commit.payload")
    assert info.value.target == "commit.payload.name"
    with pytest.raises(MissingParameter) as missing:
        check("JsonLdObject", {"@context": "https://schema.org"}, base="commit.payload")
    assert missing.value.target == "commit.payload.@type"


# --- malformed requests ----------------------------------------------------------------------

def malformed(alice: Actor) -> list[tuple[str, Any, type[BadRequest], str | None]]:
    write = alice.write(HUB, alice.commit(alice.did))
    query = alice.object_query(HUB)
    commit = write["commit"]

    def q(**members: Any) -> dict[str, Any]:
        return {**query, "query": {"interface": "Collections", **members}}

    def drop(d: dict[str, Any], key: str) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k != key}

    return [
        ("not an object", [1, 2], BadRequest, None),
        ("wrong @context", {**write, "@context": "https://example.com"}, BadRequest, "@context"),
        ("no @type", drop(write, "@type"), MissingParameter, "@type"),
        ("unknown @type", {**write, "@type": "DeleteEverything"}, BadRequest, "@type"),
        ("missing sub", drop(write, "sub"), MissingParameter, "sub"),
        ("iss not a string", {**write, "iss": 7}, WrongType, "iss"),
        ("missing commit", drop(write, "commit"), MissingParameter, "commit"),
        ("commit not an object", {**write, "commit": "x"}, WrongType, "commit"),
        ("extra commit member", {**write, "commit": {**commit, "signatures": []}}, BadRequest,
         "commit"),
        ("missing signature", {**write, "commit": drop(commit, "signature")}, MissingParameter,
         "commit.signature"),
        ("payload not a string", {**write, "commit": {**commit, "payload": 5}},
         WrongType, "commit.payload"),
        ("query missing", drop(query, "query"), MissingParameter, "query"),
        ("query not object", {**query, "query": []}, WrongType, "query"),
        ("query without interface", {**query, "query": {}}, MissingParameter,
         "query.interface"),
        ("unknown interface", q(interface="Stores"), BadRequest, "query.interface"),
        ("context without type", q(context="https://schema.org"), BadRequest,
         "query.context, query.type"),
        ("type without context", q(type="MusicPlaylist"), BadRequest,
         "query.context, query.type"),
        ("object_id not a list", q(object_id="abc"), WrongType, "query.object_id"),
        ("object_id item", q(object_id=["a", 3]), WrongType, "query.object_id[1]"),
        ("too many object_ids", q(object_id=["a"] * 1001), BadRequest, "query.object_id"),
        ("include_data not bool", q(include_data="yes"), WrongType, "query.include_data"),
        ("skip_token not string", q(skip_token=5), WrongType, "query.skip_token"),
        ("where not object", q(where="numTracks>3"), WrongType, "query.where"),
        ("unknown operator", q(where={"numTracks": {"like": 3}}), BadRequest,
         "query.where.numTracks"),
        ("empty operators", q(where={"numTracks": {}}), BadRequest, "query.where.numTracks"),
        ("bad path", q(where={"a..b": 1}), BadRequest, "query.where"),
        ("numeric path segment", q(where={"tracks.0": 1}), BadRequest, "query.where"),
        ("null equality", q(where={"a": None}), WrongType, "query.where.a"),
        ("in not a list", q(where={"a": {"in": 3}}), WrongType, "query.where.a.in"),
        ("in too long", q(where={"a": {"in": list(range(101))}}), BadRequest,
         "query.where.a.in"),
        ("range on bool", q(where={"a": {"gt": True}}), WrongType, "query.where.a.gt"),
        ("range not a date", q(where={"a": {"gte": "yesterday"}}), BadRequest,
         "query.where.a.gte"),
        ("exists not bool", q(where={"a": {"exists": 1}}), WrongType, "query.where.a.exists"),
        ("list item without op", q(where=[{"field": "a", "value": 1}]), MissingParameter,
         "query.where[0].op"),
        ("list item bad op", q(where=[{"field": "a", "op": "eq", "value": 1},
                                      {"field": "b", "op": "ne", "value": 1}]), BadRequest,
         "query.where[1].op"),
        ("too many conditions", q(where={f"f{i}": i for i in range(17)}), BadRequest,
         "query.where"),
        ("path too deep", q(where={".".join("abcdefghi"): 1}), BadRequest, "query.where"),
        ("sort not a field", q(sort="-updated at"), BadRequest, "query.sort"),
        ("sort item", q(sort=["-updated_at", 5]), WrongType, "query.sort[1]"),
        ("limit zero", q(limit=0), BadRequest, "query.limit"),
        ("limit too big", q(limit=1001), BadRequest, "query.limit"),
        ("limit not integer", q(limit=2.5), WrongType, "query.limit"),
        ("commit query object_id", {**alice.commit_query(HUB), "query": {"object_id": "x"}},
         WrongType, "query.object_id"),
        ("commit query fields", {**alice.commit_query(HUB), "fields": "payload"}, WrongType,
         "fields"),
        ("audit since", {**alice.request("AuditQueryRequest", HUB),
                         "query": {"since": "yesterday"}}, BadRequest, "query.since"),
        ("audit grantee", {**alice.request("AuditQueryRequest", HUB),
                           "query": {"grantee": "bob"}}, BadRequest, "query.grantee"),
    ]


def test_malformed_requests_name_the_failing_property(alice: Actor) -> None:
    for name, request, error, target in malformed(alice):
        with pytest.raises(BadRequest) as info:
            validate_request(request)
        assert type(info.value) is error, (name, info.value)
        assert info.value.target == target, (name, info.value)
        assert "jsonschema" not in info.value.message and "{" not in info.value.message, name


def test_rich_query_requests_are_accepted(alice: Actor) -> None:
    for query in (
        {"where": {"numTracks": {"gt": 3}}, "sort": "-updated_at", "limit": 20},
        {"where": {"byArtist.name": "Nina", "data.genre": {"in": ["jazz", 2, True]},
                   "created_at": {"gte": "2026-01-01"}, "updated_at": {"lt": 1.5e15},
                   "created_by": {"prefix": "did:jwk:"}, "name": {"exists": True}},
         "sort": ["name", "-created_at"]},
        {"where": [{"field": "numTracks", "op": "lte", "value": 10},
                   {"field": "datePublished", "op": "gt", "value": "2026-11-21T18:30:06.289Z"}]},
        {"where": {"@type": "MusicPlaylist", "schema:name": {"eq": "x"}}},
    ):
        validate_request(alice.object_query(HUB, **query))


def test_permission_grant_schema_targets(alice: Actor) -> None:
    good = grant_payload(alice.did, "did:example:app", context="https://schema.org",
                         type_="MusicPlaylist", allow="-R--")
    for change, target in (
        ({"allow": "----"}, "commit.payload.allow"),
        ({"allow": "RW"}, "commit.payload.allow"),
        ({"grantee": "bob"}, "commit.payload.grantee"),
        ({"expires": "next week"}, "commit.payload.expires"),
        ({"object_ids": []}, "commit.payload.object_ids"),
        ({"extra": 1}, "commit.payload"),
        ({"@type": "Grant"}, "commit.payload.@type"),
    ):
        with pytest.raises(BadRequest) as info:
            check("PermissionGrant", {**good, **change}, base="commit.payload")
        assert info.value.target == target, (change, info.value)
    with pytest.raises(MissingParameter) as missing:
        check("PermissionGrant", {k: v for k, v in good.items() if k != "owner"},
              base="commit.payload")
    assert missing.value.target == "commit.payload.owner"


def test_commit_header_schema() -> None:
    header = {"interface": "Collections", "context": "https://schema.org",
              "type": "MusicPlaylist", "operation": "create",
              "committed_at": "2026-11-21T18:30:06.289Z", "commit_strategy": "basic",
              "sub": "did:example:alice", "kid": "did:example:alice#key-1", "alg": "EdDSA"}
    check("CommitHeader", header)
    check("CommitHeader", {**header, "operation": "update", "object_id": "a" * 64})
    for bad in ({**header, "object_id": "a" * 64}, {**header, "operation": "delete"},
                {**header, "rev": "x"}, {**header, "committed_at": "yesterday"}):
        with pytest.raises(BadRequest):
            check("CommitHeader", bad, base="commit.protected")


def test_responses() -> None:
    ctx = "https://schema.identity.foundation/0.1"
    validate_response({"@context": ctx, "@type": "ErrorResponse", "error_code": "bad_request",
                       "target": "query", "developer_message": "x"})
    validate_response({"@context": ctx, "@type": "WriteResponse", "revisions": ["0" * 64]})
    with pytest.raises(BadRequest):
        validate_response({"@context": ctx, "@type": "WriteResponse", "revisions": ["xyz"]})
    with pytest.raises(BadRequest):
        validate_response({"@context": ctx, "@type": "ErrorResponse", "error_code": "oops"})


@pytest.mark.parametrize("value,ok", [
    ("2026-11-21", True), ("2026-02-30", False), ("2026-11-21T18:30:06.289Z", True),
    ("2026-11-21T18:30:06+02:00", True), ("2026-11-21T25:00:00Z", False), ("yesterday", False),
    ("2026-11", False), (20261121, False),
])
def test_iso_dates(value: Any, ok: bool) -> None:
    assert is_iso_date_or_time(value) is ok


def test_same_errors_as_the_handlers(alice: Actor) -> None:
    """Put in front of the handlers, the validator answers the malformed requests of
    tests/integration/test_bad_input.py with the code and target the handlers give."""
    from tests.integration.test_bad_input import SHAPE_CASES, mutate_commit, request_cases

    cases = [(name, request, code, target)
             for name, request, code, target in request_cases(alice, HUB)]
    cases += [(how, alice.write(HUB, mutate_commit(alice, how)), code, target)
              for how, code, target in SHAPE_CASES]
    refused = 0
    for name, request, code, target in cases:
        try:
            validate_request(request)
        except BadRequest as exc:
            refused += 1
            assert (exc.code.value, exc.target) == (code, target), name
    assert refused >= 10


def test_the_compiled_fast_path_agrees_with_jsonschema() -> None:
    """validate_request accepts through a fastjsonschema copy of the schemas; it must judge every
    request exactly as the jsonschema validators (which name the failing property) do."""
    from identity_hub.protocol.schemas import REQUEST_TYPES, _valid_fast, validator
    from tests.integration.test_bad_input import request_cases
    from tests.support.actors import Actor, playlist

    a = Actor()
    hub = "did:ex:hub"
    corpus = [req for _, req, _, _ in request_cases(a, hub)] + [
        a.write(hub, a.commit(a.did)),
        a.write(hub, a.commit(a.did, operation="update", object_id="f" * 64,
                              payload=playlist("x"))),
        a.object_query(hub, context="https://schema.org", type="MusicPlaylist"),
        a.object_query(hub, include_data=True, object_id=["a", "b"], skip_token="xyz"),
        a.object_query(hub, where={"numTracks": {"gt": 3}, "byArtist.name": "A"},
                       sort=["-updated_at"], limit=20),
        a.object_query(hub, where={"name": {"prefix": "Ro"}}, sort="bad sort key!"),
        a.object_query(hub, limit=0),
        a.commit_query(hub, object_id=["a"], revision=["b"]),
        a.commit_query(hub, object_id="not-a-list"),
        a.request("AuditQueryRequest", hub, query={"since": "2026-01-01T00:00:00Z"}),
        a.request("AuditQueryRequest", hub, query={"since": "yesterday"}),
        {**a.write(hub, a.commit(a.did)), "iss": 7},
    ]
    checked = 0
    for request in corpus:
        if not isinstance(request, dict):
            continue
        for name in ("Request", *REQUEST_TYPES):
            if name != "Request" and request.get("@type") != name:
                continue
            assert _valid_fast(name, request) == validator(name).is_valid(request), (name, request)
            checked += 1
    assert checked > 40
