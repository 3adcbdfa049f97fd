"""Permissions: PermissionGrants the owner controls, their index, and the owner's audit log.

* `grant`: the grant payload, its validation, and what makes one version weaker than another;
* `index`: the versions of every grant over time (`grant_versions`), maintained in the writing
  transaction, and the one indexed lookup a permission check costs;
* `scope`: what a grantee may read, as SQL conditions;
* `audit`: one entry per request by a DID other than the owner;
* `authorization`: the grant policy (`Authorizer`) the router and the interfaces ask;
* `exclusion`: which non-owner commits count (the rest are held excluded, not folded).

See docs/permissions.md.
"""

from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE, GrantTerms, parse_grant

__all__ = ["GRANT_CONTEXT", "GRANT_TYPE", "GrantTerms", "parse_grant"]
