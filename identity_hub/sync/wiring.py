"""Build the sync service of a running hub from its parts (the app's cleanup_ctx uses it)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from identity_hub.sync import protocol
from identity_hub.sync.receiver import Receiver
from identity_hub.sync.service import SyncConfig, SyncService

if TYPE_CHECKING:
    from identity_hub.commits.service import CommitService
    from identity_hub.did import DidResolver
    from identity_hub.identity import HubIdentity
    from identity_hub.settings import Settings

logger = logging.getLogger(__name__)


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
                       config)


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
