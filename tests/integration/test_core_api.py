"""The core request API on both backends: an owner creates, reads, updates and deletes a
MusicPlaylist; pagination, commit queries, idempotent repeats, Profile, tenancy, refold."""

from __future__ import annotations

import base64
import json
from typing import Any

import sqlalchemy as sa

from identity_hub.commits.refold import refold
from identity_hub.storage import store
from identity_hub.storage.tables import commits, objects
from tests.support.actors import Actor, iso, playlist


async def call(rt: Any, actor: Actor, request: dict[str, Any]) -> dict[str, Any]:
    return await rt.hub.handle(actor.did, request)


def payload_of(commit: dict[str, Any]) -> Any:
    raw = commit["payload"]
    return json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))


async def count(rt: Any, table: sa.Table) -> int:
    async with rt.db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar())


async def test_owner_crud_of_a_music_playlist(owner_hub: Any, alice: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    create = alice.commit(alice.did, payload=playlist("Road trip", 3), meta={"title": "Road"})
    resp = await call(rt, alice, alice.write(hub_did, create))
    assert resp["@type"] == "WriteResponse", resp
    object_id = resp["revisions"][0]
    assert len(resp["revisions"]) == 1

    listed = await call(rt, alice, alice.object_query(
        hub_did, context="https://schema.org", type="MusicPlaylist"))
    assert listed["@type"] == "ObjectQueryResponse" and listed["skip_token"] is None
    [obj] = listed["objects"]
    assert obj["id"] == object_id and obj["created_by"] == alice.did
    assert obj["interface"] == "Collections" and obj["commit_strategy"] == "basic"
    assert obj["sub"] == alice.did and obj["meta"] == {"title": "Road"}
    assert "data" not in obj

    update = alice.commit(alice.did, operation="update", object_id=object_id,
                          payload=playlist("Road trip", 4))
    resp = await call(rt, alice, alice.write(hub_did, update))
    assert len(resp["revisions"]) == 2 and resp["revisions"][0] == object_id

    with_data = await call(rt, alice, alice.object_query(hub_did, include_data=True))
    assert with_data["objects"][0]["data"]["numTracks"] == 4

    history = await call(rt, alice, alice.commit_query(hub_did, object_id=[object_id]))
    assert history["@type"] == "CommitQueryResponse"
    assert [c["header"]["rev"] for c in history["commits"]] == resp["revisions"]
    assert history["commits"][0]["header"]["object_id"] == object_id
    assert history["commits"][0]["header"]["iss"] == alice.did
    assert "object_id" not in history["commits"][1]["header"]
    assert payload_of(history["commits"][1])["numTracks"] == 4

    delete = alice.commit(alice.did, operation="delete", object_id=object_id)
    resp = await call(rt, alice, alice.write(hub_did, delete))
    assert len(resp["revisions"]) == 3
    gone = await call(rt, alice, alice.object_query(hub_did))
    assert gone["objects"] == []

    report = await refold(rt.db)
    assert report.objects == 1 and report.differed == []


async def test_a_repeated_commit_is_stored_once(owner_hub: Any, alice: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    create = alice.commit(alice.did)
    first = await call(rt, alice, alice.write(hub_did, create))
    again = await call(rt, alice, alice.write(hub_did, create))
    assert first == again
    assert await count(rt, commits) == 1


async def test_pagination_walks_every_object_once(owner_hub: Any, alice: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    rt.hub.settings = rt.hub.settings.replace(page_size=3)
    made = set()
    for i in range(8):
        resp = await call(rt, alice, alice.write(hub_did, alice.commit(
            alice.did, payload=playlist(f"p{i}"))))
        made.add(resp["revisions"][0])
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        query: dict[str, Any] = {"context": "https://schema.org", "type": "MusicPlaylist"}
        if token:
            query["skip_token"] = token
        page = await call(rt, alice, alice.object_query(hub_did, **query))
        pages += 1
        seen += [o["id"] for o in page["objects"]]
        token = page["skip_token"]
        if token is None:
            break
    assert pages == 3 and len(seen) == 8 and set(seen) == made
    commits_page = await call(rt, alice, alice.commit_query(hub_did))
    assert len(commits_page["commits"]) == 3 and commits_page["skip_token"]
    bad = await call(rt, alice, alice.commit_query(hub_did, skip_token=page_token_of_objects()))
    assert bad["error_code"] == "bad_request" and bad["target"] == "query.skip_token"


def page_token_of_objects() -> str:
    return store.encode_skip_token("o", 1)


async def test_object_query_filters(owner_hub: Any, alice: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    a = (await call(rt, alice, alice.write(hub_did, alice.commit(alice.did))))["revisions"][0]
    await call(rt, alice, alice.write(hub_did, alice.commit(
        alice.did, type_="Person", payload={"@context": "https://schema.org", "@type": "Person",
                                            "name": "Al"})))
    by_type = await call(rt, alice, alice.object_query(
        hub_did, context="https://schema.org", type="MusicPlaylist"))
    assert [o["id"] for o in by_type["objects"]] == [a]
    by_id = await call(rt, alice, alice.object_query(hub_did, object_id=[a, "nope"]))
    assert [o["id"] for o in by_id["objects"]] == [a]
    everything = await call(rt, alice, alice.object_query(hub_did))
    assert len(everything["objects"]) == 2


async def test_profile_is_unique_and_readable_by_any_authenticated_did(
        owner_hub: Any, alice: Actor, bob: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    profile = {"@context": "https://schema.org", "@type": "Person", "name": "Alice"}
    first = await call(rt, alice, alice.write(hub_did, alice.commit(
        alice.did, interface="Profile", type_="Person", payload=profile)))
    object_id = first["revisions"][0]
    second = await call(rt, alice, alice.write(hub_did, alice.commit(
        alice.did, interface="Profile", type_="Person", payload=profile,
        committed_at=iso())))
    if second.get("@type") == "WriteResponse":  # same second and same bytes: same commit
        assert second == first
    else:
        assert second["error_code"] == "bad_request" and object_id in second["developer_message"]
    read = await call(rt, bob, bob.object_query(hub_did, alice.did, interface="Profile"))
    assert [o["id"] for o in read["objects"]] == [object_id]
    commits_read = await call(rt, bob, bob.commit_query(hub_did, alice.did))
    assert {c["header"]["object_id"] for c in commits_read["commits"]} == {object_id}
    await call(rt, alice, alice.write(hub_did, alice.commit(alice.did)))
    still = await call(rt, bob, bob.commit_query(hub_did, alice.did))
    assert len(still["commits"]) == 1  # the Collections commit stays hidden
    denied = await call(rt, bob, bob.object_query(hub_did, alice.did))
    assert denied["error_code"] == "permissions_required"
    write = await call(rt, bob, bob.write(hub_did, bob.commit(alice.did), alice.did))
    assert write["error_code"] == "permissions_required"


async def test_only_registered_tenants_are_served(runtime: Any, alice: Actor) -> None:
    rt, hub_did = runtime, runtime.identity.did
    refused = await call(rt, alice, alice.write(hub_did, alice.commit(alice.did)))
    assert refused["error_code"] == "bad_request" and refused["target"] == "sub"
    assert await count(rt, commits) == 0
    rt.hub.settings = rt.hub.settings.replace(open_tenancy=True)
    ok = await call(rt, alice, alice.write(hub_did, alice.commit(alice.did)))
    assert ok["@type"] == "WriteResponse"


async def test_update_of_unknown_object_is_not_found(owner_hub: Any, alice: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    resp = await call(rt, alice, alice.write(hub_did, alice.commit(
        alice.did, operation="update", object_id="f" * 64)))
    assert resp["error_code"] == "not_found"
    assert await count(rt, commits) == 0 and await count(rt, objects) == 0


async def test_sequence_is_per_owner_and_gap_free(owner_hub: Any, alice: Actor, bob: Actor
                                                  ) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    await store.add_tenant(rt.db, bob.did)
    for i in range(3):
        await call(rt, alice, alice.write(hub_did, alice.commit(alice.did, payload=playlist(
            f"a{i}"))))
        await call(rt, bob, bob.write(hub_did, bob.commit(bob.did, payload=playlist(f"b{i}"))))
    async with rt.db.read() as conn:
        rows = (await conn.execute(sa.select(commits.c.owner_id, commits.c.seq)
                                   .order_by(commits.c.id))).all()
    by_owner: dict[int, list[int]] = {}
    for owner, seq in rows:
        by_owner.setdefault(owner, []).append(seq)
    assert sorted(by_owner.values()) == [[1, 2, 3], [1, 2, 3]]


async def test_rich_query_members_are_served(owner_hub: Any, alice: Actor) -> None:
    """where/sort/limit (docs/queries.md) are applied, not ignored; more in test_rich_queries."""
    rt, hub_did = owner_hub, owner_hub.identity.did
    ids = [(await call(rt, alice, alice.write(hub_did, alice.commit(alice.did, payload=playlist(
        f"p{n}", n)))))["revisions"][0] for n in (2, 5, 4)]
    resp = await call(rt, alice, alice.object_query(
        hub_did, where={"numTracks": {"gt": 3}}, sort="-numTracks", limit=1))
    assert [o["id"] for o in resp["objects"]] == [ids[1]] and resp["skip_token"]
    resp = await call(rt, alice, alice.object_query(
        hub_did, where={"numTracks": {"gt": 3}}, sort="-numTracks", limit=1,
        skip_token=resp["skip_token"]))
    assert [o["id"] for o in resp["objects"]] == [ids[2]] and resp["skip_token"] is None
    resp = await call(rt, alice, alice.object_query(hub_did, where={"numTracks": {"gt": []}}))
    assert (resp["error_code"], resp["target"]) == ("bad_request", "query.where.numTracks.gt")
