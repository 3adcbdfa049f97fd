"""A hostile peer's pages are bounded while they are read (docs/replication.md, "Limits").

The victim is the real app on 127.0.0.1 with its sync service; the hostile peer is a real
server in its own process, speaking the encrypted transport with its own hub identity
(tests/support/hostile_peer.py); a good peer (the real app too) holds the owner's data. Both
backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pathlib
import sys
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from identity_hub import appkeys
from identity_hub.identity import HubIdentity
from identity_hub.storage import store
from identity_hub.sync import peers
from tests.support.actors import Actor, playlist
from tests.support.servers import RunningHub, running_hub
from tests.support.sync import commit_revs, drop_db, make_identities, new_db_url, sync_grant

ROOT = pathlib.Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


class _View:  # what tests.support.sync's readers need of a hub
    def __init__(self, hub: RunningHub) -> None:
        self.runtime = hub.runtime


@contextlib.asynccontextmanager
async def hostile_peer(tmp: pathlib.Path, identity_dir: pathlib.Path, mode: str,
                       commit: dict[str, Any]) -> AsyncIterator[str]:
    """The hostile peer's endpoint URL, while its process runs."""
    commit_file = tmp / f"hostile-{mode}.json"
    commit_file.write_text(json.dumps(commit))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.hostile_peer", str(identity_dir), mode,
        str(commit_file), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert proc.stderr is not None
        assert line.startswith("PORT "), (line, await proc.stderr.read())
        yield f"http://127.0.0.1:{int(line.split()[1])}/.identity"
    finally:
        proc.kill()
        await proc.wait()


@contextlib.asynccontextmanager
async def victim_and_good(backend: str, tmp: pathlib.Path, request: pytest.FixtureRequest,
                          ids: list[pathlib.Path], owner: Actor
                          ) -> AsyncIterator[tuple[RunningHub, RunningHub]]:
    """The victim hub and a good peer holding 3 commits of `owner` (and a grant naming the
    victim); the victim lists the good peer. No anti-entropy round runs by itself."""
    admin = request.getfixturevalue("pg_admin_url") if backend == "postgres" else None
    urls = [await new_db_url(backend, tmp, admin) for _ in range(2)]
    opts = {"sync_interval_seconds": 3600.0}
    try:
        async with running_hub(tmp / "victim", urls[0], ids[0], **opts) as victim, \
                running_hub(tmp / "good", urls[1], ids[1], **opts) as good:
            for hub in (victim, good):
                await store.add_tenant(hub.runtime.db, owner.did)
            for commit in (sync_grant(owner, victim.did),
                           owner.commit(owner.did, payload=playlist("good 1")),
                           owner.commit(owner.did, payload=playlist("good 2"))):
                answer = await good.runtime.hub.handle(
                    owner.did, owner.write(good.did, commit, owner.did))
                assert answer["@type"] == "WriteResponse", answer
            await peers.add_peer(victim.runtime.db, owner.did, good.did, good.url)
            yield victim, good
    finally:
        for url in urls:
            await drop_db(url, admin)


@pytest.fixture(scope="module")
def limit_ids(tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    return make_identities(pathlib.Path(tmp_path_factory.mktemp("limit-ids")), 3)


async def _sync_with_hostile(victim: RunningHub, good: RunningHub, owner: Actor,
                             hostile_url: str, hostile_did: str
                             ) -> tuple[dict[str, str | None], int]:
    """Add the hostile peer, `sync_now` on the victim; per peer DID its error, and the peak
    memory the round allocated (tracemalloc)."""
    await peers.add_peer(victim.runtime.db, owner.did, hostile_did, hostile_url)
    service = victim.server.app[appkeys.SYNC]
    tracemalloc.start()
    try:
        results = await service.sync_now(owner.did)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {peer.peer_did: error for peer, _result, error in results}, peak


async def _assert_only_good_stored(victim: RunningHub, good: RunningHub, owner: Actor,
                                   hostile_did: str, error: str) -> None:
    assert sorted(await commit_revs(_View(victim), owner.did)) == \
        sorted(await commit_revs(_View(good), owner.did))  # type: ignore[arg-type]
    status = {p.peer_did: p for p in await peers.list_peers(victim.runtime.db, owner.did)}
    assert status[hostile_did].last_error == error
    # at least the pull this test made (the per-peer queue may have tried on its own as well)
    assert status[hostile_did].cursor == 0 and status[hostile_did].failures >= 1
    assert status[good.did].last_error is None and status[good.did].lag == 0


async def test_an_oversized_page_is_refused_while_it_is_read(
        backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
        limit_ids: list[pathlib.Path]) -> None:
    """~7,000 commits in one page (7 MiB of JSON, 12.5 MiB encrypted): reading stops at
    sync_max_page_bytes (8 MiB), the pull fails naming the setting, the round's memory stays
    within a few times the cap (opening and parsing the page whole cost ~80 MiB), nothing of it
    is stored, and the good peer of the same round syncs."""
    owner = Actor()
    hostile_did = HubIdentity.load(limit_ids[2]).did
    bait = owner.commit(owner.did, payload=playlist("from the hostile peer"))
    async with victim_and_good(backend, tmp_path, request, limit_ids, owner) as (victim, good), \
            hostile_peer(tmp_path, limit_ids[2], "oversized", bait) as url:
        errors, peak = await _sync_with_hostile(victim, good, owner, url, hostile_did)
        assert errors[good.did] is None
        assert peak < 40 * MiB, f"the round allocated {peak / MiB:.0f} MiB"
        error = errors[hostile_did]
        assert error == "the hub's answer is over 8388608 bytes (sync_max_page_bytes)"
        await _assert_only_good_stored(victim, good, owner, hostile_did, error)


async def test_a_page_over_the_count_cap_is_refused(
        backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
        limit_ids: list[pathlib.Path]) -> None:
    """sync_page_commits + 1 small commits: under the byte cap, refused whole by count."""
    owner = Actor()
    hostile_did = HubIdentity.load(limit_ids[2]).did
    bait = owner.commit(owner.did, payload=playlist("from the hostile peer"))
    async with victim_and_good(backend, tmp_path, request, limit_ids, owner) as (victim, good), \
            hostile_peer(tmp_path, limit_ids[2], "too_many", bait) as url:
        errors, _ = await _sync_with_hostile(victim, good, owner, url, hostile_did)
        assert errors[good.did] is None
        assert errors[hostile_did] == "oversized page: 201 commits for a limit of 200"
        await _assert_only_good_stored(victim, good, owner, hostile_did,
                                       "oversized page: 201 commits for a limit of 200")


async def test_the_largest_page_a_puller_parses_costs_a_bounded_memory(
        backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
        limit_ids: list[pathlib.Path]) -> None:
    """The worst page under the byte cap: ~4,300 commits in 7.7 MiB. It is read, opened and
    parsed (then refused for its count): the round's memory stays a bounded multiple of
    sync_max_page_bytes (measured: 44 MiB, 5.5x). Not a regression test: it pins the bound the
    byte cap gives."""
    owner = Actor()
    hostile_did = HubIdentity.load(limit_ids[2]).did
    bait = owner.commit(owner.did, payload=playlist("from the hostile peer"))
    async with victim_and_good(backend, tmp_path, request, limit_ids, owner) as (victim, good), \
            hostile_peer(tmp_path, limit_ids[2], "many", bait) as url:
        errors, peak = await _sync_with_hostile(victim, good, owner, url, hostile_did)
        assert errors[good.did] is None
        error = errors[hostile_did]
        assert error is not None and error.startswith("oversized page: ")
        assert peak < 8 * 8 * MiB, f"the round allocated {peak / MiB:.0f} MiB"  # ~44 MiB
        await _assert_only_good_stored(victim, good, owner, hostile_did, error)


async def test_a_deeply_nested_page_is_a_clean_sync_error(
        backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
        limit_ids: list[pathlib.Path]) -> None:
    """A page nested 100,000 levels deep: the peer's last error (what `sync status` shows) says
    so in one line, no RecursionError; nothing stored; the good peer syncs."""
    owner = Actor()
    hostile_did = HubIdentity.load(limit_ids[2]).did
    async with victim_and_good(backend, tmp_path, request, limit_ids, owner) as (victim, good), \
            hostile_peer(tmp_path, limit_ids[2], "deep", {}) as url:
        errors, _ = await _sync_with_hostile(victim, good, owner, url, hostile_did)
        assert errors[good.did] is None
        error = errors[hostile_did]
        assert error == "invalid response: JSON nested deeper than 128 levels"
        await _assert_only_good_stored(victim, good, owner, hostile_did, error)
        # what the operator reads
        status = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "identity_hub", "--data-dir", victim.settings.data_dir,
            "--database-url", victim.settings.db_url, "sync", "status", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        out, err = await status.communicate()
        assert status.returncode == 0, err
        # the hub's own per-peer queue may have tried too: one or more failures in a row
        assert " in a row, " in out.decode() and f"): {error}" in out.decode(), out
        assert b"RecursionError" not in out + err and b"Traceback" not in out + err


async def test_an_honest_peers_big_commits_come_in_pages_that_fit(
        backend: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest,
        limit_ids: list[pathlib.Path]) -> None:
    """100 commits of 60 KiB (10.7 MiB encrypted in one page of sync_page_commits = 200): the
    puller asks for pages within its sync_max_page_bytes (`query.max_bytes`), the peer sends
    fewer commits per page, and everything arrives."""
    owner = Actor()
    async with victim_and_good(backend, tmp_path, request, limit_ids, owner) as (victim, good):
        for i in range(100):
            commit = owner.commit(owner.did, payload={**playlist(f"big {i}"),
                                                      "description": "x" * 60_000})
            answer = await good.runtime.hub.handle(
                owner.did, owner.write(good.did, commit, owner.did))
            assert answer["@type"] == "WriteResponse", answer
        results = await victim.server.app[appkeys.SYNC].sync_now(owner.did)
        assert [error for _p, _r, error in results] == [None]
        (_peer, result, _error), = results
        # the per-peer queue may pull part of it concurrently: stored here or already held
        assert result is not None and result.pages >= 2
        assert result.tally.stored + result.tally.held == 103
        assert sorted(await commit_revs(_View(victim), owner.did)) == \
            sorted(await commit_revs(_View(good), owner.did))  # type: ignore[arg-type]
