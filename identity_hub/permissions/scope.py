"""What a grantee may see, as SQL conditions on `objects` and `commits`.

Queries by a grantee are filtered in the database: the condition is part of the query, so a page
never holds (and the hub never loads) an object or commit the grantee may not read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from identity_hub.permissions.index import grant_ids_naming
from identity_hub.storage.tables import commits, objects

# The interfaces whose objects grants cover (Permissions objects are the owner's alone).
GRANTABLE_INTERFACES = ("Collections", "Profile")
# Readable by any authenticated DID, with or without a grant.
PUBLIC_INTERFACES = ("Profile",)


def _restrictions(grants: Sequence[Any]) -> dict[str, list[tuple[Any, Any]]]:
    """Per type IRI: the distinct (object_ids, created_by) limits; (None, None) is none.
    A grant whose type does not expand (type_iri NULL) covers nothing."""
    out: dict[str, list[tuple[Any, Any]]] = {}
    for g in grants:
        if g.type_iri is None:
            continue
        limits = out.setdefault(g.type_iri, [])
        if (None, None) in limits:
            continue
        if g.object_ids is None and g.created_by is None:
            out[g.type_iri] = [(None, None)]
            continue
        limit = (tuple(sorted(g.object_ids)) if g.object_ids is not None else None,
                 g.created_by)
        if limit not in limits:
            limits.append(limit)
    return out


def objects_clause(grants: Sequence[Any]) -> sa.ColumnElement[bool]:
    """Objects covered by any of `grants` (grant_versions rows): by the objects' type IRI, so
    every spelling of a granted type is covered (docs/permissions.md)."""
    terms = []
    for iri, limits in _restrictions(grants).items():
        for object_ids, created_by in limits:
            parts = [objects.c.type_iri == iri]
            if object_ids is not None:
                parts.append(objects.c.object_id.in_(list(object_ids)))
            if created_by is not None:
                parts.append(objects.c.created_by == created_by)
            terms.append(sa.and_(*parts))
    return sa.or_(*terms) if terms else sa.false()


def commits_clause(oid: int, requester: str, grants: Sequence[Any]) -> sa.ColumnElement[bool]:
    """Commits a non-owner may read: public interfaces, commits of objects `grants` cover, and
    the commits of the grants that name the requester.

    A commit is covered when its object is (by type IRI, `object_ids`, `created_by`) and the
    commit names its object's own context and type: a commit naming another type under a
    covered object's id reveals nothing."""
    terms: list[sa.ColumnElement[bool]] = [commits.c.interface.in_(PUBLIC_INTERFACES)]
    for iri, limits in _restrictions(grants).items():
        for object_ids, created_by in limits:
            covered = [objects.c.owner_id == oid, objects.c.object_id == commits.c.object_id,
                       objects.c.type_iri == iri, objects.c.context == commits.c.context,
                       objects.c.type == commits.c.type]
            if created_by is not None:
                covered.append(objects.c.created_by == created_by)
            parts = [commits.c.interface.in_(GRANTABLE_INTERFACES),
                     sa.exists(sa.select(objects.c.object_id).where(*covered))]
            if object_ids is not None:
                parts.append(commits.c.object_id.in_(list(object_ids)))
            terms.append(sa.and_(*parts))
    terms.append(sa.and_(commits.c.interface == "Permissions",
                         commits.c.object_id.in_(grant_ids_naming(oid, requester))))
    return sa.or_(*terms)


def own_grants_clause(oid: int, requester: str) -> sa.ColumnElement[bool]:
    """Permissions objects a non-owner may list: the grants that name it."""
    return objects.c.object_id.in_(grant_ids_naming(oid, requester))
