"""The PermissionGrant object: its payload, its validation and what "weaker" means.

A grant is the payload of a Permissions commit (protocol doc §e.2), extended with a validity
window and an unrevocable period (docs/permissions.md):

    {"@context": "schema.identity.foundation/0.1", "@type": "PermissionGrant",
     "owner": DID, "grantee": DID, "context": "https://schema.org", "type": "MusicPlaylist",
     "allow": "-R--", "object_ids": [...], "created_by": DID,
     "not_before": ISO-8601, "expires": ISO-8601, "unrevocable_until": ISO-8601}
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from identity_hub.errors import BadRequest
from identity_hub.protocol.commit import parse_time

GRANT_CONTEXT = "schema.identity.foundation/0.1"
GRANT_TYPE = "PermissionGrant"
ALLOW_RE = re.compile(r"^[C-][R-][U-][D-]$")
LETTER_OF = {"create": "C", "read": "R", "update": "U", "delete": "D"}
MAX_OBJECT_IDS = 1000
KNOWN_MEMBERS = frozenset({
    "@context", "@type", "owner", "grantee", "context", "type", "allow", "object_ids",
    "created_by", "not_before", "expires", "unrevocable_until",
})


@dataclasses.dataclass(frozen=True, slots=True)
class GrantTerms:
    """What one version of a grant allows."""

    owner: str
    grantee: str
    context: str
    type: str
    allow: str
    object_ids: tuple[str, ...] | None = None
    created_by: str | None = None
    not_before_us: int | None = None
    expires_us: int | None = None
    unrevocable_until_us: int | None = None

    def allows(self, operation: str) -> bool:
        """Whether `allow` has the letter of operation (create, read, update, delete)."""
        return LETTER_OF[operation] in self.allow

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.owner, self.grantee, self.context, self.type)


def _target(name: str) -> str:
    return f"commit.payload.{name}"


def _str(payload: dict[str, Any], name: str, *, required: bool, max_len: int) -> str | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise BadRequest(f"A PermissionGrant needs a string {name}", target=_target(name))
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"A PermissionGrant's {name} must be a non-empty string",
                         target=_target(name))
    if len(value) > max_len:
        raise BadRequest(f"A PermissionGrant's {name} is too long", target=_target(name))
    return value


def _did(payload: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = _str(payload, name, required=required, max_len=2048)
    if value is not None and not value.startswith("did:"):
        raise BadRequest(f"A PermissionGrant's {name} must be a DID", target=_target(name))
    return value


def _time(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None:
        return None
    try:
        return parse_time(value)
    except (ValueError, OverflowError, TypeError):
        raise BadRequest(f"A PermissionGrant's {name} must be an ISO-8601 date-time",
                         target=_target(name)) from None


def parse_grant(payload: Any) -> GrantTerms:
    """Validate a grant payload (without reference to the hub) and return its terms.

    Raises:
        BadRequest: with target `commit.payload.<member>`.
    """
    if not isinstance(payload, dict):
        raise BadRequest("A PermissionGrant must be a JSON object", target="commit.payload")
    owner = _did(payload, "owner", required=True)
    grantee = _did(payload, "grantee", required=True)
    context = _str(payload, "context", required=True, max_len=512)
    type_ = _str(payload, "type", required=True, max_len=512)
    allow = _str(payload, "allow", required=True, max_len=64)
    assert owner and grantee and context and type_ and allow is not None
    if not ALLOW_RE.match(allow):
        raise BadRequest('allow must be four characters "CRUD", each letter or "-" '
                         '(e.g. "-R--")', target=_target("allow"))
    if allow == "----":
        raise BadRequest("A PermissionGrant must allow something", target=_target("allow"))
    if grantee == owner:
        raise BadRequest("The owner needs no grant", target=_target("grantee"))
    if context == GRANT_CONTEXT and type_ == GRANT_TYPE:
        raise BadRequest("Grants cannot cover PermissionGrants: only the owner writes grants",
                         target=_target("type"))
    object_ids = payload.get("object_ids")
    if object_ids is not None:
        if (not isinstance(object_ids, list) or not object_ids
                or not all(isinstance(o, str) and 0 < len(o) <= 128 for o in object_ids)):
            raise BadRequest("object_ids must be a non-empty array of object ids",
                             target=_target("object_ids"))
        if len(object_ids) > MAX_OBJECT_IDS:
            raise BadRequest(f"At most {MAX_OBJECT_IDS} object_ids",
                             target=_target("object_ids"))
        if "C" in allow:
            raise BadRequest("A grant limited to object_ids cannot allow create",
                             target=_target("object_ids"))
        object_ids = tuple(sorted(set(object_ids)))
    created_by = _did(payload, "created_by", required=False)
    if created_by is not None and "C" in allow and created_by != grantee:
        raise BadRequest("A grant that allows create may only be limited to objects created "
                         "by its grantee", target=_target("created_by"))
    not_before = _time(payload, "not_before")
    expires = _time(payload, "expires")
    unrevocable = _time(payload, "unrevocable_until")
    if not_before is not None and expires is not None and expires <= not_before:
        raise BadRequest("expires must be after not_before", target=_target("expires"))
    return GrantTerms(owner, grantee, context, type_, allow, object_ids, created_by,
                      not_before, expires, unrevocable)


def weakened(old: GrantTerms, new: GrantTerms) -> list[str]:
    """The members in which `new` allows less than `old` (empty: `new` keeps every right)."""
    out: list[str] = []
    if any(letter != "-" and letter not in new.allow for letter in old.allow):
        out.append("allow")
    if new.object_ids is not None and (
            old.object_ids is None or not set(old.object_ids) <= set(new.object_ids)):
        out.append("object_ids")
    if new.created_by is not None and new.created_by != old.created_by:
        out.append("created_by")
    if new.not_before_us is not None and (
            old.not_before_us is None or new.not_before_us > old.not_before_us):
        out.append("not_before")
    if new.expires_us is not None and (
            old.expires_us is None or new.expires_us < old.expires_us):
        out.append("expires")
    if (old.unrevocable_until_us is not None and (
            new.unrevocable_until_us is None
            or new.unrevocable_until_us < old.unrevocable_until_us)):
        out.append("unrevocable_until")
    return out
