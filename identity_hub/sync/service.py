"""The hub's sync task: push hints after writes, pull on hints, anti-entropy rounds, backoff.

* After a local write (`notify_write(owner)`, called by the commit service's success path) the
  owner's peers get a `SyncHintRequest`; hints are coalesced (writes during a round of hints go
  in the next round) and their failures only logged: the peer's own rounds catch up.
* A hint from a configured peer (`pull_soon`) or the round timer (`interval` seconds) pulls each
  peer from its cursor. One pull per peer at a time; each in its own task, so a slow peer holds
  up nobody else, and local writes never wait for sync.
* A failing peer (unreachable, refusing, answering garbage) is retried after an exponential
  backoff (`base_backoff` doubling to `max_backoff`); the error is kept for `sync status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import sqlalchemy as sa

from identity_hub.client import HubClient, HubClientError
from identity_hub.did import DidResolver
from identity_hub.storage.engine import Database
from identity_hub.storage.tables import owners
from identity_hub.sync import peers, protocol
from identity_hub.sync.peers import Peer
from identity_hub.sync.puller import PeerLink, Progress, PullResult, pull_peer
from identity_hub.sync.receiver import Receiver

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SyncConfig:
    interval: float = 60.0  # anti-entropy: every peer is pulled at least this often
    page_size: int = protocol.DEFAULT_LIMIT  # the sync_page_commits setting
    max_page_bytes: int = protocol.DEFAULT_MAX_PAGE_BYTES  # the sync_max_page_bytes setting
    base_backoff: float = 1.0
    max_backoff: float = 600.0
    timeout: float = 30.0  # one request to a peer
    close_grace: float = 5.0  # how long close() waits for running pulls
    hint_delay: float = 0.005
    trailing_hint: float = 0.1  # a second hint after a burst of writes (see _hints)


class SyncService:
    """Replication of this hub's owners with their peers (see the module docstring)."""

    def __init__(self, receiver: Receiver, hub_did: str, keys: Sequence[tuple[str, Any]],
                 resolver: DidResolver, config: SyncConfig | None = None) -> None:
        self.receiver = receiver
        self.db: Database = receiver.db
        self.hub_did = hub_did
        self.keys = list(keys)
        self.resolver = resolver
        self.config = config or SyncConfig()
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[tuple[str, str], HubClient] = {}
        self._running: dict[int, asyncio.Task[Any]] = {}
        self._due: dict[int, float] = {}  # peer id → monotonic time of its next pull
        self._failures: dict[int, int] = {}
        self._dirty: set[str] = set()
        self._hinted: list[tuple[str, str]] = []
        self._hint_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the round and hint tasks; the hub answers hints from now on."""
        protocol.register_hint_target(self.db, self.pull_soon)
        self._tasks = [asyncio.create_task(self._rounds(), name="sync-rounds"),
                       asyncio.create_task(self._hints(), name="sync-hints")]

    async def close(self) -> None:
        """Stop every sync task, before the database engine closes (the app's cleanup_ctx).

        The round and hint tasks are woken and end at their next wait, pulls after their page:
        a task cancelled in the middle of a query would leave its connection to a closing
        engine ("rollback failed"). Whatever still runs after `close_grace` is cancelled."""
        self._closed = True
        protocol.unregister_hint_target(self.db)
        self._wake.set()
        self._hint_event.set()
        running = [*self._tasks, *self._running.values()]
        if running:
            await asyncio.wait(running, timeout=self.config.close_grace)
        tasks = [t for t in running if not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        if self._session is not None:
            await self._session.close()

    # --- events --------------------------------------------------------------------------------

    def notify_write(self, owner: str) -> None:
        """A commit of `owner` was stored here: hint the owner's peers (never blocks)."""
        self._dirty.add(owner)
        self._hint_event.set()

    async def pull_soon(self, owner: str, peer_did: str) -> bool:
        """A hint from `peer_did` about `owner`: pull it now (False: not a configured peer)."""
        if await peers.find_peer(self.db, owner, peer_did) is None:
            return False
        self._hinted.append((owner, peer_did))
        self._wake.set()
        return True

    # --- links -----------------------------------------------------------------------------------

    def link(self, peer: Peer) -> PeerLink:
        """The encrypted transport to `peer`, signed with this hub's keys."""
        key = (peer.url, peer.peer_did)
        client = self._clients.get(key)
        if client is None:
            if self._session is None:
                self._session = aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self.config.timeout))
            client = HubClient(peer.url, self.hub_did, self.keys, hub_did=peer.peer_did,
                               resolver=self.resolver, session=self._session,
                               **protocol.link_limits(self.config.max_page_bytes))
            self._clients[key] = client
        return client.send

    # --- pulls -----------------------------------------------------------------------------------

    async def sync_now(self, owner: str | None = None, progress: Progress | None = None
                       ) -> list[tuple[Peer, PullResult | None, str | None]]:
        """Pull every peer (of `owner`) to the end of its log now; (peer, result, error)."""
        out: list[tuple[Peer, PullResult | None, str | None]] = []
        for peer in await peers.list_peers(self.db, owner):
            try:
                result = await self._pull(peer, progress)
                out.append((peer, result, None))
            except Exception as exc:  # noqa: BLE001  (reported per peer; the others still sync)
                out.append((peer, None, _describe(exc)))
        return out

    async def _pull(self, peer: Peer, progress: Progress | None = None) -> PullResult:
        try:
            result = await pull_peer(self.receiver, self.link(peer), peer, hub_did=self.hub_did,
                                     limit=self.config.page_size,
                                     max_page_bytes=self.config.max_page_bytes,
                                     progress=progress,
                                     stop=lambda: self._closed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures = await peers.save_failure(self.db, peer.id, _describe(exc))
            self._failures[peer.id] = failures
            delay = min(self.config.max_backoff,
                        self.config.base_backoff * 2 ** min(failures - 1, 20))
            self._due[peer.id] = time.monotonic() + delay * (0.5 + random.random() / 2)
            logger.warning("sync: pulling %s for %s failed (%d in a row; next in %.0f s): %s",
                           peer.url, peer.owner[:60], failures, delay, _describe(exc))
            raise
        self._failures.pop(peer.id, None)
        self._due[peer.id] = time.monotonic() + self.config.interval
        return result

    def _start_pull(self, peer: Peer) -> None:
        if self._closed:
            return
        if peer.id in self._running:
            self._due[peer.id] = 0.0  # again right after the running pull
            return

        async def run() -> None:
            try:
                await self._pull(peer)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001  (noted by _pull; retried after the backoff)
                logger.debug("sync: pull of peer %d failed", peer.id)
            finally:
                self._running.pop(peer.id, None)
                self._wake.set()

        self._due[peer.id] = time.monotonic() + self.config.interval
        self._running[peer.id] = asyncio.create_task(run(), name=f"sync-pull-{peer.id}")

    async def _rounds(self) -> None:
        while not self._closed:
            try:
                all_peers = await peers.list_peers(self.db)
                now = time.monotonic()
                hinted, self._hinted = self._hinted, []
                for peer in all_peers:
                    if (peer.owner, peer.peer_did) in hinted and not self._failures.get(peer.id):
                        self._due[peer.id] = 0.0
                    if self._due.setdefault(peer.id, 0.0) <= now:
                        self._start_pull(peer)
                known = {p.id for p in all_peers}
                for stale in set(self._due) - known:
                    self._due.pop(stale, None)
                wait = min((d - now for d in self._due.values()), default=self.config.interval)
            except Exception:
                logger.exception("sync: a round failed")
                wait = self.config.base_backoff
            if self._closed:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, min(wait,
                                                                        self.config.interval)))

    # --- hints -----------------------------------------------------------------------------------

    async def _hints(self) -> None:
        trailing: set[str] = set()
        while not self._closed:
            if trailing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hint_event.wait(), self.config.trailing_hint)
            else:
                await self._hint_event.wait()
            if self._closed:
                break
            # Give the write's unit of work a moment to commit (and coalesce a burst).
            await asyncio.sleep(self.config.hint_delay)
            self._hint_event.clear()
            dirty, self._dirty = self._dirty, set()
            # The write that asked for a hint may still be committing (its request's unit of
            # work ends after the handler): one more hint shortly after covers that commit.
            if dirty:
                owners_now, trailing = dirty, trailing | dirty
            else:  # quiet for `trailing_hint` seconds since the last hints
                owners_now, trailing = trailing, set()
            try:
                await self._send_hints(owners_now)
            except Exception:
                logger.exception("sync: sending hints failed")

    async def _send_hints(self, owner_dids: set[str]) -> None:
        sends = []
        for owner in owner_dids:
            its_peers = await peers.list_peers(self.db, owner)
            if not its_peers:
                continue
            last_seq = await self._last_seq(owner)
            for peer in its_peers:
                request = protocol.hint_request(self.hub_did, peer.peer_did, owner, last_seq)
                sends.append(self._hint_one(peer, request))
        if sends:
            await asyncio.gather(*sends)

    async def _hint_one(self, peer: Peer, request: dict[str, Any]) -> None:
        try:
            await self.link(peer)(request)
        except Exception as exc:  # noqa: BLE001  (a lost hint only delays: rounds catch up)
            logger.info("sync: hint to %s not delivered: %s", peer.url, _describe(exc))

    async def _last_seq(self, owner: str) -> int:
        async with self.db.read() as conn:
            value = (await conn.execute(sa.select(owners.c.last_seq)
                                        .where(owners.c.did == owner))).scalar()
        return int(value or 0)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, HubClientError | protocol.SyncProtocolError):
        return str(exc)[:400]
    return f"{type(exc).__name__}: {str(exc)[:300]}"
