"""Owners' permission commands: `grant`, `revoke`, `grants` (through the encrypted endpoint, as
the owner) and `audit` (an administrator reading the hub's database)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click

from identity_hub.cli import echo_json, fail, main, run, settings_of
from identity_hub.cli.client import client_session

logger = logging.getLogger(__name__)


def _as_owner(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--hub", "hub_url", required=True, metavar="URL",
                      help="The hub's endpoint URL (`identity-hub info` prints it).")(fn)
    fn = click.option("--as", "key_file", required=True, metavar="KEYFILE",
                      type=click.Path(exists=True, dir_okay=False),
                      help="The owner's key file (from `identity-hub did create`).")(fn)
    fn = click.option("--hub-did", metavar="DID",
                      help="The hub's DID (default: asked from the hub).")(fn)
    return fn


def _time_us(value: str | None, name: str) -> int | None:
    """An ISO-8601 option as microseconds since the epoch (exits on a bad value)."""
    if value is None:
        return None
    from identity_hub.protocol.commit import parse_time

    try:
        return parse_time(value)
    except (ValueError, OverflowError):
        fail(f"{name} is not an ISO-8601 date-time: {value[:60]!r}")
        return None


def _iso(value: str | None, name: str) -> str | None:
    """Check an ISO-8601 option and normalize it to UTC with milliseconds."""
    from identity_hub.protocol.commit import format_time

    us = _time_us(value, name)
    return None if us is None else format_time(us)


@main.command("grant")
@_as_owner
@click.option("--grantee", required=True, metavar="DID", help="Who receives the rights.")
@click.option("--context", "context_", required=True, metavar="URL",
              help="The objects' JSON-LD context (e.g. https://schema.org); any spelling of "
                   "it names the same type (http://schema.org/ too).")
@click.option("--type", "type_", required=True, metavar="TYPE", help="e.g. MusicPlaylist")
@click.option("--allow", required=True, metavar="CRUD",
              help='Four characters C, R, U, D or "-": e.g. -R-- (read), CRUD (everything).')
@click.option("--object-id", "object_ids", multiple=True, metavar="ID",
              help="Only these objects (repeatable; not with C).")
@click.option("--created-by", metavar="DID", help="Only objects created by this DID.")
@click.option("--not-before", metavar="TIME", help="ISO-8601: the grant starts then.")
@click.option("--expires", metavar="TIME", help="ISO-8601: the grant ends then.")
@click.option("--unrevocable-until", metavar="TIME",
              help="ISO-8601: until then the grant can be neither revoked nor weakened.")
@click.pass_context
def grant(ctx: click.Context, hub_url: str, key_file: str, hub_did: str | None, grantee: str,
          context_: str, type_: str, allow: str, object_ids: tuple[str, ...],
          created_by: str | None, not_before: str | None, expires: str | None,
          unrevocable_until: str | None) -> None:
    """Grant a DID rights on your objects of one context and type; prints the grant id."""
    times = {"not_before": _iso(not_before, "--not-before"),
             "expires": _iso(expires, "--expires"),
             "unrevocable_until": _iso(unrevocable_until, "--unrevocable-until")}

    async def body(c: Any) -> Any:
        from identity_hub.client import HubErrorResponse

        try:
            return await c.grant(grantee, context=context_, type_=type_, allow=allow,
                                 object_ids=list(object_ids) or None, created_by=created_by,
                                 **times)
        except HubErrorResponse as exc:
            hint = _TYPE_HINTS.get(str(exc.target))
            if hint is None:
                raise
            message = str(exc.response.get("developer_message", ""))[:300]
            raise ValueError(f"the hub refused the grant: {message} — {hint}") from None

    click.echo(client_session(ctx, hub_url, key_file, hub_did, body))


# What to do when the hub cannot expand a grant's context/type (docs/permissions.md).
_TYPE_HINTS = {
    "commit.payload.context": "give --context as your objects' commits name it, with its "
                              "scheme (e.g. --context https://schema.org), or have the hub's "
                              "operator add the context's file to the data directory's "
                              "contexts/",
    "commit.payload.type": "give a --type that the context defines (e.g. --context "
                           "https://schema.org --type MusicPlaylist)",
}


@main.command("revoke")
@click.argument("grant_id")
@_as_owner
@click.pass_context
def revoke(ctx: click.Context, grant_id: str, hub_url: str, key_file: str,
           hub_did: str | None) -> None:
    """Revoke (delete) a grant: it covers no request from now on."""

    async def body(c: Any) -> Any:
        return await c.revoke(grant_id)

    client_session(ctx, hub_url, key_file, hub_did, body)
    click.echo(f"revoked {grant_id}")


def _grant_line(g: dict[str, Any]) -> str:
    parts = [g.get("id", "?"), g.get("allow", "?"), g.get("grantee", "?"),
             f"{g.get('context', '?')} {g.get('type', '?')}"]
    for name in ("object_ids", "created_by", "not_before", "expires", "unrevocable_until"):
        if g.get(name) is not None:
            value = g[name]
            parts.append(f"{name}={','.join(value) if isinstance(value, list) else value}")
    return "  ".join(str(p) for p in parts)


@main.command("grants")
@_as_owner
@click.option("--json", "as_json", is_flag=True, help="Print the grants as JSON.")
@click.pass_context
def grants(ctx: click.Context, hub_url: str, key_file: str, hub_did: str | None,
           as_json: bool) -> None:
    """List your live grants: id, allow, grantee, context and type, limits and dates."""

    async def body(c: Any) -> Any:
        return await c.grants()

    found = client_session(ctx, hub_url, key_file, hub_did, body)
    if as_json:
        echo_json(found)
        return
    for g in found:
        click.echo(_grant_line(g))


def _entry_line(e: dict[str, Any]) -> str:
    verdict = "allowed" if e["allowed"] else "DENIED"
    parts = [e["at"], e["requester"], f"{verdict}({e['outcome']})", e["request_type"]]
    for name in ("operation", "interface"):
        if name in e:
            parts.append(e[name])
    if "context" in e or "type" in e:
        parts.append(f"{e.get('context', '')} {e.get('type', '')}".strip())
    if e.get("object_ids"):
        parts.append("objects=" + ",".join(e["object_ids"]))
    if e.get("grant_ids"):
        parts.append("grants=" + ",".join(e["grant_ids"]))
    return "  ".join(parts)


@main.command("audit")
@click.option("--owner", required=True, metavar="DID", help="Whose audit log.")
@click.option("--grantee", metavar="DID", help="Only requests by this DID.")
@click.option("--since", metavar="TIME", help="ISO-8601: only entries from then on.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="At most this many entries (the oldest first).")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@click.pass_context
def audit(ctx: click.Context, owner: str, grantee: str | None, since: str | None,
          limit: int | None, as_json: bool) -> None:
    """Print an owner's audit log from the hub's database: every request by another DID."""
    from identity_hub.permissions import audit as audit_log
    from identity_hub.storage import store
    from identity_hub.storage.engine import Database
    from identity_hub.storage.migrate import ensure_migrated

    since_us = _time_us(since, "--since")
    settings = settings_of(ctx)

    async def go() -> list[dict[str, Any]]:
        db = Database(settings.db_url)
        try:
            await ensure_migrated(db.engine)
            out: list[dict[str, Any]] = []
            async with db.read() as conn:
                oid = await store.owner_id(conn, owner)
                after = 0
                while oid is not None and (limit is None or len(out) < limit):
                    rows = await audit_log.query(conn, oid, requester=grantee,
                                                 since_us=since_us, after=after, limit=500)
                    if not rows:
                        break
                    out += [audit_log.entry_wire(r) for r in rows]
                    after = rows[-1].id
            return out[:limit] if limit is not None else out
        finally:
            await db.dispose()

    entries = run(go())
    if as_json:
        echo_json(entries)
        return
    for e in entries:
        click.echo(_entry_line(e))
