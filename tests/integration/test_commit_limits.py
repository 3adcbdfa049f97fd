"""`max_commit_bytes` (64 KiB): a bigger commit is refused, from a client (bad_request naming
the setting, nothing stored) and from a peer (refused, the cursor moves on); JSON objects and
automerge documents under it are stored. Both backends."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from identity_hub.storage.tables import commits
from identity_hub.sync import peers
from identity_hub.sync.puller import pull_peer
from tests.integration.test_sync import parse_rev, two_nodes
from tests.support.actors import Actor, playlist
from tests.support.automerge_forge import SET, Op, change_chunk
from tests.support.sync import Node, commit_revs, make_identities

LIMIT = 65536


def big_playlist(size: int) -> dict[str, Any]:
    return {**playlist("big"), "description": "x" * size}


def automerge_playlist(size: int) -> bytes:
    """One self-contained automerge change making a MusicPlaylist with a `size`-char name."""
    return change_chunk([Op(None, "@context", SET, "https://schema.org"),
                         Op(None, "@type", SET, "MusicPlaylist"),
                         Op(None, "name", SET, "x" * size)],
                        actor=b"\x33" * 16, seq=1, start_op=1, deps=[])


async def stored(rt: Any) -> int:
    async with rt.db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(commits)))
                   .scalar_one())


async def write(rt: Any, owner: Actor, commit: dict[str, Any]) -> dict[str, Any]:
    return await rt.hub.handle(owner.did, owner.write(rt.identity.did, commit))


def assert_refused_naming_the_limit(answer: dict[str, Any]) -> None:
    assert answer["error_code"] == "bad_request", answer
    assert answer["target"] == "commit"
    assert "max_commit_bytes" in answer["developer_message"]
    assert str(LIMIT) in answer["developer_message"]


async def test_a_json_commit_over_max_commit_bytes_is_refused(owner_hub: Any, alice: Actor
                                                              ) -> None:
    over = alice.commit(alice.did, payload=big_playlist(LIMIT))
    assert_refused_naming_the_limit(await write(owner_hub, alice, over))
    # the unprotected header counts too
    padded = alice.commit(alice.did, payload=playlist("small"), header={"pad": "x" * LIMIT})
    assert_refused_naming_the_limit(await write(owner_hub, alice, padded))
    assert await stored(owner_hub) == 0
    under = alice.commit(alice.did, payload=big_playlist(60_000))
    answer = await write(owner_hub, alice, under)
    assert answer["@type"] == "WriteResponse", answer
    read = await owner_hub.hub.handle(alice.did, alice.object_query(
        owner_hub.identity.did, object_id=answer["revisions"], include_data=True))
    assert len(read["objects"][0]["data"]["description"]) == 60_000
    assert await stored(owner_hub) == 1


async def test_an_automerge_commit_over_max_commit_bytes_is_refused(owner_hub: Any,
                                                                    alice: Actor) -> None:
    over = alice.commit(alice.did, payload=automerge_playlist(LIMIT), strategy="automerge")
    assert_refused_naming_the_limit(await write(owner_hub, alice, over))
    assert await stored(owner_hub) == 0
    under = alice.commit(alice.did, payload=automerge_playlist(60_000), strategy="automerge")
    answer = await write(owner_hub, alice, under)
    assert answer["@type"] == "WriteResponse", answer
    read = await owner_hub.hub.handle(alice.did, alice.object_query(
        owner_hub.identity.did, object_id=answer["revisions"], include_data=True))
    assert read["objects"][0]["data"]["name"] == "x" * 60_000


@pytest.fixture(scope="module")
def cap_ids(tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    return make_identities(pathlib.Path(tmp_path_factory.mktemp("cap-ids")), 2)


@pytest.fixture
async def nodes(backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
                cap_ids: list[pathlib.Path], alice: Actor) -> AsyncIterator[list[Node]]:
    async with two_nodes(backend, tmp_path, request, cap_ids, [alice.did]) as pair:
        yield pair


async def test_a_replicated_commit_over_max_commit_bytes_is_refused(nodes: list[Node],
                                                                    alice: Actor) -> None:
    """A peer serving an oversized commit between two good ones: it is refused (counted), the
    good ones are stored, the cursor moves past it."""
    _, b = nodes
    good = [alice.commit(alice.did, payload=big_playlist(60_000)),
            alice.commit(alice.did, payload=playlist("small"))]
    page = [good[0], alice.commit(alice.did, payload=big_playlist(LIMIT)), good[1]]

    async def peer_link(request: dict[str, Any]) -> dict[str, Any]:
        after = request["query"]["after"]
        return {"@type": "SyncPullResponse", "last_seq": len(page),
                "commits": [{"seq": i + 1, "commit": c} for i, c in enumerate(page)
                            if i + 1 > after]}

    peer, _ = await peers.add_peer(b.runtime.db, alice.did, "did:example:big", "local:big")
    result = await pull_peer(b.receiver, peer_link, peer, hub_did=b.did)
    assert (result.tally.stored, result.tally.refused) == (2, 1)
    assert sorted(await commit_revs(b, alice.did)) == sorted(parse_rev(c) for c in good)
    status = (await peers.list_peers(b.runtime.db, alice.did))[0]
    assert status.cursor == len(page) and status.refused == 1 and status.last_error is None
