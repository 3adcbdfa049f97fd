"""Permissions on both backends: escalation attempts, grant rules (validation, unrevocable
grants, stable keys), deterministic judgement at committed_at and the skew window, filtered reads
(object_ids, created_by, no context/type), grantees reading their own grants, the audit log
through the protocol, and the grant index rebuilt by refold."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from identity_hub.commits.refold import refold
from identity_hub.permissions.index import versions_of
from identity_hub.protocol.commit import parse_time
from identity_hub.storage import store
from identity_hub.storage.tables import audit_log, commits, grant_versions, objects
from tests.support.actors import Actor, iso, playlist

GRANT_CTX = "schema.identity.foundation/0.1"
GRANT_TYPE = "PermissionGrant"
SCHEMA = "https://schema.org"


def grant_body(owner: str, grantee: str, allow: str, type_: str = "MusicPlaylist",
               **extra: Any) -> dict[str, Any]:
    return {"@context": GRANT_CTX, "@type": GRANT_TYPE, "owner": owner, "grantee": grantee,
            "context": SCHEMA, "type": type_, "allow": allow, **extra}


def grant_commit(signer: Actor, sub: str, body: dict[str, Any] | None, *,
                 operation: str = "create", object_id: str | None = None,
                 committed_at: str | None = None) -> dict[str, Any]:
    return signer.commit(sub, operation=operation, interface="Permissions", context=GRANT_CTX,
                         type_=GRANT_TYPE, payload=body if body is not None else {},
                         object_id=object_id, committed_at=committed_at)


class Hub:
    """The runtime seen from the tests: requests by actors, counts, the audit log."""

    def __init__(self, rt: Any, owner: Actor) -> None:
        self.rt = rt
        self.did = rt.identity.did
        self.owner = owner

    async def call(self, actor: Actor, request: dict[str, Any]) -> dict[str, Any]:
        return await self.rt.hub.handle(actor.did, request)

    async def write(self, actor: Actor, commit: dict[str, Any]) -> dict[str, Any]:
        return await self.call(actor, actor.write(self.did, commit, self.owner.did))

    async def ok(self, actor: Actor, commit: dict[str, Any]) -> str:
        resp = await self.write(actor, commit)
        assert resp["@type"] == "WriteResponse", resp
        return str(resp["revisions"][0])

    async def grant(self, grantee: Actor, allow: str, type_: str = "MusicPlaylist",
                    committed_at: str | None = None, **extra: Any) -> str:
        body = grant_body(self.owner.did, grantee.did, allow, type_, **extra)
        return await self.ok(self.owner, grant_commit(self.owner, self.owner.did, body,
                                                      committed_at=committed_at))

    async def revoke(self, grant_id: str, committed_at: str | None = None) -> None:
        await self.ok(self.owner, grant_commit(self.owner, self.owner.did, None,
                                               operation="delete", object_id=grant_id,
                                               committed_at=committed_at))

    async def counts(self) -> tuple[int, int, int]:
        async with self.rt.db.read() as conn:
            out = []
            for table in (commits, objects, grant_versions):
                q = sa.select(sa.func.count()).select_from(table)
                out.append(int((await conn.execute(q)).scalar()))
            return out[0], out[1], out[2]

    async def audit_rows(self) -> list[Any]:
        async with self.rt.db.read() as conn:
            return list(await conn.execute(sa.select(audit_log).order_by(audit_log.c.id)))

    def set_skew(self, seconds: int) -> None:
        self.rt.hub.settings = self.rt.hub.settings.replace(clock_skew_seconds=seconds)


async def test_escalation_attempts_are_refused_and_audited(owner_hub: Any, alice: Actor,
                                                           bob: Actor) -> None:
    hub = Hub(owner_hub, alice)
    mine = await hub.grant(bob, "CRUD")
    person = await hub.ok(alice, alice.commit(alice.did, type_="Person", payload={
        "@context": SCHEMA, "@type": "Person", "name": "Al"}))
    before = await hub.counts()
    attempts: list[tuple[str, dict[str, Any], str]] = [
        ("grantee writes a grant for itself",
         grant_commit(bob, alice.did, grant_body(alice.did, bob.did, "CRUD", "Person")),
         "permissions_required"),
        ("grantee widens its own grant",
         grant_commit(bob, alice.did, grant_body(alice.did, bob.did, "CRUD", "Person"),
                      operation="update", object_id=mine), "permissions_required"),
        ("grantee deletes its grant",
         grant_commit(bob, alice.did, None, operation="delete", object_id=mine),
         "permissions_required"),
        ("grantee writes a grant naming another owner",
         grant_commit(bob, alice.did, grant_body(bob.did, alice.did, "CRUD")),
         "permissions_required"),
        ("update of an object of an ungranted type",
         bob.commit(alice.did, operation="update", object_id=person, type_="Person",
                    payload={"@context": SCHEMA, "@type": "Person", "name": "Mallory"}),
         "permissions_required"),
        ("delete of an object of an ungranted type",
         bob.commit(alice.did, operation="delete", object_id=person, type_="Person"),
         "permissions_required"),
        ("update naming a granted type for an ungranted object",
         bob.commit(alice.did, operation="update", object_id=person,
                    payload=playlist("Mallory")), "not_found"),
    ]
    for name, commit, code in attempts:
        resp = await hub.write(bob, commit)
        assert resp.get("error_code") == code, (name, resp)
    # a commit whose sub is not the request's sub
    resp = await hub.call(bob, bob.write(hub.did, bob.commit(bob.did), alice.did))
    assert resp["error_code"] == "bad_request" and resp["target"] == "commit.protected.sub"
    # the owner's own commit, replayed by the grantee
    replay = alice.commit(alice.did, payload=playlist("Owner's"))
    resp = await hub.call(bob, bob.write(hub.did, replay, alice.did))
    assert resp["error_code"] == "bad_request" and resp["target"] == "commit"
    assert await hub.counts() == before
    # a grant naming another owner, from the owner
    resp = await hub.write(alice, grant_commit(alice, alice.did,
                                               grant_body(bob.did, alice.did, "-R--")))
    assert resp["error_code"] == "bad_request" and resp["target"] == "commit.payload.owner"
    assert await hub.counts() == before

    rows = await hub.audit_rows()
    assert len(rows) == len(attempts) + 2  # the owner's requests are not audited
    assert all(r.requester == bob.did and not r.allowed for r in rows)
    assert [r.outcome for r in rows] == [code for _, _, code in attempts] + [
        "bad_request", "bad_request"]
    assert rows[0].interface == "Permissions" and rows[0].operation == "create"
    assert rows[2].operation == "delete" and rows[2].object_ids == [mine]
    assert rows[4].type == "Person" and rows[4].object_ids == [person]


async def test_grant_validation(owner_hub: Any, alice: Actor, bob: Actor) -> None:
    hub = Hub(owner_hub, alice)
    now = time.time()
    cases: list[tuple[dict[str, Any], str]] = [
        (grant_body(alice.did, bob.did, "R"), "commit.payload.allow"),
        (grant_body(alice.did, bob.did, "rw--"), "commit.payload.allow"),
        (grant_body(alice.did, bob.did, "----"), "commit.payload.allow"),
        (grant_body(alice.did, bob.did, "CR--", object_ids=["a" * 64]),
         "commit.payload.object_ids"),
        (grant_body(alice.did, bob.did, "-R--", object_ids=[]), "commit.payload.object_ids"),
        (grant_body(alice.did, bob.did, "CR--", created_by=alice.did),
         "commit.payload.created_by"),
        (grant_body(alice.did, alice.did, "-R--"), "commit.payload.grantee"),
        (grant_body(alice.did, "bob", "-R--"), "commit.payload.grantee"),
        (grant_body(alice.did, bob.did, "-R--", GRANT_TYPE) | {"context": GRANT_CTX},
         "commit.payload.type"),
        (grant_body(alice.did, bob.did, "-R--", expires=iso(now), not_before=iso(now + 10)),
         "commit.payload.expires"),
        (grant_body(alice.did, bob.did, "-R--", expires="soon"), "commit.payload.expires"),
        ({k: v for k, v in grant_body(alice.did, bob.did, "-R--").items() if k != "type"},
         "commit.payload.type"),
    ]
    for body, target in cases:
        resp = await hub.write(alice, grant_commit(alice, alice.did, body))
        assert resp.get("error_code") == "bad_request" and resp["target"] == target, (body,
                                                                                      resp)
    assert await hub.counts() == (0, 0, 0)
    # created_by equal to the grantee may go with C: "create, and manage what you created"
    await hub.grant(bob, "CRUD", created_by=bob.did)
    assert (await hub.counts())[2] == 1


async def test_unrevocable_grants_and_stable_grant_keys(owner_hub: Any, alice: Actor,
                                                       bob: Actor) -> None:
    hub = Hub(owner_hub, alice)
    until = iso(time.time() + 86400)
    grant = await hub.grant(bob, "-RU-", unrevocable_until=until)
    before = await hub.counts()

    resp = await hub.write(alice, grant_commit(alice, alice.did, None, operation="delete",
                                               object_id=grant))
    assert resp["error_code"] == "bad_request" and "unrevocable until" in resp[
        "developer_message"], resp
    weaker = [
        {"allow": "-R--"},
        {"expires": iso(time.time() + 3600)},
        {"object_ids": ["f" * 64]},
        {"created_by": alice.did},
        {"not_before": iso(time.time() + 60)},
        {"unrevocable_until": iso(time.time() + 3600)},
    ]
    for change in weaker:
        body = grant_body(alice.did, bob.did, "-RU-", unrevocable_until=until) | change
        resp = await hub.write(alice, grant_commit(alice, alice.did, body, operation="update",
                                                   object_id=grant))
        assert resp["error_code"] == "bad_request", (change, resp)
        assert "cannot be weakened" in resp["developer_message"], resp
    body = grant_body(alice.did, bob.did, "-RU-", "Person", unrevocable_until=until)
    resp = await hub.write(alice, grant_commit(alice, alice.did, body, operation="update",
                                               object_id=grant))
    assert resp["error_code"] == "bad_request" and "cannot change" in resp["developer_message"]
    assert await hub.counts() == before

    later = iso(time.time() + 2 * 86400)
    stronger = grant_body(alice.did, bob.did, "CRUD", unrevocable_until=later)
    await hub.ok(alice, grant_commit(alice, alice.did, stronger, operation="update",
                                     object_id=grant))
    # a grant whose unrevocable period is over may be revoked
    old = await hub.grant(Actor(), "-R--", unrevocable_until=iso(time.time() - 1))
    await hub.revoke(old)
    # and a grant without one can be weakened and revoked at will
    other = Actor()
    free = await hub.grant(other, "CRUD")
    await hub.ok(alice, grant_commit(alice, alice.did, grant_body(alice.did, other.did, "-R--"),
                                     operation="update", object_id=free))
    await hub.revoke(free)


def us(t: float) -> int:
    """The microseconds the hub reads from `iso(t)` (milliseconds, truncated)."""
    return parse_time(iso(t))


async def test_commits_are_judged_at_committed_at(owner_hub: Any, alice: Actor, bob: Actor
                                                  ) -> None:
    hub = Hub(owner_hub, alice)
    now = time.time()
    grant = await hub.grant(bob, "CR--", committed_at=iso(now - 200))
    # in force at its committed_at and when it arrives: covered
    resp = await hub.write(bob, bob.commit(alice.did, payload=playlist("in time"),
                                           committed_at=iso(now - 150)))
    assert resp["@type"] == "WriteResponse", resp
    await hub.revoke(grant, committed_at=iso(now - 100))
    async with owner_hub.db.read() as conn:
        [version] = list(await conn.execute(sa.select(grant_versions)))
    assert (version.valid_from_us, version.valid_until_us) == (us(now - 200), us(now - 100))
    assert version.revoked and version.can_create and version.can_read

    # dated before the revocation but arriving after it, dated after the revocation, or
    # before the grant: not covered
    for at in (now - 150, now - 50, now - 250):
        resp = await hub.write(bob, bob.commit(alice.did, payload=playlist("x"),
                                               committed_at=iso(at)))
        assert resp["error_code"] == "permissions_required", resp
    # reads are judged now, by the grant as it is: revoked
    resp = await hub.call(bob, bob.object_query(hub.did, alice.did, context=SCHEMA,
                                                type="MusicPlaylist"))
    assert resp["error_code"] == "permissions_required"


async def test_a_revoked_grantee_cannot_backdate(owner_hub: Any, alice: Actor, bob: Actor
                                                 ) -> None:
    hub = Hub(owner_hub, alice)
    now = time.time()
    hub.set_skew(7200)  # lets the owner lay down a grant history two hours long
    grant = await hub.grant(bob, "CR--", committed_at=iso(now - 3600))
    await hub.revoke(grant, committed_at=iso(now - 1800))
    hub.set_skew(300)
    before = await hub.counts()
    backdated = bob.commit(alice.did, payload=playlist("backdated"),
                           committed_at=iso(now - 2700))
    resp = await hub.write(bob, backdated)
    assert resp["error_code"] == "bad_request", resp
    assert resp["target"] == "commit.protected.committed_at"
    assert "in the past" in resp["developer_message"]
    resp = await hub.write(bob, bob.commit(alice.did, payload=playlist("now")))
    assert resp["error_code"] == "permissions_required"
    assert await hub.counts() == before
    # even inside a wide window, a client's commit needs the grant when it arrives too
    hub.set_skew(7200)
    resp = await hub.write(bob, backdated)
    assert resp["error_code"] == "permissions_required", resp
    assert await hub.counts() == before
    # the owner's commits are held to the window too, in both directions
    hub.set_skew(300)
    for at in (now - 400, now + 400):
        resp = await hub.write(alice, alice.commit(alice.did, committed_at=iso(at)))
        assert resp["error_code"] == "bad_request", resp
    rows = await hub.audit_rows()
    assert [(r.allowed, r.outcome) for r in rows] == [
        (False, "bad_request"), (False, "permissions_required"),
        (False, "permissions_required")]


async def test_reads_are_filtered_to_what_grants_cover(owner_hub: Any, alice: Actor,
                                                       bob: Actor) -> None:
    hub = Hub(owner_hub, alice)
    carol = Actor()
    a = await hub.ok(alice, alice.commit(alice.did, payload=playlist("A")))
    b = await hub.ok(alice, alice.commit(alice.did, payload=playlist("B")))
    person = await hub.ok(alice, alice.commit(alice.did, type_="Person", payload={
        "@context": SCHEMA, "@type": "Person", "name": "Al"}))
    only_a = await hub.grant(bob, "-R--", object_ids=[a])
    await hub.grant(carol, "CRUD", created_by=carol.did)

    # bob: object_ids [a]; with or without context/type, by id or not, only a
    for query in ({}, {"context": SCHEMA, "type": "MusicPlaylist"}, {"object_id": [a, b, person]}):
        resp = await hub.call(bob, bob.object_query(hub.did, alice.did, **query))
        assert [o["id"] for o in resp["objects"]] == [a], (query, resp)
    resp = await hub.call(bob, bob.object_query(hub.did, alice.did, context=SCHEMA,
                                                type="Person"))
    assert resp["error_code"] == "permissions_required"
    resp = await hub.call(bob, bob.commit_query(hub.did, alice.did))
    seen = {c["header"]["rev"] for c in resp["commits"]}
    assert a in seen and b not in seen and person not in seen
    assert only_a in seen  # the commits of its own grant
    resp = await hub.call(bob, bob.commit_query(hub.did, alice.did, object_id=[b, person]))
    assert resp["commits"] == []
    resp = await hub.write(bob, bob.commit(alice.did, operation="update", object_id=a,
                                           payload=playlist("A2")))
    assert resp["error_code"] == "permissions_required"

    # carol: CRUD on what carol created; the objects are alice's, created_by carol
    resp = await hub.call(carol, carol.object_query(hub.did, alice.did))
    assert resp["objects"] == []
    mine = await hub.ok(carol, carol.commit(alice.did, payload=playlist("Carol's")))
    resp = await hub.call(alice, alice.object_query(hub.did, object_id=[mine]))
    [obj] = resp["objects"]
    assert obj["created_by"] == carol.did and obj["sub"] == alice.did
    resp = await hub.call(carol, carol.object_query(hub.did, alice.did, include_data=True))
    assert [o["id"] for o in resp["objects"]] == [mine]
    resp = await hub.call(carol, carol.commit_query(hub.did, alice.did))
    assert {c["header"]["rev"] for c in resp["commits"]} & {a, b, person} == set()
    for target, code in ((a, "permissions_required"), (mine, None)):
        resp = await hub.write(carol, carol.commit(alice.did, operation="update",
                                                   object_id=target, payload=playlist("C2")))
        assert resp.get("error_code") == code, resp
    await hub.ok(carol, carol.commit(alice.did, operation="delete", object_id=mine))


async def test_grantees_read_only_the_grants_naming_them(owner_hub: Any, alice: Actor,
                                                        bob: Actor) -> None:
    hub = Hub(owner_hub, alice)
    carol = Actor()
    bobs = {await hub.grant(bob, "-R--"), await hub.grant(bob, "C---", "Person")}
    carols = await hub.grant(carol, "-R--")
    revoked = await hub.grant(bob, "-R--", "Book")
    await hub.revoke(revoked)
    resp = await hub.call(bob, bob.object_query(hub.did, alice.did, interface="Permissions",
                                                include_data=True))
    assert {o["id"] for o in resp["objects"]} == bobs
    assert all(o["data"]["grantee"] == bob.did for o in resp["objects"])
    resp = await hub.call(bob, bob.commit_query(hub.did, alice.did))
    seen = {c["header"]["rev"] for c in resp["commits"]}
    assert bobs | {revoked} <= seen and carols not in seen
    resp = await hub.call(bob, bob.object_query(hub.did, alice.did, interface="Permissions",
                                                object_id=[carols]))
    assert resp["objects"] == []


async def test_audit_query_is_paged_filtered_and_owner_only(owner_hub: Any, alice: Actor,
                                                            bob: Actor) -> None:
    hub = Hub(owner_hub, alice)
    carol = Actor()
    grant = await hub.grant(bob, "-R--")
    playlist_id = await hub.ok(alice, alice.commit(alice.did))
    for _ in range(3):
        resp = await hub.call(bob, bob.object_query(hub.did, alice.did, context=SCHEMA,
                                                    type="MusicPlaylist"))
        assert [o["id"] for o in resp["objects"]] == [playlist_id]
    await hub.call(carol, carol.object_query(hub.did, alice.did))
    refused = await hub.call(bob, bob.request("AuditQueryRequest", hub.did, alice.did))
    assert refused["error_code"] == "permissions_required"

    hub.rt.hub.settings = hub.rt.hub.settings.replace(page_size=2)
    entries: list[dict[str, Any]] = []
    query: dict[str, Any] = {}
    pages = 0
    while True:
        page = await hub.call(alice, alice.request("AuditQueryRequest", hub.did, query=query))
        assert page["@type"] == "AuditQueryResponse", page
        entries += page["entries"]
        pages += 1
        if not page["skip_token"]:
            break
        query = {"skip_token": page["skip_token"]}
    assert pages == 3 and len(entries) == 5
    first = entries[0]
    assert first["requester"] == bob.did and first["allowed"] is True
    assert first["operation"] == "read" and first["interface"] == "Collections"
    assert first["context"] == SCHEMA and first["type"] == "MusicPlaylist"
    assert first["object_ids"] == [playlist_id] and first["grant_ids"] == [grant]
    assert entries[3]["requester"] == carol.did and entries[3]["outcome"] == "permissions_required"
    assert entries[4]["request_type"] == "AuditQueryRequest" and not entries[4]["allowed"]

    hub.rt.hub.settings = hub.rt.hub.settings.replace(page_size=100)
    only_carol = await hub.call(alice, alice.request("AuditQueryRequest", hub.did,
                                                     query={"grantee": carol.did}))
    assert [e["requester"] for e in only_carol["entries"]] == [carol.did]
    later = await hub.call(alice, alice.request("AuditQueryRequest", hub.did,
                                                query={"since": iso(time.time() + 60)}))
    assert later["entries"] == []
    bad = await hub.call(alice, alice.request("AuditQueryRequest", hub.did,
                                              query={"since": "yesterday"}))
    assert bad["error_code"] == "bad_request" and bad["target"] == "query.since"


async def test_a_repeated_grantee_commit_is_audited_once_more(owner_hub: Any, alice: Actor,
                                                              bob: Actor) -> None:
    hub = Hub(owner_hub, alice)
    await hub.grant(bob, "C---")
    commit = bob.commit(alice.did)
    first = await hub.write(bob, commit)
    again = await hub.write(bob, commit)
    assert first == again and first["@type"] == "WriteResponse"
    rows = await hub.audit_rows()
    assert [(r.allowed, r.outcome) for r in rows] == [(True, "ok"), (True, "already_held")]
    assert rows[0].grant_ids == rows[1].grant_ids and rows[0].grant_ids


async def test_grant_versions_follow_the_commits_and_survive_refold(
        owner_hub: Any, alice: Actor, bob: Actor) -> None:
    hub = Hub(owner_hub, alice)
    now = time.time()
    grant = await hub.grant(bob, "-R--", committed_at=iso(now - 100))
    # an update dated earlier than the create: the state at the create's time is the update's
    await hub.ok(alice, grant_commit(alice, alice.did, grant_body(alice.did, bob.did, "-RU-"),
                                     operation="update", object_id=grant,
                                     committed_at=iso(now - 200)))
    await hub.ok(alice, grant_commit(alice, alice.did, grant_body(alice.did, bob.did, "CRU-"),
                                     operation="update", object_id=grant,
                                     committed_at=iso(now - 50)))
    other = await hub.grant(Actor(), "CRUD")
    await hub.revoke(other)

    async def snapshot() -> list[tuple[Any, ...]]:
        async with owner_hub.db.read() as conn:
            rows = await conn.execute(sa.select(grant_versions).order_by(
                grant_versions.c.grant_id, grant_versions.c.valid_from_us))
            return [tuple(r) for r in rows]

    async with owner_hub.db.read() as conn:
        mine = list(await conn.execute(sa.select(grant_versions).where(
            grant_versions.c.grant_id == grant).order_by(grant_versions.c.valid_from_us)))
    assert [(v.valid_from_us, v.valid_until_us, v.can_create, v.can_update) for v in mine] == [
        (us(now - 100), us(now - 50), False, True), (us(now - 50), None, True, True)]
    indexed = await snapshot()
    async with owner_hub.db.transaction() as conn:
        await conn.execute(sa.delete(grant_versions))
    report = await refold(owner_hub.db)
    assert report.differed == []
    assert await snapshot() == indexed

    async with owner_hub.db.read() as conn:
        oid = await store.owner_id(conn, alice.did)
        assert oid is not None
        rows = await store.object_commits_rows(conn, oid, grant)
    views = [store.view_from_row(r) for r in rows]
    assert versions_of(grant, list(reversed(views))) == versions_of(grant, views)


async def test_a_check_is_one_index_lookup_whatever_the_number_of_grants(
        owner_hub: Any) -> None:
    """With 1,000 grants of an owner in the index, both shapes of the lookup search the lookup
    index (by owner, grantee and, when given, type IRI), on either database, without
    statistics: the cost does not grow with the owner's other grants."""
    from identity_hub.permissions import index

    rows = []
    for i in range(1000):
        grantee = "did:example:app" if i % 2 == 0 else f"did:example:other{i}"
        type_ = "MusicPlaylist" if i % 2 else f"Type{i}"
        rows.append({"owner_id": 7, "grant_id": f"{i:064x}", "valid_from_us": 1,
                     "grantee_key": index.grantee_key(grantee),
                     "scope_key": index.scope_key(f"http://schema.org/{type_}"),
                     "type_iri": f"http://schema.org/{type_}", "grantee": grantee,
                     "context": SCHEMA, "type": type_, "rev": f"{i:064x}", "can_read": True})
    async with owner_hub.db.transaction() as conn:
        await conn.execute(sa.insert(grant_versions), rows)
    for shape in ("scoped", "all", "then and now"):
        stmt = (index._LOOKUPS_THEN_AND_NOW["read"] if shape == "then and now"
                else index._LOOKUPS[("read", shape == "scoped", True)])
        params = {"oid": 7, "gkey": index.grantee_key("did:example:app"),
                  "grantee": "did:example:app", "at": 5, "now": 6,
                  "skey": index.scope_key("http://schema.org/Type0"),
                  "iri": "http://schema.org/Type0"}
        async with owner_hub.db.read() as conn:
            sql = str(stmt.params(**params).compile(dialect=conn.dialect,
                                                    compile_kwargs={"literal_binds": True}))
            prefix = "EXPLAIN QUERY PLAN " if owner_hub.db.sqlite else "EXPLAIN "
            plan = " ".join(str(r[-1]) for r in await conn.exec_driver_sql(prefix + sql))
            if shape == "then and now":
                then, now = await index.grants_then_and_now(
                    conn, 7, "did:example:app", SCHEMA, "Type0", "read", 5, 6)
                found = then + now
            else:
                found = await index.grants_at(conn, 7, "did:example:app",
                                              SCHEMA if shape == "scoped" else None,
                                              "Type0" if shape == "scoped" else None, "read", 5,
                                              current_only=True)
        assert "ix_grant_versions_lookup" in plan, (shape, plan)
        assert len(found) == {"scoped": 1, "all": 500, "then and now": 2}[shape]
