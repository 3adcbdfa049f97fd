"""`identity-hub client …`: talk to a hub as a user or app, through the encrypted endpoint."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import click

from identity_hub.cli import echo_json, fail, run, settings_of


def _options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--hub", "hub_url", required=True, metavar="URL",
                      help="The hub's endpoint URL (`identity-hub info` prints it).")(fn)
    fn = click.option("--as", "key_file", required=True, metavar="KEYFILE",
                      type=click.Path(exists=True, dir_okay=False),
                      help="Your DID's key file (from `identity-hub did create`).")(fn)
    fn = click.option("--hub-did", metavar="DID",
                      help="The hub's DID (default: asked from the hub).")(fn)
    fn = click.option("--sub", metavar="DID",
                      help="Whose data (default: your own DID).")(fn)
    return fn


def client_session(ctx: click.Context, hub_url: str, key_file: str, hub_did: str | None,
                   body: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `body(client)` with a HubClient for the key file; turn failures into clear errors."""
    from identity_hub.client import HubClient, HubClientError, HubErrorResponse
    from identity_hub.did import DidResolver, ResolverConfig

    settings = settings_of(ctx)

    async def go() -> Any:
        resolver = DidResolver(ResolverConfig.from_settings(settings))
        client = HubClient.from_key_file(hub_url, key_file, hub_did=hub_did, resolver=resolver)
        try:
            return await body(client)
        finally:
            await client.aclose()
            await resolver.aclose()

    try:
        return run(go())
    except HubErrorResponse as exc:
        fail(f"the hub refused: {exc}")
    except (HubClientError, ValueError, OSError) as exc:
        fail(str(exc))


@click.group()
def client() -> None:
    """Read and write a hub's data as a user or app (signed and encrypted requests)."""


@client.command("write")
@_options
@click.option("--data", required=True, metavar="JSON|@FILE",
              help="The object: JSON-LD with @context and @type, inline or @path.")
@click.option("--object-id", metavar="ID", help="Update this object instead of creating one.")
@click.option("--interface", default="Collections", show_default=True,
              type=click.Choice(["Collections", "Profile", "Permissions"]))
@click.pass_context
def write(ctx: click.Context, hub_url: str, key_file: str, hub_did: str | None,
          sub: str | None, data: str, object_id: str | None, interface: str) -> None:
    """Create an object (or update one with --object-id); prints its object_id."""
    text = open(data[1:]).read() if data.startswith("@") else data
    try:
        payload = json.loads(text)
    except ValueError as exc:
        fail(f"--data is not JSON: {exc}")

    async def body(c: Any) -> Any:
        if object_id:
            return await c.update(object_id, payload, sub=sub, interface=interface)
        return await c.create(payload, sub=sub, interface=interface)

    out = client_session(ctx, hub_url, key_file, hub_did, body)
    click.echo(out if isinstance(out, str) else out[0])


@client.command("get")
@_options
@click.argument("object_id")
@click.option("--interface", default="Collections", show_default=True)
@click.pass_context
def get(ctx: click.Context, hub_url: str, key_file: str, hub_did: str | None, sub: str | None,
        object_id: str, interface: str) -> None:
    """Print one object: its metadata and current state."""

    async def body(c: Any) -> Any:
        return await c.query_objects(sub=sub, interface=interface, object_ids=[object_id],
                                     include_data=True)

    found = client_session(ctx, hub_url, key_file, hub_did, body)
    if not found:
        fail(f"no object {object_id}")
    echo_json(found[0])


@client.command("query")
@_options
@click.option("--interface", default="Collections", show_default=True)
@click.option("--context", "context_", metavar="URL", help="e.g. https://schema.org")
@click.option("--type", "type_", metavar="TYPE", help="e.g. MusicPlaylist")
@click.option("--data/--no-data", "include_data", default=False, help="Include each state.")
@click.option("--where", "where", multiple=True, metavar="COND",
              help="A condition (repeatable, all must hold): numTracks>3, 'name=Road trip', "
                   "byArtist.name^=Ni, 'genre in jazz,rock', name?, draft!? (docs/queries.md).")
@click.option("--sort", "sort", multiple=True, metavar="FIELD",
              help="Sort key (repeatable, up to 4), '-' for descending: -updated_at.")
@click.option("--limit", type=click.IntRange(1, 1000), metavar="N",
              help="Print only the first N objects (one page of N).")
@click.pass_context
def query(ctx: click.Context, hub_url: str, key_file: str, hub_did: str | None,
          sub: str | None, interface: str, context_: str | None, type_: str | None,
          include_data: bool, where: tuple[str, ...], sort: tuple[str, ...],
          limit: int | None) -> None:
    """List objects (all pages, or the first N with --limit) as JSON."""
    from identity_hub.errors import HubError
    from identity_hub.storage.query import where_from_cli

    if (context_ is None) != (type_ is None):
        fail("give --context and --type together")
    try:
        conditions = where_from_cli(where) if where else None
    except HubError as exc:
        fail(f"--where: {exc.message}")
    sort_keys: str | list[str] | None = (None if not sort
                                         else sort[0] if len(sort) == 1 else list(sort))

    async def body(c: Any) -> Any:
        return await c.query_objects(sub=sub, interface=interface, context=context_,
                                     type_=type_, include_data=include_data, where=conditions,
                                     sort=sort_keys, limit=limit, all_pages=limit is None)

    echo_json(client_session(ctx, hub_url, key_file, hub_did, body))


@client.command("delete")
@_options
@click.argument("object_id")
@click.option("--context", "context_", required=True, metavar="URL")
@click.option("--type", "type_", required=True, metavar="TYPE")
@click.option("--interface", default="Collections", show_default=True)
@click.pass_context
def delete(ctx: click.Context, hub_url: str, key_file: str, hub_did: str | None,
           sub: str | None, object_id: str, context_: str, type_: str, interface: str) -> None:
    """Delete an object."""

    async def body(c: Any) -> Any:
        return await c.delete(object_id, context=context_, type_=type_, sub=sub,
                              interface=interface)

    revisions = client_session(ctx, hub_url, key_file, hub_did, body)
    click.echo(f"deleted {object_id} ({len(revisions)} revisions)")


@client.command("commits")
@_options
@click.option("--object-id", "object_ids", multiple=True, metavar="ID")
@click.pass_context
def commits(ctx: click.Context, hub_url: str, key_file: str, hub_did: str | None,
            sub: str | None, object_ids: tuple[str, ...]) -> None:
    """Print commits (all pages) as JSON."""

    async def body(c: Any) -> Any:
        return await c.query_commits(sub=sub, object_ids=list(object_ids) or None)

    echo_json(client_session(ctx, hub_url, key_file, hub_did, body))
