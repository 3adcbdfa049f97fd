"""Each malformed request or commit gets its protocol error with the property at fault, and
nothing is stored."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from identity_hub.errors import AuthenticationFailed
from identity_hub.storage.tables import commits, objects
from tests.support.actors import Actor, iso, playlist


async def stored(rt: Any) -> tuple[int, int]:
    async with rt.db.read() as conn:
        n_commits = (await conn.execute(sa.select(sa.func.count()).select_from(commits))).scalar()
        n_objects = (await conn.execute(sa.select(sa.func.count()).select_from(objects))).scalar()
    return int(n_commits or 0), int(n_objects or 0)


def drop(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


COMMIT_CASES = [
    # (name, commit kwargs / mutation, expected code, expected target)
    ("bad operation", {"operation": "destroy"}, "bad_request", "commit.protected.operation"),
    ("create with object_id", {"object_id": "a" * 64}, "bad_request",
     "commit.protected.object_id"),
    ("update without object_id", {"operation": "update"}, "bad_request",
     "commit.protected.object_id"),
    ("rev in protected", {"rev": "abc"}, "bad_request", "commit.protected.rev"),
    ("unknown interface", {"interface": "Stores"}, "bad_request", "commit.protected.interface"),
    ("unknown strategy", {"strategy": "magic"}, "bad_request",
     "commit.protected.commit_strategy"),
    ("committed_at not a date", {"committed_at": "yesterday"}, "bad_request",
     "commit.protected.committed_at"),
    ("committed_at far future", {"committed_at": iso(time.time() + 3600)}, "bad_request",
     "commit.protected.committed_at"),
    ("payload not JSON-LD", {"payload": {"name": "x"}}, "bad_request", "commit.payload"),
    ("payload type contradicts", {"payload": {"@context": "https://schema.org",
                                              "@type": "Person"}}, "bad_request",
     "commit.payload"),
    ("payload not JSON", {"payload": b"\xff\xfe not json"}, "bad_request", "commit.payload"),
    ("payload duplicate keys", {"payload": b'{"@context":"https://schema.org","@type":'
                                           b'"MusicPlaylist","name":"a","name":"b"}'},
     "bad_request", "commit.payload"),
    ("payload NaN", {"payload": b'{"@context":"https://schema.org","@type":"MusicPlaylist",'
                                b'"n":NaN}'}, "bad_request", "commit.payload"),
    ("payload too deep", {"payload": b'{"@context":"https://schema.org","@type":"MusicPlaylist"'
                                     b',"x":' + b"[" * 200 + b"]" * 200 + b"}"},
     "bad_request", "commit.payload"),
    ("Actions interface", {"interface": "Actions"}, "not_implemented",
     "commit.protected.interface"),
    ("grant with wrong type", {"interface": "Permissions"}, "bad_request",
     "commit.protected.type"),
]


@pytest.mark.parametrize("name,kwargs,code,target", COMMIT_CASES, ids=[c[0] for c in COMMIT_CASES])
async def test_malformed_commit(owner_hub: Any, alice: Actor, name: str, kwargs: dict[str, Any],
                                code: str, target: str) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    kwargs = dict(kwargs)
    if "strategy" in kwargs:
        kwargs["strategy"] = kwargs.pop("strategy")
    commit = alice.commit(alice.did, **kwargs)
    resp = await rt.hub.handle(alice.did, alice.write(hub_did, commit))
    assert resp["@type"] == "ErrorResponse", resp
    assert (resp["error_code"], resp.get("target")) == (code, target), resp
    assert await stored(rt) == (0, 0)


def mutate_commit(alice: Actor, how: str) -> Any:
    good = alice.commit(alice.did)
    if how == "not an object":
        return "a string"
    if how == "extra member":
        return {**good, "signatures": []}
    if how == "missing signature":
        return drop(good, "signature")
    if how == "tampered payload":
        other = alice.commit(alice.did, payload=playlist("other"))
        return {**good, "payload": other["payload"]}
    if how == "bad base64":
        return {**good, "protected": good["protected"] + "!!"}
    if how == "signed by another key":
        mallory = Actor()
        forged = mallory.commit(alice.did)
        return forged  # kid is mallory's, iss of the request is alice
    if how == "kid names alice but key is mallory's":
        mallory = Actor()
        protected = {"interface": "Collections", "context": "https://schema.org",
                     "type": "MusicPlaylist", "operation": "create", "committed_at": iso(),
                     "commit_strategy": "basic", "sub": alice.did, "kid": alice.kid,
                     "alg": "EdDSA"}
        return mallory.sign_flattened(protected, b'{"@context":"https://schema.org",'
                                                 b'"@type":"MusicPlaylist"}')
    raise AssertionError(how)


SHAPE_CASES = [
    ("not an object", "bad_request", "commit"),
    ("extra member", "bad_request", "commit"),
    ("missing signature", "bad_request", "commit.signature"),
    ("tampered payload", "bad_request", "commit"),
    ("bad base64", "bad_request", "commit"),
    ("signed by another key", "bad_request", "commit"),
    ("kid names alice but key is mallory's", "bad_request", "commit"),
]


@pytest.mark.parametrize("how,code,target", SHAPE_CASES, ids=[c[0] for c in SHAPE_CASES])
async def test_bad_commit_envelope(owner_hub: Any, alice: Actor, how: str, code: str,
                                   target: str) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    resp = await rt.hub.handle(alice.did, alice.write(hub_did, mutate_commit(alice, how)))
    assert (resp.get("error_code"), resp.get("target")) == (code, target), resp
    assert await stored(rt) == (0, 0)


def request_cases(alice: Actor, hub_did: str) -> list[tuple[str, Any, str, str | None]]:
    write = alice.write(hub_did, alice.commit(alice.did))
    return [
        ("not an object", [1, 2], "bad_request", None),
        ("wrong @context", {**write, "@context": "https://example.com"}, "bad_request",
         "@context"),
        ("unknown @type", {**write, "@type": "DeleteEverything"}, "bad_request", "@type"),
        ("missing sub", drop(write, "sub"), "bad_request", "sub"),
        ("aud not this hub", {**write, "aud": "did:example:other"}, "bad_request", "aud"),
        ("sub not the commit's sub", {**write, "sub": "did:example:other"}, "bad_request",
         "sub"),
        ("missing commit", drop(write, "commit"), "bad_request", "commit"),
        ("query not object", alice.request("ObjectQueryRequest", hub_did, query=[]),
         "bad_request", "query"),
        ("query without interface", alice.request("ObjectQueryRequest", hub_did, query={}),
         "bad_request", "query.interface"),
        ("context without type", alice.object_query(hub_did, context="https://schema.org"),
         "bad_request", "query.context, query.type"),
        ("object_id not a list", alice.object_query(hub_did, object_id="abc"), "bad_request",
         "query.object_id"),
        ("forged skip_token", alice.object_query(hub_did, skip_token="eyJrIjoiYyJ9"),
         "bad_request", "query.skip_token"),
        ("commit query fields", {**alice.commit_query(hub_did), "fields": ["payload"]},
         "not_implemented", "fields"),
    ]


async def test_malformed_requests(owner_hub: Any, alice: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    for name, request, code, target in request_cases(alice, hub_did):
        resp = await rt.hub.handle(alice.did, request)
        assert resp["@type"] == "ErrorResponse", (name, resp)
        assert resp["error_code"] == code, (name, resp)
        assert resp.get("target") == target, (name, resp)
        assert "Traceback" not in str(resp)
    assert await stored(rt) == (0, 0)


async def test_iss_must_be_the_authenticated_signer(owner_hub: Any, alice: Actor, bob: Actor
                                                    ) -> None:
    """The reference hub trusts `iss`; here a request whose iss is not its signer is refused."""
    rt, hub_did = owner_hub, owner_hub.identity.did
    spoofed = alice.object_query(hub_did)  # iss = sub = alice
    with pytest.raises(AuthenticationFailed):
        await rt.hub.handle(bob.did, spoofed)
