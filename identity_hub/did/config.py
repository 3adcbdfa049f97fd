"""Configuration of the DID resolver (outbound policy, limits, cache)."""

from __future__ import annotations

import dataclasses
import logging
import ssl
from typing import Any

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ResolverConfig:
    """How a `DidResolver` may reach the network and how long it keeps results.

    Attributes:
        universal_resolver: base URL of a universal resolver (`GET {base}/1.0/identifiers/{did}`);
            `None` turns it off, and DIDs of other methods fail with `MethodNotSupported`.
        allow_hosts: `host` or `host:port` entries that may be reached over plain http and on
            private, loopback or link-local addresses (development and tests only).
        timeout: seconds for one whole resolution, redirects included.
        max_response_bytes: largest response body read; larger ones are aborted.
        cache_ttl: seconds a resolved document is kept.
        negative_ttl: seconds a failure is remembered.
        cache_size: most DIDs kept (least recently used are dropped first).
        ssl_context: TLS context for outbound https (tests pass one trusting a test CA).
        did_web: resolve did:web over the network. Off by default: nothing leaves the hub
            unless configured.
    """

    universal_resolver: str | None = None
    allow_hosts: frozenset[str] = frozenset()
    timeout: float = 5.0
    max_response_bytes: int = 262144
    cache_ttl: float = 300.0
    negative_ttl: float = 30.0
    cache_size: int = 10000
    ssl_context: ssl.SSLContext | None = None
    did_web: bool = False

    def __post_init__(self) -> None:
        hosts = frozenset(h.strip().lower() for h in self.allow_hosts if h and h.strip())
        object.__setattr__(self, "allow_hosts", hosts)
        if self.universal_resolver is not None and not self.universal_resolver.strip():
            object.__setattr__(self, "universal_resolver", None)
        if self.timeout <= 0 or self.max_response_bytes <= 0 or self.cache_size <= 0:
            raise ValueError("timeout, max_response_bytes and cache_size must be positive")

    @classmethod
    def from_settings(cls, settings: Any) -> ResolverConfig:
        """Build the config from `identity_hub.settings.Settings`."""
        return cls(
            universal_resolver=getattr(settings, "universal_resolver", None) or None,
            allow_hosts=frozenset(getattr(settings, "allow_host_set", frozenset())),
            timeout=float(getattr(settings, "resolver_timeout_seconds", 5.0)),
            max_response_bytes=int(getattr(settings, "resolver_max_bytes", 262144)),
            cache_ttl=float(getattr(settings, "resolver_cache_ttl_seconds", 300)),
            did_web=bool(getattr(settings, "did_web", False)),
        )

    def host_allowed(self, host: str, port: int | None) -> bool:
        """True if `host` (with `port`) is on the allow-list.

        An entry `host` allows every port, `host:port` only that port. IPv6 entries may be
        written `::1`, `[::1]` or `[::1]:8080`.
        """
        if not self.allow_hosts:
            return False
        host = host.lower().strip("[]")
        candidates = {host, f"[{host}]"}
        if port is not None:
            candidates |= {f"{host}:{port}", f"[{host}]:{port}"}
        return not candidates.isdisjoint(self.allow_hosts)
