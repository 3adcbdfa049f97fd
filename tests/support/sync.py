"""Hubs that replicate, in-process: each a Runtime on its own database, linked through the core
API of the other (real authorization, real handlers; only the encryption layer is skipped —
tests/e2e/test_sync_e2e.py covers that with real servers)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import pathlib
import shutil
import uuid
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa

from identity_hub import core
from identity_hub.client import HubErrorResponse, grant_payload
from identity_hub.identity import HubIdentity
from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE
from identity_hub.runtime import Runtime, open_runtime
from identity_hub.settings import load_settings
from identity_hub.storage import store
from identity_hub.storage.tables import commits, objects
from identity_hub.sync import peers
from identity_hub.sync.puller import PullResult, pull_peer
from identity_hub.sync.receiver import Receiver
from identity_hub.sync.routes import SYNC_ROUTES
from identity_hub.sync.trust import SYNC_ALLOW, SYNC_CONTEXT, SYNC_TYPE
from identity_hub.sync.wiring import receiver_for
from tests.support.actors import Actor

_counter = itertools.count()
_sqlite_template: pathlib.Path | None = None


def install_sync_routes() -> None:
    """Make sure the core API routes the sync requests (core.ROUTES lists them once wired)."""
    for name, handler in SYNC_ROUTES.items():
        core.ROUTES.setdefault(name, handler)  # type: ignore[arg-type]


class LocalLink:
    """A peer hub's core API, called as `requester` (this hub's DID)."""

    def __init__(self, hub: core.Hub, requester: str) -> None:
        self.hub = hub
        self.requester = requester
        self.calls = 0

    async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        response = await self.hub.handle(self.requester, request)
        if response.get("@type") == "ErrorResponse":
            raise HubErrorResponse(response)
        return response


@dataclasses.dataclass
class Node:
    name: str
    runtime: Runtime
    receiver: Receiver

    @property
    def did(self) -> str:
        return self.runtime.identity.did

    @property
    def hub(self) -> core.Hub:
        return self.runtime.hub

    async def write(self, actor: Actor, commit: dict[str, Any], sub: str) -> dict[str, Any]:
        return await self.hub.handle(actor.did, actor.write(self.did, commit, sub))


def make_identities(root: pathlib.Path, n: int) -> list[pathlib.Path]:
    """`n` hub identities (Ed25519 + X25519 long-form did:ion: no RSA, fast)."""
    out = []
    for i in range(n):
        path = root / f"hub-identity-{i}"
        if not HubIdentity.exists(path):
            HubIdentity.create(path, compat_2019=False)
        out.append(path)
    return out


async def new_db_url(backend: str, tmp: pathlib.Path, pg_admin: str | None) -> str:
    """A fresh migrated database (SQLite file, or a PostgreSQL clone of the test template)."""
    from tests import conftest

    if backend == "sqlite":
        global _sqlite_template
        if _sqlite_template is None or not _sqlite_template.exists():
            from identity_hub.storage.engine import Database
            from identity_hub.storage.migrate import upgrade

            template = tmp / f"template-{uuid.uuid4().hex[:6]}.db"
            db = Database(f"sqlite+aiosqlite:///{template}")
            await upgrade(db.engine)
            await db.dispose()
            _sqlite_template = template
        path = tmp / f"hub-{next(_counter)}-{uuid.uuid4().hex[:6]}.db"
        shutil.copyfile(_sqlite_template, path)  # a migrated database, closed (WAL checkpointed)
        return f"sqlite+aiosqlite:///{path}"
    assert pg_admin is not None
    template = await conftest._pg_template(pg_admin)
    name = f"s_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    await conftest._pg_exec(pg_admin, f"CREATE DATABASE {name} TEMPLATE {template}")
    return conftest._with_db(pg_admin, name)


async def drop_db(url: str, pg_admin: str | None) -> None:
    from tests import conftest

    if pg_admin is not None and not url.startswith("sqlite"):
        name = url.split("?", 1)[0].rsplit("/", 1)[1]
        await conftest._pg_exec(pg_admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.asynccontextmanager
async def open_node(name: str, db_url: str, data_dir: pathlib.Path,
                    identity_dir: pathlib.Path, owners: list[str]) -> AsyncIterator[Node]:
    install_sync_routes()
    settings = load_settings({"data_dir": str(data_dir), "database_url": db_url}, environ={})
    async with open_runtime(settings, identity=HubIdentity.load(identity_dir),
                            migrate=False) as rt:
        for owner in owners:
            await store.add_tenant(rt.db, owner)
        yield Node(name, rt, receiver_for(rt.hub.commits, rt.resolver, settings))


def sync_grant(owner: Actor, hub_did: str) -> dict[str, Any]:
    """The owner's commit that lets `hub_did` pull its commits (sync/trust.py)."""
    payload = grant_payload(owner.did, hub_did, context=SYNC_CONTEXT, type_=SYNC_TYPE,
                            allow=SYNC_ALLOW)
    return owner.commit(owner.did, payload=payload, interface="Permissions",
                        context=GRANT_CONTEXT, type_=GRANT_TYPE)


async def pull(dst: Node, src: Node, owner: str, **kwargs: Any) -> PullResult:
    """`dst` pulls `owner`'s commits from `src` (adding `src` as a peer on first use)."""
    peer, _ = await peers.add_peer(dst.runtime.db, owner, src.did, f"local:{src.name}")
    return await pull_peer(dst.receiver, LocalLink(src.hub, dst.did), peer, hub_did=dst.did,
                           **kwargs)


async def commit_revs(node: Node, owner: str) -> list[str]:
    async with node.runtime.db.read() as conn:
        oid = await store.owner_id(conn, owner)
        if oid is None:
            return []
        rows = await conn.execute(sa.select(commits.c.rev).where(commits.c.owner_id == oid)
                                  .order_by(commits.c.seq))
        return [r[0] for r in rows]


STATE_COLUMNS = ("object_id", "has_create", "interface", "context", "type", "commit_strategy",
                 "created_by", "created_at", "deleted", "win_rev", "win_operation",
                 "win_committed_at_us", "meta", "data", "commit_count")


async def materialized(node: Node, owner: str) -> dict[str, tuple[Any, ...]]:
    """The owner's objects as folded (columns that do not depend on local arrival order)."""
    async with node.runtime.db.read() as conn:
        oid = await store.owner_id(conn, owner)
        if oid is None:
            return {}
        rows = await conn.execute(sa.select(*(objects.c[n] for n in STATE_COLUMNS))
                                  .where(objects.c.owner_id == oid))
        return {r.object_id: tuple(r) for r in rows}
