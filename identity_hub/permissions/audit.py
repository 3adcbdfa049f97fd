"""The owner's audit log: one entry for every request by a DID other than the owner.

An allowed access is recorded by `append` inside the transaction that performs it (the commit's
write transaction, or the transaction a grantee's read runs in), so the entry exists exactly when
the access happened. A refused request is recorded by `record` in a transaction of its own, after
the refused work was rolled back.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.protocol.commit import format_time
from identity_hub.storage import store
from identity_hub.storage.engine import Database
from identity_hub.storage.tables import audit_log

logger = logging.getLogger(__name__)

MAX_LOGGED_IDS = 200


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if isinstance(value, str) else None


@dataclasses.dataclass
class AuditRecord:
    """What is known of one request, filled in as the handler learns it."""

    request_type: str
    interface: str | None = None
    operation: str | None = None
    context: str | None = None
    type: str | None = None
    object_ids: list[str] | None = None
    rev: str | None = None
    grant_ids: list[str] | None = None
    recorded: bool = False  # an entry for this request is committed

    def values(self, oid: int, requester: str, allowed: bool, outcome: str) -> dict[str, Any]:
        ids = None
        if self.object_ids is not None:
            ids = [i[:128] for i in self.object_ids[:MAX_LOGGED_IDS] if isinstance(i, str)]
        return {
            "owner_id": oid, "at_us": store.now_us(), "requester": requester[:2048],
            "request_type": self.request_type[:32], "interface": _clip(self.interface, 32),
            "operation": _clip(self.operation, 16), "context": _clip(self.context, 512),
            "type": _clip(self.type, 512), "object_ids": ids, "rev": _clip(self.rev, 64),
            "allowed": allowed, "outcome": outcome[:32],
            "grant_ids": list(self.grant_ids) if self.grant_ids else None,
        }


async def append(conn: AsyncConnection, oid: int, requester: str, record: AuditRecord, *,
                 allowed: bool = True, outcome: str = "ok") -> None:
    """Add the entry inside the caller's transaction (the one performing the access)."""
    await store.append_audit(conn, record.values(oid, requester, allowed, outcome))


async def record(db: Database, owner: str, requester: str, rec: AuditRecord, *,
                 allowed: bool, outcome: str) -> None:
    """Add the entry in a transaction of its own (refusals, and requests that wrote nothing)."""
    async with db.transaction() as conn:
        oid = await store.ensure_owner(db, conn, owner)
        await append(conn, oid, requester, rec, allowed=allowed, outcome=outcome)
    rec.recorded = True


async def query(conn: AsyncConnection, oid: int, *, requester: str | None = None,
                since_us: int | None = None, after: int = 0, limit: int = 100) -> list[Any]:
    """The owner's entries in the order they were made, after entry id `after`."""
    q = sa.select(audit_log).where(audit_log.c.owner_id == oid, audit_log.c.id > after)
    if requester is not None:
        q = q.where(audit_log.c.requester == requester)
    if since_us is not None:
        q = q.where(audit_log.c.at_us >= since_us)
    return list(await conn.execute(q.order_by(audit_log.c.id).limit(limit)))


def entry_wire(row: Any) -> dict[str, Any]:
    """An entry as AuditQueryResponse and `identity-hub audit --json` show it."""
    entry: dict[str, Any] = {
        "id": row.id, "at": format_time(row.at_us), "requester": row.requester,
        "request_type": row.request_type, "allowed": row.allowed, "outcome": row.outcome,
    }
    for name in ("interface", "operation", "context", "type", "object_ids", "rev",
                 "grant_ids"):
        value = getattr(row, name)
        if value is not None:
            entry[name] = value
    return entry
