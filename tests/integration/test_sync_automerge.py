"""Replication of `commit_strategy: automerge` objects (both backends).

Two devices that forked one playlist write to two different hubs; after the hubs sync both show
the merged state. A change that reaches a hub before the changes it depends on (a peer that
sends commits out of order, or its dependency parked) is parked and stored once they arrive,
never dropped. Malformed and truncated automerge bytes from a peer, validly signed by the owner,
are refused, nothing is stored, and sync goes on.
"""

from __future__ import annotations

import base64
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from identity_hub.sync import peers
from identity_hub.sync.puller import pull_peer
from identity_hub.sync.receiver import Outcome
from tests.integration.test_sync import ok, two_nodes
from tests.integration.test_sync import parse_rev as rev
from tests.support import automerge_forge as forge
from tests.support.actors import Actor
from tests.support.sync import Node, commit_revs, make_identities, materialized, pull, sync_grant


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    return make_identities(pathlib.Path(tmp_path_factory.mktemp("am-sync-ids")), 2)


@pytest.fixture
async def pair(backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
               identities: list[pathlib.Path], alice: Actor) -> AsyncIterator[list[Node]]:
    async with two_nodes(backend, tmp_path, request, identities, [alice.did]) as nodes:
        a, b = nodes
        for hub in nodes:  # each hub may pull the other
            ok(await a.write(alice, sync_grant(alice, hub.did), alice.did))
        await pull(b, a, alice.did)
        yield nodes


def vector(name: str) -> dict[str, Any]:
    return next(v for v in forge.load_vectors() if v["name"] == name)


def am(actor: Actor, payload: bytes, object_id: str | None = None) -> dict[str, Any]:
    if object_id is None:
        return actor.commit(actor.did, payload=payload, strategy="automerge")
    return actor.commit(actor.did, operation="update", object_id=object_id, payload=payload,
                        strategy="automerge")


async def data(node: Node, owner: str, object_id: str) -> Any:
    return (await materialized(node, owner))[object_id][13]  # the `data` column


async def test_two_devices_on_two_hubs_converge_to_the_merge(pair: list[Node], alice: Actor
                                                             ) -> None:
    """The done-when scenario across hubs: the JavaScript vector's two devices, one per hub."""
    a, b = pair
    v = vector("am3-doc-2w-scalar-1001-8")
    payloads = [base64.urlsafe_b64decode(p["data"] + "==") for p in v["payloads"]]
    object_id = ok(await a.write(alice, am(alice, payloads[0]), alice.did))["revisions"][0]
    await pull(b, a, alice.did)
    for i, payload in enumerate(payloads[1:]):  # device edits alternate between the hubs
        ok(await (a if i % 2 else b).write(alice, am(alice, payload, object_id), alice.did))
    await pull(b, a, alice.did)
    await pull(a, b, alice.did)
    assert sorted(await commit_revs(a, alice.did)) == sorted(await commit_revs(b, alice.did))
    assert await data(a, alice.did, object_id) == v["expected"]  # JavaScript's own merge
    assert await materialized(a, alice.did) == await materialized(b, alice.did)


async def test_forked_change_chains_on_two_hubs_merge(pair: list[Node], alice: Actor) -> None:
    """Change chunks (not whole documents): each device's chain only goes to its own hub, so
    each hub holds changes the other lacks until they sync."""
    a, b = pair
    history = forge.forked_playlist(9, vector("am3-change-1w-scalar-1001-12"))
    object_id = ok(await a.write(alice, am(alice, history[0]), alice.did))["revisions"][0]
    await pull(b, a, alice.did)
    for k, change in enumerate(history[1:], start=1):
        ok(await (a if k % 2 else b).write(alice, am(alice, change, object_id), alice.did))
    before = await data(a, alice.did, object_id), await data(b, alice.did, object_id)
    assert before[0]["version"] % 2 == 1 and before[1]["version"] % 2 == 0  # each its own
    result = await pull(a, b, alice.did)
    assert result.tally.stored == 4 and result.tally.refused == result.tally.parked == 0
    await pull(b, a, alice.did)
    merged = await data(a, alice.did, object_id)
    assert merged == await data(b, alice.did, object_id)
    assert merged["@type"] == "MusicPlaylist" and merged["version"] in (7, 8)
    assert merged["description"] == f"Edit {merged['version']}"


async def test_a_change_ahead_of_its_dependency_is_parked_then_stored(
        pair: list[Node], alice: Actor) -> None:
    """A peer that sends a change before the one it depends on: parked, then stored when the
    dependency arrives (in the same page here), with the state of the whole chain."""
    _a, b = pair
    chain = forge.playlist_history(4)
    commits = [am(alice, chain[0])]
    commits += [am(alice, c, rev(commits[0])) for c in chain[1:]]
    page = [commits[0], commits[3], commits[2], commits[1]]  # out of dependency order

    async def out_of_order(request: dict[str, Any]) -> dict[str, Any]:
        after = request["query"]["after"]
        items = [{"seq": i + 1, "commit": c} for i, c in enumerate(page) if i + 1 > after]
        return {"@type": "SyncPullResponse", "commits": items, "last_seq": len(page)}

    peer, _ = await peers.add_peer(b.runtime.db, alice.did, "did:example:odd", "local:odd")
    assert await b.receiver.apply(alice.did, commits[2]) is Outcome.PARKED
    assert await peers.parked_count(b.runtime.db, alice.did) == 1
    result = await pull_peer(b.receiver, out_of_order, peer, hub_did=b.did)
    assert result.tally.refused == 0 and result.tally.parked == 0
    assert await peers.parked_count(b.runtime.db, alice.did) == 0
    assert set(await commit_revs(b, alice.did)) >= {rev(c) for c in commits}
    state = await data(b, alice.did, rev(commits[0]))
    assert (state["name"], state["numTracks"]) == ("List 3", 3)


async def test_malformed_automerge_from_a_peer_is_refused_and_sync_continues(
        pair: list[Node], alice: Actor) -> None:
    _a, b = pair
    chain = forge.playlist_history(3)
    doc = base64.urlsafe_b64decode(
        vector("am2-doc-1w-scalar-1001-0")["payloads"][1]["data"] + "==")
    create = am(alice, chain[0])
    oid = rev(create)
    bad = {
        "truncated change": am(alice, chain[1][: len(chain[1]) - 7], oid),
        "truncated document": am(alice, doc[: len(doc) // 2]),
        "flipped byte": am(alice, chain[1][:20] + bytes([chain[1][20] ^ 0xFF]) + chain[1][21:],
                           oid),
        "random bytes": am(alice, bytes(range(256)) * 3),
        "nested too deep": am(alice, forge.nested_maps(200)),
        "not automerge": am(alice, b'{"@context": "https://schema.org"}', oid),
    }
    page = [create, *bad.values(), am(alice, chain[1], oid), am(alice, chain[2], oid)]

    async def evil(request: dict[str, Any]) -> dict[str, Any]:
        after = request["query"]["after"]
        items = [{"seq": i + 1, "commit": c} for i, c in enumerate(page) if i + 1 > after]
        return {"@type": "SyncPullResponse", "commits": items[:4], "last_seq": len(page)}

    before = set(await commit_revs(b, alice.did))
    peer, _ = await peers.add_peer(b.runtime.db, alice.did, "did:example:evil", "local:evil")
    result = await pull_peer(b.receiver, evil, peer, hub_did=b.did, limit=4)
    assert (result.tally.stored, result.tally.refused, result.tally.parked) == (3, len(bad), 0)
    stored = set(await commit_revs(b, alice.did)) - before
    assert stored == {rev(page[0]), rev(page[-2]), rev(page[-1])}
    state = await data(b, alice.did, oid)
    assert (state["name"], state["numTracks"]) == ("List 2", 2)
    assert (await peers.get_peer(b.runtime.db, peer.id)).cursor == len(page)
