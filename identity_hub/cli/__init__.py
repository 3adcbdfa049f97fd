"""`identity-hub`: run and administer a hub. Every command takes --data-dir (the hub's home)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from identity_hub.settings import Settings, load_settings

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def fail(message: str) -> None:
    from identity_hub.logs import json_logging

    if json_logging():  # --log-format json: this line is JSON too
        logging.getLogger("identity_hub.cli").error("error: %s", message)
    else:
        click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


class _HubGroup(click.Group):
    """Environment problems and a user's mistakes become one line, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        import sqlalchemy.exc

        try:
            return super().invoke(ctx)
        except FileNotFoundError as exc:
            fail(f"no such file: {exc.filename}: check the path")
        except sqlalchemy.exc.NoSuchModuleError:
            fail("the database URL names an unknown driver: write postgresql+asyncpg://… "
                 "(PostgreSQL) or sqlite+aiosqlite:///… (SQLite)")
        except (ConnectionError, TimeoutError) as exc:
            fail(f"cannot connect ({exc.strerror or exc}): is the database or hub running, "
                 "and is the URL right?")
        return None


@click.group(cls=_HubGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data-dir", envvar="IDENTITY_HUB_DATA_DIR", metavar="DIR",
              help="The hub's home (keys, SQLite database, config.toml). "
                   "Default: a per-user data directory.")
@click.option("--database-url", metavar="URL",
              help="SQLAlchemy URL of the store, e.g. postgresql+asyncpg://u:p@host/db "
                   "(env IDENTITY_HUB_DATABASE_URL). Default: SQLite in the data dir.")
@click.option("--universal-resolver", metavar="URL",
              help="Base URL of a DID universal resolver (env IDENTITY_HUB_UNIVERSAL_RESOLVER).")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST[:PORT]",
              help="A host that may be reached over plain HTTP or on a private/loopback address "
                   "(repeatable; env IDENTITY_HUB_ALLOW_HOSTS, comma-separated).")
@click.option("--did-web/--no-did-web", default=None,
              help="Resolve did:web DIDs over HTTPS (env IDENTITY_HUB_DID_WEB; default off).")
@click.option("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING or ERROR.")
@click.version_option(package_name="identity-hub")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, database_url: str | None,
         universal_resolver: str | None, allow_hosts: tuple[str, ...],
         did_web: bool | None, log_level: str | None) -> None:
    """identity-hub: a personal datastore keyed by Decentralized Identifiers.

    Quick start: `identity-hub serve` creates the data directory, the hub's keys and DID and a
    SQLite database on first start, then serves the Identity Hub protocol.
    """
    # The hub's files (database, keys, logs) hold personal data: nobody else may read them.
    os.umask(0o077)
    flags = {
        "data_dir": data_dir,
        "database_url": database_url,
        "universal_resolver": universal_resolver,
        "allow_hosts": ",".join(allow_hosts) if allow_hosts else None,
        "did_web": did_web,
        "log_level": log_level,
    }
    try:
        settings = load_settings(flags)
    except ValueError as exc:
        fail(f"{exc}")
        return
    from identity_hub.logs import setup_logging

    try:
        setup_logging(settings.log_level, settings.log_format)
    except ValueError as exc:
        fail(f"{exc}")
    ctx.obj = settings


def settings_of(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    assert isinstance(obj, Settings)
    return obj


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False))


from identity_hub.cli import hub as _hub  # noqa: E402  (registers the commands)
from identity_hub.cli import permissions as _permissions  # noqa: E402  (grant, revoke, …)
from identity_hub.cli import sync as _sync  # noqa: E402  (peers, sync)
from identity_hub.cli.client import client as _client_group  # noqa: E402
from identity_hub.cli.did import did as _did_group  # noqa: E402
from identity_hub.cli.did import keys as _keys_group  # noqa: E402

main.add_command(_did_group)
main.add_command(_keys_group)
main.add_command(_client_group)
del _hub, _permissions, _sync
