"""Token-bucket rate limits per requester DID and per source address (docs/rate-limits.md).

Classes of work, each with a rate (tokens per second) and a burst (the bucket's size), in the
settings table as `rate_limit_<class>` = "RATE/BURST" for everyone and
`rate_limit_trusted_<class>` for the owner of the data and the owner's configured peer hubs:

* `handshake`: envelopes that ask for a token, and envelopes that fail to authenticate, per
  source address (checked before any crypto: an address whose bucket is empty is refused
  before its body is decrypted) and per DID (when a token is issued);
* `write`, `query`, `sync`: authenticated requests by type, per DID and per source address;
* `automerge`: seconds the automerge workers spent on a requester's commits. The cost is only
  known afterwards: a request is let in while the bucket holds anything, and what it spent is
  taken after it (the bucket may go into debt, refusing until it has refilled).

Buckets live in bounded LRU maps (cachetools): a flood of distinct DIDs or addresses evicts the
least recently used buckets (an evicted bucket comes back full) instead of growing memory.

The transport calls `RateLimiter.check` / `peek` / `charge`; `CpuMeter` counts the automerge
seconds of the current request through a context variable the fold engine adds to.
"""

from __future__ import annotations

import contextvars
import dataclasses
import ipaddress
import math
import time
from collections.abc import Iterable, Mapping

from cachetools import LRUCache

CLASSES = ("handshake", "write", "query", "sync", "automerge")

# Request types by class; any other type is counted as a query.
REQUEST_CLASSES = {"WriteRequest": "write", "SyncPullRequest": "sync",
                   "SyncHintRequest": "sync"}


@dataclasses.dataclass(frozen=True)
class Rule:
    rate: float  # tokens per second
    burst: float  # bucket size

    @classmethod
    def parse(cls, name: str, text: str) -> Rule:
        """"RATE/BURST", e.g. "20/200".

        Raises:
            ValueError: not two positive numbers (names the setting).
        """
        try:
            rate_text, burst_text = text.split("/")
            rule = cls(float(rate_text), float(burst_text))
        except ValueError:
            raise ValueError(f"{name}: expected RATE/BURST (e.g. 20/200), got {text!r}") from None
        if not (rule.rate > 0 and rule.burst > 0 and math.isfinite(rule.rate)
                and math.isfinite(rule.burst)):
            raise ValueError(f"{name}: rate and burst must be positive numbers, got {text!r}")
        return rule


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = burst
        self.updated = now

    def refill(self, rule: Rule, now: float) -> None:
        self.tokens = min(rule.burst, self.tokens + (now - self.updated) * rule.rate)
        self.updated = now


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A refused request: which limit, and when to come back."""

    limit: str  # the class, e.g. "write"
    scope: str  # "did" or "address"
    retry_after: int  # whole seconds, at least 1
    setting: str  # the setting that sets the limit


class RateLimiter:
    """Buckets by (class, trusted, scope, key); see the module docstring."""

    def __init__(self, rules: Mapping[str, Rule], trusted: Mapping[str, Rule],
                 max_keys: int = 100_000) -> None:
        self.rules = dict(rules)
        self.trusted = dict(trusted)
        self._buckets: LRUCache[tuple[str, bool, str, str], _Bucket] = LRUCache(max_keys)

    @classmethod
    def from_settings(cls, settings: object) -> RateLimiter:
        """Rules from `rate_limit_<class>` / `rate_limit_trusted_<class>` settings.

        Raises:
            ValueError: a malformed setting (names it).
        """
        rules = {c: Rule.parse(f"rate_limit_{c}", getattr(settings, f"rate_limit_{c}"))
                 for c in CLASSES}
        trusted = {c: Rule.parse(f"rate_limit_trusted_{c}",
                                 getattr(settings, f"rate_limit_trusted_{c}")) for c in CLASSES}
        return cls(rules, trusted, max_keys=int(getattr(settings, "rate_limit_max_keys")))

    def __len__(self) -> int:
        return len(self._buckets)

    def _rule(self, limit: str, trusted: bool) -> Rule:
        return (self.trusted if trusted else self.rules)[limit]

    def _bucket(self, limit: str, trusted: bool, scope: str, key: str, now: float) -> _Bucket:
        rule = self._rule(limit, trusted)
        k = (limit, trusted, scope, key)
        bucket = self._buckets.get(k)
        if bucket is None:
            bucket = self._buckets[k] = _Bucket(rule.burst, now)
        else:
            bucket.refill(rule, now)
        return bucket

    def _refusal(self, limit: str, trusted: bool, scope: str, bucket: _Bucket, need: float
                 ) -> Refusal:
        rule = self._rule(limit, trusted)
        wait = max(1, math.ceil((need - bucket.tokens) / rule.rate))
        setting = f"rate_limit_{'trusted_' if trusted else ''}{limit}"
        return Refusal(limit, scope, wait, setting)

    def check(self, limit: str, keys: Iterable[tuple[str, str]], *, trusted: bool = False,
              cost: float = 1.0) -> Refusal | None:
        """Take `cost` tokens from the bucket of every (scope, key), or none of them if one is
        short (then the refusal names it)."""
        now = time.monotonic()
        buckets = [(scope, self._bucket(limit, trusted, scope, key, now)) for scope, key in keys]
        for scope, bucket in buckets:
            if bucket.tokens < cost:
                return self._refusal(limit, trusted, scope, bucket, cost)
        for _scope, bucket in buckets:
            bucket.tokens -= cost
        return None

    def peek(self, limit: str, keys: Iterable[tuple[str, str]], *, trusted: bool = False
             ) -> Refusal | None:
        """Refuse if a bucket is empty (holds under one token's worth), taking nothing."""
        now = time.monotonic()
        need = 1e-3 if limit == "automerge" else 1.0  # automerge: anything left lets one in
        for scope, key in keys:
            bucket = self._bucket(limit, trusted, scope, key, now)
            if bucket.tokens < need:
                return self._refusal(limit, trusted, scope, bucket, need)
        return None

    def charge(self, limit: str, keys: Iterable[tuple[str, str]], cost: float, *,
               trusted: bool = False) -> None:
        """Take `cost` tokens after the fact (a bucket may go below zero)."""
        if cost <= 0:
            return
        now = time.monotonic()
        for scope, key in keys:
            self._bucket(limit, trusted, scope, key, now).tokens -= cost


# --- the automerge seconds of the current request -------------------------------------------------

class CpuMeter:
    """Seconds of worker time spent on behalf of one request."""

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0


CPU_METER: contextvars.ContextVar[CpuMeter | None] = contextvars.ContextVar(
    "identity_hub_cpu_meter", default=None)


def spent(seconds: float) -> None:
    """Add worker seconds to the current request's meter (no-op outside a request)."""
    meter = CPU_METER.get()
    if meter is not None:
        meter.seconds += seconds


# --- the source address ------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(text: str) -> tuple[Network, ...]:
    """The `trusted_proxies` setting: comma-separated addresses or CIDRs.

    Raises:
        ValueError: an entry that is neither (names the setting).
    """
    out = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"trusted_proxies: not an address or CIDR: {item!r}") from None
    return tuple(out)


def _ip(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             proxies: tuple[Network, ...]) -> bool:
    return addr is not None and any(addr in net for net in proxies)


def source_address(peer: str | None, forwarded_for: str | None,
                   proxies: tuple[Network, ...]) -> str:
    """The client's address: the TCP peer's, or, when that is a trusted proxy, the right-most
    address of X-Forwarded-For that is not itself a trusted proxy (the left part of the header
    is whatever the client wrote). Without trusted proxies the header is ignored."""
    addr = _ip(peer)
    if forwarded_for and proxies and _trusted(addr, proxies):
        for hop in reversed(forwarded_for.split(",")[-32:]):
            hop_addr = _ip(hop)
            if hop_addr is None:
                break  # a malformed hop: trust nothing left of it
            addr = hop_addr
            if not _trusted(hop_addr, proxies):
                break
    return str(addr) if addr is not None else (peer or "unknown")[:64]


def check_settings(settings: object) -> None:
    """Raises:
        ValueError: a malformed `rate_limit_*` or `trusted_proxies` setting (names it).
    """
    RateLimiter.from_settings(settings)
    parse_proxies(str(getattr(settings, "trusted_proxies")))
