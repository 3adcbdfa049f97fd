"""Who may do what. The owner (requester == sub) may do everything; any authenticated requester
may read the Profile interface; everything else needs a PermissionGrant (see docs/permissions.md
once grants are enforced) and is refused with `permissions_required` until then.
"""

from __future__ import annotations

from identity_hub.errors import PermissionsRequired
from identity_hub.interfaces.base import RequestContext
from identity_hub.protocol.commit import Commit


class Authorizer:
    """The owner-only policy with a public Profile."""

    def check_write(self, ctx: RequestContext, commit: Commit) -> None:
        if not ctx.is_owner:
            raise PermissionsRequired(target="commit")

    def check_object_query(self, ctx: RequestContext, interface: str, context: str | None,
                           type_: str | None) -> None:
        if ctx.is_owner or interface == "Profile":
            return
        raise PermissionsRequired(target="query")

    def commit_query_interfaces(self, ctx: RequestContext) -> list[str] | None:
        """The interfaces whose commits the requester may read; None means all."""
        return None if ctx.is_owner else ["Profile"]
