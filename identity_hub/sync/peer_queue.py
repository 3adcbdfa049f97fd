"""One queue per (owner, peer hub): its hints, its pulls and its backoff.

Modelled on synapse's `per_destination_queue`: every peer has its own tasks, so a peer that is
down, hangs until the request timeout, or answers garbage delays only itself. Each queue runs
two tasks:

* the hint task sends `SyncHintRequest`s. Hints coalesce: while one is in flight (or the peer is
  backing off) later ones collapse into one pending hint carrying the newest `last_seq`, so a
  hanging peer costs one outstanding request, never a growing backlog;
* the pull task pulls the peer from its cursor when a pull is asked for (a hint from the peer,
  `sync now`) or its anti-entropy interval is up.

A failure backs that task off (`Backoff`: exponential from `base` doubling to `cap`, jittered to
50–100 %); a success resets it. Hints and pulls back off apart: a peer that answers hints but
refuses pulls is not pulled after every local write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from identity_hub.client import HubClientError
from identity_hub.sync.peers import Peer
from identity_hub.sync.protocol import SyncProtocolError

logger = logging.getLogger(__name__)

HintSender = Callable[[Peer, int], Awaitable[None]]
Puller = Callable[[Peer], Awaitable[Any]]


class Backoff:
    """Jittered exponential backoff of one task of one peer."""

    def __init__(self, base: float, cap: float, failures: int = 0) -> None:
        self.base = base
        self.cap = cap
        self.failures = failures
        self.until = 0.0  # monotonic time before which the task waits
        self.delay = 0.0  # the last delay chosen (for status and metrics)

    def failed(self) -> float:
        """Note a failure; returns the delay (seconds) until the next attempt."""
        self.failures += 1
        delay = min(self.cap, self.base * 2 ** min(self.failures - 1, 30))
        self.delay = delay * (0.5 + random.random() / 2)
        self.until = time.monotonic() + self.delay
        return self.delay

    def succeeded(self) -> None:
        self.failures = 0
        self.until = 0.0
        self.delay = 0.0

    def remaining(self) -> float:
        return max(0.0, self.until - time.monotonic())


class PeerQueue:
    """The hint and pull tasks of one peer (see the module docstring)."""

    def __init__(self, peer: Peer, *, send_hint: HintSender, pull: Puller, interval: float,
                 base_backoff: float, max_backoff: float,
                 on_change: Callable[[PeerQueue], None] | None = None) -> None:
        self.peer = peer
        self._send_hint = send_hint
        self._pull = pull
        self.interval = interval
        self.hint_backoff = Backoff(base_backoff, max_backoff)
        # The persisted count of failed pulls survives a restart: a peer that was failing keeps
        # backing off from where it was (its first attempt after the start still runs at once).
        self.pull_backoff = Backoff(base_backoff, max_backoff, failures=peer.failures)
        self._on_change = on_change
        self.errors = {"hint": 0, "pull": 0}  # failures since the start (metrics)
        self.last_success: float | None = (  # unix time of the last successful pull
            peer.last_success_us / 1e6 if peer.last_success_us else None)
        self._pending_hint: int | None = None
        self._hint_wake = asyncio.Event()
        self._pull_wake = asyncio.Event()
        self._next_pull = 0.0  # monotonic; 0 = as soon as possible
        self.pull_lock = asyncio.Lock()  # one pull of this peer at a time (rounds, sync now)
        self.stopping = False
        self._tasks = [asyncio.create_task(self._hints(), name=f"sync-hints-{peer.id}"),
                       asyncio.create_task(self._pulls(), name=f"sync-pulls-{peer.id}")]

    # --- requests (never block) -----------------------------------------------------------------

    def hint(self, last_seq: int) -> None:
        """Tell the peer this hub holds the owner's commits up to `last_seq` (coalesced)."""
        self._pending_hint = max(self._pending_hint or 0, last_seq)
        self._hint_wake.set()

    def pull_soon(self) -> None:
        """The peer hinted: pull it now. While its pulls back off, a hint (it is up, it says)
        brings the next attempt forward to one base delay from now, never sooner, so a peer that
        hints but fails its pulls costs at most one pull per base delay."""
        if self.pull_backoff.failures:
            soonest = time.monotonic() + self.pull_backoff.base
            self.pull_backoff.until = min(self.pull_backoff.until, soonest)
        self._next_pull = 0.0
        self._pull_wake.set()

    def update(self, peer: Peer) -> None:
        """A fresh row of the peer (its URL may have changed)."""
        self.peer = peer

    @property
    def pulling(self) -> bool:
        return self.pull_lock.locked()

    # --- tasks ------------------------------------------------------------------------------------

    async def _hints(self) -> None:
        while not self.stopping:
            await self._hint_wake.wait()
            self._hint_wake.clear()
            while self._pending_hint is not None and not self.stopping:
                wait = self.hint_backoff.remaining()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                last_seq, self._pending_hint = self._pending_hint, None
                try:
                    await self._send_hint(self.peer, last_seq)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001  (a lost hint only delays: rounds catch up)
                    delay = self.hint_backoff.failed()
                    self.errors["hint"] += 1
                    # The next hint carries a newer last_seq, or this one again.
                    self._pending_hint = max(self._pending_hint or 0, last_seq)
                    logger.info("sync: hint to peer %d not delivered (%d in a row; next in "
                                "%.1f s): %s", self.peer.id, self.hint_backoff.failures, delay,
                                describe(exc))
                else:
                    self.hint_backoff.succeeded()
                self._changed()

    async def _pulls(self) -> None:
        while not self.stopping:
            start_at = max(self._next_pull, self.pull_backoff.until)
            wait = start_at - time.monotonic()
            if wait > 0:
                self._pull_wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._pull_wake.wait(), wait)
                continue
            self._next_pull = time.monotonic() + self.interval
            await self.run_pull()

    async def run_pull(self) -> Any:
        """Pull the peer now (after any pull of it in progress); never raises but CancelledError.
        Returns the puller's result, or the exception it raised."""
        async with self.pull_lock:
            try:
                result = await self._pull(self.peer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  (recorded by the puller; retried later)
                self.pull_backoff.failed()
                self.errors["pull"] += 1
                self._changed()
                return exc
            self.pull_backoff.succeeded()
            self.last_success = time.time()
            self._changed()
            return result

    def _changed(self) -> None:
        if self._on_change is not None:
            try:
                self._on_change(self)
            except Exception:  # a metrics hook must never stop replication
                logger.exception("sync: peer status hook failed")

    async def close(self, grace: float) -> None:
        """Stop; a pull in progress may finish its page within `grace` seconds."""
        self.stopping = True
        hints, pulls = self._tasks
        hints.cancel()
        if self.pulling:
            await asyncio.wait([pulls], timeout=grace)
        pulls.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def describe(exc: BaseException) -> str:
    """A short description of a sync failure for logs and `sync status`, without the peer's
    bytes: a peer's answer may be quoted in a client error (aiohttp's "Bad status line" repeats
    it, a non-200 answer's body is shown); only the first line before any quoted bytes is kept."""
    if isinstance(exc, HubClientError | SyncProtocolError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = text.splitlines()[0] if text else type(exc).__name__
    for quote in (" b'", ' b"', "message='", 'message="'):
        if quote in text:
            text = text.split(quote, 1)[0].rstrip(" :,") + " (the peer's answer is not shown)"
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:300]
