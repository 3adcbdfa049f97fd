"""The automerge worker: a child process that loads untrusted automerge bytes and may die doing it.

Run as a script by `identity_hub.commits.fold.crdt` (``python -I _crdt_worker.py LIMITS_JSON``);
it imports only the standard library and automerge, so a crash here never touches the hub.

Wire format (stdin/stdout, no pickle in either direction):
  request  = u32 header_len | header JSON | blob_count x (u32 len | bytes)
  response = ACK (0x06, once the whole request is read) | u8 status | u32 len | body
             (status 0 ok: body is the state as JSON text, 1 error: a reason word, 2 cache miss)

Operations:
  ``ping``                      -> ok, empty body
  ``fold``   documents, changes, groups, base_order, key, digest; blobs = documents + changes
  ``append`` key, digest, new_digest, document; blobs = [new payload]
"""

from __future__ import annotations

import json
import logging
import os
import resource
import struct
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import automerge

logger = logging.getLogger(__name__)

OK, ERROR, MISS = 0, 1, 2
ACK = b"\x06"
_U32 = struct.Struct(">I")


class Refused(Exception):
    """A payload or its state is refused; ``args[0]`` is a reason word the parent maps."""


@dataclass
class Entry:
    """A cached fold: the merged doc and the bytes needed to add one more payload to it."""

    digest: str
    doc: Any
    documents: list[bytes]
    changes: list[bytes]
    # The index of the document the changes were loaded onto (-1: none, or no changes yet);
    # None when they had to be split across several documents.
    base: int | None
    size: int = field(default=0)


def _guard(call: Any, *args: Any) -> Any:
    """Run one automerge call; its panics (BaseException) become Refused('load')."""
    try:
        return call(*args)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # pyo3's PanicException derives from BaseException
        raise Refused("load") from None


def _load(data: bytes) -> tuple[Any, Any]:
    """Load bytes into a doc and read its state: `Doc(bytes)` is lazy and only fails on use."""
    doc = _guard(automerge.Doc, data)
    return doc, _guard(doc.obj)


def _merge(doc: Any, data: bytes) -> Any:
    """Merge bytes into a doc (loading both happens here, so failures are eager)."""
    return _guard(doc.merge, data)


class Worker:
    """Folds payloads, renders bounded JSON, and keeps an LRU of merged docs."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.max_depth = int(limits["max_depth"])
        self.max_state_bytes = int(limits["max_state_bytes"])
        self.cache_entries = int(limits["cache_entries"])
        self.cache_bytes = int(limits["cache_bytes"])
        self.cache: OrderedDict[str, Entry] = OrderedDict()
        self.cached_bytes = 0

    # -- folding ---------------------------------------------------------------------------
    def fold(
        self,
        documents: list[bytes],
        changes: list[bytes],
        groups: list[list[int]],
        base_order: list[int],
    ) -> tuple[Any, Any, int | None]:
        """Merge documents, then load the changes onto one document (or each group onto one).

        Returns the doc, its state when already read (else None) and the base document index.
        """
        if not changes:
            doc, state = _load(documents[0])
            for data in documents[1:]:
                doc, state = _merge(doc, data), None
            return doc, state, -1
        chain = b"".join(changes)
        if not documents:
            doc, state = _load(chain)
            return doc, state, -1
        for k in base_order:
            try:
                doc, state = _load(documents[k] + chain)
            except Refused:
                continue
            for j, data in enumerate(documents):
                if j != k:
                    doc, state = _merge(doc, data), None
            return doc, state, k
        # No single document holds every dependency: load each connected group of changes onto
        # the first document it loads with.
        doc, _ = _load(documents[0])
        for data in documents[1:]:
            doc = _merge(doc, data)
        for group in groups:
            blob = b"".join(changes[i] for i in group)
            for k in base_order:
                try:
                    doc = _merge(doc, documents[k] + blob)
                    break
                except Refused:
                    continue
            else:
                raise Refused("deps")
        return doc, None, None

    def append(self, entry: Entry, new: bytes, is_document: bool) -> tuple[Any, Any, Entry]:
        """Add one payload to a cached fold; Refused('miss') when only a full fold can tell."""
        if is_document:
            doc = _merge(entry.doc, new)
            return (
                doc,
                None,
                Entry(entry.digest, doc, entry.documents + [new], entry.changes, entry.base),
            )
        if entry.changes:
            if entry.base is None:
                raise Refused("miss")
            candidates = [entry.base]
        else:
            candidates = list(range(len(entry.documents))) or [-1]
        chain = b"".join(entry.changes) + new
        for k in candidates:
            blob = (entry.documents[k] if k >= 0 else b"") + chain
            holds_all = len(entry.documents) == 0 or (len(entry.documents) == 1 and k == 0)
            try:
                doc, state = _load(blob) if holds_all else (_merge(entry.doc, blob), None)
            except Refused:
                continue
            return doc, state, Entry(entry.digest, doc, entry.documents, entry.changes + [new], k)
        raise Refused("miss")

    # -- rendering -------------------------------------------------------------------------
    def render(self, doc: Any, state: Any = None) -> bytes:
        """The JSON state: depth-checked iteratively, text lists joined, size-capped."""
        if state is None:
            state = _guard(doc.obj)
        if not isinstance(state, dict):
            raise Refused("type")
        stack: list[tuple[Any, int]] = [(state, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > self.max_depth:
                raise Refused("depth")
            children = node.values() if isinstance(node, dict) else node
            for child in children:
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
                elif not (child is None or isinstance(child, (str, int, float))):
                    raise Refused("type")
        try:
            text = json.dumps(
                normalize(state), ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8")
        except (ValueError, TypeError):
            raise Refused("type") from None
        if len(text) > self.max_state_bytes:
            raise Refused("size")
        return text

    # -- cache -----------------------------------------------------------------------------
    def remember(self, key: str, entry: Entry) -> None:
        self.forget(key)
        entry.size = sum(map(len, entry.documents)) + sum(map(len, entry.changes))
        if entry.size > self.cache_bytes or self.cache_entries <= 0:
            return
        self.cache[key] = entry
        self.cached_bytes += entry.size
        while len(self.cache) > self.cache_entries or self.cached_bytes > self.cache_bytes:
            _, old = self.cache.popitem(last=False)
            self.cached_bytes -= old.size

    def forget(self, key: str) -> None:
        old = self.cache.pop(key, None)
        if old is not None:
            self.cached_bytes -= old.size

    # -- dispatch --------------------------------------------------------------------------
    def handle(self, header: dict[str, Any], blobs: list[bytes]) -> tuple[int, bytes]:
        op = header.get("op")
        if op == "ping":
            return OK, b""
        key = header.get("key")
        try:
            if op == "fold":
                nd = int(header["documents"])
                documents, changes = blobs[:nd], blobs[nd:]
                doc, state, base = self.fold(
                    documents, changes, header["groups"], header["base_order"]
                )
                text = self.render(doc, state)
                if key is not None:
                    self.remember(key, Entry(header["digest"], doc, documents, changes, base))
                return OK, text
            if op == "append":
                key = str(header["key"])
                entry = self.cache.get(key)
                if entry is None or entry.digest != header["digest"]:
                    return MISS, b""
                self.cache.move_to_end(key)
                doc, state, updated = self.append(entry, blobs[0], bool(header["document"]))
                text = self.render(doc, state)
                updated.digest = header["new_digest"]
                self.remember(key, updated)
                return OK, text
        except Refused as refusal:
            if key is not None:
                self.forget(key)
            reason = refusal.args[0]
            return (MISS, b"") if reason == "miss" else (ERROR, reason.encode())
        except (KeyError, TypeError, ValueError, IndexError, RecursionError, MemoryError):
            # A malformed request or a state too big to walk: answer, and drop what we held.
            logger.exception("automerge worker could not serve %s", op)
            self.cache.clear()
            self.cached_bytes = 0
            return ERROR, b"load"
        return ERROR, b"protocol"


_MAX_SAFE_INTEGER = 2**53


def normalize(node: Any) -> Any:
    """Make the binding's state read like JavaScript's JSON view of the same document.

    - 3.x text comes back as a list of one-character strings. The binding gives no way to tell
      a text object from a list, so any non-empty list whose items are all one-character strings
      is read as text; an empty text reads as [].
    - JavaScript numbers are doubles, and JS 3.x often stores whole numbers as floats: a float
      with an integral value (within 2**53) becomes an int, as JSON.stringify would print it.
    """
    if isinstance(node, dict):
        return {k: normalize(v) for k, v in node.items()}
    if isinstance(node, list):
        if node and all(isinstance(x, str) and len(x) == 1 for x in node):
            return "".join(node)
        return [normalize(x) for x in node]
    if isinstance(node, float) and node.is_integer() and abs(node) <= _MAX_SAFE_INTEGER:
        return int(node)
    return node


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    if data is None or len(data) < n:
        return None
    return data


def serve(stdin: BinaryIO, stdout: BinaryIO, worker: Worker) -> None:
    """Answer requests until stdin closes."""
    while True:
        raw = _read_exact(stdin, 4)
        if raw is None:
            return
        header_bytes = _read_exact(stdin, _U32.unpack(raw)[0])
        if header_bytes is None:
            return
        header = json.loads(header_bytes)
        blobs: list[bytes] = []
        for _ in range(int(header.get("blobs", 0))):
            raw = _read_exact(stdin, 4)
            blob = None if raw is None else _read_exact(stdin, _U32.unpack(raw)[0])
            if blob is None:
                return
            blobs.append(blob)
        # Acknowledge the whole request before touching automerge: a parent that sees the pipe
        # close before this byte knows the input was not what killed us, and may resend it.
        stdout.write(ACK)
        stdout.flush()
        status, body = worker.handle(header, blobs)
        stdout.write(bytes([status]) + _U32.pack(len(body)) + body)
        stdout.flush()


def main() -> None:
    limits = json.loads(sys.argv[1])
    memory = int(limits["max_memory"])
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # Keep the protocol stream private: anything printed by accident goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    serve(sys.stdin.buffer, out, Worker(limits))


if __name__ == "__main__":
    main()
