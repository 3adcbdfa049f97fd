"""Build the sync service of a running hub from its parts (the app's cleanup_ctx uses it)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from identity_hub.sync import protocol
from identity_hub.sync.peer_queue import PeerQueue
from identity_hub.sync.receiver import Receiver
from identity_hub.sync.service import SyncConfig, SyncService

if TYPE_CHECKING:
    from identity_hub.metrics import Metrics
    from identity_hub.commits.service import CommitService
    from identity_hub.did import DidResolver
    from identity_hub.identity import HubIdentity
    from identity_hub.settings import Settings

logger = logging.getLogger(__name__)


def sync_config(settings: Settings) -> SyncConfig:
    """The sync service's timing from the settings table."""
    return SyncConfig(interval=settings.sync_interval_seconds,
                      page_size=settings.sync_page_commits,
                      max_page_bytes=settings.sync_max_page_bytes,
                      timeout=settings.sync_request_timeout_seconds,
                      base_backoff=settings.sync_backoff_base_seconds,
                      max_backoff=settings.sync_backoff_max_seconds)


def receiver_for(commits: CommitService, resolver: DidResolver, settings: Settings) -> Receiver:
    return Receiver(commits, resolver, skew_seconds=settings.clock_skew_seconds,
                    max_json_depth=settings.max_json_depth,
                    max_commit_bytes=settings.max_commit_bytes)


def service_for(commits: CommitService, resolver: DidResolver, settings: Settings,
                identity: HubIdentity, config: SyncConfig | None = None) -> SyncService:
    """A SyncService signing with the hub's current signing key, decrypting answers with its
    key-agreement keys."""
    if config is not None:  # raises ValueError for sync settings out of range
        protocol.check_limits(config.page_size, config.max_page_bytes, settings.max_commit_bytes)
    keys = [identity.signing_key("Ed25519"), *identity.encryption_keys()]
    return SyncService(receiver_for(commits, resolver, settings), identity.did, keys, resolver,
                       config or sync_config(settings))


@contextlib.asynccontextmanager
async def running_sync(commits: CommitService, resolver: DidResolver, settings: Settings,
                       identity: HubIdentity, config: SyncConfig | None = None
                       ) -> AsyncIterator[SyncService]:
    """The sync service, started, and closed on exit."""
    service = service_for(commits, resolver, settings, identity, config)
    await service.start()
    try:
        yield service
    finally:
        await service.close()


def attach_write_hints(commits: CommitService, service: SyncService) -> None:
    """Have every commit stored by `commits` (local or replicated) hint the owner's peers."""
    commits.on_stored = service.notify_write


def attach_metrics(service: SyncService, metrics: Metrics) -> None:
    """Keep the per-peer sync gauges of `metrics` current."""

    def report(queue: PeerQueue) -> None:
        metrics.peer_status(queue.peer.owner, queue.peer.peer_did,
                            last_success=queue.last_success,
                            failures=queue.pull_backoff.failures,
                            hint_failures=queue.hint_backoff.failures,
                            backoff=queue.pull_backoff.remaining(), errors=queue.errors)

    service.on_peer_status = report
