"""Prometheus metrics of one hub: its own registry (several hubs may share a process, as in the
tests), served as `GET /metrics` only when `metrics_enabled` is set.

No label names a DID unless `metrics_name_dids` is on: an owner or a peer hub is labelled by the
first 12 hex digits of the SHA-256 of its DID.
"""

from __future__ import annotations

import hashlib
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def did_label(did: str, name_dids: bool) -> str:
    """A DID as a label value: a short digest, or the DID itself when so configured."""
    if name_dids:
        return did[:256]
    return hashlib.sha256(did.encode("utf-8")).hexdigest()[:12]


class Metrics:
    """The hub's counters and gauges."""

    def __init__(self, name_dids: bool = False) -> None:
        self.name_dids = name_dids
        self.registry = CollectorRegistry(auto_describe=True)
        self.rejected = Counter(
            "identity_hub_rejected_requests", "Requests refused before any work, by reason "
            "(rate_limited) and limit (the rate-limit class and scope).",
            ["reason", "limit"], registry=self.registry)
        peer = ["owner", "peer"]
        self.peer_last_success = Gauge(
            "identity_hub_sync_peer_last_success_timestamp_seconds",
            "Unix time of the last successful pull of a peer.", peer, registry=self.registry)
        self.peer_failures = Gauge(
            "identity_hub_sync_peer_failures", "Consecutive failed pulls of a peer.", peer,
            registry=self.registry)
        self.peer_hint_failures = Gauge(
            "identity_hub_sync_peer_hint_failures", "Consecutive undelivered hints to a peer.",
            peer, registry=self.registry)
        self.peer_errors = Gauge(
            "identity_hub_sync_peer_errors", "Failed hints and pulls of a peer since the "
            "hub started, by kind (hint, pull).", peer + ["kind"], registry=self.registry)
        self.peer_backoff = Gauge(
            "identity_hub_sync_peer_backoff_seconds", "Current retry delay of a peer's pulls.",
            peer, registry=self.registry)

    def rate_limited(self, limit: str, scope: str) -> None:
        self.rejected.labels(reason="rate_limited", limit=f"{limit}:{scope}").inc()

    def peer_status(self, owner: str, peer_did: str, *, last_success: float | None,
                    failures: int, hint_failures: int, backoff: float,
                    errors: dict[str, int] | None = None) -> None:
        """Set the gauges of one (owner, peer hub)."""
        labels = {"owner": did_label(owner, self.name_dids),
                  "peer": did_label(peer_did, self.name_dids)}
        if last_success is not None:
            self.peer_last_success.labels(**labels).set(last_success)
        self.peer_failures.labels(**labels).set(failures)
        self.peer_hint_failures.labels(**labels).set(hint_failures)
        self.peer_backoff.labels(**labels).set(backoff)
        for kind, n in (errors or {}).items():
            self.peer_errors.labels(**labels, kind=kind).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
