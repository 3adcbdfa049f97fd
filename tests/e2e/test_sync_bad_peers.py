"""One bad peer delays nobody: hub A has a good peer B beside a peer that accepts connections and
never answers, one that answers raw random bytes, one that answers HTTP 200 junk and one whose
port is closed. With a 30 s request timeout, each write on A is visible on B within seconds, and
A's own writes stay fast (docs/replication.md, "Per-peer queues")."""

from __future__ import annotations

import asyncio
import pathlib
import time

import pytest

from identity_hub import appkeys
from identity_hub.client import HubClient
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.storage import store
from identity_hub.sync import peers
from tests.support.bad_peers import bad_peers
from tests.support.identities import identity_for
from tests.support.servers import RunningHub, running_hub
from tests.support.sync import commit_revs, drop_db, make_identities, new_db_url

PLAYLIST = {"@context": "https://schema.org", "@type": "MusicPlaylist", "name": "Mix"}
TIMEOUT = 30.0  # the sync request timeout: a hanging peer holds each request this long
FAST = 5.0  # well under TIMEOUT: a write must reach the good peer within this


class _View:
    def __init__(self, hub: RunningHub) -> None:
        self.runtime = hub.runtime


async def _count(hub: RunningHub, owner: str) -> int:
    return len(await commit_revs(_View(hub), owner))  # type: ignore[arg-type]


async def test_bad_peers_never_delay_a_good_peer(backend: str, tmp_path: pathlib.Path,
                                                 request: pytest.FixtureRequest) -> None:
    admin = request.getfixturevalue("pg_admin_url") if backend == "postgres" else None
    ids = make_identities(tmp_path, 6)  # A, B, and a DID for each bad peer
    urls = [await new_db_url(backend, tmp_path, admin) for _ in range(2)]
    owner = identity_for("Ed25519")
    # Rounds an hour apart: only push hints can make B see A's writes quickly.
    opts = {"sync_interval_seconds": 3600.0, "sync_request_timeout_seconds": TIMEOUT}
    bad_dids = [_did(p) for p in ids[2:]]
    try:
        async with bad_peers() as bad, \
                running_hub(tmp_path / "a", urls[0], ids[0], **opts) as a, \
                running_hub(tmp_path / "b", urls[1], ids[1], **opts) as b:
            for h in (a, b):
                await store.add_tenant(h.runtime.db, owner.did)
            await peers.add_peer(b.runtime.db, owner.did, a.did, a.url)
            async with HubClient(a.url, owner.did, owner.keys, hub_did=a.did,
                                 resolver=DidResolver(ResolverConfig())) as on_a:
                await on_a.grant(b.did, context="schema.identity.foundation/0.1",
                                 type_="HubSync", allow="-R--")
                (_p, _r, error), = await b.server.app[appkeys.SYNC].sync_now()
                assert error is None
                # A's peers: the good B, then the four bad ones
                await peers.add_peer(a.runtime.db, owner.did, b.did, b.url)
                for did, url in zip(bad_dids, bad.urls.values(), strict=True):
                    await peers.add_peer(a.runtime.db, owner.did, did, url)
                writes, visible = [], []
                for i in range(4):
                    before = await _count(b, owner.did)
                    t0 = time.monotonic()
                    await on_a.create({**PLAYLIST, "name": f"w{i}"})
                    writes.append(time.monotonic() - t0)
                    while await _count(b, owner.did) == before:
                        assert time.monotonic() - t0 < FAST, (
                            f"write {i} not on B after {FAST} s (earlier: {visible})")
                        await asyncio.sleep(0.01)
                    visible.append(time.monotonic() - t0)
                assert max(writes) < FAST, writes  # local writes are unaffected
                # the bad peers were really tried, and only they are failing
                assert bad.hanging.connections >= 1
                queues = {q.peer.url: q for q in a.server.app[appkeys.SYNC].queues()}
                assert queues[b.url].hint_backoff.failures == 0
                for kind in ("raw garbage", "http junk", "down"):
                    assert queues[bad.urls[kind]].hint_backoff.failures >= 1, kind
                assert queues[bad.urls["hanging"]].hint_backoff.failures == 0  # still waiting
    finally:
        for url in urls:
            await drop_db(url, admin)


def _did(path: pathlib.Path) -> str:
    from identity_hub.identity import HubIdentity

    return HubIdentity.load(path).did
