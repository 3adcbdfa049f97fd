"""A grantee's commit is judged by the grants in force at its committed_at; so a revocation may
not be dated before a commit the hub already accepted under the grant (the hub would then hold a
commit its own rule calls unauthorized, and a refold or a replica would disagree). A client's
commit also needs a grant when it arrives; a replicated one does not."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from identity_hub.client import grant_payload
from identity_hub.permissions import audit
from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE
from identity_hub.storage import store
from identity_hub.storage.tables import commits
from identity_hub.sync.receiver import Outcome, Receiver
from tests.integration.test_sync import parse_rev
from tests.support.actors import Actor, iso, playlist


async def test_a_revocation_cannot_be_dated_before_an_accepted_commit(
        owner_hub: Any, alice: Actor, bob: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did

    async def send(actor: Actor, commit: dict[str, Any]) -> dict[str, Any]:
        return await rt.hub.handle(actor.did, actor.write(hub_did, commit, alice.did))

    grant = alice.commit(alice.did, interface="Permissions", context=GRANT_CONTEXT,
                         type_=GRANT_TYPE, committed_at=iso(time.time() - 120),
                         payload=grant_payload(alice.did, bob.did, context="https://schema.org",
                                               type_="MusicPlaylist", allow="C---"))
    grant_id = (await send(alice, grant))["revisions"][0]
    created = await send(bob, bob.commit(alice.did, payload=playlist("bob's")))
    assert created["@type"] == "WriteResponse", created

    def revoke(ts: float) -> dict[str, Any]:
        return alice.commit(alice.did, interface="Permissions", context=GRANT_CONTEXT,
                            type_=GRANT_TYPE, operation="delete", object_id=grant_id,
                            committed_at=iso(ts))

    backdated = await send(alice, revoke(time.time() - 60))  # inside the skew window
    assert (backdated["error_code"], backdated["target"]) == (
        "bad_request", "commit.protected.committed_at"), backdated
    weaker = alice.commit(alice.did, interface="Permissions", context=GRANT_CONTEXT,
                          type_=GRANT_TYPE, operation="update", object_id=grant_id,
                          committed_at=iso(time.time() - 60),
                          payload=grant_payload(alice.did, bob.did, context="https://schema.org",
                                                type_="MusicPlaylist", allow="-R--"))
    assert (await send(alice, weaker))["error_code"] == "bad_request"
    assert (await send(alice, revoke(time.time())))["@type"] == "WriteResponse"
    refused_after = await send(bob, bob.commit(alice.did, payload=playlist("late")))
    assert refused_after["error_code"] == "permissions_required"
    async with rt.db.read() as conn:
        oid = await store.owner_id(conn, alice.did)
        assert oid is not None
        assert await store.latest_commit_by(conn, oid, bob.did, "https://schema.org",
                                            "MusicPlaylist") is not None


async def test_a_backdated_commit_after_the_revocation_is_refused_but_replicates(
        owner_hub: Any, alice: Actor, bob: Actor) -> None:
    """A client's grantee commit needs its grant at its committed_at and when it arrives: one
    dated a few seconds before a revocation the hub already holds is refused. A replicated
    commit is judged at its committed_at only (by the commits alone), so replicas agree."""
    rt, hub_did = owner_hub, owner_hub.identity.did

    async def send(actor: Actor, commit: dict[str, Any]) -> dict[str, Any]:
        return await rt.hub.handle(actor.did, actor.write(hub_did, commit, alice.did))

    now = time.time()
    grant = alice.commit(alice.did, interface="Permissions", context=GRANT_CONTEXT,
                         type_=GRANT_TYPE, committed_at=iso(now - 60),
                         payload=grant_payload(alice.did, bob.did, context="https://schema.org",
                                               type_="MusicPlaylist", allow="C---"))
    grant_id = (await send(alice, grant))["revisions"][0]
    assert (await send(alice, alice.commit(
        alice.did, interface="Permissions", context=GRANT_CONTEXT, type_=GRANT_TYPE,
        operation="delete", object_id=grant_id, committed_at=iso(now))))["@type"] == (
            "WriteResponse")

    async with rt.db.read() as conn:
        before = (await conn.execute(sa.select(sa.func.count()).select_from(commits))).scalar()
    raced = await send(bob, bob.commit(alice.did, payload=playlist("raced"),
                                       committed_at=iso(now - 5)))  # inside the skew window
    assert (raced.get("error_code"), raced.get("target")) == ("permissions_required",
                                                              "commit"), raced
    assert "revoked" in raced["developer_message"]
    async with rt.db.read() as conn:
        after = (await conn.execute(sa.select(sa.func.count()).select_from(commits))).scalar()
        oid = await store.owner_id(conn, alice.did)
        assert oid is not None
        [entry] = await audit.query(conn, oid, requester=bob.did)
    assert after == before
    assert (entry.allowed, entry.outcome) == (False, "permissions_required")

    # the same race from a peer hub: the grant was in force at committed_at, so it is stored
    receiver = Receiver(rt.hub.commits, rt.hub.resolver)
    wire = bob.commit(alice.did, payload=playlist("replicated"), committed_at=iso(now - 5))
    assert await receiver.apply(alice.did, wire) is Outcome.STORED
    late = bob.commit(alice.did, payload=playlist("late"), committed_at=iso(now + 1))
    # after the revocation: held so that every replica holds the same commits, but excluded
    # (not folded: permissions/exclusion.py)
    assert await receiver.apply(alice.did, late) is Outcome.STORED
    async with rt.db.engine.connect() as conn:
        flags = dict((await conn.execute(sa.select(commits.c.rev, commits.c.excluded).where(
            commits.c.rev.in_([parse_rev(wire), parse_rev(late)])))).all())
    assert flags == {parse_rev(wire): False, parse_rev(late): True}
