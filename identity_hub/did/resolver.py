"""`DidResolver`: one entry point from a DID or key id to a document or a usable key.

Dispatch: did:key, did:jwk and long-form did:ion resolve offline; did:web over the guarded HTTP
client; short-form did:ion and every other method through the universal resolver when one is
configured (`MethodNotSupported` otherwise). Documents registered with `add_static` win over all.

Results (documents with absolute ids, and the keys built from them) live in a bounded LRU with a
TTL; failures are remembered for `negative_ttl`. Concurrent resolutions of one DID share a single
network fetch.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from identity_hub.did.cache import TtlLru
from identity_hub.did.config import ResolverConfig
from identity_hub.did.document import MethodRecord, index_methods, normalize_document
from identity_hub.did.encoding import json_copy, parse_did
from identity_hub.did.errors import (
    DidError,
    InvalidDid,
    KeyNotAuthorized,
    KeyNotFound,
    MethodNotSupported,
)
from identity_hub.did.http import GuardedHttp
from identity_hub.did.keys import VerificationKey, build_verification_key
from identity_hub.did.methods import ion
from identity_hub.did.methods.jwk import resolve_did_jwk
from identity_hub.did.methods.key import resolve_did_key
from identity_hub.did.methods.universal import resolve_universal
from identity_hub.did.methods.web import fetch_did_web

logger = logging.getLogger(__name__)

PURPOSES = ("sign", "encrypt", "authentication", "assertionMethod", "keyAgreement",
            "capabilityInvocation", "capabilityDelegation")


def _allowed(key: VerificationKey, purpose: str) -> bool:
    if purpose == "sign":
        return key.can_sign()
    if purpose == "encrypt":
        return key.can_encrypt()
    if purpose == "keyAgreement":
        return key.can_encrypt()
    if purpose in PURPOSES:
        return key.key_family != "X25519" and purpose in key.relationships
    raise ValueError(f"unknown key purpose {purpose!r}; use one of {', '.join(PURPOSES)}")


class _Entry:
    """A resolved DID: the result, its methods by id, and lazily built keys."""

    __slots__ = ("did", "result", "records", "aliases", "_keys")

    def __init__(self, did: str, result: dict[str, Any]) -> None:
        self.did = did
        self.result = result
        doc = result["didDocument"]
        self.records: dict[str, MethodRecord] = {}
        for record in index_methods(doc):
            self.records.setdefault(record.method["id"], record)
        self.aliases: dict[str, str] = {}
        other_ids = {doc["id"]} - {did}
        if did.startswith("did:ion:") and ion.is_long_form(did):
            other_ids.add(ion.short_form(did))
        for ident in self.records:
            base, _, fragment = ident.partition("#")
            if base == doc["id"]:
                for other in other_ids | {did}:
                    self.aliases.setdefault(f"{other}#{fragment}", ident)
        self._keys: dict[str, VerificationKey | DidError] = {}

    def key(self, kid: str) -> VerificationKey:
        ident = kid if kid in self.records else self.aliases.get(kid)
        if ident is None:
            raise KeyNotFound("the DID document has no verification method with this id")
        built = self._keys.get(ident)
        if built is None:
            record = self.records[ident]
            try:
                built = build_verification_key(record.method, self.did, record.relationships)
            except DidError as exc:
                built = exc
            self._keys[ident] = built
        if isinstance(built, DidError):
            raise built.clone()
        return built

    def keys(self) -> list[VerificationKey]:
        out = []
        for ident in self.records:
            try:
                out.append(self.key(ident))
            except DidError as exc:
                logger.debug("skipping unusable key in %s: %s", self.did, exc.error)
        return out


class DidResolver:
    """Resolves DIDs and key ids; see the module docstring.

    Args:
        config: network policy, limits and cache; the default allows no universal resolver.
        offline: never touch the network (did:web and the universal resolver are refused).
    """

    def __init__(self, config: ResolverConfig | None = None, *, offline: bool = False) -> None:
        self.config = config or ResolverConfig()
        self.offline = offline
        self._cache: TtlLru[_Entry | DidError] = TtlLru(self.config.cache_size)
        self._ion_short: TtlLru[str] = TtlLru(self.config.cache_size)
        self._static: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Future[_Entry]] = {}
        self._http: GuardedHttp | None = None

    def add_static(self, document: dict[str, Any]) -> None:
        """Serve `document` for its `id` from now on (tests, tenants, the hub's own DID).

        Raises:
            InvalidDocument: not a document with a DID as id.
        """
        normalized = normalize_document(document)
        did = normalized["id"]
        parse_did(did)
        result = {
            "didDocument": normalized,
            "didDocumentMetadata": {},
            "didResolutionMetadata": {"contentType": "application/did+json"},
        }
        self._static[did] = _Entry(did, result)
        self._cache.pop(did)

    async def resolve(self, did: str) -> dict[str, Any]:
        """The DID document of `did`, every id absolute (a copy the caller may change).

        Raises:
            DidError: see `errors.py`.
        """
        return json_copy((await self._entry(did)).result["didDocument"])  # type: ignore[no-any-return]

    async def resolve_result(self, did: str) -> dict[str, Any]:
        """`{didDocument, didDocumentMetadata, didResolutionMetadata}` for `did` (a copy).

        Raises:
            DidError: see `errors.py`.
        """
        return json_copy((await self._entry(did)).result)  # type: ignore[no-any-return]

    async def key(self, kid: str, purpose: str = "sign") -> VerificationKey:
        """The key `kid` (`did#fragment`) if its document authorizes it for `purpose`.

        `purpose` is `sign` (authentication or assertionMethod), `encrypt` (keyAgreement) or a
        relationship name. For a long-form did:ion, `<short form>#fragment` is accepted too.

        Raises:
            InvalidDid: no `#` in `kid`, or an invalid DID.
            KeyNotFound: the document has no such key.
            KeyNotAuthorized: the key is not authorized for `purpose`.
            InvalidPublicKey (and kin): the key material is unusable.
            DidError: the DID did not resolve.
        """
        if not isinstance(kid, str) or "#" not in kid:
            raise InvalidDid("a key id must be a DID URL with a fragment (did#key)")
        did, fragment = kid.split("#", 1)
        if not fragment:
            raise InvalidDid("empty key fragment")
        if did.startswith("did:ion:") and did not in self._static:
            did = self._ion_short.get(did) or did
        key = (await self._entry(did)).key(kid)
        if not _allowed(key, purpose):
            raise KeyNotAuthorized(f"key is not authorized for {purpose}")
        return key

    async def keys(self, did: str, purpose: str) -> list[VerificationKey]:
        """The usable keys of `did` authorized for `purpose`, in document order.

        Raises:
            DidError: the DID did not resolve.
        """
        if purpose not in PURPOSES:
            raise ValueError(f"unknown key purpose {purpose!r}")
        return [k for k in (await self._entry(did)).keys() if _allowed(k, purpose)]

    async def aclose(self) -> None:
        """Release the HTTP session."""
        if self._http is not None:
            await self._http.aclose()

    # --- internals -----------------------------------------------------------------------

    async def _entry(self, did: str) -> _Entry:
        static = self._static.get(did)
        if static is not None:
            return static
        cached = self._cache.get(did)
        if cached is not None:
            if isinstance(cached, DidError):
                raise cached.clone()
            return cached
        method, _ = parse_did(did)
        if method in ("key", "jwk") or (method == "ion" and ion.is_long_form(did)):
            return self._offline(did, method)
        inflight = self._inflight.get(did)
        if inflight is None:
            inflight = asyncio.ensure_future(self._fetch(did, method))
            self._inflight[did] = inflight
            inflight.add_done_callback(functools.partial(self._done, did))
        try:
            return await asyncio.shield(inflight)
        except DidError as exc:
            raise exc.clone() from None

    def _done(self, did: str, _future: asyncio.Future[_Entry]) -> None:
        self._inflight.pop(did, None)

    def _offline(self, did: str, method: str) -> _Entry:
        try:
            if method == "key":
                result = resolve_did_key(did)
            elif method == "jwk":
                result = resolve_did_jwk(did)
            else:
                result = ion.resolve_long_form(did)
                self._ion_short.set(ion.short_form(did), did, self.config.cache_ttl)
            entry = self._make_entry(did, result)
        except DidError as exc:
            self._cache.set(did, exc, self.config.negative_ttl)
            raise
        except Exception as exc:  # a bug must not escape as a library exception
            logger.exception("unexpected failure resolving a did:%s offline", method)
            raise InvalidDid("the DID could not be processed") from exc
        self._cache.set(did, entry, self.config.cache_ttl)
        return entry

    def _make_entry(self, did: str, result: dict[str, Any]) -> _Entry:
        result = dict(result)
        result["didDocument"] = normalize_document(result["didDocument"])
        return _Entry(did, result)

    async def _fetch(self, did: str, method: str) -> _Entry:
        try:
            result, ttl = await self._network(did, method)
            entry = self._make_entry(did, result)
        except DidError as exc:
            self._cache.set(did, exc, self.config.negative_ttl)
            raise
        except Exception as exc:  # a bug must not escape as a library exception
            logger.exception("unexpected failure resolving a %s DID", method)
            error = DidError("internal resolver error")
            self._cache.set(did, error, self.config.negative_ttl)
            raise error from exc
        ttl = self.config.cache_ttl if ttl is None else min(ttl, self.config.cache_ttl)
        self._cache.set(did, entry, ttl)
        return entry

    async def _network(self, did: str, method: str) -> tuple[dict[str, Any], float | None]:
        if self.offline:
            raise MethodNotSupported(f"did:{method} needs the network, and this resolver is "
                                     "offline")
        if self._http is None:
            self._http = GuardedHttp(self.config)
        if method == "web":
            if not self.config.did_web:
                raise MethodNotSupported("did:web resolution is off; turn it on with the "
                                         "setting did_web (IDENTITY_HUB_DID_WEB=true)")
            return await fetch_did_web(did, self._http, self.config)
        if not self.config.universal_resolver:
            if method == "ion":
                raise MethodNotSupported("short-form did:ion needs a universal resolver "
                                         "(setting universal_resolver)")
            raise MethodNotSupported(f"did:{method} is not supported offline; configure a "
                                     "universal resolver (setting universal_resolver)")
        return await resolve_universal(did, self._http, self.config.universal_resolver), None


_default_resolver = DidResolver(offline=True)


async def resolve(did: str) -> dict[str, Any]:
    """Resolve `did` with a shared offline resolver (did:key, did:jwk, long-form did:ion).

    Raises:
        DidError: see `errors.py`.
    """
    return await _default_resolver.resolve(did)
