"""Two real hubs on 127.0.0.1, each with its own database, replicating over the encrypted
transport: concurrent writes to both converge (push hints), and a hub that was offline catches
up when it comes back (its first anti-entropy round)."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import Awaitable, Callable

import pytest

from identity_hub import appkeys
from identity_hub.client import HubClient
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.storage import store
from identity_hub.sync import peers
from tests.support.identities import identity_for
from tests.support.servers import RunningHub, running_hub
from tests.support.sync import commit_revs, drop_db, make_identities, materialized, new_db_url

PLAYLIST = {"@context": "https://schema.org", "@type": "MusicPlaylist", "name": "Mix"}


class _View:  # what tests.support.sync's readers need of a hub
    def __init__(self, hub: RunningHub) -> None:
        self.runtime = hub.runtime


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 15.0) -> float:
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise AssertionError("no convergence")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_two_hubs_converge_and_catch_up(backend: str, tmp_path: pathlib.Path,
                                              request: pytest.FixtureRequest) -> None:
    admin = request.getfixturevalue("pg_admin_url") if backend == "postgres" else None
    ids = make_identities(tmp_path, 2)
    urls = [await new_db_url(backend, tmp_path, admin) for _ in range(2)]
    owner = identity_for("Ed25519")
    opts = {"sync_interval_seconds": 30.0}  # hints, not rounds, must make this fast

    def client(hub: RunningHub) -> HubClient:
        return HubClient(hub.url, owner.did, owner.keys, hub_did=hub.did,
                         resolver=DidResolver(ResolverConfig()))

    async def same(a: RunningHub, b: RunningHub) -> bool:
        va, vb = _View(a), _View(b)
        return (sorted(await commit_revs(va, owner.did))  # type: ignore[arg-type]
                == sorted(await commit_revs(vb, owner.did))  # type: ignore[arg-type]
                and await materialized(va, owner.did)  # type: ignore[arg-type]
                == await materialized(vb, owner.did))  # type: ignore[arg-type]

    try:
        async with running_hub(tmp_path / "a", urls[0], ids[0], **opts) as a:
            async with running_hub(tmp_path / "b", urls[1], ids[1], **opts) as b:
                for h, other in ((a, b), (b, a)):
                    await store.add_tenant(h.runtime.db, owner.did)
                    await peers.add_peer(h.runtime.db, owner.did, other.did, other.url)
                async with client(a) as on_a, client(b) as on_b:
                    # the owner authorizes both hubs (on a; b receives the grant naming a)
                    for h in (a, b):
                        await on_a.grant(h.did, context="schema.identity.foundation/0.1",
                                         type_="HubSync", allow="-R--")
                    for h in (b, a):  # b first: a may pull from b once b holds a's grant
                        results = await h.server.app[appkeys.SYNC].sync_now()
                        assert [error for _p, _r, error in results] == [None]
                    shared = await on_a.create({**PLAYLIST, "name": "shared"})
                    await eventually(lambda: same(a, b))
                    # concurrent writes on both, including updates of the same object
                    await asyncio.gather(
                        *(on_a.create({**PLAYLIST, "name": f"a{i}"}) for i in range(5)),
                        *(on_b.create({**PLAYLIST, "name": f"b{i}"}) for i in range(5)),
                        on_a.update(shared, {**PLAYLIST, "name": "by a"}),
                        on_b.update(shared, {**PLAYLIST, "name": "by b"}))
                    await eventually(lambda: same(a, b))
                    # one write, visible on the other hub through a push hint
                    before = len(await commit_revs(_View(b), owner.did))  # type: ignore[arg-type]
                    await on_a.create({**PLAYLIST, "name": "latency"})
                    took = await eventually(lambda: _count_is(b, owner.did, before + 1), 5.0)
                    assert took < 5.0
            # b is offline; a keeps taking writes
            async with client(a) as on_a:
                for i in range(7):
                    await on_a.create({**PLAYLIST, "name": f"while b was away {i}"})
                await on_a.delete(shared, context="https://schema.org", type_="MusicPlaylist")
            async with running_hub(tmp_path / "b", urls[1], ids[1], **opts) as b:
                await eventually(lambda: same(a, b))
                state = await materialized(_View(b), owner.did)  # type: ignore[arg-type]
                assert state[shared][8] is True  # the delete replicated
                status = await peers.list_peers(b.runtime.db, owner.did)
                assert status[0].lag == 0 and status[0].last_error is None
    finally:
        for url in urls:
            await drop_db(url, admin)


async def _count_is(hub: RunningHub, owner: str, n: int) -> bool:
    return len(await commit_revs(_View(hub), owner)) == n  # type: ignore[arg-type]
