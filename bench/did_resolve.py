"""DID resolutions per second: cached and uncached, long-form did:ion and did:key.

    .venv/bin/python bench/did_resolve.py [--runs 5]

Uncached: a fresh resolver resolves distinct DIDs (parsing, validation, document building;
the did:ion numbers include the Sidetree checks and JCS). Cached: the same resolver resolves DIDs
it already holds (a deep copy of the document is returned each time); `key()` returns a cached
VerificationKey. Prints the median of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from identity_hub.did import DidResolver
from identity_hub.did.keygen import create_did_ion, create_did_key


async def _uncached(dids: list[str]) -> float:
    resolver = DidResolver(offline=True)
    start = time.perf_counter()
    for did in dids:
        await resolver.resolve(did)
    return len(dids) / (time.perf_counter() - start)


async def _cached(dids: list[str], rounds: int) -> float:
    resolver = DidResolver(offline=True)
    for did in dids:
        await resolver.resolve(did)
    start = time.perf_counter()
    for _ in range(rounds):
        for did in dids:
            await resolver.resolve(did)
    return rounds * len(dids) / (time.perf_counter() - start)


async def _cached_key(kids: list[str], rounds: int) -> float:
    resolver = DidResolver(offline=True)
    for kid in kids:
        await resolver.key(kid)
    start = time.perf_counter()
    for _ in range(rounds):
        for kid in kids:
            await resolver.key(kid)
    return rounds * len(kids) / (time.perf_counter() - start)


def _fmt(rate: float) -> str:
    return f"{rate:>12,.0f}/s  ({1e6 / rate:8.1f} µs each)"


async def main(runs: int) -> None:
    key_dids = [create_did_key("Ed25519") for _ in range(200)]
    ion_dids = [create_did_ion("Ed25519") for _ in range(50)]
    cases = {
        "did:key": ([d for d, _ in key_dids], [keys[0][0] for _, keys in key_dids]),
        "did:ion (long form)": ([d for d, _, _ in ion_dids],
                                [keys[0][0] for _, keys, _ in ion_dids]),
    }
    print(f"median of {runs} runs")
    for name, (dids, kids) in cases.items():
        uncached = statistics.median([await _uncached(dids) for _ in range(runs)])
        cached = statistics.median([await _cached(dids, 20) for _ in range(runs)])
        cached_key = statistics.median([await _cached_key(kids, 20) for _ in range(runs)])
        print(f"{name:<22} uncached resolve {_fmt(uncached)}")
        print(f"{'':<22} cached resolve   {_fmt(cached)}")
        print(f"{'':<22} cached key()     {_fmt(cached_key)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
