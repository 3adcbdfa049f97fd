"""covering index of an object's revisions

Every WriteResponse lists all revisions of the object written, in order: with `rev` in the index
on (owner_id, object_id, seq) the index alone answers (an index-only scan on PostgreSQL, a
covering index on SQLite) instead of a visit to each commit's row. The new index serves every
query the old one served (same leading columns), which it replaces.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 20:16:10.633976
"""
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('commits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_commits_owner_id_object_id_seq_rev'),
                              ['owner_id', 'object_id', 'seq', 'rev'], unique=False)
        batch_op.drop_index(batch_op.f('ix_commits_owner_id_object_id_seq'))


def downgrade() -> None:
    with op.batch_alter_table('commits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_commits_owner_id_object_id_seq'),
                              ['owner_id', 'object_id', 'seq'], unique=False)
        batch_op.drop_index(batch_op.f('ix_commits_owner_id_object_id_seq_rev'))
