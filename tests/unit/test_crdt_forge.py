"""The test encoder of automerge change chunks (tests/support/automerge_forge.py) against the
binding, through the engine."""

from __future__ import annotations

import random

import pytest

from identity_hub.commits.fold.crdt import AutomergeEngine, CrdtError
from identity_hub.commits.fold.crdt_chunks import parse_payload
from tests.support.automerge_forge import (
    forked_playlist,
    load_vectors,
    nested_maps,
    payload_bytes,
    playlist_history,
)

# -- the encoder against the binding ----------------------------------------------------------


def test_forged_chunks_parse_with_their_dependencies() -> None:
    history = playlist_history(3)
    infos = [parse_payload(p) for p in history]
    assert not infos[0].deps and not infos[0].is_document
    assert infos[1].deps == infos[0].hashes and infos[2].deps == infos[1].hashes


async def test_forged_history_folds_to_the_last_write() -> None:
    async with AutomergeEngine() as engine:
        state = await engine.fold(playlist_history(5))
    assert state == {
        "@context": "https://schema.org",
        "@type": "MusicPlaylist",
        "name": "List 4",
        "numTracks": 4,
    }


async def test_forged_nested_maps_load_within_the_depth_limit() -> None:
    async with AutomergeEngine() as engine:
        state = await engine.fold([nested_maps(5)])
    assert state == {"n": {"n": {"n": {"n": {"n": {}}}}}}


async def test_a_forked_history_of_two_writers_folds_the_same_in_any_order() -> None:
    vector = next(v for v in load_vectors() if v["name"].startswith("am3-change-1w-scalar"))
    history = forked_playlist(30, vector)
    async with AutomergeEngine() as engine:
        state = await engine.fold(history)
        assert state["@type"] == "MusicPlaylist" and state["version"] in (28, 29)
        assert state["description"] == f"Edit {state['version']}"
        for seed in range(3):
            shuffled = list(history)
            random.Random(seed).shuffle(shuffled)
            assert await engine.fold(shuffled) == state
        appended = await engine.fold(history[:1], cache_key="forked")
        for i in range(1, len(history)):
            appended = await engine.fold_append("forked", history[:i], history[i])
        assert appended == state


async def test_missing_dependencies_are_told_apart_from_bad_bytes() -> None:
    """`reason == "deps"` lets replication park a change until its dependencies arrive."""
    history = playlist_history(3)
    vector = next(v for v in load_vectors() if v["name"] == "am2-change-1w-scalar-1001-3")
    payloads = payload_bytes(vector)
    engine = AutomergeEngine()
    async with engine:
        for missing in ([history[0], history[2]], [payloads[0], payloads[3]]):
            with pytest.raises(CrdtError) as caught:
                await engine.fold(missing)
            assert caught.value.reason == "deps"
        with pytest.raises(CrdtError) as caught:
            await engine.fold([history[0], history[1][:-5]])
        assert caught.value.reason != "deps"
    with pytest.raises(CrdtError) as caught:
        await engine.fold(history)
    assert caught.value.reason == "engine"
