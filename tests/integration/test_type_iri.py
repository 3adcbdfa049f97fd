"""Objects are stored with the type IRI of their context + type (issue 8), on both backends:
every spelling of schema.org's MusicPlaylist lands in one collection that one query finds,
through a client's write and through replication; migration 0006 backfills existing objects."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from identity_hub.commits.service import CommitService
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.storage.engine import Database
from identity_hub.storage.migrate import downgrade, upgrade
from identity_hub.storage.tables import objects
from identity_hub.sync.receiver import Outcome, Receiver
from tests.support.actors import Actor

IRI = "http://schema.org/MusicPlaylist"


async def _create(rt: Any, alice: Actor, context: str, type_: str, payload: dict[str, Any]
                  ) -> str:
    commit = alice.commit(alice.did, context=context, type_=type_, payload=payload)
    resp = await rt.hub.handle(alice.did, alice.write(rt.identity.did, commit))
    assert resp["@type"] == "WriteResponse", resp
    return str(resp["revisions"][0])


async def _ids(rt: Any, alice: Actor, **query: Any) -> set[str]:
    resp = await rt.hub.handle(alice.did, alice.object_query(rt.identity.did, **query))
    assert resp["@type"] == "ObjectQueryResponse", resp
    return {o["id"] for o in resp["objects"]}


async def test_every_spelling_of_a_type_is_one_collection(owner_hub: Any, alice: Actor) -> None:
    rt = owner_hub
    b = await _create(rt, alice, "http://schema.org/", "MusicPlaylist",
                      {"@context": "http://schema.org/", "@type": "MusicPlaylist", "name": "b"})
    spelled = {
        await _create(rt, alice, "https://schema.org", "MusicPlaylist",
                      {"@context": "https://schema.org", "@type": "MusicPlaylist", "name": "a"}),
        b,
        await _create(rt, alice, "https://schema.org", "MusicPlaylist",
                      {"@context": "https://schema.org", "@type": IRI, "name": "c"}),
    }
    person = await _create(rt, alice, "https://schema.org", "Person",
                           {"@context": "https://schema.org", "@type": "Person", "name": "d"})
    async with rt.db.read() as conn:
        stored = dict((await conn.execute(sa.select(objects.c.object_id,
                                                    objects.c.type_iri))).all())
    assert stored == {**dict.fromkeys(spelled, IRI), person: "http://schema.org/Person"}

    # The 2019 query and the rich query, each with spellings none of the creates used.
    for context, type_ in (("schema.org", "MusicPlaylist"), ("https://schema.org/", IRI)):
        assert await _ids(rt, alice, context=context, type=type_) == spelled
        assert await _ids(rt, alice, context=context, type=type_, sort="-updated_at",
                          limit=10) == spelled
        assert await _ids(rt, alice, context=context, type=type_, where={"name": "b"}) == {b}
    assert await _ids(rt, alice, context="schema.org", type="Person") == {person}
    assert await _ids(rt, alice) == spelled | {person}

    # An unknown context is refused at the query, naming it.
    resp = await rt.hub.handle(alice.did, alice.object_query(
        rt.identity.did, context="https://example.com/unknown", type="Thing"))
    assert resp["error_code"] == "bad_request" and resp["target"] == "query.context", resp


async def test_a_replicated_create_is_stored_with_its_type_iri(db_url: str,
                                                               alice: Actor) -> None:
    db = Database(db_url)
    resolver = DidResolver(ResolverConfig())
    receiver = Receiver(CommitService(db), resolver)
    try:
        wire = alice.commit(alice.did, context="http://schema.org/", payload={
            "@context": "http://schema.org/", "@type": IRI, "name": "synced"})
        assert await receiver.apply(alice.did, wire) is Outcome.STORED
        async with db.read() as conn:
            assert (await conn.execute(sa.select(objects.c.type_iri))).scalars().all() == [IRI]
    finally:
        await resolver.aclose()
        await db.dispose()


async def test_migration_0006_backfills_type_iris(db_url: str) -> None:
    db = Database(db_url)
    try:
        await downgrade(db.engine, "0005")
        rows = [("a", "https://schema.org", "MusicPlaylist"),
                ("b", "http://schema.org/", "MusicPlaylist"),
                ("c", "https://example.com/ctx", "Thing"),  # unknown: opaque, never a failure
                ("d", "https://www.w3.org/2018/credentials/v1", "Nope")]  # undefined: NULL
        async with db.transaction() as conn:
            for object_id, context, type_ in rows:
                await conn.execute(sa.text(
                    "INSERT INTO objects (owner_id, object_id, has_create, interface, context, "
                    "type) VALUES (1, :o, true, 'Collections', :c, :t)"),
                    {"o": object_id, "c": context, "t": type_})
        await upgrade(db.engine)
        async with db.read() as conn:
            found = dict((await conn.execute(sa.select(objects.c.object_id,
                                                       objects.c.type_iri))).all())
        assert found == {"a": IRI, "b": IRI, "c": "https://example.com/ctx/Thing", "d": None}
    finally:
        await db.dispose()
