"""Type IRIs: a commit's `context` + `type` (or a payload's `@context`/`@type`) expanded by pyld,
offline, cached.

`https://schema.org` + `MusicPlaylist`, `http://schema.org/` + `MusicPlaylist` and the full IRI
`http://schema.org/MusicPlaylist` all give `http://schema.org/MusicPlaylist`, so they land in
one collection. Two rules besides JSON-LD's own:

* a context without a scheme (`schema.org`, `schema.identity.foundation/0.1`, as the 2019
  clients write them) is read as `https://…` (`loader.absolute_context`);
* schema.org's `https://schema.org/X` and `http://schema.org/X` name the same term (schema.org
  says so; its context maps to `http://`): IRIs are canonicalized to the `http` form.

Unknown contexts (neither shipped nor added by the owner) are never fetched. With the policy
`refuse` (the default) they are a `bad_request` naming the context; with `opaque` the context
string is used as a namespace as written (`context/type`), without any expansion.

Expansion is CPU work (12-40 ms for schema.org's first use): results are cached per
(context, type) in a bounded LRU, and the `*_async` functions run uncached expansions in one
worker thread, so the event loop never waits on pyld.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from cachetools import LRUCache
from pyld import jsonld
from pyld.context_resolver import ContextResolver

from identity_hub.errors import BadRequest
from identity_hub.jsonld.loader import ContextLibrary, UnknownContext, absolute_context
from identity_hub.logs import quote

logger = logging.getLogger(__name__)

UnknownPolicy = Literal["refuse", "opaque"]
IRI_EQUIVALENTS: tuple[tuple[str, str], ...] = (("https://schema.org/", "http://schema.org/"),)
MAX_NAME_LENGTH = 512
MAX_CACHED_KEY = 4096  # longer inline @context values are expanded every time, never cached
MAX_INLINE_CONTEXT = 65536
T = TypeVar("T")
_ABSENT = object()


def canonical_iri(iri: str) -> str:
    """An IRI in the spelling the hub stores (`IRI_EQUIVALENTS`: schema.org's https → http)."""
    for alias, canonical in IRI_EQUIVALENTS:
        if iri.startswith(alias):
            return canonical + iri[len(alias):]
    return iri


def _is_iri(value: str) -> bool:
    return ":" in value and not value.startswith("_:") and not value.startswith("@")


@dataclasses.dataclass(frozen=True, slots=True)
class _Refusal:
    """A cached negative answer: which member is at fault and why."""

    member: str  # "context", "type" or "" (the payload as a whole)
    message: str


def _unknown_url(exc: BaseException) -> str | None:
    """The URL of an UnknownContext somewhere in pyld's chain of wrapped errors."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 20:
        if isinstance(cur, UnknownContext):
            return cur.url
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


class JsonLd:
    """Offline JSON-LD type expansion with one context library, one cache, one worker thread."""

    def __init__(self, library: ContextLibrary | None = None, *,
                 unknown_contexts: UnknownPolicy = "refuse", cache_size: int = 4096) -> None:
        if unknown_contexts not in ("refuse", "opaque"):
            raise ValueError("unknown_contexts must be 'refuse' or 'opaque'")
        self.library = library or ContextLibrary.shipped()
        self.unknown_contexts: UnknownPolicy = unknown_contexts
        self._cache: LRUCache[Any, Any] = LRUCache(maxsize=cache_size)
        self._cache_lock = threading.Lock()
        self._pyld_lock = threading.Lock()  # pyld's caches are not thread-safe
        self._resolved: LRUCache[Any, Any] = LRUCache(maxsize=256)  # pyld's resolved contexts
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Any pyld call elsewhere in the process gets this library too, never the network.
        jsonld.set_document_loader(self.library)

    # --- cache and worker ------------------------------------------------------------------

    def _cached(self, key: Any) -> Any:
        with self._cache_lock:
            return self._cache.get(key, _ABSENT)

    def _remember(self, key: Any, value: Any) -> None:
        if len(repr(key)) <= MAX_CACHED_KEY:
            with self._cache_lock:
                self._cache[key] = value

    async def _off_loop(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="jsonld")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def close(self) -> None:
        """Stop the worker thread (a later async call starts a new one)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _expand(self, doc: dict[str, Any]) -> list[Any]:
        options = {"documentLoader": self.library, "base": None,
                   "contextResolver": ContextResolver(self._resolved, self.library)}
        with self._pyld_lock:
            return list(jsonld.expand(doc, options))

    # --- commit headers: context + type ------------------------------------------------------

    def _opaque_iri(self, context: str, type_: str) -> str:
        if _is_iri(type_):
            return canonical_iri(type_)
        base = absolute_context(context)
        return canonical_iri(base + ("" if base.endswith(("/", "#")) else "/") + type_)

    def _compute_type_iri(self, context: str, type_: str) -> str | _Refusal:
        try:
            expanded = self._expand({"@context": absolute_context(context), "@type": type_})
        except jsonld.JsonLdError as exc:
            url = _unknown_url(exc)
            if url is None:
                logger.info("context %s does not expand: %s", quote(context), type(exc).__name__)
                return _Refusal("context", f"The JSON-LD context {context[:200]} could not be "
                                           "processed")
            if self.unknown_contexts == "opaque":
                return self._opaque_iri(context, type_)
            return _Refusal("context", f"Unknown JSON-LD context {url[:200]}: this hub fetches "
                                       "no context; its owner can add it to the data "
                                       "directory's contexts/")
        types = expanded[0].get("@type", []) if expanded else []
        iris = [t for t in types if isinstance(t, str) and _is_iri(t)]
        if len(iris) != 1:
            return _Refusal("type", f"type {type_[:200]} is not defined by the context "
                                    f"{context[:200]}")
        return canonical_iri(iris[0])

    def _check_names(self, context: Any, type_: Any, target: str) -> None:
        for member, value in (("context", context), ("type", type_)):
            if not isinstance(value, str) or not value.strip():
                raise BadRequest(f"{member} must be a non-empty string", target=f"{target}."
                                 f"{member}")
            if len(value) > MAX_NAME_LENGTH:
                raise BadRequest(f"{member} too long", target=f"{target}.{member}")

    def _answer(self, value: str | _Refusal, target: str) -> str:
        if isinstance(value, _Refusal):
            raise BadRequest(value.message, target=f"{target}.{value.member}")
        return value

    def type_iri(self, context: str, type_: str, *, target: str = "commit.protected") -> str:
        """The type IRI of a commit's `context` + `type` (cached; may run pyld on this thread).

        Raises:
            BadRequest: unknown context (policy `refuse`), at `{target}.context`; a type the
                context does not define, at `{target}.type`.
        """
        self._check_names(context, type_, target)
        key = ("t", context, type_)
        found = self._cached(key)
        if found is _ABSENT:
            found = self._compute_type_iri(context, type_)
            self._remember(key, found)
        return self._answer(found, target)

    async def type_iri_async(self, context: str, type_: str, *,
                             target: str = "commit.protected") -> str:
        """`type_iri`, with an uncached expansion run in the worker thread.

        Raises:
            BadRequest: as `type_iri`.
        """
        self._check_names(context, type_, target)
        key = ("t", context, type_)
        found = self._cached(key)
        if found is _ABSENT:
            found = await self._off_loop(lambda: self._compute_type_iri(context, type_))
            self._remember(key, found)
        return self._answer(found, target)

    # --- payloads: @context + @type ----------------------------------------------------------

    def _payload_key(self, payload: Any) -> tuple[Any, ...] | _Refusal:
        if not isinstance(payload, dict) or "@context" not in payload:
            return _Refusal("", "The payload must be a JSON-LD object with @context and @type")
        if "@type" not in payload and "type" not in payload:
            return _Refusal("", "The payload must be a JSON-LD object with @context and @type")
        try:
            parts = tuple(json.dumps(payload.get(k), sort_keys=True, separators=(",", ":"))
                          for k in ("@context", "@type", "type"))
        except (TypeError, ValueError):
            return _Refusal("", "The payload's @context or @type is not JSON")
        if len(parts[0]) > MAX_INLINE_CONTEXT:
            return _Refusal("", "The payload's @context is too large")
        return ("p", *parts, "type" in payload)

    def _compute_payload_types(self, payload: dict[str, Any]) -> frozenset[str] | _Refusal:
        ctx = payload["@context"]
        ctx = [absolute_context(c) if isinstance(c, str) else c
               for c in (ctx if isinstance(ctx, list) else [ctx])]
        # Only the members that can carry the node's type are expanded (`type` may be an alias
        # of @type, as in the credentials contexts); the rest of the payload plays no part.
        doc: dict[str, Any] = {"@context": ctx}
        for name in ("@type", "type"):
            if name in payload:
                doc[name] = payload[name]
        try:
            expanded = self._expand(doc)
        except jsonld.JsonLdError as exc:
            url = _unknown_url(exc)
            if url is None:
                return _Refusal("", "The payload's @context could not be processed")
            if self.unknown_contexts == "opaque":
                return self._opaque_payload_types(payload)
            return _Refusal("", f"Unknown JSON-LD context {url[:200]} in the payload: this hub "
                                "fetches no context")
        types = expanded[0].get("@type", []) if expanded else []
        return frozenset(canonical_iri(t) for t in types if isinstance(t, str) and _is_iri(t))

    def _opaque_payload_types(self, payload: dict[str, Any]) -> frozenset[str]:
        """Policy `opaque`: each @type read against the last string in @context, as written."""
        ctx = payload["@context"]
        strings = [c for c in (ctx if isinstance(ctx, list) else [ctx]) if isinstance(c, str)]
        types = payload.get("@type")
        names = [t for t in (types if isinstance(types, list) else [types]) if isinstance(t, str)]
        if not strings:
            return frozenset(canonical_iri(t) for t in names if _is_iri(t))
        return frozenset(self._opaque_iri(strings[-1], t) for t in names)

    def _payload_answer(self, value: frozenset[str] | _Refusal, target: str) -> frozenset[str]:
        if isinstance(value, _Refusal):
            raise BadRequest(value.message, target=target)
        return value

    def payload_types(self, payload: Any, *, target: str = "commit.payload") -> frozenset[str]:
        """The type IRIs of a JSON-LD payload's top-level node (`@type`, or an alias of it).

        Raises:
            BadRequest: at `target`: not a JSON-LD object, an unknown context (policy
                `refuse`), a context pyld cannot process.
        """
        key = self._payload_key(payload)
        if isinstance(key, _Refusal):
            return self._payload_answer(key, target)
        found = self._cached(key)
        if found is _ABSENT:
            found = self._compute_payload_types(payload)
            self._remember(key, found)
        return self._payload_answer(found, target)

    async def payload_types_async(self, payload: Any, *, target: str = "commit.payload"
                                  ) -> frozenset[str]:
        """`payload_types`, with an uncached expansion run in the worker thread.

        Raises:
            BadRequest: as `payload_types`.
        """
        key = self._payload_key(payload)
        if isinstance(key, _Refusal):
            return self._payload_answer(key, target)
        found = self._cached(key)
        if found is _ABSENT:
            found = await self._off_loop(lambda: self._compute_payload_types(payload))
            self._remember(key, found)
        return self._payload_answer(found, target)

    def payload_matches(self, payload: Any, context: str, type_: str) -> bool:
        """Whether a payload's @context/@type agree with a commit's context/type, by IRI: the
        commit's type IRI is one of the payload's.

        Raises:
            BadRequest: the commit's context/type (at `commit.protected.*`) or the payload's
                (at `commit.payload`) cannot be expanded.
        """
        return self.type_iri(context, type_) in self.payload_types(payload)

    async def payload_matches_async(self, payload: Any, context: str, type_: str) -> bool:
        """`payload_matches` without blocking the event loop.

        Raises:
            BadRequest: as `payload_matches`.
        """
        want = await self.type_iri_async(context, type_)
        return want in await self.payload_types_async(payload)


_default: JsonLd | None = None
_default_lock = threading.Lock()


def default_jsonld() -> JsonLd:
    """The process's JsonLd over the shipped contexts only (policy `refuse`)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = JsonLd()
        return _default


def type_iri(context: str, type_: str) -> str:
    """`JsonLd.type_iri` over the shipped contexts.

    Raises:
        BadRequest
    """
    return default_jsonld().type_iri(context, type_)


async def type_iri_async(context: str, type_: str) -> str:
    """`JsonLd.type_iri_async` over the shipped contexts.

    Raises:
        BadRequest
    """
    return await default_jsonld().type_iri_async(context, type_)


def payload_matches(payload: Any, context: str, type_: str) -> bool:
    """`JsonLd.payload_matches` over the shipped contexts.

    Raises:
        BadRequest
    """
    return default_jsonld().payload_matches(payload, context, type_)


async def payload_matches_async(payload: Any, context: str, type_: str) -> bool:
    """`JsonLd.payload_matches_async` over the shipped contexts.

    Raises:
        BadRequest
    """
    return await default_jsonld().payload_matches_async(payload, context, type_)
