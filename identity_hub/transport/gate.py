"""Where the transport applies the rate limits (identity_hub/ratelimit.py, docs/rate-limits.md).

The pipeline asks, in order:

1. `admit(source)` before the body is read or decrypted: an address whose handshake bucket is
   empty is refused without any crypto;
2. `auth_failed(source)` after a body failed to authenticate (it cost a handshake's crypto);
3. `handshake(requester, source)` before a token is issued;
4. `request(requester, request, source)` before an authenticated request is dispatched (write,
   query or sync, by its type), then `spent(...)` with the automerge seconds it used.

The owner of the data (the requester is the request's `sub` and a tenant) and the owner's
configured peer hubs are counted on their own, larger budgets (`rate_limit_trusted_*`), per DID
only. Every refusal raises `RateLimited` and is counted in the metrics.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from cachetools import TTLCache

from identity_hub.errors import RateLimited
from identity_hub.metrics import Metrics
from identity_hub.ratelimit import REQUEST_CLASSES, RateLimiter, Refusal
from identity_hub.storage import store
from identity_hub.storage.engine import Database
from identity_hub.sync import peers

logger = logging.getLogger(__name__)

TRUST_TTL = 10.0  # seconds a tenant / peer lookup is reused (a peer added counts within this)


class RateGate:
    """The transport's narrow interface to the rate limiter (see the module docstring)."""

    def __init__(self, limiter: RateLimiter, db: Database, *, open_tenancy: bool,
                 metrics: Metrics | None = None, max_keys: int = 100_000) -> None:
        self.limiter = limiter
        self.db = db
        self.open_tenancy = open_tenancy
        self.metrics = metrics
        # requester DID → (a tenant, the owners it is a configured peer hub of); one lookup per
        # DID and TRUST_TTL, whatever `sub` the requests name.
        self._standing: TTLCache[str, tuple[bool, frozenset[str]]] = TTLCache(
            max(1, min(max_keys, 100_000)), TRUST_TTL)

    def _refuse(self, refusal: Refusal) -> RateLimited:
        if self.metrics is not None:
            self.metrics.rate_limited(refusal.limit, refusal.scope)
        logger.info("rate limit %s (per %s) refused a request", refusal.setting, refusal.scope)
        return RateLimited(refusal.limit, refusal.scope, refusal.retry_after, refusal.setting)

    def admit(self, source: str) -> None:
        """Raises:
            RateLimited: the address has used up its handshakes (checked before any crypto).
        """
        refusal = self.limiter.peek("handshake", [("address", source)])
        if refusal is not None:
            raise self._refuse(refusal)

    def auth_failed(self, source: str) -> None:
        self.limiter.charge("handshake", [("address", source)], 1.0)

    async def handshake(self, requester: str, source: str) -> None:
        """Raises:
            RateLimited: the requester or its address has used up its handshakes.
        """
        trusted = await self._trusted(requester, None)
        keys = [("did", requester)] if trusted else [("did", requester), ("address", source)]
        refusal = self.limiter.check("handshake", keys, trusted=trusted)
        if refusal is not None:
            raise self._refuse(refusal)

    async def request(self, requester: str, request: Any, source: str
                      ) -> tuple[bool, list[tuple[str, str]]] | None:
        """Count one authenticated request; returns (trusted, keys) to charge its automerge
        seconds to when it writes an automerge commit, else None.

        Raises:
            RateLimited: a bucket of the request's class (or its automerge budget) is empty.
        """
        if not isinstance(request, dict):
            return None  # refused as a bad request anyway: counted as nothing
        type_ = request.get("@type")
        limit = REQUEST_CLASSES.get(type_, "query") if isinstance(type_, str) else "query"
        sub = request.get("sub")
        trusted = isinstance(sub, str) and await self._trusted(requester, sub)
        keys = [("did", requester)] if trusted else [("did", requester), ("address", source)]
        automerge = limit == "write" and _is_automerge(request)
        # The automerge budget first: a refused request takes no write token either.
        refusal = self.limiter.peek("automerge", keys, trusted=trusted) if automerge else None
        if refusal is None:
            refusal = self.limiter.check(limit, keys, trusted=trusted)
        if refusal is not None:
            raise self._refuse(refusal)
        return (trusted, keys) if automerge else None

    def spent(self, charge: tuple[bool, list[tuple[str, str]]] | None, seconds: float) -> None:
        if charge is not None:
            trusted, keys = charge
            self.limiter.charge("automerge", keys, seconds, trusted=trusted)

    async def _trusted(self, requester: str, sub: str | None) -> bool:
        """The owner (the requester is `sub` and a tenant) or a configured peer hub (of `sub`;
        of any owner at the handshake, before there is a `sub`)."""
        standing = self._standing.get(requester)
        if standing is None:
            try:
                standing = await self._lookup(requester)
            except Exception:  # the database is down: the ordinary budget, not a failure
                logger.warning("rate limits: could not look up a requester's standing")
                return False
            self._standing[requester] = standing
        tenant, peer_of = standing
        if sub is None:
            return tenant or bool(peer_of)
        if sub == requester:
            return tenant or self.open_tenancy
        return sub in peer_of

    async def _lookup(self, requester: str) -> tuple[bool, frozenset[str]]:
        tenant = await store.is_tenant(self.db, requester)
        return tenant, frozenset(await peers.owners_of_peer(self.db, requester))


def _is_automerge(request: dict[str, Any]) -> bool:
    """Whether a WriteRequest's commit is an automerge one (from its protected header)."""
    commit = request.get("commit")
    if not isinstance(commit, dict) or not isinstance(commit.get("protected"), str):
        return False
    protected = commit["protected"]
    if len(protected) > 65536:
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))
    except (ValueError, TypeError):
        return False
    return isinstance(header, dict) and header.get("commit_strategy") == "automerge"
