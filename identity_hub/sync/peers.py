"""Peers, cursors and parked commits: the SQL of the sync package (both dialects).

Peers are local administration (`identity-hub peers add|list|remove`): a row says "pull this
owner's commits from that hub". Whether the peer answers is its business: it serves only hubs
its owner authorized (sync/trust.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import sqlalchemy as sa

from identity_hub.storage.engine import Database
from identity_hub.storage.writes import now_us
from identity_hub.sync.tables import sync_parked, sync_peers

logger = logging.getLogger(__name__)

MAX_ERROR = 512


@dataclasses.dataclass(frozen=True)
class Peer:
    """One (owner, peer hub) pair and this hub's position in the peer's log of the owner."""

    id: int
    owner: str
    peer_did: str
    url: str
    cursor: int = 0
    peer_last_seq: int = 0
    failures: int = 0
    last_error: str | None = None
    last_attempt_us: int | None = None
    last_success_us: int | None = None
    refused: int = 0

    @property
    def lag(self) -> int:
        """Commits the peer had (when last asked) that this hub has not pulled yet."""
        return max(0, self.peer_last_seq - self.cursor)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "owner": self.owner, "peer_did": self.peer_did, "url": self.url,
                "cursor": self.cursor, "peer_last_seq": self.peer_last_seq, "lag": self.lag,
                "failures": self.failures, "last_error": self.last_error,
                "last_attempt_us": self.last_attempt_us,
                "last_success_us": self.last_success_us, "refused": self.refused}


def _peer(row: Any) -> Peer:
    return Peer(id=row.id, owner=row.owner, peer_did=row.peer_did, url=row.url,
                cursor=row.cursor, peer_last_seq=row.peer_last_seq, failures=row.failures,
                last_error=row.last_error, last_attempt_us=row.last_attempt_us,
                last_success_us=row.last_success_us, refused=row.refused)


async def add_peer(db: Database, owner: str, peer_did: str, url: str) -> tuple[Peer, bool]:
    """Add (or re-point to `url`) the peer `peer_did` of `owner`; (peer, created)."""
    async with db.transaction() as conn:
        row = (await conn.execute(sa.select(sync_peers).where(
            sync_peers.c.owner == owner, sync_peers.c.peer_did == peer_did))).first()
        if row is not None:
            if row.url != url:
                await conn.execute(sa.update(sync_peers).where(sync_peers.c.id == row.id)
                                   .values(url=url))
            created = False
        else:
            await conn.execute(sa.insert(sync_peers).values(
                owner=owner, peer_did=peer_did, url=url, added_at_us=now_us()))
            created = True
        row = (await conn.execute(sa.select(sync_peers).where(
            sync_peers.c.owner == owner, sync_peers.c.peer_did == peer_did))).one()
        return _peer(row), created


async def remove_peer(db: Database, owner: str, peer_did: str) -> bool:
    async with db.transaction() as conn:
        result = await conn.execute(sa.delete(sync_peers).where(
            sync_peers.c.owner == owner, sync_peers.c.peer_did == peer_did))
        return bool(result.rowcount)


async def list_peers(db: Database, owner: str | None = None) -> list[Peer]:
    q = sa.select(sync_peers).order_by(sync_peers.c.id)
    if owner is not None:
        q = q.where(sync_peers.c.owner == owner)
    async with db.read() as conn:
        return [_peer(r) for r in await conn.execute(q)]


async def get_peer(db: Database, peer_id: int) -> Peer | None:
    async with db.read() as conn:
        row = (await conn.execute(sa.select(sync_peers).where(sync_peers.c.id == peer_id))
               ).first()
        return None if row is None else _peer(row)


async def find_peer(db: Database, owner: str, peer_did: str) -> Peer | None:
    async with db.read() as conn:
        row = (await conn.execute(sa.select(sync_peers).where(
            sync_peers.c.owner == owner, sync_peers.c.peer_did == peer_did))).first()
        return None if row is None else _peer(row)


async def save_page(db: Database, peer_id: int, cursor: int, peer_last_seq: int,
                    refused: int) -> None:
    """After a page is applied: move the cursor (never backwards), note success."""
    now = now_us()
    async with db.transaction() as conn:
        await conn.execute(sa.update(sync_peers).where(sync_peers.c.id == peer_id).values(
            cursor=sa.case((sync_peers.c.cursor > cursor, sync_peers.c.cursor), else_=cursor),
            peer_last_seq=peer_last_seq, last_attempt_us=now, last_success_us=now,
            failures=0, last_error=None, refused=sync_peers.c.refused + refused))


async def save_failure(db: Database, peer_id: int, error: str) -> int:
    """Note a failed pull; returns the number of consecutive failures."""
    async with db.transaction() as conn:
        await conn.execute(sa.update(sync_peers).where(sync_peers.c.id == peer_id).values(
            failures=sync_peers.c.failures + 1, last_error=error[:MAX_ERROR],
            last_attempt_us=now_us()))
        row = (await conn.execute(sa.select(sync_peers.c.failures)
                                  .where(sync_peers.c.id == peer_id))).first()
        return 0 if row is None else int(row[0])


# --- parked commits ------------------------------------------------------------------------------

async def park(db: Database, owner: str, rev: str, wire: dict[str, Any], reason: str) -> None:
    """Keep a commit that cannot be judged yet (its dependencies, its signer DID), to retry when
    more commits arrive."""
    async with db.transaction() as conn:
        found = (await conn.execute(sa.select(sync_parked.c.id).where(
            sync_parked.c.owner == owner, sync_parked.c.rev == rev))).first()
        if found is not None:
            await conn.execute(sa.update(sync_parked).where(sync_parked.c.id == found[0])
                               .values(attempts=sync_parked.c.attempts + 1,
                                       reason=reason[:256]))
            return
        await conn.execute(sa.insert(sync_parked).values(
            owner=owner, rev=rev, commit=json.dumps(wire, separators=(",", ":")),
            reason=reason[:256], parked_at_us=now_us()))


async def parked(db: Database, owner: str, limit: int = 1000) -> list[tuple[str, dict[str, Any]]]:
    """(rev, wire commit) of the owner's parked commits, oldest first."""
    async with db.read() as conn:
        rows = await conn.execute(sa.select(sync_parked.c.rev, sync_parked.c.commit)
                                  .where(sync_parked.c.owner == owner)
                                  .order_by(sync_parked.c.id).limit(limit))
        return [(r.rev, json.loads(r.commit)) for r in rows]


async def unpark(db: Database, owner: str, rev: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(sa.delete(sync_parked).where(sync_parked.c.owner == owner,
                                                        sync_parked.c.rev == rev))


async def parked_count(db: Database, owner: str | None = None) -> int:
    q = sa.select(sa.func.count()).select_from(sync_parked)
    if owner is not None:
        q = q.where(sync_parked.c.owner == owner)
    async with db.read() as conn:
        return int((await conn.execute(q)).scalar_one())


async def owners_of_peer(db: Database, peer_did: str, limit: int = 1000) -> list[str]:
    """The owners this hub syncs with the peer hub `peer_did` (at most `limit`)."""
    q = (sa.select(sync_peers.c.owner).where(sync_peers.c.peer_did == peer_did)
         .order_by(sync_peers.c.id).limit(limit))
    async with db.read() as conn:
        return [r[0] for r in await conn.execute(q)]
