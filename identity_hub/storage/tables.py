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
    sa.UniqueConstraint("owner_id", "rev"),
    sa.UniqueConstraint("owner_id", "seq"),
    sa.Index(None, "owner_id", "object_id", "seq"),
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
