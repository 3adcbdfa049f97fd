"""`commit_strategy: automerge` through the core API on both backends, with payloads saved by the
JavaScript automerge (tests/vectors/automerge): concurrent edits from two devices read back
merged; malformed bytes are refused at write time and nothing is stored."""

from __future__ import annotations

import base64
import json
import pathlib
import random
from typing import Any

import pytest
import sqlalchemy as sa

from identity_hub.commits.refold import refold
from identity_hub.storage.tables import commits
from tests.support.actors import Actor

VECTORS = json.loads((pathlib.Path(__file__).parents[1] / "vectors" / "automerge" /
                      "vectors.json").read_text())["vectors"]
BY_NAME = {v["name"]: v for v in VECTORS}


def raw(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


async def write_all(rt: Any, owner: Actor, payloads: list[bytes]) -> tuple[str, list[dict]]:
    hub_did = rt.identity.did
    first = owner.commit(owner.did, payload=payloads[0], strategy="automerge")
    resp = await rt.hub.handle(owner.did, owner.write(hub_did, first))
    assert resp["@type"] == "WriteResponse", resp
    object_id = resp["revisions"][0]
    answers = []
    for data in payloads[1:]:
        update = owner.commit(owner.did, operation="update", object_id=object_id, payload=data,
                              strategy="automerge")
        answers.append(await rt.hub.handle(owner.did, owner.write(hub_did, update)))
    return object_id, answers


async def state(rt: Any, owner: Actor, object_id: str) -> Any:
    resp = await rt.hub.handle(owner.did, owner.object_query(
        rt.identity.did, object_id=[object_id], include_data=True))
    return resp["objects"][0]["data"] if resp["objects"] else None


@pytest.mark.parametrize("name", ["am3-doc-2w-scalar-1001-8", "am2-change-2w-scalar-1001-4"])
async def test_two_devices_edits_read_back_merged(owner_hub: Any, alice: Actor, name: str
                                                  ) -> None:
    vector = BY_NAME[name]
    payloads = [raw(p["data"]) for p in vector["payloads"]]
    object_id, answers = await write_all(owner_hub, alice, payloads)
    assert all(a["@type"] == "WriteResponse" for a in answers), answers
    merged = await state(owner_hub, alice, object_id)
    assert merged == vector["expected"]  # what JavaScript's own merge of both devices gives
    history = await owner_hub.hub.handle(alice.did, alice.commit_query(
        owner_hub.identity.did, object_id=[object_id]))
    assert [raw(c["payload"]) for c in history["commits"]] == payloads  # original bytes back
    report = await refold(owner_hub.db)
    assert report.differed == []


async def test_state_does_not_depend_on_arrival_order(owner_hub: Any, alice: Actor) -> None:
    vector = BY_NAME["am3-doc-2w-text-1001-9"]
    payloads = [raw(p["data"]) for p in vector["payloads"]]
    first_id, _ = await write_all(owner_hub, alice, payloads)
    shuffled = payloads[:1] + random.Random(7).sample(payloads[1:], len(payloads) - 1)
    second_id, _ = await write_all(owner_hub, alice, shuffled)
    assert await state(owner_hub, alice, first_id) == await state(owner_hub, alice, second_id)


BAD = {
    "random bytes": bytes(random.Random(1).getrandbits(8) for _ in range(300)),
    "truncated document": None,  # filled from a vector below
    "not automerge at all": b'{"@context":"https://schema.org","@type":"MusicPlaylist"}',
}


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_malformed_automerge_is_refused_and_nothing_is_stored(
        owner_hub: Any, alice: Actor, kind: str) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    good = [raw(p["data"]) for p in BY_NAME["am2-doc-1w-scalar-1001-0"]["payloads"]]
    bad = BAD[kind] if BAD[kind] is not None else good[1][: len(good[1]) // 2]
    refused = await rt.hub.handle(alice.did, alice.write(hub_did, alice.commit(
        alice.did, payload=bad, strategy="automerge")))
    assert (refused.get("error_code"), refused.get("target")) == ("bad_request",
                                                                  "commit.payload"), refused
    object_id, _ = await write_all(rt, alice, good[:2])
    update = alice.commit(alice.did, operation="update", object_id=object_id, payload=bad,
                          strategy="automerge")
    refused = await rt.hub.handle(alice.did, alice.write(hub_did, update))
    assert refused.get("error_code") == "bad_request", refused
    async with rt.db.read() as conn:
        n = (await conn.execute(sa.select(sa.func.count()).select_from(commits))).scalar()
    assert n == 2
    # a later valid commit still folds
    later = alice.commit(alice.did, operation="update", object_id=object_id, payload=good[2],
                         strategy="automerge")
    assert (await rt.hub.handle(alice.did, alice.write(hub_did, later)))["@type"] == \
        "WriteResponse"
    assert await state(rt, alice, object_id) is not None


async def test_a_change_without_its_dependencies_is_refused(owner_hub: Any, alice: Actor
                                                            ) -> None:
    vector = BY_NAME["am2-change-1w-scalar-1001-3"]
    payloads = [raw(p["data"]) for p in vector["payloads"]]
    object_id, _ = await write_all(owner_hub, alice, payloads[:1])
    skip = alice.commit(alice.did, operation="update", object_id=object_id,
                        payload=payloads[3], strategy="automerge")
    resp = await owner_hub.hub.handle(alice.did, alice.write(owner_hub.identity.did, skip))
    assert resp.get("error_code") == "bad_request", resp


async def test_merged_state_must_match_the_commit_type(owner_hub: Any, alice: Actor) -> None:
    payload = raw(BY_NAME["am2-doc-1w-scalar-1001-0"]["payloads"][0]["data"])
    wrong = alice.commit(alice.did, payload=payload, strategy="automerge", type_="Person")
    resp = await owner_hub.hub.handle(alice.did, alice.write(owner_hub.identity.did, wrong))
    assert (resp.get("error_code"), resp.get("target")) == ("bad_request", "commit.payload")
