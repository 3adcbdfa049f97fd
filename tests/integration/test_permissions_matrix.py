"""The permission matrix, on both backends: every operation (create, update, delete, object
query, commit query) × every object interface (Collections, Profile, Permissions) × every kind of
requester (owner, grantee with the right flag, grantee without it, grantee of another type,
expired grant, not-yet-valid grant, revoked grant, stranger).

Each case asserts the answer, that a refused request changed nothing (commits, objects, grant
index), and that it produced exactly one audit entry (none for the owner). The grants are built
once per backend; every case gets a fresh target object.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import sqlalchemy as sa

from identity_hub.storage.tables import audit_log, commits, grant_versions, objects
from tests.support.actors import Actor, iso, playlist

GRANT_CTX = "schema.identity.foundation/0.1"
GRANT_TYPE = "PermissionGrant"
SCHEMA = "https://schema.org"
TYPE_OF = {"Collections": "MusicPlaylist", "Profile": "Person", "Permissions": GRANT_TYPE}
CONTEXT_OF = {"Collections": SCHEMA, "Profile": SCHEMA, "Permissions": GRANT_CTX}
OPERATIONS = ("create", "update", "delete", "object_query", "commit_query")
INTERFACES = ("Collections", "Profile", "Permissions")
WHO = ("owner", "granted", "no_flag", "other_type", "expired", "not_yet", "revoked", "stranger")
NO_FLAG = {"create": "-RUD", "update": "CR-D", "delete": "CRU-", "object_query": "C-UD",
           "commit_query": "C-UD"}


def person(name: str) -> dict[str, Any]:
    return {"@context": SCHEMA, "@type": "Person", "name": name}


def grant_body(owner: str, grantee: str, type_: str, allow: str, **extra: Any
               ) -> dict[str, Any]:
    return {"@context": GRANT_CTX, "@type": GRANT_TYPE, "owner": owner, "grantee": grantee,
            "context": SCHEMA, "type": type_, "allow": allow, **extra}


def payload_for(interface: str, owner: str, n: int) -> dict[str, Any]:
    if interface == "Collections":
        return playlist(f"p{n}", n)
    if interface == "Profile":
        return person(f"name {n}")
    return grant_body(owner, "did:example:target", "MusicPlaylist", "-R--" if n % 2 else "-RU-")


@dataclasses.dataclass
class World:
    rt: Any
    hub_did: str
    owner: Actor
    actors: dict[str, Actor]  # "granted", "noC", ..., "stranger"
    profile: str | None = None  # the live Profile object
    n: int = 0

    async def call(self, actor: Actor, request: dict[str, Any]) -> dict[str, Any]:
        return await self.rt.hub.handle(actor.did, request)

    async def owner_write(self, commit: dict[str, Any]) -> dict[str, Any]:
        resp = await self.call(self.owner, self.owner.write(self.hub_did, commit))
        assert resp["@type"] == "WriteResponse", resp
        return resp

    async def counts(self) -> tuple[int, ...]:
        async with self.rt.db.read() as conn:
            out = []
            for table in (commits, objects, grant_versions, audit_log):
                q = sa.select(sa.func.count()).select_from(table)
                out.append(int((await conn.execute(q)).scalar()))
            return tuple(out)

    async def last_audit(self) -> Any:
        async with self.rt.db.read() as conn:
            q = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(1)
            return (await conn.execute(q)).first()

    def commit_by(self, actor: Actor, interface: str, operation: str, *,
                  object_id: str | None = None) -> dict[str, Any]:
        self.n += 1
        payload = {} if operation == "delete" else payload_for(interface, self.owner.did, self.n)
        return actor.commit(self.owner.did, operation=operation, interface=interface,
                            context=CONTEXT_OF[interface], type_=TYPE_OF[interface],
                            object_id=object_id, payload=payload)

    async def target(self, interface: str) -> str:
        """A live object of the interface, made by the owner (the one Profile is reused)."""
        if interface == "Profile" and self.profile is not None:
            return self.profile
        resp = await self.owner_write(self.commit_by(self.owner, interface, "create"))
        object_id = resp["revisions"][0]
        if interface == "Profile":
            self.profile = object_id
        return object_id

    async def no_profile(self) -> None:
        if self.profile is not None:
            await self.owner_write(self.commit_by(self.owner, "Profile", "delete",
                                                  object_id=self.profile))
            self.profile = None


async def build_world(rt: Any, owner: Actor) -> World:
    world = World(rt, rt.identity.did, owner, {})
    names = ["granted", "noC", "noR", "noU", "noD", "other_type", "expired", "not_yet",
             "revoked", "stranger"]
    world.actors = {name: Actor() for name in names}
    a = world.actors
    now = time.time()
    for type_ in ("MusicPlaylist", "Person"):
        specs: list[tuple[str, str, str, dict[str, Any]]] = [
            ("granted", type_, "CRUD", {}), ("noC", type_, "-RUD", {}),
            ("noR", type_, "C-UD", {}), ("noU", type_, "CR-D", {}),
            ("noD", type_, "CRU-", {}), ("other_type", "Book", "CRUD", {}),
            ("expired", type_, "CRUD", {"not_before": iso(now - 7200),
                                        "expires": iso(now - 3600)}),
            ("not_yet", type_, "CRUD", {"not_before": iso(now + 86400)}),
            ("revoked", type_, "CRUD", {}),
        ]
        for name, covered, allow, extra in specs:
            body = grant_body(owner.did, a[name].did, covered, allow, **extra)
            resp = await world.owner_write(owner.commit(
                owner.did, interface="Permissions", context=GRANT_CTX, type_=GRANT_TYPE,
                payload=body))
            if name == "revoked":
                await world.owner_write(owner.commit(
                    owner.did, operation="delete", interface="Permissions", context=GRANT_CTX,
                    type_=GRANT_TYPE, object_id=resp["revisions"][0], payload={}))
    return world


def actor_for(world: World, who: str, op: str) -> Actor:
    if who == "owner":
        return world.owner
    if who == "no_flag":
        return world.actors[{"-RUD": "noC", "C-UD": "noR", "CR-D": "noU",
                             "CRU-": "noD"}[NO_FLAG[op]]]
    return world.actors[who]


def expected_allowed(op: str, interface: str, who: str) -> bool:
    if who == "owner":
        return True
    if op in ("object_query", "commit_query") and interface == "Profile":
        return True  # Profile is readable by any authenticated DID
    if interface == "Permissions":
        return op in ("object_query", "commit_query")  # answered, but filtered (see below)
    return who == "granted"


async def run_case(world: World, op: str, interface: str, who: str) -> list[str]:
    """Run one case; the list of what went wrong (empty when the case holds)."""
    actor = actor_for(world, who, op)
    allowed = expected_allowed(op, interface, who)
    problems: list[str] = []
    if op == "create":
        if interface == "Profile":
            await world.no_profile()
        request = actor.write(world.hub_did, world.commit_by(actor, interface, "create"),
                              world.owner.did)
    elif op in ("update", "delete"):
        target = await world.target(interface)
        request = actor.write(world.hub_did, world.commit_by(actor, interface, op,
                                                             object_id=target),
                              world.owner.did)
    elif op == "object_query":
        target = await world.target(interface)
        request = actor.object_query(world.hub_did, world.owner.did, interface=interface,
                                     context=CONTEXT_OF[interface], type=TYPE_OF[interface],
                                     include_data=True)
    else:
        target = await world.target(interface)
        request = actor.commit_query(world.hub_did, world.owner.did, object_id=[target])
    before = await world.counts()
    resp = await world.call(actor, request)
    after = await world.counts()
    audited = after[3] - before[3]
    if audited != (0 if who == "owner" else 1):
        problems.append(f"{audited} audit entries")
    if op in ("create", "update", "delete"):
        if allowed:
            if resp.get("@type") != "WriteResponse":
                problems.append(f"refused: {resp}")
            elif after[0] != before[0] + 1:
                problems.append("no commit stored")
            if op == "create" and interface == "Profile" and resp.get("revisions"):
                world.profile = resp["revisions"][0]
            if op == "delete" and interface == "Profile":
                world.profile = None
        else:
            if resp.get("error_code") != "permissions_required":
                problems.append(f"answer {resp.get('error_code') or resp.get('@type')}")
            if after[:3] != before[:3]:
                problems.append(f"state changed {before[:3]} -> {after[:3]}")
    elif op == "object_query":
        if not allowed:
            if resp.get("error_code") != "permissions_required":
                problems.append(f"answer {resp.get('error_code') or resp.get('@type')}")
        elif resp.get("@type") != "ObjectQueryResponse":
            problems.append(f"refused: {resp}")
        else:
            ids = [o["id"] for o in resp["objects"]]
            sees_target = target in ids
            should_see = who == "owner" or interface != "Permissions"
            if sees_target != should_see:
                problems.append(f"target visible={sees_target}")
            if interface == "Permissions" and who != "owner":
                strangers = [o for o in resp["objects"] if o["data"]["grantee"] != actor.did]
                if strangers:
                    problems.append("sees grants naming others")
        if after[:3] != before[:3]:
            problems.append("a query changed state")
    else:
        if resp.get("@type") != "CommitQueryResponse":
            problems.append(f"refused: {resp}")
        else:
            revs = {c["header"]["rev"] for c in resp["commits"]}
            should_see = who == "owner" or interface == "Profile" or (
                interface == "Collections" and who == "granted")
            if should_see and target not in revs:
                problems.append("target's commits missing")
            if not should_see and resp["commits"]:
                problems.append(f"sees {len(resp['commits'])} commits it may not")
    if who != "owner":
        entry = await world.last_audit()
        if entry is None or entry.requester != actor.did:
            problems.append("audit entry names someone else")
        else:
            if entry.allowed != (allowed or op == "commit_query"):
                problems.append(f"audit says allowed={entry.allowed}")
            if op in ("update", "delete") and entry.object_ids != [target]:
                problems.append(f"audit object_ids {entry.object_ids}")
            if entry.allowed and interface == "Collections" and who == "granted" and \
                    not entry.grant_ids:
                problems.append("audit does not name the grant")
    return problems


async def test_permission_matrix(owner_hub: Any, alice: Actor) -> None:
    world = await build_world(owner_hub, alice)
    failures: list[str] = []
    cases = 0
    for op in OPERATIONS:
        for interface in INTERFACES:
            for who in WHO:
                cases += 1
                problems = await run_case(world, op, interface, who)
                if problems:
                    failures.append(f"{op} × {interface} × {who}: {'; '.join(problems)}")
    assert cases == 120
    assert not failures, "\n".join(failures)
