"""What every request handler gets: the authenticated request and the hub's services.

The interfaces (interfaces/) and the hub-to-hub routes (sync/routes.py) both take a
`RequestContext`; `core.Hub` builds it. It lives here, below both, and names the services by a
protocol (`HubServices`) rather than by `core.Hub`, so that no handler imports the router that
calls it (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from identity_hub.commits.service import CommitService
from identity_hub.did import DidResolver
from identity_hub.jsonld import JsonLd
from identity_hub.permissions.audit import AuditRecord
from identity_hub.permissions.authorization import Authorizer
from identity_hub.settings import Settings
from identity_hub.storage.engine import Database


class HubServices(Protocol):
    """The services a handler may use (core.Hub has them)."""

    settings: Settings
    db: Database
    resolver: DidResolver
    commits: CommitService
    authorizer: Authorizer
    jsonld: JsonLd


@dataclasses.dataclass(frozen=True)
class RequestContext:
    """An authenticated request: `requester` is the DID whose key signed it.

    `audit` is None for the owner's own requests; for anyone else's it collects what the owner's
    audit log records of this request (docs/permissions.md).
    """

    hub: HubServices
    requester: str
    sub: str
    request: dict[str, Any]
    audit: AuditRecord | None = None

    @property
    def is_owner(self) -> bool:
        return self.requester == self.sub
