"""type IRIs of grants

A grant covers objects by the expanded type IRI of its context + type, as queries find them
(docs/permissions.md): `grant_versions.type_iri` holds it and `scope_key` (the lookup key) becomes
the SHA-256 of that IRI. Existing rows are backfilled as migration 0006 backfilled objects: from
the shipped contexts, offline, an unknown context read as opaque (so grants keep covering the
objects 0006 gave an opaque IRI); a type its context does not define is left NULL, with the old
key (such a grant covers nothing; `identity-hub refold` recomputes it). The downgrade restores
the old key, SHA-256 of context NUL type.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 10:00:00.000000
"""
import hashlib
import logging

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

logger = logging.getLogger(__name__)

_SET = sa.text('UPDATE grant_versions SET type_iri = :iri, scope_key = :key '
               'WHERE context = :c AND type = :t')


def _pairs() -> list[tuple[str, str]]:
    rows = op.get_bind().execute(sa.text('SELECT DISTINCT context, type FROM grant_versions'))
    return [(c, t) for c, t in rows.fetchall()]


def upgrade() -> None:
    with op.batch_alter_table('grant_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('type_iri', sa.String(length=1024), nullable=True))
    pairs = _pairs()
    if not pairs:
        return
    from identity_hub.errors import BadRequest
    from identity_hub.jsonld import JsonLd

    conn = op.get_bind()
    jl = JsonLd(unknown_contexts='opaque')  # the shipped contexts; no request leaves the hub
    try:
        for context, type_ in pairs:
            try:
                iri = jl.type_iri(context, type_)
            except BadRequest:
                logger.warning('grants of type %.100s of context %.100s: the type is not '
                               'defined; type_iri left NULL (they cover nothing)', type_,
                               context)
                continue
            conn.execute(_SET, {'iri': iri, 'key': hashlib.sha256(iri.encode()).hexdigest(),
                                'c': context, 't': type_})
    finally:
        jl.close()


def downgrade() -> None:
    conn = op.get_bind()
    for context, type_ in _pairs():
        conn.execute(_SET, {'iri': None, 'c': context, 't': type_,
                            'key': hashlib.sha256(f'{context}\x00{type_}'.encode()).hexdigest()})
    with op.batch_alter_table('grant_versions', schema=None) as batch_op:
        batch_op.drop_column('type_iri')
