"""Pure-Python reading of automerge chunk headers, and the canonical order of a set of payloads.

Nothing here calls automerge: this runs in the hub process on untrusted bytes, so it only reads
the framing (magic, checksum, chunk type, length) and the first header fields of each chunk (a
change's dependency hashes, a document's heads), with every length checked against what is left.

An automerge payload is a sequence of chunks: ``magic(4) checksum(4) type(1) uLEB128 length body``.
Type 0 is a saved document, 1 a change, 2 a deflate-compressed change. The hash of a change is the
SHA-256 of ``type || length || body`` of its uncompressed form; its checksum is the first 4 bytes.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from identity_hub.did.encoding import encode_varint  # unsigned LEB128

logger = logging.getLogger(__name__)

MAGIC = b"\x85\x6f\x4a\x83"
CHUNK_DOCUMENT = 0
CHUNK_CHANGE = 1
CHUNK_COMPRESSED_CHANGE = 2
_HASH_LEN = 32
_MAX_LEB_BYTES = 10


class ChunkError(ValueError):
    """The bytes are not well-framed automerge chunks (the message is safe to show a client)."""


@dataclass(frozen=True)
class PayloadInfo:
    """What the framing of one payload says about it.

    ``digest`` is the SHA-256 of the whole payload (the canonical tie-breaker); ``is_document``
    is true when the payload starts with a saved document (it can be loaded on its own);
    ``hashes`` are the hashes of its change chunks; ``deps`` the change hashes its change chunks
    need that the payload itself does not hold; ``heads`` the heads of its document chunk.
    """

    data: bytes
    digest: bytes
    is_document: bool
    hashes: frozenset[bytes]
    deps: frozenset[bytes]
    heads: frozenset[bytes]


@dataclass(frozen=True)
class FoldPlan:
    """Payloads in canonical order: documents (by digest), then change payloads (topological).

    ``groups`` splits ``changes`` into the connected components of their dependency graph (indices
    into ``changes``, each in topological order), used when no single document can carry them all.
    ``external_deps`` are the change hashes the changes need that no change payload holds (they
    must come from a document's history); ``base_order`` lists document indices in the order to
    try them as the base the changes load onto (documents whose heads they name first).
    """

    documents: list[bytes]
    changes: list[bytes]
    groups: list[list[int]]
    external_deps: frozenset[bytes]
    base_order: list[int]

    @property
    def payloads(self) -> list[bytes]:
        return self.documents + self.changes


def _uleb(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Read an unsigned LEB128 integer at ``pos``; returns (value, next position)."""
    value = 0
    shift = 0
    for i in range(_MAX_LEB_BYTES):
        if pos + i >= len(data):
            raise ChunkError("automerge payload is truncated")
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise ChunkError("automerge payload has an invalid length field")


def _read_hashes(body: bytes | memoryview, pos: int) -> tuple[frozenset[bytes], int]:
    count, pos = _uleb(body, pos)
    end = pos + count * _HASH_LEN
    if end > len(body):
        raise ChunkError("automerge payload is truncated")
    return frozenset(
        bytes(body[pos + i * _HASH_LEN : pos + (i + 1) * _HASH_LEN]) for i in range(count)
    ), end


def _document_heads(body: bytes | memoryview) -> frozenset[bytes]:
    actors, pos = _uleb(body, 0)
    for _ in range(actors):
        length, pos = _uleb(body, pos)
        pos += length
        if pos > len(body):
            raise ChunkError("automerge payload is truncated")
    heads, _ = _read_hashes(body, pos)
    return heads


def _inflate(body: bytes | memoryview, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(-15)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ChunkError("automerge payload has a corrupt compressed change") from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise ChunkError("automerge compressed change is too large")
    if not inflater.eof:
        raise ChunkError("automerge payload has a corrupt compressed change")
    return out


def parse_payload(data: bytes, *, max_inflated: int = 16_777_216) -> PayloadInfo:
    """Check the chunk framing of one payload and read its hashes and dependencies.

    Refuses: empty input, bad magic or checksum, unknown chunk types, lengths past the end, a
    document chunk anywhere but first, and more than one document chunk (the binding silently
    mis-loads concatenated documents).

    Raises:
        ChunkError: the payload is not well-framed automerge.
    """
    if not data:
        raise ChunkError("automerge payload is empty")
    view = memoryview(data)
    pos = 0
    is_document = False
    hashes: set[bytes] = set()
    deps: set[bytes] = set()
    heads: frozenset[bytes] = frozenset()
    index = 0
    while pos < len(view):
        if bytes(view[pos : pos + 4]) != MAGIC:
            raise ChunkError("automerge payload has a bad magic number")
        if pos + 9 > len(view):
            raise ChunkError("automerge payload is truncated")
        checksum = bytes(view[pos + 4 : pos + 8])
        kind = view[pos + 8]
        length, body_start = _uleb(view, pos + 9)
        end = body_start + length
        if end > len(view):
            raise ChunkError("automerge payload is truncated")
        body = view[body_start:end]
        if kind == CHUNK_DOCUMENT:
            if index != 0:
                raise ChunkError("automerge payload holds a document after other chunks")
            digest = hashlib.sha256(view[pos + 8 : end]).digest()
            heads = _document_heads(body)
            is_document = True
        elif kind == CHUNK_CHANGE:
            digest = hashlib.sha256(view[pos + 8 : end]).digest()
            chunk_deps, _ = _read_hashes(body, 0)
            deps |= chunk_deps - hashes
            hashes.add(digest)
        elif kind == CHUNK_COMPRESSED_CHANGE:
            plain = _inflate(body, max_inflated)
            digest = hashlib.sha256(b"\x01" + encode_varint(len(plain)) + plain).digest()
            chunk_deps, _ = _read_hashes(plain, 0)
            deps |= chunk_deps - hashes
            hashes.add(digest)
        else:
            raise ChunkError("automerge payload has an unknown chunk type")
        if digest[:4] != checksum:
            raise ChunkError("automerge payload has a bad checksum")
        pos = end
        index += 1
    return PayloadInfo(
        data=data,
        digest=hashlib.sha256(data).digest(),
        is_document=is_document,
        hashes=frozenset(hashes),
        deps=frozenset(deps - hashes),
        heads=heads,
    )


def _topological(changes: Sequence[PayloadInfo]) -> list[PayloadInfo]:
    """Kahn's algorithm; among payloads whose dependencies are met, the smallest digest first."""
    owner: dict[bytes, int] = {}
    for i, info in enumerate(changes):
        for h in info.hashes:
            owner[h] = i
    needs: list[set[int]] = [
        {owner[d] for d in info.deps if d in owner} - {i} for i, info in enumerate(changes)
    ]
    users: list[list[int]] = [[] for _ in changes]
    for i, required in enumerate(needs):
        for j in required:
            users[j].append(i)
    ready = [(changes[i].digest, i) for i, required in enumerate(needs) if not required]
    heapq.heapify(ready)
    out: list[PayloadInfo] = []
    while ready:
        _, i = heapq.heappop(ready)
        out.append(changes[i])
        for u in users[i]:
            needs[u].discard(i)
            if not needs[u]:
                heapq.heappush(ready, (changes[u].digest, u))
    if len(out) != len(changes):
        raise ChunkError("automerge changes depend on each other in a cycle")
    return out


def _components(changes: Sequence[PayloadInfo]) -> list[list[int]]:
    """Connected components of the change dependency graph, each in topological order."""
    parent = list(range(len(changes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner = {h: i for i, info in enumerate(changes) for h in info.hashes}
    for i, info in enumerate(changes):
        for d in info.deps:
            if d in owner:
                parent[find(i)] = find(owner[d])
    groups: dict[int, list[int]] = {}
    for i in range(len(changes)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def plan_fold(infos: Iterable[PayloadInfo]) -> FoldPlan:
    """The canonical fold plan of a set of parsed payloads (duplicates count once).

    Raises:
        ChunkError: the change payloads depend on each other in a cycle.
    """
    unique: dict[bytes, PayloadInfo] = {}
    for info in infos:
        unique.setdefault(info.digest, info)
    documents = sorted((i for i in unique.values() if i.is_document), key=lambda i: i.digest)
    changes = _topological(
        sorted((i for i in unique.values() if not i.is_document), key=lambda i: i.digest)
    )
    all_hashes = frozenset().union(*(i.hashes for i in unique.values()))
    external = frozenset().union(*(i.deps for i in changes)) - all_hashes
    base_order = sorted(
        range(len(documents)), key=lambda k: (-len(documents[k].heads & external), k)
    )
    return FoldPlan(
        documents=[i.data for i in documents],
        changes=[i.data for i in changes],
        groups=_components(changes),
        external_deps=external,
        base_order=base_order,
    )


def canonical_order(payloads: Iterable[bytes]) -> list[bytes]:
    """The engine's deterministic order over a SET of payloads.

    Saved documents first (by SHA-256 of the payload), then change payloads so that every change
    follows the payloads holding its dependencies, ties broken by SHA-256. Duplicates count once.

    Raises:
        ChunkError: a payload is not well-framed automerge.
    """
    return plan_fold(parse_payload(p) for p in payloads).payloads


def set_digest(digests: Iterable[bytes]) -> str:
    """An order-independent digest of a set of payload digests (the worker cache's check)."""
    h = hashlib.sha256()
    for d in sorted(set(digests)):
        h.update(d)
    return h.hexdigest()
