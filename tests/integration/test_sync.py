"""Replication between two in-process hubs on separate databases (both backends)."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from identity_hub.client import HubErrorResponse
from identity_hub.sync import peers
from identity_hub.sync.puller import pull_peer
from identity_hub.sync.receiver import Outcome
from tests.support.actors import Actor, iso, playlist
from tests.support.sync import (
    LocalLink,
    Node,
    commit_revs,
    drop_db,
    make_identities,
    materialized,
    new_db_url,
    open_node,
    pull,
    sync_grant,
)


@pytest.fixture(scope="session")
def sync_identities(tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    return make_identities(pathlib.Path(tmp_path_factory.mktemp("sync-ids")), 3)


@contextlib.asynccontextmanager
async def two_nodes(backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
                    ids: list[pathlib.Path], owners: list[str]) -> AsyncIterator[list[Node]]:
    admin = request.getfixturevalue("pg_admin_url") if backend == "postgres" else None
    urls = [await new_db_url(backend, tmp_path, admin) for _ in range(2)]
    try:
        async with open_node("a", urls[0], tmp_path / "a", ids[0], owners) as a, \
                open_node("b", urls[1], tmp_path / "b", ids[1], owners) as b:
            yield [a, b]
    finally:
        for url in urls:
            await drop_db(url, admin)


@pytest.fixture
async def pair(backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
               sync_identities: list[pathlib.Path], alice: Actor, bob: Actor
               ) -> AsyncIterator[list[Node]]:
    async with two_nodes(backend, tmp_path, request, sync_identities,
                         [alice.did, bob.did]) as nodes:
        a, b = nodes
        assert (await a.write(alice, sync_grant(alice, b.did), alice.did))["@type"] == \
            "WriteResponse"
        yield nodes


def ok(response: dict[str, Any]) -> dict[str, Any]:
    assert response["@type"] == "WriteResponse", response
    return response


async def test_creates_updates_deletes_replicate(pair: list[Node], alice: Actor) -> None:
    a, b = pair
    first = ok(await a.write(alice, alice.commit(alice.did, payload=playlist("one")),
                             alice.did))["revisions"][0]
    second = ok(await a.write(alice, alice.commit(alice.did, payload=playlist("two")),
                              alice.did))["revisions"][0]
    ok(await a.write(alice, alice.commit(alice.did, operation="update", object_id=first,
                                         payload=playlist("one, again")), alice.did))
    ok(await a.write(alice, alice.commit(alice.did, operation="delete", object_id=second),
                     alice.did))
    result = await pull(b, a, alice.did, limit=2)
    assert result.tally.stored == 5 and result.pages == 3
    assert await commit_revs(b, alice.did) == await commit_revs(a, alice.did)
    assert await materialized(b, alice.did) == await materialized(a, alice.did)
    state = await materialized(b, alice.did)
    assert state[second][8] is True  # deleted replicated
    peer = (await peers.list_peers(b.runtime.db, alice.did))[0]
    assert (peer.cursor, peer.peer_last_seq, peer.lag) == (5, 5, 0)
    # Pulling again is a no-op; so is re-applying what is held.
    again = await pull(b, a, alice.did)
    assert again.tally.stored == 0 and again.pulled == 0
    # And the other way: b's own writes reach a (a needs b to hold a grant naming a).
    ok(await b.write(alice, sync_grant(alice, a.did), alice.did))
    ok(await b.write(alice, alice.commit(alice.did, payload=playlist("from b")), alice.did))
    back = await pull(a, b, alice.did)
    assert back.tally.stored == 2 and back.tally.held == 5
    assert sorted(await commit_revs(a, alice.did)) == sorted(await commit_revs(b, alice.did))
    assert await materialized(b, alice.did) == await materialized(a, alice.did)


async def test_a_hub_without_the_owners_grant_pulls_nothing(pair: list[Node], alice: Actor,
                                                            bob: Actor) -> None:
    a, b = pair
    ok(await a.write(bob, bob.commit(bob.did, payload=playlist("bob's")), bob.did))
    with pytest.raises(HubErrorResponse) as refused:
        await pull(b, a, bob.did)  # bob never authorized b
    assert refused.value.error_code == "permissions_required"
    assert await commit_revs(b, bob.did) == []
    # a grant of alice naming b does not open bob's log either, and alice's page holds only
    # alice's commits
    result = await pull(b, a, alice.did)
    assert result.tally.stored == 1
    assert await commit_revs(b, bob.did) == []


async def test_a_grantees_commit_waits_for_its_grant(pair: list[Node], alice: Actor,
                                                     bob: Actor) -> None:
    a, b = pair
    from identity_hub.client import grant_payload
    from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE

    grant = alice.commit(alice.did, interface="Permissions", context=GRANT_CONTEXT,
                         type_=GRANT_TYPE,
                         payload=grant_payload(alice.did, bob.did, context="https://schema.org",
                                               type_="MusicPlaylist", allow="CRUD"))
    by_bob = bob.commit(alice.did, payload=playlist("bob wrote this"))
    # The grantee's commit first: stored excluded (held, not folded), nothing parked.
    assert await b.receiver.apply(alice.did, by_bob) is Outcome.STORED
    assert await b.receiver.apply(alice.did, by_bob) is Outcome.HELD
    assert await commit_revs(b, alice.did) == [parse_rev(by_bob)]
    assert await peers.parked_count(b.runtime.db, alice.did) == 0
    assert not any(row[1] for row in (await materialized(b, alice.did)).values())
    # The grant arrives through a pull: bob's commit counts from then on.
    ok(await a.write(alice, grant, alice.did))
    result = await pull(b, a, alice.did)
    assert result.tally.stored == 2  # the sync grant and the grant
    assert len(await commit_revs(b, alice.did)) == 3
    state = (await materialized(b, alice.did))[parse_rev(by_bob)]
    assert state[1] and state[6] == bob.did  # has_create, created_by


async def test_crash_mid_page_resumes_without_loss_or_duplicates(
        backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
        sync_identities: list[pathlib.Path], alice: Actor) -> None:
    class Crash(Exception):
        pass

    admin = request.getfixturevalue("pg_admin_url") if backend == "postgres" else None
    urls = [await new_db_url(backend, tmp_path, admin) for _ in range(2)]
    try:
        async with open_node("a", urls[0], tmp_path / "a", sync_identities[0],
                             [alice.did]) as a:
            ok(await a.write(alice, sync_grant(alice, sync_identities_did(sync_identities[1])),
                             alice.did))
            for i in range(24):
                ok(await a.write(alice, alice.commit(alice.did, payload=playlist(f"p{i}")),
                                 alice.did))
            applied: list[int] = []

            def crash_at_13(seq: int) -> None:
                applied.append(seq)
                if seq == 13:
                    raise Crash

            async with open_node("b", urls[1], tmp_path / "b", sync_identities[1],
                                 [alice.did]) as b:
                with pytest.raises(Crash):
                    await pull(b, a, alice.did, limit=10, on_applied=crash_at_13)
                peer = (await peers.list_peers(b.runtime.db))[0]
                assert peer.cursor == 10  # the first page only
                assert len(await commit_revs(b, alice.did)) == 13
            # "restart": a new runtime on the same database
            async with open_node("b", urls[1], tmp_path / "b", sync_identities[1],
                                 [alice.did]) as b2:
                result = await pull(b2, a, alice.did, limit=10)
                assert result.tally.held == 3 and result.tally.stored == 12
                revs = await commit_revs(b2, alice.did)
                assert len(revs) == len(set(revs)) == 25
                assert sorted(revs) == sorted(await commit_revs(a, alice.did))
                peer = (await peers.list_peers(b2.runtime.db))[0]
                assert peer.cursor == 25 and peer.lag == 0
    finally:
        for url in urls:
            await drop_db(url, admin)


def sync_identities_did(path: pathlib.Path) -> str:
    from identity_hub.identity import HubIdentity

    return HubIdentity.load(path).did


async def test_malicious_peer_pages_are_refused_and_sync_continues(
        pair: list[Node], alice: Actor, bob: Actor) -> None:
    """A peer that serves forged, foreign, unauthorized, future-dated commits and oversized
    pages: none of it is stored; the good commits of the same pages are; the cursor moves on."""
    a, b = pair
    good = [alice.commit(alice.did, payload=playlist(f"good {i}")) for i in range(3)]
    forged = dict(alice.commit(alice.did, payload=playlist("forged")))
    forged["signature"] = good[0]["signature"]
    foreign = bob.commit(bob.did, payload=playlist("bob's own"))  # sub: another owner
    no_grant = bob.commit(alice.did, payload=playlist("bob without a grant"))
    future = alice.commit(alice.did, payload=playlist("from the future"),
                          committed_at=iso(__import__("time").time() + 3600))
    not_a_commit = {"protected": "e30", "payload": "", "signature": ""}
    page = [forged, good[0], foreign, no_grant, future, good[1], not_a_commit, good[2]]

    class EvilPeer:
        oversized = True

        async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
            after, limit = request["query"]["after"], request["query"]["limit"]
            if self.oversized:  # first answer: more commits than asked for
                self.oversized = False
                return {"@type": "SyncPullResponse", "last_seq": 99,
                        "commits": [{"seq": i + 1, "commit": good[0]} for i in range(limit + 1)]}
            items = [{"seq": i + 1, "commit": c} for i, c in enumerate(page) if i + 1 > after]
            return {"@type": "SyncPullResponse", "commits": items[:limit], "last_seq": len(page)}

    evil = EvilPeer()
    peer, _ = await peers.add_peer(b.runtime.db, alice.did, "did:example:evil", "local:evil")
    from identity_hub.sync.protocol import SyncProtocolError

    with pytest.raises(SyncProtocolError):
        await pull_peer(b.receiver, evil, peer, hub_did=b.did, limit=4)
    assert await commit_revs(b, alice.did) == []
    result = await pull_peer(b.receiver, evil, peer, hub_did=b.did, limit=4)
    stored = await commit_revs(b, alice.did)
    # bob's commit without a grant is held excluded (it may count once a grant arrives)
    assert sorted(stored) == sorted(parse_rev(c) for c in [*good, no_grant])
    assert result.tally.stored == 4 and result.tally.refused == 4 and result.tally.parked == 0
    peer = (await peers.list_peers(b.runtime.db, alice.did))[0]
    assert peer.cursor == len(page) and peer.refused == 4
    # garbage answers are errors of the pull, never stored; the cursor stays
    for garbage in ([], {"@type": "SyncPullResponse"}, {"@type": "SyncPullResponse",
                    "last_seq": 1, "commits": [{"seq": 0, "commit": good[0]}]}):
        async def link(request: dict[str, Any], answer: Any = garbage) -> Any:
            return answer

        with pytest.raises(SyncProtocolError):
            await pull_peer(b.receiver, link, peer, hub_did=b.did)
    assert (await peers.list_peers(b.runtime.db, alice.did))[0].cursor == len(page)
    # a well-behaved peer still syncs afterwards
    honest = await pull(b, a, alice.did)
    assert honest.tally.stored == 1


def parse_rev(wire: dict[str, Any]) -> str:
    from identity_hub.protocol.commit import compute_rev

    return compute_rev(wire["protected"], wire["payload"])


async def test_the_owners_audit_log_records_pulls(pair: list[Node], alice: Actor) -> None:
    a, b = pair
    await pull(b, a, alice.did)
    entries = await a.hub.handle(alice.did, alice.request("AuditQueryRequest", a.did,
                                                          query={}))
    pulls = [e for e in entries["entries"] if e["request_type"] == "SyncPullRequest"]
    assert pulls and pulls[0]["requester"] == b.did and pulls[0]["allowed"]
    with pytest.raises(HubErrorResponse):
        await LocalLink(a.hub, "did:example:stranger")(
            {"@context": "https://schema.identity.foundation/0.1", "@type": "SyncPullRequest",
             "iss": "did:example:stranger", "aud": a.did, "sub": alice.did,
             "query": {"after": 0}})
