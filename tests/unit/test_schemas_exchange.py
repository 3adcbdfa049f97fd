"""The schemas against a real exchange: requests the test actors send through the core request
API (on SQLite and PostgreSQL) are accepted, and every answer the hub gives matches its response
schema."""

from __future__ import annotations

from typing import Any

from identity_hub.client import grant_payload
from identity_hub.protocol.schemas import check, validate_request, validate_response
from tests.support.actors import Actor, playlist


async def exchange(rt: Any, actor: Actor, request: dict[str, Any]) -> dict[str, Any]:
    validate_request(request)
    response: dict[str, Any] = await rt.hub.handle(actor.did, request)
    validate_response(response)
    return response


async def test_requests_and_responses_of_a_session(owner_hub: Any, alice: Actor, bob: Actor
                                                   ) -> None:
    rt, hub = owner_hub, owner_hub.identity.did
    created = await exchange(rt, alice, alice.write(hub, alice.commit(
        alice.did, payload=playlist("Road trip", 3), meta={"title": "Road"})))
    oid = created["revisions"][0]
    await exchange(rt, alice, alice.write(hub, alice.commit(
        alice.did, operation="update", object_id=oid, payload=playlist("Road trip", 4))))
    profile = {"@context": "https://schema.org", "@type": "Person", "name": "Alice"}
    check("Profile", profile)
    await exchange(rt, alice, alice.write(hub, alice.commit(
        alice.did, interface="Profile", type_="Person", payload=profile)))
    grant = grant_payload(alice.did, bob.did, context="https://schema.org",
                          type_="MusicPlaylist", allow="-R--")
    check("PermissionGrant", grant)
    await exchange(rt, alice, alice.write(hub, alice.commit(
        alice.did, interface="Permissions", context="schema.identity.foundation/0.1",
        type_="PermissionGrant", payload=grant)))

    listed = await exchange(rt, alice, alice.object_query(hub, include_data=True))
    assert listed["objects"][0]["data"]["numTracks"] == 4
    await exchange(rt, alice, alice.object_query(hub, context="https://schema.org",
                                                 type="MusicPlaylist"))
    history = await exchange(rt, alice, alice.commit_query(hub, object_id=[oid]))
    assert len(history["commits"]) == 2
    await exchange(rt, bob, bob.object_query(hub, alice.did, interface="Profile"))
    shared = await exchange(rt, bob, bob.object_query(hub, alice.did, include_data=True))
    assert [o["id"] for o in shared["objects"]] == [oid]
    audit = await exchange(rt, alice, alice.request("AuditQueryRequest", hub))
    assert audit["entries"] and audit["entries"][0]["requester"] == bob.did

    refused = await exchange(rt, bob, bob.write(hub, bob.commit(alice.did), alice.did))
    assert refused["@type"] == "ErrorResponse"
    missing = await rt.hub.handle(alice.did, alice.object_query(hub, object_id="x"))
    validate_response(missing)
    assert missing["error_code"] == "bad_request"
