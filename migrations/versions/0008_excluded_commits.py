"""excluded commits

A replicated commit of a non-owner that the grants in force at its committed_at (per the commits
the hub holds) do not cover is stored, so that every hub holds the same commits, but marked
`excluded` and not folded; a grant's change re-judges its grantee's commits (docs/replication.md,
"Which commits count"). The index on (owner_id, signer, committed_at_us) finds the commits a
grant's change may affect. Existing commits start included: run `identity-hub refold` after the
upgrade to judge them (a hub that kept a commit its peers parked under the old rule then excludes
it too; the parked ones are stored excluded on the next sync round).

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-03 09:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('commits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('excluded', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.create_index(batch_op.f('ix_commits_owner_id_signer_committed_at_us'),
                              ['owner_id', 'signer', 'committed_at_us'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('commits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_commits_owner_id_signer_committed_at_us'))
        batch_op.drop_column('excluded')
