"""Run the Alembic migrations in `migrations/` (one chain for SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from identity_hub.storage.engine import transactional

logger = logging.getLogger(__name__)


def migrations_dir() -> Path:
    """The migrations folder: in a source checkout beside the package, else installed with it."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here.parent / "migrations", here / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("the migrations folder is missing from this installation")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
        )


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database behind `engine` up to `revision` (a new database gets the schema)."""
    cfg = alembic_config(str(engine.url))
    async with transactional(engine).begin() as conn:
        cfg.attributes["connection"] = conn

        def _run(sync_conn: object) -> None:
            cfg.attributes["connection"] = sync_conn
            command.upgrade(cfg, revision)

        await conn.run_sync(_run)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    cfg = alembic_config(str(engine.url))
    async with transactional(engine).begin() as conn:

        def _run(sync_conn: object) -> None:
            cfg.attributes["connection"] = sync_conn
            command.downgrade(cfg, revision)

        await conn.run_sync(_run)


async def ensure_migrated(engine: AsyncEngine) -> bool:
    """Upgrade to head when behind; True if anything ran."""
    if await current_revision(engine) == head_revision():
        return False
    logger.info("migrating database to %s", head_revision())
    await upgrade(engine)
    return True


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]
