"""The number policy of commit payloads (docs/protocol.md, "Numbers") on both backends: a
negative zero and a number past 40 digits are refused; every accepted number is folded, stored,
refolded and answered as the same value on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
import sqlalchemy as sa

from identity_hub.commits.refold import refold
from identity_hub.protocol.jsonutil import dumps
from identity_hub.storage.tables import commits, objects
from tests.support.actors import Actor

HEAD = b'{"@context":"https://schema.org","@type":"MusicPlaylist","name":"n",'


def payload(members: bytes) -> bytes:
    return HEAD + members + b"}"


REFUSED = [
    ("-0.0", b'"x":-0.0', "Negative zero"),
    ("-0", b'"x":-0', "Negative zero"),
    ("-0e5", b'"x":-0e5', "Negative zero"),
    ("-0.000E-3 nested", b'"x":{"y":[1,-0.000E-3]}', "Negative zero"),
    ("-1e-400 underflows to -0.0", b'"x":-1e-400', "Negative zero"),
    ("1e400 is not finite", b'"x":1e400', "out of range"),
    ("1e40 has 41 digits", b'"x":1e40', "too large"),
    ("a 41-digit integer", b'"x":' + b"1" * 41, "too long"),
]


async def stored(rt: Any) -> tuple[int, int]:
    async with rt.db.read() as conn:
        n_commits = (await conn.execute(sa.select(sa.func.count()).select_from(commits))).scalar()
        n_objects = (await conn.execute(sa.select(sa.func.count()).select_from(objects))).scalar()
    return int(n_commits or 0), int(n_objects or 0)


@pytest.mark.parametrize(("name", "members", "message"), REFUSED, ids=[c[0] for c in REFUSED])
async def test_a_payload_number_no_backend_keeps_alike_is_refused(
        owner_hub: Any, alice: Actor, name: str, members: bytes, message: str) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    resp = await rt.hub.handle(alice.did, alice.write(
        hub_did, alice.commit(alice.did, payload=payload(members))))
    assert resp["@type"] == "ErrorResponse", (name, resp)
    assert (resp["error_code"], resp["target"]) == ("bad_request", "commit.payload"), resp
    assert message in resp["developer_message"], resp
    assert await stored(rt) == (0, 0)


# What each number of the payload is, once folded, on every backend (Python `json` alone would
# keep -0.0 and 1e+16, which PostgreSQL jsonb gives back as 0.0 and 10000000000000000).
NUMBERS = (b'"a":0,"b":0.0,"c":1.0,"d":1E2,"e":-2.5,"f":0.1,"g":1e-7,"h":5e-324,'
           b'"i":12345678.9,"j":9007199254740993,"k":123456789012345678901234567890,'
           b'"l":1e16,"m":-1.5e20,"n":1.2345e25,"o":9.99e39,"p":1e15')
FOLDED = {
    "a": 0, "b": 0.0, "c": 1.0, "d": 100.0, "e": -2.5, "f": 0.1, "g": 1e-07, "h": 5e-324,
    "i": 12345678.9, "j": 9007199254740993, "k": 123456789012345678901234567890,
    "l": 10_000_000_000_000_000, "m": -150_000_000_000_000_000_000,
    "n": 12_345_000_000_000_000_000_000_000, "o": 9990 * 10**36, "p": 1e15,
}


def canonical(data: dict[str, Any]) -> str:
    """The canonical text, which tells 1e+16 from 10000000000000000 and -0.0 from 0.0."""
    return dumps({k: v for k, v in data.items() if not k.startswith("@") and k != "name"})


async def stored_data(rt: Any) -> dict[str, Any]:
    async with rt.db.read() as conn:
        return dict((await conn.execute(sa.select(objects.c.data))).scalar_one())


async def test_numbers_fold_alike_on_every_backend(owner_hub: Any, alice: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    resp = await rt.hub.handle(alice.did, alice.write(
        hub_did, alice.commit(alice.did, payload=payload(NUMBERS))))
    assert resp["@type"] == "WriteResponse", resp
    expected = canonical(FOLDED)
    assert canonical(await stored_data(rt)) == expected
    listed = await rt.hub.handle(alice.did, alice.object_query(hub_did, include_data=True))
    assert canonical(listed["objects"][0]["data"]) == expected
    report = await refold(rt.db)
    assert report.objects == 1 and report.differed == []
    assert canonical(await stored_data(rt)) == expected
    # the signed payload is kept byte for byte; only the folded state reads the numbers
    history = await rt.hub.handle(alice.did, alice.commit_query(hub_did))
    raw = history["commits"][0]["payload"]
    assert base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)) == payload(NUMBERS)


async def test_a_stored_negative_zero_folds_to_zero(owner_hub: Any, alice: Actor) -> None:
    """A payload stored before negative zero was refused (here: the stored commit's payload
    rewritten to one) folds to 0 with a positive sign on every backend, as automerge folds it."""
    rt, hub_did = owner_hub, owner_hub.identity.did
    resp = await rt.hub.handle(alice.did, alice.write(
        hub_did, alice.commit(alice.did, payload=payload(b'"x":0.0,"y":[1,0]'))))
    assert resp["@type"] == "WriteResponse", resp
    legacy = base64.urlsafe_b64encode(payload(b'"x":-0.0,"y":[1,-0]')).rstrip(b"=").decode()
    async with rt.db.transaction() as conn:
        await conn.execute(sa.update(commits).values(payload=legacy))
    await refold(rt.db)
    data = await stored_data(rt)
    assert data["y"] == [1, 0]
    assert data["x"] == 0.0 and math.copysign(1.0, data["x"]) == 1.0
    assert json.dumps(data["x"]) == "0.0"
