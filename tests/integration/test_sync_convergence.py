"""Convergence, property-based: three hubs, random writes on random hubs, random pulls
(partitions are the pairs that happen not to sync); after a final full sync every hub holds the
same commits and the same materialized state, and a from-scratch fold changes nothing.

Once with `basic` objects, once with `automerge` objects: each hub's device edits the copy of the
object that hub holds (an automerge change on top of that hub's heads), so the hubs hold
different, concurrent change sets until they sync."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import pathlib
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity_hub.client import HubErrorResponse
from identity_hub.commits.fold.crdt_chunks import parse_payload
from identity_hub.commits.refold import refold
from identity_hub.storage.tables import commits
from tests.support import automerge_forge as forge
from tests.support.actors import Actor, playlist
from tests.support.sync import (
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

HUBS = 3
hub = st.integers(0, HUBS - 1)
write = st.tuples(st.just("write"), hub, st.sampled_from(["create", "update", "update",
                                                          "delete"]),
                  st.integers(0, 50), st.text("abcdefgh", max_size=6))
pull_op = st.tuples(st.just("pull"), hub, hub)
scenario = st.lists(st.one_of(write, write, pull_op), min_size=1, max_size=24)
EXAMPLES = {"sqlite": 10, "postgres": 6}
OWNER = Actor("Ed25519")


async def _known(node: Node) -> list[str]:
    return sorted(k for k, row in (await materialized(node, OWNER.did)).items()
                  if row[1] and row[2] == "Collections")


async def _write(node: Node, kind: str, pick: int, name: str) -> None:
    known = await _known(node)
    if kind == "create" or not known:
        commit = OWNER.commit(OWNER.did, payload=playlist(name or "x"))
    elif kind == "update":
        commit = OWNER.commit(OWNER.did, operation="update", object_id=known[pick % len(known)],
                              payload=playlist(name or "y"))
    else:
        commit = OWNER.commit(OWNER.did, operation="delete", object_id=known[pick % len(known)])
    response = await node.write(OWNER, commit, OWNER.did)
    assert response["@type"] == "WriteResponse", response


class _Device:
    """Forges each hub's automerge changes: one actor per hub; a change's deps are the heads of
    the object's changes the hub holds, its start op one past the highest op among them."""

    def __init__(self) -> None:
        self.last_op: dict[bytes, int] = {}  # change hash -> the last op counter it holds

    def change(self, ops: list[forge.Op], actor: bytes, held: list[bytes]) -> bytes:
        infos = [parse_payload(p) for p in held]
        hashes = set().union(*(i.hashes for i in infos))
        heads = sorted(hashes - set().union(*(i.deps for i in infos)))
        seq = 1 + sum(1 for p in held if forge.actor(p) == actor)
        start = 1 + max((self.last_op[h] for h in hashes), default=0)
        chunk = forge.change_chunk(ops, actor=actor, seq=seq, start_op=start, deps=heads)
        self.last_op[forge.change_hash(chunk)] = start + len(ops) - 1
        return chunk


async def _payloads(node: Node, object_id: str) -> list[bytes]:
    async with node.runtime.db.read() as conn:
        rows = await conn.execute(sa.select(commits.c.payload).where(
            commits.c.object_id == object_id, commits.c.operation != "delete"))
        return [base64.urlsafe_b64decode(r[0] + "=" * (-len(r[0]) % 4)) for r in rows]


async def _write_automerge(node: Node, kind: str, pick: int, name: str,
                           device: _Device) -> None:
    known = await _known(node)
    actor = hashlib.sha256(node.name.encode()).digest()[:16]
    if kind == "create" or not known:
        ops = [forge.Op(None, "@context", forge.SET, "https://schema.org"),
               forge.Op(None, "@type", forge.SET, "MusicPlaylist"),
               forge.Op(None, "name", forge.SET, name or "x")]
        fresh = hashlib.sha256(f"{node.name}/{len(device.last_op)}".encode()).digest()[:16]
        commit = OWNER.commit(OWNER.did, payload=device.change(ops, fresh, []),
                              strategy="automerge")
    elif kind == "update":
        object_id = known[pick % len(known)]
        ops = [forge.Op(None, f"k{name}", forge.SET, pick)]  # concurrent sets of a key: a conflict
        change = device.change(ops, actor, await _payloads(node, object_id))
        commit = OWNER.commit(OWNER.did, operation="update", object_id=object_id,
                              payload=change, strategy="automerge")
    else:
        commit = OWNER.commit(OWNER.did, operation="delete", object_id=known[pick % len(known)],
                              strategy="automerge")
    response = await node.write(OWNER, commit, OWNER.did)
    assert response["@type"] == "WriteResponse", response


async def _run(ops: list[tuple[Any, ...]], backend: str, tmp: pathlib.Path,
               admin: str | None, ids: list[pathlib.Path], strategy: str = "basic") -> None:
    device = _Device()
    urls = [await new_db_url(backend, tmp, admin) for _ in range(HUBS)]
    try:
        async with contextlib.AsyncExitStack() as stack:
            nodes = [await stack.enter_async_context(
                open_node(f"h{i}", urls[i], tmp / f"h{i}", ids[i], [OWNER.did]))
                for i in range(HUBS)]
            for node in nodes:  # the owner authorizes its three hubs, on the first one
                assert (await nodes[0].write(OWNER, sync_grant(OWNER, node.did), OWNER.did)
                        )["@type"] == "WriteResponse"
            for op in ops:
                if op[0] == "write" and strategy == "automerge":
                    await _write_automerge(nodes[op[1]], op[2], op[3], op[4], device)
                elif op[0] == "write":
                    await _write(nodes[op[1]], op[2], op[3], op[4])
                elif op[1] != op[2]:
                    with contextlib.suppress(HubErrorResponse):  # src may lack dst's grant
                        await pull(nodes[op[1]], nodes[op[2]], OWNER.did, limit=3)
            for _round in range(2):  # the final full sync, from the hub holding the grants
                for dst, src in ((1, 0), (2, 0), (0, 1), (0, 2), (1, 2), (2, 1)):
                    await pull(nodes[dst], nodes[src], OWNER.did, limit=7)
            revs = [sorted(await commit_revs(n, OWNER.did)) for n in nodes]
            assert revs[0] == revs[1] == revs[2]
            for n in nodes:
                assert len(set(await commit_revs(n, OWNER.did))) == len(revs[0])
            states = [await materialized(n, OWNER.did) for n in nodes]
            assert states[0] == states[1] == states[2]
            for n in nodes:  # equal to a from-scratch fold
                report = await refold(n.runtime.db, OWNER.did)
                assert report.differed == []
            assert [await materialized(n, OWNER.did) for n in nodes] == states
    finally:
        for url in urls:
            await drop_db(url, admin)


@pytest.mark.parametrize("strategy", ["basic", "automerge"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_three_hubs_converge(backend: str, strategy: str, request: pytest.FixtureRequest,
                             tmp_path_factory: pytest.TempPathFactory) -> None:
    admin = request.getfixturevalue("pg_admin_url") if backend == "postgres" else None
    tmp = pathlib.Path(tmp_path_factory.mktemp(f"converge-{backend}-{strategy}"))
    ids = make_identities(tmp, HUBS)

    @settings(max_examples=EXAMPLES[backend], deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(ops=scenario)
    def check(ops: list[tuple[Any, ...]]) -> None:
        asyncio.run(_run(ops, backend, tmp, admin, ids, strategy))

    check()
