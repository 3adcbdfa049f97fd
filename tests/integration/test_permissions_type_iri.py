"""Grants decide by type IRI, as queries do (issue 13), on both backends, through the core API:
a grant written with one spelling of a context covers the objects written with another (read,
write, audit, rich query, commit query); a grant whose context/type does not expand is refused at
creation, and the `identity-hub grant` command says what to do; migration 0007 backfills the
type IRI of grants already indexed."""

from __future__ import annotations

import asyncio
import os
import pathlib
import sys
from typing import Any

import sqlalchemy as sa

from identity_hub.permissions import index
from identity_hub.storage import store
from identity_hub.storage.engine import Database
from identity_hub.storage.migrate import downgrade, upgrade
from identity_hub.storage.tables import grant_versions
from tests.integration.test_permissions import Hub, grant_body, grant_commit
from tests.support.actors import Actor, playlist
from tests.support.identities import identity_for
from tests.support.servers import running_hub

ROOT = pathlib.Path(__file__).resolve().parents[2]
IRI = "http://schema.org/MusicPlaylist"


async def _ids(hub: Hub, who: Actor, **query: Any) -> list[str]:
    resp = await hub.call(who, who.object_query(hub.did, hub.owner.did, **query))
    assert resp["@type"] == "ObjectQueryResponse", (query, resp)
    return [o["id"] for o in resp["objects"]]


async def test_a_grant_covers_every_spelling_of_its_type(owner_hub: Any, alice: Actor,
                                                         bob: Actor) -> None:
    hub = Hub(owner_hub, alice)
    mine = await hub.ok(alice, alice.commit(alice.did, context="https://schema.org",
                                            payload=playlist("Alice's", tracks=5)))
    person = await hub.ok(alice, alice.commit(alice.did, type_="Person", payload={
        "@context": "https://schema.org", "@type": "Person", "name": "Al"}))
    # the grant spells the context http://schema.org/, the objects https://schema.org
    grant = await hub.ok(alice, grant_commit(alice, alice.did, grant_body(
        alice.did, bob.did, "CRU-", context="http://schema.org/")))

    # reads: the 2019 query (either spelling, or none), the rich query, the commit query
    for spelled in ("https://schema.org", "http://schema.org/"):
        assert await _ids(hub, bob, context=spelled, type="MusicPlaylist") == [mine]
    assert await _ids(hub, bob) == [mine]
    assert await _ids(hub, bob, context="https://schema.org", type="MusicPlaylist",
                      where={"numTracks": {"gt": 3}}, sort="-updated_at", limit=10) == [mine]
    assert await _ids(hub, bob, where={"numTracks": {"gt": 3}}) == [mine]
    commits = await hub.call(bob, bob.commit_query(hub.did, alice.did))
    assert {c["header"]["rev"] for c in commits["commits"]} == {mine, grant}, commits
    refused = await hub.call(bob, bob.object_query(hub.did, alice.did, context="https://"
                                                   "schema.org", type="Person"))
    assert refused["error_code"] == "permissions_required"

    # writes: a create and an update spelled https://schema.org
    made = await hub.ok(bob, bob.commit(alice.did, context="https://schema.org",
                                        payload=playlist("Bob's")))
    await hub.ok(bob, bob.commit(alice.did, operation="update", object_id=mine,
                                 context="https://schema.org", payload=playlist("Renamed")))
    assert (await hub.write(bob, bob.commit(alice.did, operation="delete", object_id=mine,
                                            context="https://schema.org"))
            )["error_code"] == "permissions_required"  # no D
    assert sorted(await _ids(hub, bob, context="https://schema.org", type="MusicPlaylist")
                  ) == sorted([mine, made])
    assert person not in await _ids(hub, bob)

    # the audit log: each access allowed, resting on the grant
    rows = await hub.audit_rows()
    assert [(r.request_type, r.operation, r.allowed, r.grant_ids) for r in rows] == [
        ("ObjectQueryRequest", "read", True, [grant]),
        ("ObjectQueryRequest", "read", True, [grant]),
        ("ObjectQueryRequest", "read", True, [grant]),
        ("ObjectQueryRequest", "read", True, [grant]),
        ("ObjectQueryRequest", "read", True, [grant]),
        ("CommitQueryRequest", "read", True, [grant]),
        ("ObjectQueryRequest", "read", False, None),
        ("WriteRequest", "create", True, [grant]),
        ("WriteRequest", "update", True, [grant]),
        ("WriteRequest", "delete", False, None),
        ("ObjectQueryRequest", "read", True, [grant]),
        ("ObjectQueryRequest", "read", True, [grant]),
    ]
    assert rows[1].object_ids == [mine] and rows[7].object_ids == [made]
    async with owner_hub.db.read() as conn:
        [row] = list(await conn.execute(sa.select(grant_versions)))
    assert (row.type_iri, row.scope_key) == (IRI, index.scope_key(IRI))


async def test_a_grant_without_a_scheme_covers_the_type_it_names(owner_hub: Any, alice: Actor,
                                                                 bob: Actor) -> None:
    """`schema.org` is read as `https://schema.org` (docs/queries.md): the grant covers
    MusicPlaylists written with any spelling, where it once covered nothing."""
    hub = Hub(owner_hub, alice)
    mine = await hub.ok(alice, alice.commit(alice.did, payload=playlist()))
    await hub.ok(alice, grant_commit(alice, alice.did, grant_body(
        alice.did, bob.did, "-R--", context="schema.org")))
    assert await _ids(hub, bob, context="https://schema.org", type="MusicPlaylist") == [mine]


async def test_a_grant_whose_type_does_not_expand_is_refused(owner_hub: Any, alice: Actor,
                                                             bob: Actor) -> None:
    hub = Hub(owner_hub, alice)
    before = await hub.counts()
    for context, type_, target in (
            ("example.com/vocab", "Thing", "commit.payload.context"),  # unknown context
            ("https://www.w3.org/2018/credentials/v1", "Nope", "commit.payload.type"),
            ("https://schema.identity.foundation/0.1", "PermissionGrant",
             "commit.payload.type")):  # a grant on grants, in another spelling
        resp = await hub.write(alice, grant_commit(alice, alice.did, grant_body(
            alice.did, bob.did, "-R--", type_, context=context)))
        assert (resp.get("error_code"), resp.get("target")) == ("bad_request", target), resp
    assert await hub.counts() == before
    async with owner_hub.db.read() as conn:
        oid = await store.owner_id(conn, alice.did)
        assert oid is None or await store.query_objects(
            conn, oid, interface="Permissions", context=None, type_=None, object_ids=None,
            after=0, limit=10) == []


async def test_the_grant_command_says_what_to_do_with_a_type_that_does_not_expand(
        db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path) -> None:
    owner, app = identity_for("Ed25519"), identity_for("Ed25519")
    async with running_hub(tmp_path / "hub", db_url, hub_identity_dir) as h:
        await store.add_tenant(h.runtime.db, owner.did)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "identity_hub", "--data-dir", str(tmp_path / "cli"),
            "--database-url", db_url, "grant", "--hub", h.url, "--as",
            str(owner.key_file(tmp_path / "owner.json")), "--grantee", app.did,
            "--context", "example.com/vocab", "--type", "Thing", "--allow", "-R--",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "IDENTITY_HUB_LOG_LEVEL": "WARNING"})
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        async with h.runtime.db.read() as conn:
            stored = (await conn.execute(sa.select(sa.func.count()).select_from(
                grant_versions))).scalar()
    text = err.decode()
    assert proc.returncode == 1 and out == b"", (out, text)
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    assert "https://example.com/vocab" in text and "--context https://schema.org" in text
    assert "contexts/" in text
    assert stored == 0


async def test_migration_0007_backfills_the_type_iri_of_grants(db_url: str) -> None:
    db = Database(db_url)
    try:
        await downgrade(db.engine, "0006")
        rows = [("a", "https://schema.org", "MusicPlaylist"),
                ("b", "http://schema.org/", "MusicPlaylist"),
                ("c", "https://example.com/ctx", "Thing"),  # unknown: opaque, as 0006 did
                ("d", "https://www.w3.org/2018/credentials/v1", "Nope")]  # undefined: NULL
        old_key = {g: index.unexpanded_scope_key(c, t) for g, c, t in rows}
        async with db.transaction() as conn:
            for grant_id, context, type_ in rows:
                await conn.execute(sa.text(
                    "INSERT INTO grant_versions (owner_id, grant_id, valid_from_us, "
                    "grantee_key, scope_key, grantee, context, type, rev) VALUES (1, :g, 1, "
                    "'k', :s, 'did:example:app', :c, :t, :g)"),
                    {"g": grant_id, "s": old_key[grant_id], "c": context, "t": type_})
        await upgrade(db.engine)

        async def found() -> dict[str, tuple[Any, Any]]:
            async with db.read() as conn:
                q = sa.select(grant_versions.c.grant_id, grant_versions.c.type_iri,
                              grant_versions.c.scope_key)
                return {g: (i, k) for g, i, k in await conn.execute(q)}

        opaque = "https://example.com/ctx/Thing"
        assert await found() == {"a": (IRI, index.scope_key(IRI)),
                                 "b": (IRI, index.scope_key(IRI)),
                                 "c": (opaque, index.scope_key(opaque)),
                                 "d": (None, old_key["d"])}
        await downgrade(db.engine, "0006")
        async with db.read() as conn:
            keys = dict((await conn.execute(sa.text(
                "SELECT grant_id, scope_key FROM grant_versions"))).all())
        assert keys == old_key
        await upgrade(db.engine)
        assert {g: v[0] for g, v in (await found()).items()} == {
            "a": IRI, "b": IRI, "c": opaque, "d": None}
    finally:
        await db.dispose()
