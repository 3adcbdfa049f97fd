"""Rate limits through the real aiohttp server on 127.0.0.1, on both backends: a bucket run dry
gives HTTP 429 + Retry-After + the protocol's ErrorResponse, the hub stays up and stores nothing;
the owner and the owner's peer hubs have their own budgets; X-Forwarded-For counts only from a
trusted proxy; /metrics counts the refusals (and is 404 when off). docs/rate-limits.md."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from identity_hub.client import HubClient, HubErrorResponse, HubRateLimited
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.metrics import did_label
from identity_hub.storage import store
from identity_hub.storage.tables import commits
from identity_hub.sync import peers, protocol
from tests.support.identities import Identity, identity_for
from tests.support.servers import RunningHub, running_hub

PLAYLIST = {"@context": "https://schema.org", "@type": "MusicPlaylist", "name": "Mix"}
SLOW = "0.01"  # tokens per second: nothing refills during a test


@contextlib.asynccontextmanager
async def hub_with(db_url: str, tmp_path: pathlib.Path, identity_dir: pathlib.Path,
                   **settings: Any) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path / "hub", db_url, identity_dir, **settings) as hub:
        yield hub


def client(hub: RunningHub, who: Identity) -> HubClient:
    return HubClient(hub.url, who.did, who.keys, hub_did=hub.did,
                     resolver=DidResolver(ResolverConfig()))


async def commit_count(hub: RunningHub) -> int:
    async with hub.runtime.db.read() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(commits))
                    ).scalar_one())


async def test_a_dry_bucket_answers_429_and_stores_nothing(
        db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path) -> None:
    owner = identity_for("Ed25519")
    async with hub_with(db_url, tmp_path, hub_identity_dir, metrics_enabled=True,
                        rate_limit_trusted_write=f"{SLOW}/3") as hub:
        await store.add_tenant(hub.runtime.db, owner.did)
        async with client(hub, owner) as on_hub:
            for i in range(3):
                await on_hub.create({**PLAYLIST, "name": f"p{i}"})
            with pytest.raises(HubRateLimited) as refused:
                await on_hub.create({**PLAYLIST, "name": "one too many"})
            assert refused.value.error_code == "too_many_requests"
            assert "rate_limit_trusted_write" in refused.value.response["developer_message"]
            assert refused.value.retry_after is not None and refused.value.retry_after >= 1
            assert await commit_count(hub) == 3  # nothing of the refused write was stored
            # the hub stays up, and other classes of work are not touched
            assert len(await on_hub.query_objects()) == 3
        async with aiohttp.ClientSession() as http:
            async with http.get(hub.base + "/healthz") as resp:
                assert resp.status == 200
            async with http.get(hub.base + "/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
        assert ('identity_hub_rejected_requests_total{limit="write:did",'
                'reason="rate_limited"} 1.0') in text
        assert owner.did not in text


async def test_the_429_is_plain_json_with_retry_after(
        db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path) -> None:
    """What a 2019 client sees: status ≠ 200 with a JSON ErrorResponse body (no encryption)."""
    async with hub_with(db_url, tmp_path, hub_identity_dir,
                        rate_limit_handshake=f"{SLOW}/1") as hub, aiohttp.ClientSession() as http:
        async with http.post(hub.url, data=b"not a JWE") as resp:
            assert resp.status == 401  # it cost a handshake's crypto: the address's one token
        async with http.post(hub.url, data=b"not a JWE") as resp:
            assert resp.status == 429
            assert int(resp.headers["Retry-After"]) >= 1
            assert resp.content_type == "application/json"
            body = await resp.json()
        assert body["@type"] == "ErrorResponse" and body["error_code"] == "too_many_requests"
        assert "rate_limit_handshake" in body["developer_message"]


async def test_the_owner_and_its_peer_hubs_have_larger_budgets(
        db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path) -> None:
    owner, stranger = identity_for("Ed25519"), identity_for("Ed25519")
    peer_hub, other_hub = identity_for("Ed25519"), identity_for("Ed25519")
    limits = {"rate_limit_write": f"{SLOW}/2", "rate_limit_trusted_write": f"{SLOW}/6",
              "rate_limit_sync": f"{SLOW}/2", "rate_limit_trusted_sync": f"{SLOW}/6"}
    async with hub_with(db_url, tmp_path, hub_identity_dir, **limits) as hub:
        await store.add_tenant(hub.runtime.db, owner.did)
        await peers.add_peer(hub.runtime.db, owner.did, peer_hub.did, "http://127.0.0.1:9/")
        async with client(hub, owner) as as_owner, client(hub, stranger) as as_stranger:
            for i in range(6):  # three times the stranger's budget
                await as_owner.create({**PLAYLIST, "name": f"p{i}"})
            for _ in range(2):  # refused for want of a grant, but counted
                with pytest.raises(HubErrorResponse) as err:
                    await as_stranger.create(PLAYLIST, sub=owner.did)
                assert err.value.error_code == "permissions_required"
            with pytest.raises(HubRateLimited) as refused:
                await as_stranger.create(PLAYLIST, sub=owner.did)
            assert "rate_limit_write" in refused.value.response["developer_message"]
            with pytest.raises(HubRateLimited):  # the owner's budget is its own, now spent
                await as_owner.create(PLAYLIST)
        assert await commit_count(hub) == 6

        async def pulls(who: Identity) -> list[str]:
            outcomes = []
            async with client(hub, who) as c:
                for _ in range(4):
                    try:
                        await c.send(protocol.pull_request(who.did, hub.did, owner.did, 0, 10))
                        outcomes.append("ok")
                    except HubRateLimited:
                        outcomes.append("429")
                    except HubErrorResponse as exc:
                        outcomes.append(str(exc.error_code))
            return outcomes

        # the configured peer hub (no grant yet: refused, but on its own budget) and a stranger
        assert await pulls(peer_hub) == ["permissions_required"] * 4
        assert await pulls(other_hub) == ["permissions_required"] * 2 + ["429"] * 2


async def _post_junk(hub: RunningHub, forwarded: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with aiohttp.ClientSession() as http, http.post(hub.url, data=b"junk",
                                                          headers=headers) as resp:
        return resp.status


async def test_forwarded_for_counts_only_from_a_trusted_proxy(
        db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path) -> None:
    limit = {"rate_limit_handshake": f"{SLOW}/2"}
    async with hub_with(db_url, tmp_path / "direct", hub_identity_dir, **limit) as hub:
        # no trusted proxy: the header is ignored, every request is 127.0.0.1's
        statuses = [await _post_junk(hub, f"203.0.113.{i}") for i in range(4)]
        assert statuses == [401, 401, 429, 429]
    async with hub_with(db_url, tmp_path / "proxied", hub_identity_dir,
                        trusted_proxies="10.0.0.0/8, 127.0.0.1", **limit) as hub:
        # behind a trusted proxy: each forwarded address has its own bucket
        statuses = [await _post_junk(hub, f"203.0.113.{i}") for i in range(4)]
        assert statuses == [401] * 4
        # the right-most address that is not a trusted proxy counts; what the client wrote
        # left of it does not
        same = [await _post_junk(hub, f"198.51.100.{i}, 198.51.100.77, 10.1.2.3")
                for i in range(3)]
        assert same == [401, 401, 429]
        assert await _post_junk(hub, "198.51.100.78") == 401


async def test_metrics_are_off_by_default_and_name_no_did(
        db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path) -> None:
    async with hub_with(db_url, tmp_path / "off", hub_identity_dir) as hub, \
            aiohttp.ClientSession() as http, http.get(hub.base + "/metrics") as resp:
        assert resp.status == 404
    owner, peer_hub = identity_for("Ed25519"), identity_for("Ed25519")
    async with hub_with(db_url, tmp_path / "on", hub_identity_dir, metrics_enabled=True) as hub:
        await store.add_tenant(hub.runtime.db, owner.did)
        # a peer hub that is down: its queue fails and backs off, and the gauges say so
        await peers.add_peer(hub.runtime.db, owner.did, peer_hub.did, "http://127.0.0.1:9/")
        async with client(hub, owner) as on_hub:
            await on_hub.create(PLAYLIST)  # its hint creates the peer's queue
        label = did_label(peer_hub.did, False)
        text = ""
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(hub.base + "/metrics") as resp:
                    text = await resp.text()
                if f'identity_hub_sync_peer_failures{{owner="{did_label(owner.did, False)}",' \
                        f'peer="{label}"}} 1.0' in text:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(text[-2000:])
        assert "identity_hub_sync_peer_backoff_seconds" in text
        assert owner.did not in text and peer_hub.did not in text


async def test_automerge_worker_seconds_are_budgeted(
        db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path) -> None:
    """Each automerge write is charged the worker time it took; once the budget is spent the next
    automerge write is refused (nothing stored) while ordinary writes go on."""
    import base64
    import json

    vectors = json.loads((pathlib.Path(__file__).parents[1] / "vectors" / "automerge" /
                          "vectors.json").read_text())["vectors"]
    vector = next(v for v in vectors if v["name"] == "am3-doc-2w-scalar-1001-8")
    payloads = [base64.urlsafe_b64decode(p["data"] + "=" * (-len(p["data"]) % 4))
                for p in vector["payloads"]]
    owner = identity_for("Ed25519")
    # 5 ms of worker time, refilled at 0.1 ms per second: a handful of folds at most
    async with hub_with(db_url, tmp_path, hub_identity_dir,
                        rate_limit_trusted_automerge="0.0001/0.005") as hub:
        await store.add_tenant(hub.runtime.db, owner.did)
        await hub.runtime.hub.commits.crdt.start()  # a worker's start is not charged anyway
        async with client(hub, owner) as c:
            accepted, refused = 0, None
            for i in range(60):
                payload = payloads[i % len(payloads)]
                commit = c.make_commit(operation="create", context="https://schema.org",
                                       type_="MusicPlaylist", payload=payload,
                                       strategy="automerge")
                before = await commit_count(hub)
                try:
                    await c.write(commit)
                    accepted += 1
                except HubRateLimited as exc:
                    refused = exc
                    assert await commit_count(hub) == before
                    break
            assert refused is not None, "60 automerge folds never ran out of a 5 ms budget"
            assert accepted >= 1
            assert "rate_limit_trusted_automerge" in refused.response["developer_message"]
            await c.create(PLAYLIST)  # a basic commit costs no automerge time
