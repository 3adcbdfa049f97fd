"""Rebuild materialized objects from the commit log and report any that differed.

The grants (Permissions objects, the owner's alone: never excluded) are refolded first, so the
grant index is complete before any other object's commits are judged again
(permissions/exclusion.py): a refold reproduces the excluded set from the commits alone.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from identity_hub.commits.fold.crdt import AutomergeEngine
from identity_hub.commits.service import CommitService
from identity_hub.jsonld import JsonLd
from identity_hub.storage import store
from identity_hub.storage.engine import Database
from identity_hub.storage.tables import commits

logger = logging.getLogger(__name__)

COMPARED = (
    "has_create", "interface", "context", "type", "type_iri", "commit_strategy", "created_by",
    "created_at", "created_at_us", "updated_at_us", "create_seq", "deleted", "win_rev",
    "win_operation", "win_committed_at_us", "meta", "data", "commit_count",
)


@dataclasses.dataclass
class RefoldReport:
    owners: int = 0
    objects: int = 0
    differed: list[tuple[str, str, list[str]]] = dataclasses.field(default_factory=list)


def _snapshot(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in COMPARED} if row is not None else {}


async def refold(db: Database, owner: str | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 jsonld: JsonLd | None = None) -> RefoldReport:
    """Fold every object of `owner` (or of every owner) from scratch and save the result
    (`jsonld`: the hub's, which expands the objects' type IRIs; the shipped contexts if None).

    Each object is refolded in its own transaction under the owner's lock, so a live hub keeps
    serving writes meanwhile.
    """
    crdt = AutomergeEngine()  # its worker starts only if an automerge object is met
    try:
        return await _refold(CommitService(db, crdt, jsonld), db, owner, progress)
    finally:
        await crdt.close()


async def _refold(service: CommitService, db: Database, owner: str | None,
                  progress: Callable[[int, int], None] | None) -> RefoldReport:
    report = RefoldReport()
    async with db.read() as conn:
        owner_list = await store.all_owners(conn)
    if owner is not None:
        owner_list = [(oid, did) for oid, did in owner_list if did == owner]
    for oid, did in owner_list:
        report.owners += 1
        async with db.read() as conn:
            ids = await store.all_object_ids(conn, oid)
            grants = {r[0] for r in await conn.execute(
                sa.select(commits.c.object_id).where(commits.c.owner_id == oid,
                                                     commits.c.interface == "Permissions")
                .distinct())}
        ids = sorted(ids, key=lambda i: (i not in grants, i))
        for n, object_id in enumerate(ids, 1):
            async with db.transaction() as conn:
                await store.lock_owner_only(conn, did)
                before = _snapshot(await store.load_object(conn, oid, object_id))
                flipped = 0 if object_id in grants else await service.rejudge(
                    conn, oid, did, [object_id])
                await service.refold_object(conn, oid, object_id)
                after = _snapshot(await store.load_object(conn, oid, object_id))
            report.objects += 1
            changed = [k for k in COMPARED if before.get(k) != after.get(k)]
            if flipped:
                changed.append("excluded")
            if changed:
                logger.warning("object %s of %s differed: %s", object_id, did, changed)
                report.differed.append((did, object_id, changed))
            if progress is not None:
                progress(n, len(ids))
    return report
