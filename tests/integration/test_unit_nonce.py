"""A request's unit of work and its transport nonce, on both backends: the tenant check that
starts a request is asked together with the nonce (one round trip on PostgreSQL), and either way
a nonce is consumed exactly once, whatever the request's work did."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from identity_hub.errors import AuthenticationFailed
from identity_hub.storage import store
from identity_hub.storage.driver import AsyncpgDriver, driver_of
from identity_hub.storage.engine import Database
from identity_hub.storage.tables import nonces
from identity_hub.storage.unit import NONCE_INSERT
from identity_hub.storage.writes import now_us

TENANT = "did:example:tenant-1"


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    await store.add_tenant(database, TENANT)
    yield database
    await database.dispose()


def fresh_nonce() -> tuple[str, int]:
    return uuid.uuid4().hex * 2, now_us() + 300_000_000


async def stored_nonces(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(nonces)))
                   .scalar_one())


@pytest.mark.parametrize("did,expected", [
    (TENANT, True),
    ("did:example:someone-else", False),
    ("did:example:it's-not-a-did", False),  # not inlinable: asked on its own, same answer
    ("did:example:back\\slash", False),
])
async def test_tenant_check_with_the_nonce(db: Database, did: str, expected: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[object] = []
    original = AsyncpgDriver.begin_insert_probe

    async def recorded(self: AsyncpgDriver, *args: object) -> object:
        answers.append(await original(self, *args))  # type: ignore[arg-type]
        return answers[-1]

    monkeypatch.setattr(AsyncpgDriver, "begin_insert_probe", recorded)
    nonce = fresh_nonce()
    async with db.unit(nonce=nonce):
        assert await store.is_tenant(db, did) is expected
        assert await store.is_tenant(db, did) is expected  # a second ask: a plain query
    assert await stored_nonces(db) == 1
    if not db.sqlite:  # PostgreSQL: one round trip when the DID can be inlined
        assert answers == [(True, expected) if "'" not in did and "\\" not in did else None]
    with pytest.raises(AuthenticationFailed):  # the same nonce again: refused at once
        async with db.unit(nonce=nonce):
            await store.is_tenant(db, did)
    assert await stored_nonces(db) == 1


async def test_a_refused_requests_nonce_is_still_consumed(db: Database) -> None:
    nonce = fresh_nonce()

    class Refused(Exception):
        pass

    with pytest.raises(Refused):
        async with db.unit(nonce=nonce):
            assert await store.is_tenant(db, TENANT)
            async with db.transaction() as conn:
                await store.add_tenant(db, "did:example:added-then-rolled-back")
                await conn.execute(sa.text("SELECT 1"))
                raise Refused
    assert await stored_nonces(db) == 1
    assert not await store.is_tenant(db, "did:example:added-then-rolled-back")
    with pytest.raises(AuthenticationFailed):
        async with db.unit(nonce=nonce):
            await store.is_tenant(db, TENANT)


async def test_the_combined_statement_only_inlines_safe_literals(db: Database) -> None:
    """The driver's one-round-trip form: used for hex digests and DID-syntax values only."""
    async with db.unit():
        async with db.read() as conn:
            driver = driver_of(conn)
            digest, expires = fresh_nonce()
            unsafe = await driver.begin_insert_probe(
                "BEGIN", NONCE_INSERT, (digest, expires), store._IS_TENANT, "did:x:a'b")
            assert unsafe is None  # nothing was sent
            bad_digest = await driver.begin_insert_probe(
                "BEGIN", NONCE_INSERT, ("'; DROP TABLE nonces; --", expires),
                store._IS_TENANT, TENANT)
            assert bad_digest is None
