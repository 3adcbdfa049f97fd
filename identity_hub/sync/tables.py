"""The sync tables, on the schema's one `metadata` (so Alembic sees them).

* `sync_peers`: one row per (owner, peer hub): where the peer is, and the cursor of this hub on
  that peer's log of the owner's commits (`cursor`: the last peer `seq` applied; `peer_last_seq`:
  the peer's `owners.last_seq` when last asked, so lag = peer_last_seq - cursor). The cursor is
  saved after each page is applied; a page re-applied after a crash is a no-op (idempotent
  writes).
* `sync_parked`: replicated commits that cannot be judged yet (their object's
  create, an automerge change's dependencies, an unreachable signer DID), kept apart (never in
  `commits`) and retried when more commits arrive.
"""

from __future__ import annotations

import sqlalchemy as sa

from identity_hub.storage.tables import metadata

sync_peers = sa.Table(
    "sync_peers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner", sa.String(2048), nullable=False),
    sa.Column("peer_did", sa.String(2048), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),
    sa.Column("added_at_us", sa.BigInteger, nullable=False),
    sa.Column("cursor", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("peer_last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_attempt_us", sa.BigInteger),
    sa.Column("last_success_us", sa.BigInteger),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(512)),
    sa.Column("refused", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index(None, "owner"),
)

sync_parked = sa.Table(
    "sync_parked",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("owner", sa.String(2048), nullable=False),
    sa.Column("rev", sa.String(64), nullable=False),
    sa.Column("commit", sa.Text, nullable=False),  # the wire commit, JSON
    sa.Column("reason", sa.String(256), nullable=False),
    sa.Column("parked_at_us", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Index(None, "owner", "rev", unique=True),
)
