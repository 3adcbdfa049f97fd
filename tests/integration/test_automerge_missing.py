"""An automerge update whose dependencies are missing names the missing change hashes (hex): in
the bad_request a client gets, and in the reason a replicated one is parked with. Both
backends; objects created from a saved document (JS vectors) and from a change (the forge)."""

from __future__ import annotations

import base64
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from identity_hub.commits.fold.crdt_chunks import parse_payload
from identity_hub.protocol.commit import compute_rev
from identity_hub.sync.receiver import Outcome
from identity_hub.sync.tables import sync_parked
from tests.integration.test_sync import two_nodes
from tests.support import automerge_forge as forge
from tests.support.actors import Actor
from tests.support.sync import Node, make_identities

VECTORS = {v["name"]: v for v in json.loads(
    (pathlib.Path(__file__).parents[1] / "vectors" / "automerge" / "vectors.json").read_text()
)["vectors"]}


def js_history() -> list[bytes]:
    """A saved document, then changes, each depending on the previous (one writer, JS)."""
    return [base64.urlsafe_b64decode(p["data"] + "=" * (-len(p["data"]) % 4))
            for p in VECTORS["am2-change-1w-scalar-1001-3"]["payloads"]]


def hash_hex(payload: bytes) -> str:
    (digest,) = parse_payload(payload).hashes
    return digest.hex()


HISTORIES = {"document": js_history, "change": lambda: forge.playlist_history(4)}


async def write(rt: Any, owner: Actor, commit: dict[str, Any]) -> dict[str, Any]:
    return await rt.hub.handle(owner.did, owner.write(rt.identity.did, commit))


@pytest.mark.parametrize("created_from", sorted(HISTORIES))
async def test_the_client_is_told_which_changes_are_missing(owner_hub: Any, alice: Actor,
                                                            created_from: str) -> None:
    history = HISTORIES[created_from]()
    create = await write(owner_hub, alice, alice.commit(alice.did, payload=history[0],
                                                        strategy="automerge"))
    object_id = create["revisions"][0]
    skip = alice.commit(alice.did, operation="update", object_id=object_id, payload=history[3],
                        strategy="automerge")
    answer = await write(owner_hub, alice, skip)
    assert answer["error_code"] == "bad_request", answer
    message = answer["developer_message"]
    # history[3] depends on history[2] only (which depends on history[1]): that one is named
    assert hash_hex(history[2]) in message, message
    assert hash_hex(history[1]) not in message
    assert "depends on changes" in message and len(message) <= 256


@pytest.fixture(scope="module")
def am_ids(tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    return make_identities(pathlib.Path(tmp_path_factory.mktemp("am-missing-ids")), 2)


@pytest.fixture
async def nodes(backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
                am_ids: list[pathlib.Path], alice: Actor) -> AsyncIterator[list[Node]]:
    async with two_nodes(backend, tmp_path, request, am_ids, [alice.did]) as pair:
        yield pair


async def test_a_parked_change_names_the_missing_hashes(nodes: list[Node], alice: Actor
                                                        ) -> None:
    _, b = nodes
    history = js_history()
    create = alice.commit(alice.did, payload=history[0], strategy="automerge")
    assert await b.receiver.apply(alice.did, create) is Outcome.STORED
    object_id = compute_rev(create["protected"], create["payload"])
    skip = alice.commit(alice.did, operation="update", object_id=object_id, payload=history[3],
                        strategy="automerge")
    assert await b.receiver.apply(alice.did, skip) is Outcome.PARKED
    async with b.runtime.db.read() as conn:
        reasons = list((await conn.execute(sa.select(sync_parked.c.reason))).scalars())
    assert len(reasons) == 1 and hash_hex(history[2]) in reasons[0], reasons
