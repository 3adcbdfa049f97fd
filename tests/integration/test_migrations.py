"""One migration chain for both dialects: upgrade → downgrade → upgrade, and the models agree
with the migrated schema (alembic's autogenerate finds nothing to add)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from identity_hub.storage.engine import Database
from identity_hub.storage.migrate import current_revision, downgrade, head_revision, upgrade
from identity_hub.storage.tables import metadata


async def test_upgrade_downgrade_upgrade_and_no_drift(db_url: str) -> None:
    db = Database(db_url)
    try:
        assert await current_revision(db.engine) == head_revision()
        await downgrade(db.engine, "base")
        assert await current_revision(db.engine) is None
        async with db.read() as conn:
            names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
        assert not {"commits", "objects"} & set(names)
        await upgrade(db.engine)
        assert await current_revision(db.engine) == head_revision()

        def diff(sync_conn: Any) -> list[Any]:
            ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
            return compare_metadata(ctx, metadata)

        async with db.read() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await db.dispose()
