"""Folding `commit_strategy: "automerge"` commits: merge their automerge payloads into JSON state.

Untrusted automerge bytes are only ever loaded in worker processes (`_crdt_worker.py`, started
with ``python -I`` and a bare environment, talking length-prefixed frames over pipes, never
pickle). A worker that panics, crashes, exceeds its memory cap or times out is killed and
replaced; the caller sees `CrdtError` with a message safe to show a client.

The fold is defined over the SET of payloads, not the order they arrived in: documents first
(ordered by the SHA-256 of the payload), then change payloads in dependency order (ties by
SHA-256); see `crdt_chunks.canonical_order`. Documents are merged; change chunks are loaded
concatenated after a document that holds their dependencies (the binding cannot apply a change
to a loaded document, and silently mis-loads concatenated documents, which are refused).

The state is what ``Doc.obj()`` gives, read the way JavaScript's JSON view reads it: 3.x text
objects (lists of one-character strings in this binding) are joined into strings (a non-empty
list made only of one-character strings is taken to be text; an empty text reads as ``[]``),
and whole-number floats become ints. See `_crdt_worker.normalize`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import struct
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from identity_hub import ratelimit
from identity_hub.commits.fold import crdt_chunks
from identity_hub.commits.fold.crdt_chunks import (
    ChunkError,
    FoldPlan,
    PayloadInfo,
    parse_payload,
    plan_fold,
    set_digest,
)

logger = logging.getLogger(__name__)

__all__ = ["AutomergeEngine", "CrdtError", "CrdtLimits", "canonical_order"]

_WORKER_SCRIPT = Path(__file__).with_name("_crdt_worker.py")
_U32 = struct.Struct(">I")
_OK, _ERROR, _MISS = 0, 1, 2
_ACK = b"\x06"
_OFFLOAD_BYTES = 262_144  # parse bigger inputs in a thread, off the event loop
_REASONS = {
    "load": "automerge payload could not be loaded",
    "deps": "automerge change could not be applied: malformed, or it depends on changes that are "
    "not in earlier commits",
    "depth": "automerge state is nested too deeply",
    "size": "automerge state is too large",
    "type": "automerge state cannot be represented as a JSON object",
}


def _hashes(missing: frozenset[bytes], shown: int = 2) -> str:
    """The missing change hashes in hex, sorted: the first `shown` of them, and how many more
    (a sync park reason holds 256 characters)."""
    hexes = sorted(h.hex() for h in missing)
    return ", ".join(hexes[:shown]) + (f" and {len(hexes) - shown} more"
                                       if len(hexes) > shown else "")


def _missing_message(missing: frozenset[bytes]) -> str:
    """No document involved: the missing dependencies are exactly these."""
    return f"automerge change depends on changes not in earlier commits: {_hashes(missing)}"


class CrdtError(Exception):
    """An automerge payload or fold was refused; the message is safe to show a client.

    `reason` is a word: ``deps`` when a change's dependencies are not among the payloads (or,
    when documents are involved and the binding cannot tell, a change is malformed): a replica
    may hold them later; ``load``, ``depth``, ``size``, ``type``, ``limit`` or ``engine``
    otherwise.
    """

    def __init__(self, message: str, reason: str = "load") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CrdtLimits:
    """Caps on what one fold may take and produce."""

    max_payload_bytes: int = 1_048_576
    max_total_bytes: int = 16_777_216
    max_depth: int = 64
    max_state_bytes: int = 4_194_304
    timeout: float = 10.0
    max_worker_memory: int = 1_073_741_824  # RLIMIT_AS of each worker process
    cache_entries: int = 64  # merged docs each worker keeps for fold_append
    cache_bytes: int = 67_108_864  # payload bytes those cached folds may hold


def canonical_order(payloads: Sequence[bytes]) -> list[bytes]:
    """The order the engine folds a SET of payloads in (duplicates count once).

    Saved documents first, by SHA-256 of the payload; then change payloads, each after the
    payloads holding its dependencies, ties broken by SHA-256. Reads only chunk headers.

    Raises:
        CrdtError: a payload is not well-framed automerge.
    """
    try:
        return crdt_chunks.canonical_order(bytes(p) for p in payloads)
    except ChunkError as exc:
        raise CrdtError(str(exc)) from None


class _WorkerProcess:
    """One worker child process and the lock that queues requests to it."""

    def __init__(self, index: int, limits: CrdtLimits) -> None:
        self.index = index
        self.limits = limits
        self.lock = asyncio.Lock()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    async def ensure_started(self) -> asyncio.subprocess.Process:
        if self.proc is not None and self.proc.returncode is None:
            return self.proc
        await self.stop()
        config = {
            "max_depth": self.limits.max_depth,
            "max_state_bytes": self.limits.max_state_bytes,
            "max_memory": self.limits.max_worker_memory,
            "cache_entries": self.limits.cache_entries,
            "cache_bytes": self.limits.cache_bytes,
        }
        # A bare environment: the worker handles hostile bytes and needs none of the hub's secrets.
        env = {"RUST_BACKTRACE": "0"}
        for name in ("PATH", "LD_LIBRARY_PATH"):
            if name in os.environ:
                env[name] = os.environ[name]
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-B",
                str(_WORKER_SCRIPT),
                json.dumps(config),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            logger.error("automerge worker %d could not start: %s", self.index, exc)
            raise CrdtError("automerge engine is unavailable", "engine") from None
        logger.debug("automerge worker %d started (pid %d)", self.index, self.proc.pid)
        return self.proc

    async def exchange(self, header: dict[str, Any], blobs: Sequence[bytes]) -> tuple[int, bytes]:
        """Send one request and read its answer; the worker is killed on any failure.

        The worker acknowledges a request once it has read all of it, before it touches
        automerge: a worker lost before that ack was gone already (killed while idle, not by
        this input), so the request goes once more to its successor.
        """
        head = json.dumps({**header, "blobs": len(blobs)}).encode()
        frames = [_U32.pack(len(head)), head]
        for blob in blobs:
            frames += (_U32.pack(len(blob)), blob)
        request = b"".join(frames)  # one write: a syscall per blob adds up
        for attempt in (1, 2):
            proc = await self.ensure_started()
            assert proc.stdin is not None and proc.stdout is not None
            acknowledged = False
            # The worker's time on this request counts against the requester's automerge
            # budget (identity_hub/ratelimit.py); starting a worker does not.
            started = time.monotonic()
            try:
                async with asyncio.timeout(self.limits.timeout):
                    proc.stdin.write(request)
                    await proc.stdin.drain()
                    if await proc.stdout.readexactly(1) != _ACK:
                        raise ConnectionError("automerge worker broke the protocol")
                    acknowledged = True
                    prefix = await proc.stdout.readexactly(5)
                    status, length = prefix[0], _U32.unpack(prefix[1:])[0]
                    if (
                        status not in (_OK, _ERROR, _MISS)
                        or length > self.limits.max_state_bytes + 64
                    ):
                        raise ConnectionError("automerge worker broke the protocol")
                    return status, await proc.stdout.readexactly(length)
            except TimeoutError:
                logger.warning("automerge worker %d timed out; replacing it", self.index)
                await self.replace()
                raise CrdtError("automerge fold timed out", "limit") from None
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                await self.replace(grace=0.5)
                logger.warning(
                    "automerge worker %d died (%s, exit %s, %s); replaced it",
                    self.index,
                    type(exc).__name__,
                    proc.returncode,
                    "while working" if acknowledged else "before reading the request",
                )
                if acknowledged or attempt == 2:
                    raise CrdtError("automerge payload could not be loaded") from None
            except BaseException:
                # Cancelled mid-exchange: the pipe is out of step, so this worker cannot be reused.
                await self.stop()
                raise
            finally:
                ratelimit.spent(time.monotonic() - started)
        raise CrdtError("automerge engine is unavailable", "engine")

    async def replace(self, grace: float = 0.0) -> None:
        """Stop this worker and start its successor now, so the next request does not wait."""
        await self.stop(grace)
        with contextlib.suppress(CrdtError):
            await self.ensure_started()

    async def stop(self, grace: float = 0.0) -> None:
        """Kill the worker (after `grace` seconds for it to exit by itself) and reap it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if grace and proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()


class _ParseMemo:
    """Parsed payloads by their bytes (bounded LRU): refolding an object, or appending to it,
    does not hash and parse every earlier payload again."""

    def __init__(self, max_entries: int = 16_384, max_bytes: int = 67_108_864) -> None:
        self._items: OrderedDict[bytes, PayloadInfo] = OrderedDict()
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._lock = threading.Lock()  # big inputs are parsed in a thread

    def parse(self, data: bytes, max_inflated: int) -> PayloadInfo:
        with self._lock:
            info = self._items.get(data)
            if info is not None:
                self._items.move_to_end(data)
                return info
        info = parse_payload(data, max_inflated=max_inflated)
        with self._lock:
            if data not in self._items:
                self._items[data] = info
                self._bytes += len(data)
            while len(self._items) > self._max_entries or self._bytes > self._max_bytes:
                old, _ = self._items.popitem(last=False)
                self._bytes -= len(old)
        return info


class AutomergeEngine:
    """Folds automerge payloads into JSON state in a small pool of worker processes."""

    def __init__(self, limits: CrdtLimits = CrdtLimits(), workers: int = 1) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.limits = limits
        self._workers = [_WorkerProcess(i, limits) for i in range(workers)]
        self._next = 0
        self._closed = False
        self._memo = _ParseMemo()

    @property
    def worker_pids(self) -> list[int | None]:
        """The process ids of the running workers (None where one is not running)."""
        return [w.pid for w in self._workers]

    async def start(self) -> None:
        """Start every worker and check that it answers."""
        self._closed = False
        for worker in self._workers:
            async with worker.lock:
                await worker.exchange({"op": "ping"}, [])

    async def close(self) -> None:
        """Stop every worker; later calls raise `CrdtError`."""
        self._closed = True
        for worker in self._workers:
            async with worker.lock:
                await worker.stop()

    async def __aenter__(self) -> AutomergeEngine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- public API ------------------------------------------------------------------------
    async def validate(self, payload: bytes, prior: Sequence[bytes] = ()) -> None:
        """Check that `payload` loads and folds with `prior` (the object's earlier payloads).

        With no `prior`, the payload must load on its own. `fold_append` does the same check
        and also returns the new state, reusing the cached fold of `prior`.

        Raises:
            CrdtError: the payload is malformed, a change's dependencies are not in `prior`, or
                the resulting state breaks a limit.
        """
        await self._fold(await self._parse([*prior, payload]), None)

    async def fold(
        self, payloads: Sequence[bytes], *, cache_key: str | None = None
    ) -> dict[str, Any]:
        """The JSON state of the set of `payloads` (their order does not matter).

        With `cache_key`, the worker keeps the merged document for a later `fold_append`.

        Raises:
            CrdtError: a payload is malformed, a change's dependencies are missing, a limit is
                broken, or the worker crashed or timed out.
        """
        return await self._fold(await self._parse(payloads), cache_key)

    async def fold_append(
        self, cache_key: str, payloads: Sequence[bytes], new: bytes
    ) -> dict[str, Any]:
        """The state of `payloads` + [`new`], reusing the worker's cached fold of `payloads`.

        Falls back to a full fold when the worker no longer holds it; the result is always that
        of `fold(payloads + [new])`.

        Raises:
            CrdtError: as for `fold`.
        """
        self._check_sizes([*payloads, new])
        info = (await self._parse([new]))[0]
        digests = [prior.digest for prior in await self._parse(payloads)]
        if info.digest in digests:
            return await self.fold(payloads, cache_key=cache_key)
        header = {
            "op": "append",
            "key": cache_key,
            "digest": set_digest(digests),
            "new_digest": set_digest([*digests, info.digest]),
            "document": info.is_document,
        }
        worker = self._pick(cache_key)
        async with worker.lock:
            status, body = await worker.exchange(header, [new])
        if status == _MISS:
            return await self._fold(await self._parse(payloads) + [info], cache_key)
        return self._answer(status, body)

    # -- internals -------------------------------------------------------------------------
    def _check_sizes(self, payloads: Sequence[bytes]) -> None:
        if self._closed:
            raise CrdtError("automerge engine is closed", "engine")
        if not payloads:
            raise CrdtError("no automerge payloads to fold")
        total = 0
        for data in payloads:
            if not isinstance(data, (bytes, bytearray)):
                raise CrdtError("automerge payload must be bytes")
            if len(data) > self.limits.max_payload_bytes:
                raise CrdtError("automerge payload is too large", "limit")
            total += len(data)
        if total > self.limits.max_total_bytes:
            raise CrdtError("automerge payloads are too large in total", "limit")

    async def _parse(self, payloads: Sequence[bytes]) -> list[PayloadInfo]:
        self._check_sizes(payloads)

        def parse_all() -> list[PayloadInfo]:
            return [self._memo.parse(bytes(p), self.limits.max_payload_bytes) for p in payloads]

        try:
            if sum(map(len, payloads)) > _OFFLOAD_BYTES:
                return await asyncio.to_thread(parse_all)
            return parse_all()
        except ChunkError as exc:
            raise CrdtError(str(exc)) from None

    async def _fold(self, infos: list[PayloadInfo], cache_key: str | None) -> dict[str, Any]:
        try:
            plan: FoldPlan = plan_fold(infos)
        except ChunkError as exc:
            raise CrdtError(str(exc)) from None
        if plan.external_deps and not plan.documents:
            raise CrdtError(_missing_message(plan.external_deps), "deps")
        header = {
            "op": "fold",
            "documents": len(plan.documents),
            "groups": plan.groups,
            "base_order": plan.base_order,
            "key": cache_key,
            "digest": set_digest(i.digest for i in infos) if cache_key is not None else None,
        }
        worker = self._pick(cache_key)
        async with worker.lock:
            status, body = await worker.exchange(header, plan.payloads)
        try:
            return self._answer(status, body)
        except CrdtError as exc:
            # The binding cannot say which change it lacks; the changes' dependencies that no
            # payload holds, nor any document names as a head, are the ones to name.
            missing = plan.external_deps - frozenset().union(
                *(i.heads for i in infos if i.is_document))
            if exc.reason != "deps" or not missing:
                raise
            # The binding cannot tell a malformed change from a missing dependency here.
            raise CrdtError(f"{exc}; not held: {_hashes(missing)}", "deps") from None

    def _pick(self, cache_key: str | None) -> _WorkerProcess:
        if self._closed:
            raise CrdtError("automerge engine is closed", "engine")
        if cache_key is not None:
            index = int.from_bytes(hashlib.sha256(cache_key.encode()).digest()[:4], "big")
            return self._workers[index % len(self._workers)]
        for worker in self._workers:
            if not worker.lock.locked():
                return worker
        self._next = (self._next + 1) % len(self._workers)
        return self._workers[self._next]

    def _answer(self, status: int, body: bytes) -> dict[str, Any]:
        if status == _ERROR:
            word = body.decode("ascii", "replace")
            word = word if word in _REASONS else "load"
            raise CrdtError(_REASONS[word], word)
        if status != _OK:
            raise CrdtError(_REASONS["load"])

        def refuse_constant(name: str) -> Any:
            raise ValueError(name)

        try:
            state = json.loads(body, parse_constant=refuse_constant)
        except ValueError:
            raise CrdtError(_REASONS["type"]) from None
        if not isinstance(state, dict):
            raise CrdtError(_REASONS["type"])
        return state
