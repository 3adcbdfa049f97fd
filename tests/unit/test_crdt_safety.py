"""Hostile automerge input: every failure is a CrdtError, and the engine keeps working after it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import zlib
from collections.abc import AsyncIterator
from typing import Any

import automerge
import pytest

from identity_hub.commits.fold import _crdt_worker
from identity_hub.commits.fold.crdt import AutomergeEngine, CrdtError, CrdtLimits
from identity_hub.commits.fold.crdt_chunks import MAGIC, ChunkError, _uleb, parse_payload
from tests.support import automerge_forge as forge  # noqa: E402  (shared helpers)

VECTORS: list[dict[str, Any]] = forge.load_vectors()
DOC_VECTOR = VECTORS[0]
CHANGE_VECTOR = next(v for v in VECTORS if v["mode"] == "change" and v["writers"] == 2)
OTHER_CHANGE_VECTOR = next(v for v in VECTORS if v["mode"] == "change" and v["writers"] == 1)


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[AutomergeEngine]:
    async with AutomergeEngine() as eng:
        yield eng


async def _still_works(engine: AutomergeEngine) -> None:
    assert await engine.fold(forge.payload_bytes(DOC_VECTOR)) == DOC_VECTOR["expected"]


def _chunk(payload: bytes) -> tuple[int, bytes]:
    length, start = _uleb(payload, 9)
    return payload[8], payload[start : start + length]


def _reframe(kind: int, body: bytes) -> bytes:
    """A chunk with a correct length and checksum around `body`: it passes the framing checks."""
    framed: bytes = bytes([kind]) + forge.uleb(len(body)) + body
    return MAGIC + hashlib.sha256(framed).digest()[:4] + framed


def _wide_change(keys: int) -> bytes:
    ops = [forge.Op(None, f"k{i}", forge.SET, i) for i in range(keys)]
    chunk: bytes = forge.change_chunk(ops, actor=b"\x33" * 16, seq=1, start_op=1, deps=[])
    return chunk


async def test_random_and_empty_bytes_are_refused(engine: AutomergeEngine) -> None:
    rnd = random.Random(7)
    for size in (0, 1, 8, 64, 1000):
        with pytest.raises(CrdtError):
            await engine.fold([rnd.randbytes(size)])
    with pytest.raises(CrdtError):
        await engine.fold([MAGIC + rnd.randbytes(200)])
    with pytest.raises(CrdtError, match="no automerge payloads"):
        await engine.fold([])
    await _still_works(engine)


async def test_truncated_payloads_are_refused(engine: AutomergeEngine) -> None:
    for vector in (DOC_VECTOR, CHANGE_VECTOR):
        for payload in forge.payload_bytes(vector)[:3]:
            for cut in (5, 9, len(payload) // 2, len(payload) - 1):
                with pytest.raises(CrdtError):
                    await engine.fold([payload[:cut]])
    await _still_works(engine)


async def test_well_framed_garbage_is_refused_by_the_worker(engine: AutomergeEngine) -> None:
    """Correct length and checksum, broken body: only loading it in the worker can tell."""
    for payload in forge.payload_bytes(CHANGE_VECTOR)[:3]:
        kind, body = _chunk(payload)
        for broken in (body[: len(body) // 2], body[:40] + bytes(len(body) - 40)):
            forged = _reframe(kind, broken)
            parse_payload(forged)  # the framing is fine
            with pytest.raises(CrdtError, match="could not be"):
                await engine.fold(
                    [forge.payload_bytes(CHANGE_VECTOR)[0], forged] if kind else [forged]
                )
    await _still_works(engine)


async def test_a_change_without_its_dependencies_is_refused(engine: AutomergeEngine) -> None:
    changes = forge.payload_bytes(CHANGE_VECTOR)
    with pytest.raises(CrdtError, match="depends on changes"):
        await engine.fold([changes[1]])
    # Another object's document does not hold its dependencies either.
    unrelated = forge.payload_bytes(OTHER_CHANGE_VECTOR)[0]
    with pytest.raises(CrdtError, match="depends on changes"):
        await engine.fold([unrelated, changes[1]])
    with pytest.raises(CrdtError):
        await engine.fold_append("deps", [unrelated], changes[1])
    await _still_works(engine)


async def test_oversized_input_is_refused_before_the_worker() -> None:
    limits = CrdtLimits(max_payload_bytes=300, max_total_bytes=1000)
    async with AutomergeEngine(limits) as engine:
        pid = engine.worker_pids[0]
        payloads = forge.payload_bytes(DOC_VECTOR)
        with pytest.raises(CrdtError, match="too large"):
            await engine.fold([payloads[-1]])  # 440 bytes
        with pytest.raises(CrdtError, match="too large in total"):
            await engine.fold([payloads[0]] * 5)
        with pytest.raises(CrdtError, match="too large"):
            await engine.validate(payloads[-1])
        assert await engine.fold(payloads[:1])
        assert engine.worker_pids == [pid]


async def test_a_compression_bomb_is_refused() -> None:
    body = bytes(2_000_000)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = packer.compress(body) + packer.flush()
    framed_plain = b"\x01" + forge.uleb(len(body)) + body
    chunk = (
        MAGIC + hashlib.sha256(framed_plain).digest()[:4] + b"\x02" + forge.uleb(len(bomb)) + bomb
    )
    with pytest.raises(ChunkError):
        parse_payload(chunk, max_inflated=1_048_576)
    async with AutomergeEngine() as engine:
        with pytest.raises(CrdtError, match="too large"):
            await engine.fold([chunk])


async def test_a_compressed_change_folds_like_the_plain_one(engine: AutomergeEngine) -> None:
    payloads = forge.payload_bytes(CHANGE_VECTOR)
    _, body = _chunk(payloads[1])
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = packer.compress(body) + packer.flush()
    checksum = hashlib.sha256(b"\x01" + forge.uleb(len(body)) + body).digest()[:4]
    compressed = MAGIC + checksum + b"\x02" + forge.uleb(len(packed)) + packed
    assert parse_payload(compressed).hashes == parse_payload(payloads[1]).hashes
    assert await engine.fold([payloads[0], compressed, *payloads[2:]]) == await engine.fold(
        payloads
    )


async def test_concatenated_documents_are_refused(engine: AutomergeEngine) -> None:
    """The binding silently loads only part of two concatenated documents: refuse them."""
    payloads = forge.payload_bytes(DOC_VECTOR)
    with pytest.raises(CrdtError, match="document after"):
        await engine.fold([payloads[-1] + payloads[0]])


async def test_deep_nesting_is_refused(engine: AutomergeEngine) -> None:
    with pytest.raises(CrdtError, match="nested too deeply"):
        await engine.fold([forge.nested_maps(200)])
    assert await engine.fold([forge.nested_maps(60)])  # depth 61 is within 64
    await _still_works(engine)


def test_the_depth_walk_refuses_a_deep_doc_built_in_process() -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(200):
        deep = {"n": deep}
    worker = _crdt_worker.Worker(
        {"max_depth": 64, "max_state_bytes": 1 << 20, "cache_entries": 1, "cache_bytes": 1 << 20}
    )
    with pytest.raises(_crdt_worker.Refused, match="depth"):
        worker.render(automerge.Doc(deep))
    assert worker.render(automerge.Doc({"a": {"b": ["x", "y"]}})) == b'{"a":{"b":"xy"}}'


async def test_non_finite_numbers_are_refused(engine: AutomergeEngine) -> None:
    for number in (float("nan"), float("inf")):
        ops = [forge.Op(None, "x", forge.SET, number)]
        chunk = forge.change_chunk(ops, actor=b"\x55" * 16, seq=1, start_op=1, deps=[])
        with pytest.raises(CrdtError, match="cannot be represented"):
            await engine.fold([chunk])
    ops = [forge.Op(None, "x", forge.SET, 1.5), forge.Op(None, "y", forge.SET, 2.0)]
    chunk = forge.change_chunk(ops, actor=b"\x55" * 16, seq=1, start_op=1, deps=[])
    assert await engine.fold([chunk]) == {"x": 1.5, "y": 2}


async def test_a_large_state_is_refused() -> None:
    async with AutomergeEngine(CrdtLimits(max_state_bytes=100)) as engine:
        with pytest.raises(CrdtError, match="too large"):
            await engine.fold(forge.payload_bytes(DOC_VECTOR))


async def test_a_crashing_payload_kills_only_the_worker(engine: AutomergeEngine) -> None:
    """20,000 nested maps (160 KB) make the binding overflow its stack: SIGSEGV in the worker."""
    before = engine.worker_pids[0]
    with pytest.raises(CrdtError, match="could not be loaded"):
        await engine.fold([forge.nested_maps(20_000)])
    assert engine.worker_pids[0] not in (None, before)
    await _still_works(engine)


async def test_a_worker_killed_mid_call_is_replaced() -> None:
    limits = CrdtLimits(max_payload_bytes=2_000_000)
    async with AutomergeEngine(limits) as engine:
        pid = engine.worker_pids[0]
        assert pid is not None
        slow = asyncio.create_task(engine.fold([_wide_change(60_000)]))
        await asyncio.sleep(0.2)
        assert not slow.done()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(CrdtError):
            await slow
        assert engine.worker_pids[0] not in (None, pid)
        await _still_works(engine)


async def test_a_slow_fold_times_out_and_the_worker_is_replaced() -> None:
    limits = CrdtLimits(max_payload_bytes=2_000_000, timeout=0.3)
    async with AutomergeEngine(limits) as engine:
        pid = engine.worker_pids[0]
        with pytest.raises(CrdtError, match="timed out"):
            await engine.fold([_wide_change(100_000)])
        assert engine.worker_pids[0] not in (None, pid)
        await _still_works(engine)


async def test_a_cancelled_call_does_not_leave_the_pipe_out_of_step() -> None:
    limits = CrdtLimits(max_payload_bytes=2_000_000)
    async with AutomergeEngine(limits) as engine:
        slow = asyncio.create_task(engine.fold([_wide_change(60_000)]))
        await asyncio.sleep(0.1)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        await _still_works(engine)


async def test_concurrent_folds_queue_for_the_workers() -> None:
    async with AutomergeEngine(workers=2) as engine:
        jobs = [engine.fold(forge.payload_bytes(v)) for v in VECTORS] * 2
        states = await asyncio.gather(*jobs)
        alone = [await engine.fold(forge.payload_bytes(v)) for v in VECTORS] * 2
        assert states == alone


async def test_changes_on_two_unrelated_documents_fold_group_by_group(
    engine: AutomergeEngine,
) -> None:
    """No single document holds every change's dependencies: each group loads onto its own."""
    a = forge.payload_bytes(CHANGE_VECTOR)
    b = forge.payload_bytes(OTHER_CHANGE_VECTOR)
    state = await engine.fold(a + b)
    assert state == await engine.fold(list(reversed(b)) + list(reversed(a)))
    # What the binding gives for the two histories merged, loaded here from trusted vectors.
    reference = automerge.Doc(b"".join(a)).merge(b"".join(b)).obj()
    assert state == _crdt_worker.normalize(reference)


async def test_a_closed_engine_refuses_work() -> None:
    engine = AutomergeEngine()
    await engine.start()
    await engine.close()
    assert engine.worker_pids == [None]
    with pytest.raises(CrdtError, match="closed"):
        await engine.fold(forge.payload_bytes(DOC_VECTOR))


@pytest.mark.parametrize("noticed", [True, False], ids=["reaped", "broken-pipe"])
async def test_a_worker_killed_while_idle_does_not_fail_the_next_fold(noticed: bool) -> None:
    async with AutomergeEngine() as engine:
        pid = engine.worker_pids[0]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        if noticed:
            await asyncio.sleep(0.1)  # asyncio has reaped it: a new worker is started up front
        # else: no await before the fold, so the engine has not noticed yet and writes the
        # request to a dying worker; it is lost before the worker's ack, and sent again.
        await _still_works(engine)
        assert engine.worker_pids[0] not in (None, pid)
