"""Commands that run and administer the hub: init, serve, migrate, tenants, refold, info."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from identity_hub.cli import echo_json, fail, main, run, settings_of
from identity_hub.settings import Settings

logger = logging.getLogger(__name__)


@main.command()
@click.option("--method", type=click.Choice(["ion", "web", "key"]), default="ion",
              show_default=True, help="DID method of the hub's own DID.")
@click.option("--web-host", metavar="HOST[:PORT]",
              help="With --method web: the host the hub's did:web names (it serves "
                   "/.well-known/did.json there).")
@click.option("--rsa/--no-rsa", default=None,
              help="Add an RSA-2048 key for the 2019 clients (default: on, as compat_2019).")
@click.option("--secp256k1", is_flag=True, help="Add a secp256k1 signing key.")
@click.pass_context
def init(ctx: click.Context, method: str, web_host: str | None, rsa: bool | None,
         secp256k1: bool) -> None:
    """Create the data directory, the hub's keys and DID, and the database."""
    from identity_hub.identity import HubIdentity
    from identity_hub.storage.engine import Database
    from identity_hub.storage.migrate import ensure_migrated

    settings = settings_of(ctx)
    path = settings.data_path
    if HubIdentity.exists(path):
        fail(f"{path} already holds a hub identity; `identity-hub info` shows it")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_types: tuple[str, ...] = ("Ed25519", "X25519")
    if secp256k1:
        key_types += ("secp256k1",)
    compat = settings.compat_2019 if rsa is None else rsa
    try:
        identity = HubIdentity.create(path, method=method, key_types=key_types,
                                      compat_2019=compat, web_host=web_host)
    except ValueError as exc:
        fail(str(exc))
        return

    async def migrate() -> None:
        db = Database(settings.db_url)
        try:
            await ensure_migrated(db.engine)
        finally:
            await db.dispose()

    run(migrate())
    click.echo(f"data directory: {path}")
    click.echo(f"hub DID: {identity.did}")
    click.echo("next: `identity-hub tenants add <owner DID>`, then `identity-hub serve`")


@main.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8080).")
@click.option("--public-url", metavar="URL", help="The URL clients reach this hub at.")
@click.option("--open-tenancy", is_flag=True, default=None,
              help="Serve any owner DID that authenticates (development and public hubs).")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Log lines as text or as JSON objects, the banner included (default: text).")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, public_url: str | None,
          open_tenancy: bool | None, log_format: str | None) -> None:
    """Serve the Identity Hub protocol (initializing the data directory on first start)."""
    from aiohttp import web

    from identity_hub.app import create_app
    from identity_hub.logs import setup_logging
    from identity_hub.runtime import ensure_initialized

    settings = settings_of(ctx)
    changes = {k: v for k, v in {"host": host, "port": port, "public_url": public_url,
                                 "open_tenancy": open_tenancy,
                                 "log_format": log_format}.items() if v is not None}
    settings = settings.replace(**changes)
    if log_format is not None:
        setup_logging(settings.log_level, settings.log_format)
    try:  # a malformed rate limit or proxy list: one line, before anything starts
        from identity_hub.ratelimit import check_settings

        check_settings(settings)
    except ValueError as exc:
        fail(str(exc))
        return
    from identity_hub.sync.protocol import check_limits

    try:  # settings the sync service would refuse at start: one line, before anything starts
        check_limits(settings.sync_page_commits, settings.sync_max_page_bytes,
                     settings.max_commit_bytes)
    except ValueError as exc:
        fail(str(exc))
        return
    identity = ensure_initialized(settings)
    banner(settings, "start",
           f"identity-hub {identity.did[:60]}{'…' if len(identity.did) > 60 else ''}",
           f"listening on http://{settings.host}:{settings.port} "
           f"(endpoint {settings.endpoint}, health /healthz)",
           f"data directory {settings.data_dir}; database "
           f"{'SQLite' if settings.db_url.startswith('sqlite') else 'PostgreSQL'}",
           hub_did=identity.did, host=settings.host, port=settings.port,
           endpoint=settings.endpoint,
           database="sqlite" if settings.db_url.startswith("sqlite") else "postgresql")

    async def serve_forever() -> None:
        app = create_app(settings)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        banner(settings, "stop", "shutting down")
        await runner.cleanup()

    run(serve_forever())


def banner(settings: Settings, event: str, *lines: str, **fields: object) -> None:
    """What `serve` tells the person who started it: text lines on stdout, or with
    log_format=json one JSON log line (the lines joined, and `fields` as keys) on stderr."""
    if settings.log_format == "json":
        logger.info("%s", "; ".join(lines), extra={"event": {"event": event, **fields}})
        return
    for line in lines:
        click.echo(line)


@main.command()
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_context
def migrate(ctx: click.Context, revision: str) -> None:
    """Migrate the database schema (a new database is also migrated on first start)."""
    from identity_hub.storage.engine import Database
    from identity_hub.storage.migrate import current_revision, upgrade

    settings = settings_of(ctx)
    settings.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def go() -> tuple[str | None, str | None]:
        db = Database(settings.db_url)
        try:
            before = await current_revision(db.engine)
            await upgrade(db.engine, revision)
            return before, await current_revision(db.engine)
        finally:
            await db.dispose()

    before, after = run(go())
    click.echo(f"database at revision {after} (was {before or 'empty'})")


@main.group()
def tenants() -> None:
    """The owner DIDs this hub serves."""


def _with_db(settings: Settings, fn):  # type: ignore[no-untyped-def]
    from identity_hub.storage.engine import Database
    from identity_hub.storage.migrate import ensure_migrated

    async def go():  # type: ignore[no-untyped-def]
        settings.data_path.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = Database(settings.db_url)
        try:
            await ensure_migrated(db.engine)
            return await fn(db)
        finally:
            await db.dispose()

    return run(go())


@tenants.command("add")
@click.argument("did")
@click.pass_context
def tenants_add(ctx: click.Context, did: str) -> None:
    """Serve DID as an owner."""
    from identity_hub.storage import store

    if not did.startswith("did:") or len(did) > 2048:
        fail(f"{did[:80]!r} is not a DID")
    added = _with_db(settings_of(ctx), lambda db: store.add_tenant(db, did))
    click.echo(("added " if added else "already a tenant: ") + did)


@tenants.command("remove")
@click.argument("did")
@click.pass_context
def tenants_remove(ctx: click.Context, did: str) -> None:
    """Stop serving DID (its data stays in the database)."""
    from identity_hub.storage import store

    removed = _with_db(settings_of(ctx), lambda db: store.remove_tenant(db, did))
    if not removed:
        fail(f"{did} is not a tenant")
    click.echo(f"removed {did}")


@tenants.command("list")
@click.pass_context
def tenants_list(ctx: click.Context) -> None:
    """List the owner DIDs this hub serves."""
    from identity_hub.storage import store

    for did in _with_db(settings_of(ctx), store.list_tenants):
        click.echo(did)


@main.command()
@click.option("--owner", metavar="DID", help="Only this owner's objects.")
@click.pass_context
def refold(ctx: click.Context, owner: str | None) -> None:
    """Rebuild every object from the commit log; report any whose stored state differed."""
    from identity_hub.commits.refold import refold as do_refold

    def progress(done: int, total: int) -> None:
        if done == total or done % 500 == 0:
            click.echo(f"  {done}/{total} objects", err=True)

    from identity_hub.jsonld import ContextLibrary, JsonLd

    settings = settings_of(ctx)
    try:  # the hub's contexts and policy, as the running hub expands type IRIs
        jsonld = JsonLd(ContextLibrary.load(settings.data_path / "contexts"),
                        unknown_contexts=settings.jsonld_unknown_contexts)  # type: ignore[arg-type]
    except ValueError as exc:
        fail(f"cannot load the JSON-LD contexts: {exc}")
    try:
        report = _with_db(settings, lambda db: do_refold(db, owner, progress, jsonld))
    finally:
        jsonld.close()
    click.echo(f"refolded {report.objects} objects of {report.owners} owners; "
               f"{len(report.differed)} differed")
    for did, object_id, fields in report.differed:
        click.echo(f"  {did} {object_id}: {', '.join(fields)}")
    if report.differed:
        raise SystemExit(2)


@main.command()
@click.option("--json", "as_json", is_flag=True, help='Print {"did", "didDocument", "endpoint"}.')
@click.pass_context
def info(ctx: click.Context, as_json: bool) -> None:
    """Print the hub's DID, its DID document and the endpoint URL clients need."""
    from identity_hub.identity import HubIdentity

    settings = settings_of(ctx)
    if not HubIdentity.exists(settings.data_path):
        fail(f"no hub in {settings.data_dir}: run `identity-hub init` (or `serve`) first")
    identity = HubIdentity.load(settings.data_path)
    if as_json:
        echo_json({"did": identity.did, "didDocument": identity.static_document(),
                   "endpoint": settings.endpoint})
        return
    click.echo(f"DID:       {identity.did}")
    click.echo(f"endpoint:  {settings.endpoint}")
    click.echo(f"data dir:  {settings.data_dir}")
    click.echo("document:")
    echo_json(identity.static_document())


@main.group("index")
def index_group() -> None:
    """Expression indexes on object fields, so rich queries on them cost O(page)."""


@index_group.command("add")
@click.argument("field")
@click.option("--sort", type=click.Choice(["updated_at", "created_at"]), default="updated_at",
              show_default=True, help="The sort the index serves.")
@click.pass_context
def index_add(ctx: click.Context, field: str, sort: str) -> None:
    """Index FIELD of the objects' state (e.g. numTracks, byArtist.name) for queries that filter
    on it by type and sort by --sort (docs/queries.md). Safe to run again."""
    from identity_hub.errors import BadRequest
    from identity_hub.storage.query_sql import field_index_sql

    async def add(db):  # type: ignore[no-untyped-def]
        sql = field_index_sql(db.engine.dialect.name, field, sort=sort,
                              type_columns=("type_iri",))
        sql = sql.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1)
        async with db.transaction() as conn:
            await conn.exec_driver_sql(sql)
        return sql

    try:
        sql = _with_db(settings_of(ctx), add)
    except BadRequest as exc:
        fail(f"{field!r}: {exc.message}")
        return
    click.echo(sql)
