"""Which peer hub may pull an owner's commits: the owner says so, in a signed grant.

The rule (docs/replication.md): hub P may pull owner O's commits from this hub only while O's
grant index here holds a live PermissionGrant from O to P's DID for context
`schema.identity.foundation/0.1`, type `HubSync`, with the read right (`-R--`). The grant is an
ordinary Permissions commit signed by O, so it replicates like everything else: authorizing a
new hub once, on any of O's hubs, lets it pull from all of them; deleting the grant stops it
from the next request on. The owner itself may always pull its own commits.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from identity_hub.permissions import index
from identity_hub.storage.writes import now_us

SYNC_CONTEXT = "schema.identity.foundation/0.1"
SYNC_TYPE = "HubSync"
SYNC_ALLOW = "-R--"


async def may_pull(conn: AsyncConnection, oid: int, owner: str, requester: str) -> list[str]:
    """The ids of the grants that let `requester` pull `owner`'s commits now (["owner"] for the
    owner itself; [] when none does)."""
    if requester == owner:
        return ["owner"]
    grants = await index.grants_at(conn, oid, requester, SYNC_CONTEXT, SYNC_TYPE, "read",
                                   now_us(), current_only=True)
    return sorted({g.grant_id for g in grants if g.object_ids is None})
