"""The rich-query extension of ObjectQueryRequest served by the hub (docs/queries.md), on both
backends through Hub.handle: filters and sorts, grantees' queries confined to their grants,
paging with the cursor, malformed queries; and `identity-hub client query --where` against a
real server."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
import time
from typing import Any

import pytest

from identity_hub.client import HubClient
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.storage import store
from tests.support.actors import Actor, iso, playlist
from tests.support.identities import identity_for
from tests.support.servers import running_hub

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = "https://schema.org"
GRANT_CTX = "schema.identity.foundation/0.1"
TRACKS = [5, 2, 8, 3, 7, 1]  # numTracks of playlists p0…p5, created a second apart


async def call(rt: Any, actor: Actor, request: dict[str, Any]) -> dict[str, Any]:
    return await rt.hub.handle(actor.did, request)


async def ok(rt: Any, actor: Actor, commit: dict[str, Any], sub: str) -> str:
    resp = await call(rt, actor, actor.write(rt.identity.did, commit, sub))
    assert resp["@type"] == "WriteResponse", resp
    return str(resp["revisions"][0])


async def playlists(rt: Any, alice: Actor) -> tuple[list[str], str, float]:
    """p0…p5 (TRACKS), then p1 updated to 9 tracks last; and a Person with numTracks 10.
    Returns the playlists' ids, the Person's, and the base time of the commits."""
    base = time.time() - 120
    ids = [await ok(rt, alice, alice.commit(alice.did, payload=playlist(f"p{i}", n),
                                            committed_at=iso(base + i)), alice.did)
           for i, n in enumerate(TRACKS)]
    person = await ok(rt, alice, alice.commit(alice.did, type_="Person", payload={
        "@context": SCHEMA, "@type": "Person", "name": "p-person", "numTracks": 10},
        committed_at=iso(base + 10)), alice.did)
    await ok(rt, alice, alice.commit(alice.did, operation="update", object_id=ids[1],
                                     payload=playlist("p1", 9), committed_at=iso(base + 20)),
             alice.did)
    return ids, person, base


def names(resp: dict[str, Any]) -> list[str]:
    assert resp["@type"] == "ObjectQueryResponse", resp
    return [o["data"]["name"] for o in resp["objects"]]


async def test_the_owner_filters_and_sorts_playlists(owner_hub: Any, alice: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    ids, person, base = await playlists(rt, alice)
    typed = {"context": SCHEMA, "type": "MusicPlaylist", "include_data": True}

    resp = await call(rt, alice, alice.object_query(
        hub_did, where={"numTracks": {"gt": 3}}, sort="-numTracks", **typed))
    assert names(resp) == ["p1", "p2", "p4", "p0"] and resp["skip_token"] is None
    assert resp["objects"][0]["id"] == ids[1] and resp["objects"][0]["data"]["numTracks"] == 9

    resp = await call(rt, alice, alice.object_query(
        hub_did, sort="-updated_at", limit=20, **typed))
    assert names(resp) == ["p1", "p5", "p4", "p3", "p2", "p0"]

    resp = await call(rt, alice, alice.object_query(
        hub_did, where=[{"field": "updated_at", "op": "gte", "value": iso(base + 3)},
                        {"field": "numTracks", "op": "lte", "value": 7}],
        sort=["numTracks"], **typed))
    assert names(resp) == ["p5", "p3", "p4"]  # p1 (9 tracks) is too long, p0 and p2 too early

    # without context/type: every Collections object, the Person included; no data by default
    resp = await call(rt, alice, alice.object_query(
        hub_did, where={"numTracks": {"gte": 8}}, sort="-numTracks"))
    assert [o["id"] for o in resp["objects"]] == [person, ids[1], ids[2]]
    assert all("data" not in o for o in resp["objects"])
    resp = await call(rt, alice, alice.object_query(
        hub_did, where={"name": {"prefix": "p"}, "numTracks": {"in": [1, 2, 3]}},
        object_id=[ids[3], ids[5], ids[0]], **typed))
    assert names(resp) == ["p3", "p5"]  # creation order without `sort`

    # a plain query is answered as before
    resp = await call(rt, alice, alice.object_query(hub_did, **typed))
    assert names(resp) == [f"p{i}" for i in range(6)]


async def test_paging_with_the_cursor(owner_hub: Any, alice: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    ids, _, _ = await playlists(rt, alice)
    rt.hub.settings = rt.hub.settings.replace(page_size=4)
    # (query members, page size, object deleted and playlist created after page 1, expected)
    runs = [({"limit": 2}, 2, ids[4], ("p6", 6), ["p5", "p3", "p0", "p6", "p2", "p1"]),
            ({"where": {"numTracks": {"exists": True}}}, 4, ids[2], ("p7", 10),
             ["p5", "p3", "p0", "p6", "p1", "p7"])]
    for extra, size, gone, (name, tracks), expected in runs:
        query: dict[str, Any] = {"context": SCHEMA, "type": "MusicPlaylist",
                                 "include_data": True, "sort": "numTracks", **extra}
        pages: list[list[str]] = []
        while True:
            resp = await call(rt, alice, alice.object_query(hub_did, **query))
            pages.append(names(resp))
            if resp["skip_token"] is None:
                break
            query["skip_token"] = resp["skip_token"]
            if len(pages) == 1:  # deleted and created between pages: nothing else moves
                await ok(rt, alice, alice.commit(alice.did, operation="delete",
                                                 object_id=gone), alice.did)
                await ok(rt, alice, alice.commit(alice.did, payload=playlist(name, tracks)),
                         alice.did)
                # the token is bound to its sort order
                resp = await call(rt, alice, alice.object_query(
                    hub_did, **{**query, "sort": "-numTracks"}))
                assert (resp["error_code"], resp["target"]) == ("bad_request",
                                                                "query.skip_token")
        assert [len(p) for p in pages] == [size] * (len(pages) - 1) + [len(pages[-1])]
        assert [n for p in pages for n in p] == expected

    # a plain page's token is accepted by an unsorted rich query (same creation order)
    rt.hub.settings = rt.hub.settings.replace(page_size=2)
    plain = await call(rt, alice, alice.object_query(hub_did, context=SCHEMA,
                                                     type="MusicPlaylist"))
    resp = await call(rt, alice, alice.object_query(
        hub_did, context=SCHEMA, type="MusicPlaylist", include_data=True,
        where={"numTracks": {"gt": 0}}, skip_token=plain["skip_token"]))
    assert names(resp) == ["p3", "p5"] and resp["skip_token"] is not None  # p2, p4 deleted


async def test_a_grantees_rich_query_sees_only_what_its_grant_covers(
        owner_hub: Any, alice: Actor, bob: Actor) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    ids, person, _ = await playlists(rt, alice)
    covered = [ids[0], ids[2], ids[5]]  # 5, 8, 1 tracks
    body = {"@context": GRANT_CTX, "@type": "PermissionGrant", "owner": alice.did,
            "grantee": bob.did, "context": SCHEMA, "type": "MusicPlaylist", "allow": "-R--",
            "object_ids": covered}
    grant = await ok(rt, alice, alice.commit(alice.did, interface="Permissions",
                                             context=GRANT_CTX, type_="PermissionGrant",
                                             payload=body), alice.did)

    resp = await call(rt, bob, bob.object_query(hub_did, alice.did, include_data=True,
                                                where={"numTracks": {"gte": 2}},
                                                sort="-numTracks"))
    assert [o["id"] for o in resp["objects"]] == [ids[2], ids[0]]  # not p1 (9), p4, nor Person
    resp = await call(rt, bob, bob.object_query(hub_did, alice.did, context=SCHEMA,
                                                type="MusicPlaylist", sort="-updated_at"))
    assert [o["id"] for o in resp["objects"]] == [ids[5], ids[2], ids[0]]

    # page by page, one object at a time: the page boundaries are covered objects only
    seen, token = [], None
    while True:
        resp = await call(rt, bob, bob.object_query(
            hub_did, alice.did, sort="numTracks", limit=1,
            **({"skip_token": token} if token else {})))
        seen += [o["id"] for o in resp["objects"]]
        token = resp["skip_token"]
        if token is None:
            break
    assert seen == [ids[5], ids[0], ids[2]]
    assert set(seen) <= set(covered) and person not in seen

    # a filter naming objects outside the grant finds nothing (reveals nothing)
    resp = await call(rt, bob, bob.object_query(hub_did, alice.did, object_id=[ids[1], person],
                                                where={"numTracks": {"exists": True}}))
    assert resp["objects"] == [] and resp["skip_token"] is None
    resp = await call(rt, bob, bob.object_query(hub_did, alice.did, context=SCHEMA,
                                                type="Person", where={"numTracks": 10}))
    assert resp["error_code"] == "permissions_required"

    # the audit log records what the rich reads returned and the grant they rested on
    resp = await call(rt, alice, alice.request("AuditQueryRequest", hub_did, query={}))
    entries = resp["entries"]
    assert entries[0]["grant_ids"] == [grant]
    assert entries[0]["object_ids"] == [ids[2], ids[0]]


@pytest.mark.parametrize(("query", "target"), [
    ({"where": {"numTracks": {"gtx": 3}}}, "query.where.numTracks"),
    ({"where": {"numTracks": {"gt": "soon"}}}, "query.where.numTracks.gt"),
    ({"where": {"tracks.0": 1}}, "query.where"),
    ({"where": [{"field": "n", "op": "eq", "value": 1}, {"field": "n", "op": "nope",
                                                         "value": 1}]}, "query.where[1].op"),
    ({"sort": ["name", "bad..path"]}, "query.sort[1]"),
    ({"limit": 0}, "query.limit"),
    ({"sort": "name", "skip_token": "not-a-token"}, "query.skip_token"),
])
async def test_a_malformed_rich_query_is_bad_request_with_its_target(
        owner_hub: Any, alice: Actor, query: dict[str, Any], target: str) -> None:
    rt, hub_did = owner_hub, owner_hub.identity.did
    await ok(rt, alice, alice.commit(alice.did), alice.did)
    resp = await call(rt, alice, alice.object_query(hub_did, **query))
    assert (resp.get("error_code"), resp.get("target")) == ("bad_request", target), resp


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_client_query_where_sort_limit_from_the_command_line(
        db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path) -> None:
    owner = identity_for("Ed25519")
    async with running_hub(tmp_path / "hub", db_url, hub_identity_dir) as hub:
        await store.add_tenant(hub.runtime.db, owner.did)
        keys = owner.key_file(tmp_path / "owner.json")
        async with HubClient(hub.url, owner.did, owner.keys,
                             resolver=DidResolver(ResolverConfig())) as mine:
            made = {n: await mine.create(playlist(f"p{n}", n)) for n in (2, 5, 4, 9)}

        async def cli(*args: str) -> tuple[int, str, str]:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "identity_hub", "--data-dir", str(tmp_path / "cli"),
                "client", "query", "--hub", hub.url, "--as", keys, *args, cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "IDENTITY_HUB_LOG_LEVEL": "WARNING"})
            out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
            return proc.returncode or 0, out.decode(), err.decode()

        code, out, err = await cli("--context", SCHEMA, "--type", "MusicPlaylist", "--where",
                                   "numTracks>3", "--sort", "-numTracks", "--limit", "2",
                                   "--data")
        assert code == 0, err
        found = json.loads(out)
        assert [o["id"] for o in found] == [made[9], made[5]]
        assert [o["data"]["numTracks"] for o in found] == [9, 5]
        code, out, err = await cli("--where", "numTracks>3", "--where", "name^=p")
        assert code == 0, err
        assert [o["id"] for o in json.loads(out)] == [made[5], made[4], made[9]]
        code, out, err = await cli("--where", "numTracks")
        assert code == 1 and "--where: Not a condition" in err, err
        code, out, err = await cli("--where", "numTracks>soon")
        assert code == 1 and "bad_request" in err and "query.where.numTracks.gt" in err, err
