"""Which commits count: a non-owner's commit counts only while the grants in force at its
committed_at cover it, judged from the commits the hub holds (docs/replication.md, "Which
commits count").

Every commit a hub holds is kept (so hubs that exchanged everything hold the same commits), but a
non-owner's commit that the grant index (a function of the owner's Permissions commits) does not
cover at its `committed_at` is marked `excluded` and left out of its object's fold. The flag is
local derived state: never sent to a peer, never taken from one, recomputed here whenever a
grant changes and by `identity-hub refold`. The verdict on a commit depends only on:

* the grant versions in force at its committed_at (`index.grants_at`, the same lookup a
  client's write is checked with), and
* for an update or delete under a grant limited by `created_by`, who created the object: the
  signer of the object's create, if that create itself counts.

So the excluded set is a pure function of the commit set: judge the create first, then the rest.

Every change of a commit's verdict after it was stored (and a replicated commit stored excluded)
adds an entry to the owner's audit log (`request_type` `CommitExclusion`, the commit's signer as
`requester`, `outcome` `excluded` or `included`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.jsonld import JsonLd
from identity_hub.permissions import audit, index
from identity_hub.permissions.scope import GRANTABLE_INTERFACES
from identity_hub.storage.tables import commits, owners

AUDIT_TYPE = "CommitExclusion"
REASON = "revoked"  # the grants in force at its committed_at do not cover it


def _covers(grant: Any, object_id: str, created_by: str | None) -> bool:
    if grant.object_ids is not None and object_id not in grant.object_ids:
        return False
    return grant.created_by is None or grant.created_by == created_by


async def covering_grants(conn: AsyncConnection, oid: int, *, signer: str, context: str,
                          type_: str, operation: str, object_id: str, committed_at_us: int,
                          created_by: str | None, jsonld: JsonLd | None = None) -> list[Any]:
    """The grant versions that let `signer` make this commit at its committed_at.

    `created_by`: the creator of the object as folded (None when its create is not held or does
    not count); it matters only to grants limited by `created_by`.
    """
    grants = await index.grants_at(conn, oid, signer, context, type_, operation,
                                   committed_at_us, jsonld=jsonld)
    if operation == "create":
        return [g for g in grants if g.created_by in (None, signer)]
    return [g for g in grants if _covers(g, object_id, created_by)]


async def _excluded(conn: AsyncConnection, oid: int, owner: str, row: Any,
                    created_by: str | None, jsonld: JsonLd | None) -> bool:
    if row.signer == owner:
        return False
    if row.interface not in GRANTABLE_INTERFACES:
        return True  # never stored (refused first); defensive
    return not await covering_grants(
        conn, oid, signer=row.signer, context=row.context, type_=row.type,
        operation=row.operation, object_id=row.object_id,
        committed_at_us=row.committed_at_us, created_by=created_by, jsonld=jsonld)


async def judge_object(conn: AsyncConnection, oid: int, owner: str, object_id: str,
                       rows: Sequence[Any], *, jsonld: JsonLd | None = None
                       ) -> dict[str, bool]:
    """rev → excluded, for every commit of one object (`rows`: all its commit rows)."""
    verdict: dict[str, bool] = {}
    created_by = None
    create = next((r for r in rows if r.operation == "create" and r.rev == object_id), None)
    if create is not None:
        verdict[create.rev] = await _excluded(conn, oid, owner, create, None, jsonld)
        if not verdict[create.rev]:
            created_by = create.signer
    for r in rows:
        if r.rev not in verdict:
            verdict[r.rev] = await _excluded(conn, oid, owner, r, created_by, jsonld)
    return verdict


async def set_flags(conn: AsyncConnection, oid: int, revs: Iterable[str], excluded: bool
                    ) -> None:
    revs = list(revs)
    if revs:
        await conn.execute(sa.update(commits).where(commits.c.owner_id == oid,
                                                    commits.c.rev.in_(revs))
                           .values(excluded=excluded))


async def record(conn: AsyncConnection, oid: int, row: Any, excluded: bool,
                 grant_ids: Sequence[str] | None = None) -> None:
    """The audit entry of a commit whose verdict is now `excluded` (in the caller's
    transaction)."""
    rec = audit.AuditRecord(AUDIT_TYPE, interface=row.interface, operation=row.operation,
                            context=row.context, type=row.type, object_ids=[row.object_id],
                            rev=row.rev, grant_ids=list(grant_ids) if grant_ids else None)
    await audit.append(conn, oid, row.signer, rec, allowed=not excluded,
                       outcome="excluded" if excluded else "included")


async def apply_verdict(conn: AsyncConnection, oid: int, rows: Sequence[Any],
                        verdict: dict[str, bool], grant_ids: Sequence[str] | None = None
                        ) -> list[Any]:
    """Store the flags that changed (and their audit entries); the rows that flipped."""
    flipped = [r for r in rows if bool(r.excluded) != verdict.get(r.rev, False)]
    for value in (True, False):
        await set_flags(conn, oid, [r.rev for r in flipped if verdict[r.rev] is value], value)
    for r in flipped:
        await record(conn, oid, r, verdict[r.rev], grant_ids)
    return flipped


async def objects_signed_since(conn: AsyncConnection, oid: int, signers: Iterable[str],
                               since_us: int) -> list[str]:
    """The objects holding a commit by one of `signers` dated `since_us` or later: those whose
    verdicts a grant change dated `since_us` may change (a grant's state at t depends only on
    its commits dated t or earlier). Not filtered by context/type: `grants_at` decides which
    grants match a commit."""
    signers = sorted(set(signers))
    if not signers:
        return []
    q = (sa.select(commits.c.object_id)
         .where(commits.c.owner_id == oid, commits.c.signer.in_(signers),
                commits.c.committed_at_us >= since_us)
         .distinct())
    return sorted(r[0] for r in await conn.execute(q))


def _entry(row: Any) -> dict[str, Any]:
    return {"object_id": row.object_id, "rev": row.rev, "committed_at": row.committed_at,
            "operation": row.operation, "reason": REASON}


async def excluded_of(conn: AsyncConnection, oid: int, *, signer: str | None = None,
                      object_ids: Sequence[str] | None = None,
                      revisions: Sequence[str] | None = None, limit: int = 100
                      ) -> list[dict[str, Any]]:
    """What a response tells of excluded commits: `signer`'s own (None: anyone's) on
    `object_ids` or with `revisions`, oldest first, at most `limit`."""
    if object_ids is None and revisions is None:
        return []
    q = sa.select(commits.c.object_id, commits.c.rev, commits.c.committed_at,
                  commits.c.operation).where(commits.c.owner_id == oid,
                                             commits.c.excluded.is_(True))
    if object_ids is not None:
        q = q.where(commits.c.object_id.in_(list(object_ids)))
    if revisions is not None:
        q = q.where(commits.c.rev.in_(list(revisions)))
    if signer is not None:
        q = q.where(commits.c.signer == signer)
    return [_entry(r) for r in await conn.execute(q.order_by(commits.c.seq).limit(limit))]


def entries_of(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """The `excluded` entries of the excluded commit rows among `rows`."""
    return [_entry(r) for r in rows if getattr(r, "excluded", False)]


async def excluded_count(conn: AsyncConnection, owner: str | None = None) -> dict[str, int]:
    """Owner DID → how many of its commits are excluded (owners with none are left out)."""
    q = (sa.select(owners.c.did, sa.func.count())
         .select_from(commits.join(owners, owners.c.id == commits.c.owner_id))
         .where(commits.c.excluded.is_(True)).group_by(owners.c.did))
    if owner is not None:
        q = q.where(owners.c.did == owner)
    return {r[0]: int(r[1]) for r in await conn.execute(q)}
