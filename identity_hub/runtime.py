"""Build the hub's services from Settings: used by the app factory, the CLI and the tests."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator

from identity_hub.commits.fold.crdt import AutomergeEngine, CrdtLimits
from identity_hub.core import Hub
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.identity import HubIdentity
from identity_hub.jsonld import ContextLibrary, JsonLd
from identity_hub.settings import Settings
from identity_hub.storage.engine import Database
from identity_hub.storage.migrate import ensure_migrated

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Runtime:
    settings: Settings
    db: Database
    resolver: DidResolver
    identity: HubIdentity
    hub: Hub


def ensure_initialized(settings: Settings) -> HubIdentity:
    """Load the hub's identity, creating the data directory and keys on first start."""
    settings.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not HubIdentity.exists(settings.data_path):
        logger.info("first start: creating the hub's keys and DID in %s", settings.data_dir)
        return HubIdentity.create(settings.data_path, compat_2019=settings.compat_2019)
    return HubIdentity.load(settings.data_path)


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, migrate: bool = True,
                       identity: HubIdentity | None = None) -> AsyncIterator[Runtime]:
    """Open the database (migrating a new one), the resolver and the hub; close them after."""
    identity = identity or ensure_initialized(settings)
    db = Database(settings.db_url)
    resolver = DidResolver(ResolverConfig.from_settings(settings))
    resolver.add_static(identity.static_document())
    # Workers start on first use: a hub that never sees an automerge commit runs none.
    crdt = AutomergeEngine(CrdtLimits(timeout=settings.automerge_timeout_seconds))
    if settings.jsonld_unknown_contexts not in ("refuse", "opaque"):
        raise ValueError("jsonld_unknown_contexts must be refuse or opaque")
    # Raises ContextConfigError (a ValueError) for a broken <data dir>/contexts manifest.
    jsonld = JsonLd(ContextLibrary.load(settings.data_path / "contexts"),
                    unknown_contexts=settings.jsonld_unknown_contexts)  # type: ignore[arg-type]
    try:
        if migrate:
            await ensure_migrated(db.engine)
        hub = Hub(settings, db, resolver, identity.did)
        hub.commits.crdt = crdt
        hub.jsonld = jsonld
        hub.commits.jsonld = jsonld  # the type IRIs stored with objects, as queries expand them
        yield Runtime(settings, db, resolver, identity, hub)
    finally:
        jsonld.close()
        await crdt.close()
        await resolver.aclose()
        await db.dispose()
