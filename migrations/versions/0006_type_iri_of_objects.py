"""type IRIs of objects

A commit's context + type expanded to a type IRI (identity_hub/jsonld) and stored with its
object, so that every spelling of one type (`https://schema.org` + MusicPlaylist,
`http://schema.org/` + MusicPlaylist, the full IRI) lands in one collection; queries by context +
type filter on it, through the two new indexes. Existing objects are backfilled from the shipped
contexts, offline; an unknown context is read as opaque (so the upgrade never fails on one), and
a type its context does not define is left NULL (`identity-hub refold` recomputes it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 10:00:00.000000
"""
import logging

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

logger = logging.getLogger(__name__)


def upgrade() -> None:
    with op.batch_alter_table('objects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('type_iri', sa.String(length=1024), nullable=True))
        batch_op.create_index(batch_op.f('ix_objects_owner_id_interface_type_iri_create_seq'),
                              ['owner_id', 'interface', 'type_iri', 'create_seq'],
                              unique=False)
        batch_op.create_index(
            batch_op.f('ix_objects_owner_id_interface_type_iri_updated_at_us_object_id'),
            ['owner_id', 'interface', 'type_iri', 'updated_at_us', 'object_id'], unique=False)
    _backfill()


def _backfill() -> None:
    """Set type_iri of the existing objects: one UPDATE per distinct (context, type)."""
    conn = op.get_bind()
    pairs = conn.execute(sa.text('SELECT DISTINCT context, type FROM objects '
                                 'WHERE context IS NOT NULL AND type IS NOT NULL')).fetchall()
    if not pairs:
        return
    from identity_hub.errors import BadRequest
    from identity_hub.jsonld import JsonLd

    jl = JsonLd(unknown_contexts='opaque')  # the shipped contexts; no request leaves the hub
    try:
        for context, type_ in pairs:
            try:
                iri = jl.type_iri(context, type_)
            except BadRequest:
                logger.warning('type %.100s of context %.100s is not defined: type_iri left '
                               'NULL', type_, context)
                continue
            conn.execute(sa.text('UPDATE objects SET type_iri = :iri '
                                 'WHERE context = :c AND type = :t'),
                         {'iri': iri, 'c': context, 't': type_})
    finally:
        jl.close()


def downgrade() -> None:
    with op.batch_alter_table('objects', schema=None) as batch_op:
        batch_op.drop_index(
            batch_op.f('ix_objects_owner_id_interface_type_iri_updated_at_us_object_id'))
        batch_op.drop_index(batch_op.f('ix_objects_owner_id_interface_type_iri_create_seq'))
        batch_op.drop_column('type_iri')
