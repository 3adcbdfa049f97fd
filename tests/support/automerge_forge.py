"""A small encoder of automerge change chunks, so tests and the bench can make payloads.

The PyPI binding has no save and no change API, so the only automerge bytes we have are the
JavaScript vectors. This encoder writes uncompressed change chunks (binary format: header, then
columns as literal RLE runs) for map operations only: make a map, set an int or a string. It is
test support, checked against the binding through the engine (tests/unit/test_crdt_forge.py);
the hub never writes automerge.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from identity_hub.commits.fold.crdt_chunks import MAGIC, _uleb, parse_payload

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "automerge" / "vectors.json"

MAKE_MAP, SET = 0, 1
OpId = tuple[int, int]  # (counter, actor index: 0 = the change's actor, 1.. = `others`)


@dataclass(frozen=True)
class Op:
    obj: OpId | None  # None: the root map
    key: str
    action: int
    value: int | float | str | None = None
    pred: tuple[OpId, ...] = field(default=())


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        done = (n == 0 and not low & 0x40) or (n == -1 and low & 0x40)
        out.append(low | (0 if done else 0x80))
        if done:
            return bytes(out)


def _rle(values: list[Any], enc: Any) -> bytes:
    """Canonical RLE column: repeat runs (n, value), literal runs (-n, values...) of values that
    differ from their neighbours, null runs (0, count); a column of nulls only is empty."""
    if all(v is None for v in values):
        return b""
    runs: list[list[Any]] = []  # [value, count]
    for v in values:
        if runs and runs[-1][0] == v and (v is not None or runs[-1][0] is None):
            runs[-1][1] += 1
        else:
            runs.append([v, 1])
    out = bytearray()
    literal: list[Any] = []

    def flush() -> None:
        if literal:
            out.extend(sleb(-len(literal)) + b"".join(enc(x) for x in literal))
            literal.clear()

    for value, count in runs:
        if value is None:
            flush()
            out.extend(b"\x00" + uleb(count))
        elif count > 1:
            flush()
            out.extend(sleb(count) + enc(value))
        else:
            literal.append(value)
    flush()
    return bytes(out)


def _string(s: str) -> bytes:
    raw = s.encode()
    return uleb(len(raw)) + raw


def _delta(values: list[int]) -> bytes:
    prev, deltas = 0, []
    for v in values:
        deltas.append(v - prev)
        prev = v
    return _rle(deltas, sleb)


def _value(v: int | float | str | None) -> tuple[int, bytes]:
    if v is None:
        return 0, b""
    if isinstance(v, float):
        return (8 << 4) | 5, struct.pack("<d", v)
    if isinstance(v, str):
        raw = v.encode()
        return (len(raw) << 4) | 6, raw
    raw = sleb(v)
    return (len(raw) << 4) | 4, raw


def change_chunk(
    ops: list[Op],
    *,
    actor: bytes,
    seq: int,
    start_op: int,
    deps: list[bytes],
    others: Sequence[bytes] = (),
    time: int = 0,
) -> bytes:
    """One uncompressed change chunk holding `ops` (map operations only)."""
    lens, raws = zip(*(_value(op.value) for op in ops), strict=True) if ops else ((), ())
    preds = [p for op in ops for p in op.pred]
    columns = {
        1: _rle([op.obj[1] if op.obj else None for op in ops], uleb),
        2: _rle([op.obj[0] if op.obj else None for op in ops], uleb),
        21: _rle([op.key for op in ops], _string),
        52: uleb(len(ops)),
        66: _rle([op.action for op in ops], uleb),
        86: _rle(list(lens), uleb),
        87: b"".join(raws),
        112: _rle([len(op.pred) for op in ops], uleb),
        113: _rle([p[1] for p in preds], uleb),
        115: _delta([p[0] for p in preds]),
    }
    columns = {k: v for k, v in columns.items() if v}
    body = bytearray(uleb(len(deps)) + b"".join(sorted(deps)))
    body += uleb(len(actor)) + actor + uleb(seq) + uleb(start_op) + sleb(time) + uleb(0)
    body += uleb(len(others)) + b"".join(uleb(len(a)) + a for a in others)
    body += uleb(len(columns)) + b"".join(uleb(k) + uleb(len(v)) for k, v in columns.items())
    body += b"".join(columns.values())
    framed = b"\x01" + uleb(len(body)) + bytes(body)
    return MAGIC + hashlib.sha256(framed).digest()[:4] + framed


def change_hash(chunk: bytes) -> bytes:
    (h,) = parse_payload(chunk).hashes
    return h


def nested_maps(depth: int, actor: bytes = b"\x11" * 16) -> bytes:
    """A self-contained change (no deps) building `depth` maps, each inside the previous one."""
    ops = [Op(obj=None if i == 0 else (i, 0), key="n", action=MAKE_MAP) for i in range(depth)]
    return change_chunk(ops, actor=actor, seq=1, start_op=1, deps=[])


def playlist_history(n: int, actor: bytes = b"\x22" * 16) -> list[bytes]:
    """`n` payloads: a first change making a MusicPlaylist, then n-1 changes each depending on the
    previous one and setting `numTracks` and `name` (overwriting the earlier values)."""
    first = change_chunk(
        [
            Op(None, "@context", SET, "https://schema.org"),
            Op(None, "@type", SET, "MusicPlaylist"),
            Op(None, "name", SET, "List 0"),
            Op(None, "numTracks", SET, 0),
        ],
        actor=actor,
        seq=1,
        start_op=1,
        deps=[],
    )
    out = [first]
    name_op, tracks_op = (3, 0), (4, 0)
    for k in range(1, n):
        start = 5 + 2 * (k - 1)
        ops = [
            Op(None, "name", SET, f"List {k}", (name_op,)),
            Op(None, "numTracks", SET, k, (tracks_op,)),
        ]
        out.append(
            change_chunk(ops, actor=actor, seq=k + 1, start_op=start, deps=[change_hash(out[-1])])
        )
        name_op, tracks_op = (start, 0), (start + 1, 0)
    return out


def _actor_at(chunk: bytes) -> tuple[bytes, int]:
    """The actor of a change chunk and the offset just past it (magic, checksum, type, body
    length, deps, then the actor)."""
    _, pos = _uleb(chunk, 9)
    ndeps, pos = _uleb(chunk, pos)
    pos += 32 * ndeps
    actor_len, pos = _uleb(chunk, pos)
    return chunk[pos:pos + actor_len], pos + actor_len


def actor(chunk: bytes) -> bytes:
    """The actor id in a change chunk's header."""
    return _actor_at(chunk)[0]


def start_op(chunk: bytes) -> int:
    """The start op counter in a change chunk's header."""
    _, pos = _actor_at(chunk)
    _, pos = _uleb(chunk, pos)  # seq
    return _uleb(chunk, pos)[0]


def forked_playlist(n: int, vector: dict[str, Any], writers: int = 2) -> list[bytes]:
    """`n` payloads: the saved MusicPlaylist document of a `change` vector, then n-1 changes from
    `writers` devices that each forked it and keep editing their own copy (concurrently).

    The edits set keys the document does not have (`description`, `version`): overwriting one of
    its keys would need the document's op ids as `pred`, and without a `pred` the binding keeps
    the older value."""
    payloads = payload_bytes(vector)
    base = payloads[0]
    base_max_op = start_op(payloads[1]) - 1
    heads = sorted(parse_payload(base).heads)
    out = [base]
    deps: dict[int, list[bytes]] = dict.fromkeys(range(writers), heads)
    seqs = dict.fromkeys(range(writers), 0)
    for k in range(1, n):
        w = k % writers
        seqs[w] += 1
        start = base_max_op + 1 + 2 * (seqs[w] - 1)
        pred: tuple[tuple[OpId, ...], tuple[OpId, ...]] = (
            ((), ()) if seqs[w] == 1 else (((start - 2, 0),), ((start - 1, 0),))
        )
        ops = [
            Op(None, "description", SET, f"Edit {k}", pred[0]),
            Op(None, "version", SET, k, pred[1]),
        ]
        chunk = change_chunk(
            ops, actor=bytes([0x40 + w]) * 16, seq=seqs[w], start_op=start, deps=deps[w]
        )
        deps[w] = [change_hash(chunk)]
        out.append(chunk)
    return out


def load_vectors() -> list[dict[str, Any]]:
    vectors: list[dict[str, Any]] = json.loads(VECTORS.read_text())["vectors"]
    return vectors


def payload_bytes(vector: dict[str, Any]) -> list[bytes]:
    return [
        base64.urlsafe_b64decode(p["data"] + "=" * (-len(p["data"]) % 4))
        for p in vector["payloads"]
    ]
