"""The sync request types, for the core API's dispatch table (`core.ROUTES`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from identity_hub.sync.protocol import (
    HINT_REQUEST,
    PULL_REQUEST,
    handle_sync_hint,
    handle_sync_pull,
)

if TYPE_CHECKING:
    from identity_hub.request_context import RequestContext

SYNC_ROUTES: dict[str, Callable[[RequestContext], Awaitable[dict[str, Any]]]] = {
    PULL_REQUEST: handle_sync_pull,
    HINT_REQUEST: handle_sync_hint,
}
