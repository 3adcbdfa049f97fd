"""sync peers and parked commits

Replication between an owner's hubs (docs/replication.md): the peers of each owner with this
hub's cursor on each peer's log, and replicated commits parked until their grant arrives.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sync_peers',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('owner', sa.String(length=2048), nullable=False),
    sa.Column('peer_did', sa.String(length=2048), nullable=False),
    sa.Column('url', sa.String(length=2048), nullable=False),
    sa.Column('added_at_us', sa.BigInteger(), nullable=False),
    sa.Column('cursor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('peer_last_seq', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('last_attempt_us', sa.BigInteger(), nullable=True),
    sa.Column('last_success_us', sa.BigInteger(), nullable=True),
    sa.Column('failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.String(length=512), nullable=True),
    sa.Column('refused', sa.BigInteger(), server_default='0', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_peers'))
    )
    with op.batch_alter_table('sync_peers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_peers_owner'), ['owner'], unique=False)

    op.create_table('sync_parked',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('owner', sa.String(length=2048), nullable=False),
    sa.Column('rev', sa.String(length=64), nullable=False),
    sa.Column('commit', sa.Text(), nullable=False),
    sa.Column('reason', sa.String(length=256), nullable=False),
    sa.Column('parked_at_us', sa.BigInteger(), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='1', nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sync_parked'))
    )
    with op.batch_alter_table('sync_parked', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sync_parked_owner_rev'), ['owner', 'rev'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('sync_parked', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_parked_owner_rev'))
    op.drop_table('sync_parked')
    with op.batch_alter_table('sync_peers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sync_peers_owner'))
    op.drop_table('sync_peers')
