"""Convergence with grants, property-based: the owner grants and revokes on random hubs, the
grantee writes on random hubs (dated anywhere in the last minutes, so revocations race writes
and dates cross), and random pulls move commits between them. After a final full sync every hub
holds the same commits, the same excluded set and the same materialized state, and a refold
from scratch (every excluded flag cleared first) reproduces both (docs/replication.md, "Which
commits count")."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import time
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity_hub.client import HubErrorResponse, grant_payload
from identity_hub.commits.refold import refold
from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE
from identity_hub.storage import store
from identity_hub.storage.tables import commits
from tests.support.actors import Actor, iso, playlist
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
ago = st.integers(5, 240)  # seconds before the scenario's start: inside the clock-skew window
grant_op = st.tuples(st.just("grant"), hub, st.sampled_from(["CRUD", "CRU-", "-RU-", "C---"]),
                     st.booleans(), ago)
revoke_op = st.tuples(st.just("revoke"), hub, st.integers(0, 9), ago)
owner_op = st.tuples(st.just("owner"), hub, ago)
grantee_op = st.tuples(st.just("grantee"), hub, st.sampled_from(["create", "update", "delete"]),
                       st.integers(0, 9), ago)
pull_op = st.tuples(st.just("pull"), hub, hub)
# the race itself: the grantee writes on one hub, the owner revokes on another, dated before
race_op = st.tuples(st.just("race"), hub, st.integers(1, HUBS - 1), st.integers(0, 9),
                    st.integers(5, 200))
scenario = st.lists(st.one_of(grant_op, revoke_op, owner_op, grantee_op, grantee_op, race_op,
                              pull_op, pull_op), min_size=1, max_size=14)
EXAMPLES = {"sqlite": 8, "postgres": 5}
OWNER = Actor("Ed25519")
GRANTEE = Actor("Ed25519")


async def _live(node: Node, interface: str) -> list[str]:
    return sorted(k for k, row in (await materialized(node, OWNER.did)).items()
                  if row[1] and not row[8] and row[2] == interface)


async def _excluded(node: Node) -> set[str]:
    async with node.runtime.db.read() as conn:
        oid = await store.owner_id(conn, OWNER.did)
        rows = await conn.execute(sa.select(commits.c.rev).where(
            commits.c.owner_id == oid, commits.c.excluded.is_(True)))
        return {r[0] for r in rows}


async def _apply(nodes: list[Node], op: tuple[Any, ...], start: float) -> None:
    node = nodes[op[1]]
    if op[0] == "pull":
        if op[1] != op[2]:
            with contextlib.suppress(HubErrorResponse):  # src may lack dst's grant yet
                await pull(node, nodes[op[2]], OWNER.did, limit=3)
        return
    when = iso(start - op[-1])
    if op[0] == "grant":
        payload = grant_payload(OWNER.did, GRANTEE.did, context="https://schema.org",
                                type_="MusicPlaylist", allow=op[2],
                                created_by=GRANTEE.did if op[3] else None)
        commit = OWNER.commit(OWNER.did, interface="Permissions", context=GRANT_CONTEXT,
                              type_=GRANT_TYPE, payload=payload, committed_at=when)
        actor = OWNER
    elif op[0] == "owner":
        commit = OWNER.commit(OWNER.did, payload=playlist("owner's"), committed_at=when)
        actor = OWNER
    else:
        known = await _live(node, "Collections")
        if op[2] == "create" or not known:
            commit = GRANTEE.commit(OWNER.did, payload=playlist("grantee's"), committed_at=when)
        else:
            target = known[op[3] % len(known)]
            commit = GRANTEE.commit(OWNER.did, operation=op[2], object_id=target,
                                    payload=None if op[2] == "delete" else playlist(f"g{op[3]}"),
                                    committed_at=when)
        actor = GRANTEE
    response = await node.write(actor, commit, OWNER.did)
    # A write its hub refuses (no grant there at its committed_at, a backdated revocation)
    # is simply not part of the scenario.
    assert response["@type"] == "WriteResponse" or response["error_code"] in (
        "permissions_required", "bad_request", "not_found"), response


async def _run(ops: list[tuple[Any, ...]], backend: str, tmp: pathlib.Path,
               admin: str | None, ids: list[pathlib.Path]) -> None:
    urls = [await new_db_url(backend, tmp, admin) for _ in range(HUBS)]
    start = time.time()
    try:
        async with contextlib.AsyncExitStack() as stack:
            nodes = [await stack.enter_async_context(
                open_node(f"h{i}", urls[i], tmp / f"h{i}", ids[i], [OWNER.did]))
                for i in range(HUBS)]
            sync_grants = []
            for node in nodes:  # the owner authorizes its hubs, on the first one
                response = await nodes[0].write(OWNER, sync_grant(OWNER, node.did), OWNER.did)
                sync_grants.append(response["revisions"][0])
            first = await nodes[0].write(OWNER, OWNER.commit(  # a grant every hub knows
                OWNER.did, interface="Permissions", context=GRANT_CONTEXT, type_=GRANT_TYPE,
                committed_at=iso(start - 280), payload=grant_payload(
                    OWNER.did, GRANTEE.did, context="https://schema.org", type_="MusicPlaylist",
                    allow="CRUD")), OWNER.did)
            assert first["@type"] == "WriteResponse", first
            assert (await nodes[0].write(OWNER, OWNER.commit(
                OWNER.did, payload=playlist("owner's first"), committed_at=iso(start - 270)),
                OWNER.did))["@type"] == "WriteResponse"
            for node in nodes[1:]:
                await pull(node, nodes[0], OWNER.did)
            for op in ops:
                if op[0] == "race":
                    await _apply(nodes, ("grantee", op[1], "update", op[3], op[4]), start)
                    await _apply_revoke(nodes, ("revoke", (op[1] + op[2]) % HUBS, op[3],
                                                op[4] + 20), start, set(sync_grants),
                                        only=first["revisions"][0])
                elif op[0] == "revoke":
                    await _apply_revoke(nodes, op, start, set(sync_grants))
                else:
                    await _apply(nodes, op, start)
            for _round in range(2):  # the final full sync
                for dst in range(HUBS):
                    for src in range(HUBS):
                        if dst != src:
                            await pull(nodes[dst], nodes[src], OWNER.did, limit=7)
            revs = [sorted(await commit_revs(n, OWNER.did)) for n in nodes]
            assert revs[0] == revs[1] == revs[2]
            excluded = [await _excluded(n) for n in nodes]
            assert excluded[0] == excluded[1] == excluded[2]
            states = [await materialized(n, OWNER.did) for n in nodes]
            assert states[0] == states[1] == states[2]
            for n in nodes:  # what a refold from scratch gives, excluded flags included
                assert (await refold(n.runtime.db, OWNER.did)).differed == []
                async with n.runtime.db.transaction() as conn:
                    await conn.execute(sa.update(commits).values(excluded=False))
                await refold(n.runtime.db, OWNER.did)
                assert await _excluded(n) == excluded[0]
                assert await materialized(n, OWNER.did) == states[0]
    finally:
        for url in urls:
            await drop_db(url, admin)


async def _apply_revoke(nodes: list[Node], op: tuple[Any, ...], start: float,
                        keep: set[str], only: str | None = None) -> None:
    """The owner revokes one of the grantee's grants live on that hub (never a sync grant;
    `only`: that grant, if live there)."""
    node = nodes[op[1]]
    grants = [g for g in await _live(node, "Permissions")
              if g not in keep and only in (None, g)]
    if not grants:
        return
    commit = OWNER.commit(OWNER.did, interface="Permissions", context=GRANT_CONTEXT,
                          type_=GRANT_TYPE, operation="delete",
                          object_id=grants[op[2] % len(grants)], committed_at=iso(start - op[3]))
    response = await node.write(OWNER, commit, OWNER.did)
    assert response["@type"] == "WriteResponse" or response["error_code"] == "bad_request", \
        response


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_grants_revocations_and_grantee_writes_converge(
        backend: str, request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    admin = request.getfixturevalue("pg_admin_url") if backend == "postgres" else None
    tmp = pathlib.Path(tmp_path_factory.mktemp(f"grants-converge-{backend}"))
    ids = make_identities(tmp, HUBS)

    @settings(max_examples=EXAMPLES[backend], deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow,
                                     HealthCheck.function_scoped_fixture])
    @given(ops=scenario)
    def check(ops: list[tuple[Any, ...]]) -> None:
        asyncio.run(_run(ops, backend, tmp, admin, ids))

    check()
