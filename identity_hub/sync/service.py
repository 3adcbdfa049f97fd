"""The hub's sync task: push hints after writes, pull on hints, anti-entropy rounds, backoff.

* After a local write (`notify_write(owner)`, called by the commit service's success path) the
  owner's peers get a `SyncHintRequest`; hints are coalesced (writes during a round of hints go
  in the next round) and their failures only logged: the peer's own rounds catch up.
* A hint from a configured peer (`pull_soon`) or the peer's anti-entropy timer (`interval`
  seconds) pulls that peer from its cursor.
* Every peer has its own queue (`peer_queue.PeerQueue`): its own hint task, pull task and
  backoff, so a peer that is down, hanging or answering garbage delays nobody else, and local
  writes never wait for sync. The hint loop here only hands hints to the queues.
* A failing peer is retried after an exponential backoff (`base_backoff` doubling to
  `max_backoff`, jittered); a failed pull's error is kept for `sync status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import sqlalchemy as sa

from identity_hub.client import HubClient
from identity_hub.did import DidResolver
from identity_hub.storage.engine import Database
from identity_hub.storage.tables import owners
from identity_hub.sync import peers, protocol
from identity_hub.sync.peer_queue import PeerQueue, describe
from identity_hub.sync.peers import Peer
from identity_hub.sync.puller import PeerLink, Progress, PullResult, pull_peer
from identity_hub.sync.receiver import Receiver

logger = logging.getLogger(__name__)

PeerStatusHook = Callable[[PeerQueue], None]


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
    refresh: float = 10.0  # how often the peer list is re-read (peers added while running)


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
        # Called (from the peer's queue) after each hint or pull outcome: metrics gauges.
        self.on_peer_status: PeerStatusHook | None = None
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[tuple[str, str], HubClient] = {}
        self._queues: dict[int, PeerQueue] = {}
        self._dirty: set[str] = set()
        self._hint_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the peer queues and the hint task; the hub answers hints from now on."""
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
        running = list(self._tasks)
        if running:  # woken, they end at their next wait, never in the middle of a query
            await asyncio.wait(running, timeout=self.config.close_grace)
        tasks = [t for t in running if not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Let pulls finish their page (they stop after it) rather than cut a write.
        await asyncio.gather(*(q.close(self.config.close_grace) for q in self._queues.values()))
        self._queues.clear()
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
        peer = await peers.find_peer(self.db, owner, peer_did)
        if peer is None:
            return False
        queue = self._queue(peer)
        if queue is not None:
            queue.pull_soon()
        return True

    # --- queues and links -----------------------------------------------------------------------

    def _queue(self, peer: Peer) -> PeerQueue | None:
        """The peer's queue (created on first sight, its row refreshed); None once closed."""
        if self._closed:
            return None
        queue = self._queues.get(peer.id)
        if queue is None:
            queue = PeerQueue(peer, send_hint=self._hint_one, pull=self._pull,
                              interval=self.config.interval,
                              base_backoff=self.config.base_backoff,
                              max_backoff=self.config.max_backoff, on_change=self._status)
            self._queues[peer.id] = queue
        else:
            queue.update(peer)
        return queue

    def queues(self) -> list[PeerQueue]:
        """The running peer queues (for status and metrics)."""
        return list(self._queues.values())

    def _status(self, queue: PeerQueue) -> None:
        if self.on_peer_status is not None:
            self.on_peer_status(queue)

    def link(self, peer: Peer) -> PeerLink:
        """The encrypted transport to `peer`, signed with this hub's keys."""
        key = (peer.url, peer.peer_did)
        client = self._clients.get(key)
        if client is None:
            if self._session is None:
                # No per-host connection limit: a hanging peer's sockets never queue another's.
                self._session = aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                    connector=aiohttp.TCPConnector(limit=0, limit_per_host=0))
            client = HubClient(peer.url, self.hub_did, self.keys, hub_did=peer.peer_did,
                               resolver=self.resolver, session=self._session,
                               timeout=self.config.timeout,
                               **protocol.link_limits(self.config.max_page_bytes))
            self._clients[key] = client
        return client.send

    # --- pulls -----------------------------------------------------------------------------------

    async def sync_now(self, owner: str | None = None, progress: Progress | None = None
                       ) -> list[tuple[Peer, PullResult | None, str | None]]:
        """Pull every peer (of `owner`) to the end of its log now; (peer, result, error)."""
        out: list[tuple[Peer, PullResult | None, str | None]] = []
        for peer in await peers.list_peers(self.db, owner):
            queue = self._queues.get(peer.id)
            try:
                if queue is not None:  # after a pull of it in progress, never beside one
                    async with queue.pull_lock:
                        result = await self._pull(peer, progress)
                    queue.pull_backoff.succeeded()
                else:
                    result = await self._pull(peer, progress)
                out.append((peer, result, None))
            except Exception as exc:  # noqa: BLE001  (reported per peer; the others still sync)
                out.append((peer, None, describe(exc)))
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
            failures = await peers.save_failure(self.db, peer.id, describe(exc))
            logger.warning("sync: pulling peer %d (%s) failed (%d in a row): %s", peer.id,
                           peer.url, failures, describe(exc))
            raise
        return result

    async def _rounds(self) -> None:
        """Keep one queue per configured peer (peers are added and removed while running)."""
        while not self._closed:
            try:
                all_peers = await peers.list_peers(self.db)
                for peer in all_peers:
                    self._queue(peer)
                known = {p.id for p in all_peers}
                for stale in set(self._queues) - known:
                    await self._queues.pop(stale).close(0.0)
            except Exception:
                logger.exception("sync: reading the peers failed")
            if self._closed:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       min(self.config.refresh, self.config.interval))

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
                await self._queue_hints(owners_now)
            except Exception:
                logger.exception("sync: queueing hints failed")

    async def _queue_hints(self, owner_dids: set[str]) -> None:
        """Hand each peer of these owners a hint; its queue sends it (this never waits on a
        peer)."""
        for owner in owner_dids:
            its_peers = await peers.list_peers(self.db, owner)
            if not its_peers:
                continue
            last_seq = await self._last_seq(owner)
            for peer in its_peers:
                queue = self._queue(peer)
                if queue is not None:
                    queue.hint(last_seq)

    async def _hint_one(self, peer: Peer, last_seq: int) -> None:
        """Send one hint (raises what the link raises: the queue backs off)."""
        request = protocol.hint_request(self.hub_did, peer.peer_did, peer.owner, last_seq)
        await self.link(peer)(request)

    async def _last_seq(self, owner: str) -> int:
        async with self.db.read() as conn:
            value = (await conn.execute(sa.select(owners.c.last_seq)
                                        .where(owners.c.did == owner))).scalar()
        return int(value or 0)
