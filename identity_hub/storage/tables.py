"""The schema, one for SQLite and PostgreSQL. Alembic migrations in `migrations/` create it.

* `owners` maps an owner DID (a long-form did:ion is ~1.5 KB) to a small integer key.
* `commits` is the immutable log: unique per (owner, rev), so a repeated commit is stored once.
  `seq` is the owner's monotonic sequence (the sync cursor), gap-free and in commit order, because
  it is drawn from `owners.last_seq` under that row's lock inside the writing transaction.
* `objects` is the materialized state of each object, maintained incrementally by the fold.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

JsonDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("did", sa.String(2048), primary_key=True),
    sa.Column("added_at_us", sa.BigInteger, nullable=False),
)

owners = sa.Table(
    "owners",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("did", sa.String(2048), nullable=False, unique=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
)

commits = sa.Table(
    "commits",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("owner_id", sa.Integer, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("rev", sa.String(64), nullable=False),
    sa.Column("object_id", sa.String(128), nullable=False),
    sa.Column("interface", sa.String(32), nullable=False),
    sa.Column("context", sa.String(512), nullable=False),
    sa.Column("type", sa.String(512), nullable=False),
    sa.Column("operation", sa.String(8), nullable=False),
    sa.Column("commit_strategy", sa.String(32), nullable=False),
    sa.Column("committed_at", sa.String(64), nullable=False),
    sa.Column("committed_at_us", sa.BigInteger, nullable=False),
    sa.Column("signer", sa.String(2048), nullable=False),
    sa.Column("protected", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("signature", sa.Text, nullable=False),
    sa.Column("header", sa.Text, nullable=False, server_default="{}"),
    sa.Column("received_at_us", sa.BigInteger, nullable=False),
    # Local derived state, never sent to or trusted from a peer: a non-owner's commit that the
    # grants in force at its committed_at (per the commits held) do not cover is kept (so every
    # hub holds the same commits) but not folded (docs/replication.md, "Which commits count").
    sa.Column("excluded", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("owner_id", "rev"),
    sa.UniqueConstraint("owner_id", "seq"),
    # Covers an object's revisions in order (every WriteResponse lists them all): the index
    # alone answers, without a visit to each commit's row.
    sa.Index(None, "owner_id", "object_id", "seq", "rev"),
    # A grant's change re-judges its grantee's commits dated from the change on.
    sa.Index(None, "owner_id", "signer", "committed_at_us"),
)

objects = sa.Table(
    "objects",
    metadata,
    sa.Column("owner_id", sa.Integer, primary_key=True),
    sa.Column("object_id", sa.String(128), primary_key=True),
    sa.Column("has_create", sa.Boolean, nullable=False),
    sa.Column("interface", sa.String(32)),
    sa.Column("context", sa.String(512)),
    sa.Column("type", sa.String(512)),
    # The expanded type IRI of context + type (identity_hub/jsonld): every spelling of one type
    # lands here alike, and queries by context + type filter on it. NULL when the hub's contexts
    # do not define the type.
    sa.Column("type_iri", sa.String(1024)),
    sa.Column("commit_strategy", sa.String(32)),
    sa.Column("created_by", sa.String(2048)),
    sa.Column("created_at", sa.String(64)),
    sa.Column("created_at_us", sa.BigInteger),
    sa.Column("updated_at_us", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("create_seq", sa.BigInteger),
    sa.Column("deleted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("win_rev", sa.String(64)),
    sa.Column("win_operation", sa.String(8)),
    sa.Column("win_committed_at_us", sa.BigInteger),
    sa.Column("meta", JsonDoc),
    sa.Column("data", JsonDoc),
    sa.Column("commit_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index(None, "owner_id", "interface", "context", "type", "create_seq"),
    sa.Index(None, "owner_id", "create_seq"),
    # Queries by type: pages in create order (2019 queries) or by updated_at (rich queries).
    sa.Index(None, "owner_id", "interface", "type_iri", "create_seq"),
    sa.Index(None, "owner_id", "interface", "type_iri", "updated_at_us", "object_id"),
)

# Replay protection of the encrypted transport: a `did-requester-nonce` is accepted once per
# token lifetime. In the database, so that several hub processes behind one load balancer agree.
nonces = sa.Table(
    "nonces",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),  # hex SHA-256 of requester + nonce
    sa.Column("expires_at_us", sa.BigInteger, nullable=False),
    sa.Index(None, "expires_at_us"),
)

# The grant index (docs/permissions.md): one row per version of a PermissionGrant, recomputed from
# the grant's commits whenever one of them is stored. A version is in force from `valid_from_us`
# (the committed_at of the commit that made it) until `valid_until_us` (the next version or the
# delete; NULL while open). Lookups go through fixed-size hashes of the grantee and of the type
# IRI, so that one index serves (owner, grantee) and (owner, grantee, type).
grant_versions = sa.Table(
    "grant_versions",
    metadata,
    sa.Column("owner_id", sa.Integer, nullable=False),
    sa.Column("grant_id", sa.String(128), nullable=False),
    sa.Column("valid_from_us", sa.BigInteger, nullable=False),
    sa.Column("valid_until_us", sa.BigInteger),
    sa.Column("grantee_key", sa.String(64), nullable=False),  # hex SHA-256 of the grantee DID
    # hex SHA-256 of type_iri (of context NUL type when type_iri is NULL: found by no lookup)
    sa.Column("scope_key", sa.String(64), nullable=False),
    sa.Column("grantee", sa.String(2048), nullable=False),
    sa.Column("context", sa.String(512), nullable=False),
    sa.Column("type", sa.String(512), nullable=False),
    # The grant's context + type expanded (identity_hub/jsonld), as objects.type_iri: a grant
    # covers every spelling of its type. NULL when the hub's contexts do not define it.
    sa.Column("type_iri", sa.String(1024)),
    sa.Column("rev", sa.String(64), nullable=False),  # the commit that made this version
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("can_create", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("can_read", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("can_update", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("can_delete", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("object_ids", JsonDoc),
    sa.Column("created_by", sa.String(2048)),
    sa.Column("not_before_us", sa.BigInteger),
    sa.Column("expires_us", sa.BigInteger),
    sa.Column("unrevocable_until_us", sa.BigInteger),
    # grant_id first: the only index led by owner_id is the lookup, so no planner (PostgreSQL
    # without statistics, say) can scan all of an owner's grants by the primary key instead.
    sa.PrimaryKeyConstraint("grant_id", "owner_id", "valid_from_us"),
    sa.Index("ix_grant_versions_lookup", "owner_id", "grantee_key", "scope_key",
             "valid_from_us"),
)

# Every request by a DID other than the owner, appended in the transaction of the access itself.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("owner_id", sa.Integer, nullable=False),
    sa.Column("at_us", sa.BigInteger, nullable=False),
    sa.Column("requester", sa.String(2048), nullable=False),
    sa.Column("request_type", sa.String(32), nullable=False),
    sa.Column("interface", sa.String(32)),
    sa.Column("operation", sa.String(16)),
    sa.Column("context", sa.String(512)),
    sa.Column("type", sa.String(512)),
    sa.Column("object_ids", JsonDoc),
    sa.Column("rev", sa.String(64)),
    sa.Column("allowed", sa.Boolean, nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("grant_ids", JsonDoc),
    sa.Index(None, "owner_id", "id"),
    sa.Index(None, "owner_id", "at_us"),
)
