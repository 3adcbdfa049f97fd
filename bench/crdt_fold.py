"""Benchmark: the cost of folding automerge commits through the worker pool.

    .venv/bin/python bench/crdt_fold.py [--runs 7] [--sizes 10,100,1000]

The PyPI binding cannot save documents or produce changes, so the payloads come from:
- change mode: a saved MusicPlaylist document from the JS vectors, then change chunks written by
  the test encoder (tests/support/automerge_forge.py): two devices that forked the document, each
  editing its copy (every commit one change, depending on the device's previous change);
- document mode: every distinct saved document in the JS vectors (merging unrelated documents is
  fine for a CRDT). There are fewer than 100 of them, so document mode stops there.

Reported: the median of --runs runs, per fold and per commit. "in-process" loads the same bytes
with automerge directly (these are trusted bench bytes) to show what the process hop costs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

import automerge

from identity_hub.commits.fold.crdt import AutomergeEngine, CrdtLimits
from identity_hub.commits.fold.crdt_chunks import parse_payload

ROOT = Path(__file__).resolve().parents[1]


def _load_forge() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "crdt_forge_support", ROOT / "tests/support/automerge_forge.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["crdt_forge_support"] = module
    spec.loader.exec_module(module)
    return module


forge = _load_forge()


async def _median(
    runs: int,
    make: Callable[[], Awaitable[Any]],
    prepare: Callable[[], Awaitable[Any]] | None = None,
) -> float:
    times = []
    for _ in range(runs):
        if prepare is not None:
            await prepare()
        start = time.perf_counter()
        await make()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _median_sync(runs: int, make: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        make()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _in_process(documents: list[bytes], changes: bytes) -> Any:
    """The same fold, in this process: documents merged, changes concatenated after the first."""
    doc = automerge.Doc(documents[0] + changes)
    for other in documents[1:]:
        doc = doc.merge(other)
    return doc.obj()


def _row(label: str, n: int, seconds: float) -> str:
    return f"{label:<44} {n:>5} {seconds * 1e3:>10.2f} ms {seconds / n * 1e6:>10.1f} us/commit"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", default="10,100,1000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    vectors = forge.load_vectors()
    base_vector = next(v for v in vectors if v["name"].startswith("am3-change-1w-scalar"))
    documents = list(
        dict.fromkeys(
            p for v in vectors for p in forge.payload_bytes(v) if parse_payload(p).is_document
        )
    )
    runs = args.runs

    async with AutomergeEngine(CrdtLimits(timeout=60.0)) as engine:
        worker = engine._workers[0]  # the hop itself, for the overhead line

        async def ping() -> None:
            async with worker.lock:
                await worker.exchange({"op": "ping"}, [])

        one = documents[:1]
        hop = await _median(200, ping)
        tiny = await _median(200, lambda: engine.fold(one))
        tiny_local = _median_sync(200, lambda: automerge.Doc(one[0]).obj())
        print(
            f"process hop: ping round trip {hop * 1e6:.0f} us; fold of one 200-byte document "
            f"{tiny * 1e6:.0f} us (in-process {tiny_local * 1e6:.0f} us)"
        )
        print(f"{'':<44} {'n':>5} {'per fold':>13} {'per commit':>20}")

        cases: list[tuple[str, list[bytes]]] = [
            (f"change mode, {n} commits", forge.forked_playlist(n, base_vector)) for n in sizes
        ]
        for n in sorted({10, len(documents)}):
            cases.append((f"document mode, {n} distinct saved documents", documents[:n]))

        for label, payloads in cases:
            n = len(payloads)
            full = await _median(runs, partial(engine.fold, payloads))
            docs = [p for p in payloads if parse_payload(p).is_document]
            chain = b"".join(p for p in payloads if not parse_payload(p).is_document)
            local = _median_sync(runs, partial(_in_process, docs, chain))
            key = f"bench:{label}"

            async def prime(p: list[bytes] = payloads, k: str = key) -> None:
                await engine.fold(p[:-1], cache_key=k)

            last = partial(engine.fold_append, key, payloads[:-1], payloads[-1])
            append = await _median(runs, last, prime)
            # The whole history, one commit at a time, as a hub receiving it would fold it.
            start = time.perf_counter()
            await engine.fold(payloads[:1], cache_key=key)
            for i in range(1, n):
                await engine.fold_append(key, payloads[:i], payloads[i])
            one_by_one = time.perf_counter() - start
            print(_row(f"{label}: full fold", n, full))
            print(_row("    same fold in-process (no worker)", n, local))
            print(
                f"{'    fold_append of commit n (cached n-1)':<44} {n:>5} {append * 1e3:>10.2f} ms"
            )
            print(_row("    fold_append of all n, one by one", n, one_by_one))


if __name__ == "__main__":
    asyncio.run(main())
