"""Who may do what (docs/permissions.md).

* The owner (requester == sub) may do everything.
* Any authenticated DID may read the Profile interface (objects and commits).
* Everything else needs a PermissionGrant from the owner to the requester for the object's
  type, compared by type IRI (every spelling of a context names one type). A grantee's commit
  is judged by the grants in force at its `committed_at` (a deterministic function of the
  commits the hub holds) and, when a client sends it, also by the grants as they are at the
  hub's now; a read is judged at the hub's now by the grants as they are (a revoked grant
  covers no read, whatever its dates).
* Grantees never write the Permissions interface; they may read the grants that name them.

Every check reads the grant index in the request's own transaction: nothing is cached, so a
revocation holds from the next request on.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.errors import PermissionsRequired
from identity_hub.permissions import index, scope
from identity_hub.protocol.commit import Commit
from identity_hub.storage import store

logger = logging.getLogger(__name__)


class RequestContext(Protocol):
    """What a decision needs of a request: who asks, and whether that is the owner. The
    handlers' RequestContext (request_context.py) has both; a protocol here keeps this layer
    below the interfaces that call it."""

    @property
    def requester(self) -> str: ...

    @property
    def is_owner(self) -> bool: ...


@dataclasses.dataclass(frozen=True)
class ReadScope:
    """What a query may return: `where` is an SQL condition (None: everything of the owner);
    `grant_ids` the grants it rests on."""

    where: Any
    grant_ids: list[str]


OWNER_SCOPE = ReadScope(None, [])


def _covers(grant: Any, row: Any) -> bool:
    if grant.object_ids is not None and row.object_id not in grant.object_ids:
        return False
    return grant.created_by is None or grant.created_by == row.created_by


def _ids(grants: list[Any]) -> list[str]:
    return sorted({g.grant_id for g in grants})


class Authorizer:
    """The grant policy. Methods taking a connection run inside the request's transaction."""

    def check_write_shape(self, ctx: RequestContext, commit: Commit) -> None:
        """Refusals that need no database: a non-owner never writes Permissions (or Actions)."""
        if not ctx.is_owner and commit.interface not in scope.GRANTABLE_INTERFACES:
            raise PermissionsRequired("Only the owner writes the "
                                      f"{commit.interface[:40]} interface", target="commit")

    async def authorize_write(self, ctx: RequestContext, conn: AsyncConnection, oid: int,
                              commit: Commit, row: Any, *, arriving: bool = True) -> list[str]:
        """The grants that let a non-owner store `commit` a client sent.

        Judged at its committed_at (what every replica decides alike) and, when `arriving`, at
        the hub's now too (current grants only): a commit dated inside the skew window before
        a revocation that has already reached the hub is refused (docs/permissions.md). A
        commit the hub already holds (`arriving=False`) was judged when it arrived.

        `row` is the object as stored before this commit. When it does not match the commit's
        interface, context and type, the object restrictions are left to the caller's not_found
        rule (the grantee learns nothing about objects of types it holds no grant for).

        Raises:
            PermissionsRequired
        """
        if ctx.is_owner:
            return []
        self.check_write_shape(ctx, commit)
        if not arriving:
            then = self._usable(ctx, commit, row, await index.grants_at(
                conn, oid, ctx.requester, commit.context, commit.type, commit.operation,
                commit.committed_at_us, jsonld=ctx.hub.jsonld))
            now: list[Any] | None = None
        else:
            found = await index.grants_then_and_now(
                conn, oid, ctx.requester, commit.context, commit.type, commit.operation,
                commit.committed_at_us, store.now_us(), jsonld=ctx.hub.jsonld)
            then, now = (self._usable(ctx, commit, row, f) for f in found)
        if not then:
            raise PermissionsRequired(
                f"No grant lets {ctx.requester[:80]} {commit.operation} this object",
                target="commit")
        if now is None:
            return _ids(then)
        if not now:
            raise PermissionsRequired(
                f"No grant lets {ctx.requester[:80]} {commit.operation} this object now: the "
                "grant in force at the commit's committed_at has since been revoked, "
                "weakened or has expired", target="commit")
        return _ids(then + now)

    @staticmethod
    def _usable(ctx: RequestContext, commit: Commit, row: Any, grants: list[Any]
                ) -> list[Any]:
        """The grants that cover this object (a create: those not limited to another creator)."""
        if commit.operation == "create":
            return [g for g in grants if g.created_by in (None, ctx.requester)]
        if (row is not None and row.has_create and row.interface == commit.interface
                and row.context == commit.context and row.type == commit.type):
            return [g for g in grants if _covers(g, row)]
        return grants

    async def object_scope(self, ctx: RequestContext, conn: AsyncConnection, oid: int,
                           interface: str, context: str | None, type_: str | None
                           ) -> ReadScope:
        """What an object query may return.

        Raises:
            PermissionsRequired: a non-owner without a read grant for the context/type (or for
            anything, when the query names none) on a non-public interface.
        """
        if ctx.is_owner or interface in scope.PUBLIC_INTERFACES:
            return OWNER_SCOPE
        if interface == "Permissions":
            return ReadScope(scope.own_grants_clause(oid, ctx.requester), [])
        grants = await index.grants_at(conn, oid, ctx.requester, context, type_, "read",
                                       store.now_us(), current_only=True, jsonld=ctx.hub.jsonld)
        if not grants:
            raise PermissionsRequired("No grant lets you read these objects", target="query")
        return ReadScope(scope.objects_clause(grants), _ids(grants))

    async def commit_scope(self, ctx: RequestContext, conn: AsyncConnection, oid: int
                           ) -> ReadScope:
        """What a commit query may return (never an error: the page is filtered)."""
        if ctx.is_owner:
            return OWNER_SCOPE
        grants = await index.grants_at(conn, oid, ctx.requester, None, None, "read",
                                       store.now_us(), current_only=True)
        return ReadScope(scope.commits_clause(oid, ctx.requester, grants), _ids(grants))
