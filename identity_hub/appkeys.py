"""Every object the aiohttp application shares, as a typed key."""

from __future__ import annotations

from aiohttp import web

from identity_hub.metrics import Metrics
from identity_hub.runtime import Runtime
from identity_hub.settings import Settings
from identity_hub.sync.service import SyncService
from identity_hub.transport.pipeline import Pipeline

SETTINGS = web.AppKey("settings", Settings)
RUNTIME = web.AppKey("runtime", Runtime)
PIPELINE = web.AppKey("pipeline", Pipeline)
SYNC = web.AppKey("sync", SyncService)
METRICS = web.AppKey("metrics", Metrics)
