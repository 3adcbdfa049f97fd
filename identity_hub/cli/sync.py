"""Replication commands: `peers add|list|remove` and `sync status|now` (docs/replication.md)."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import click

from identity_hub.cli import echo_json, fail, main, run, settings_of
from identity_hub.cli.hub import _with_db

logger = logging.getLogger(__name__)


@main.group()
def peers() -> None:
    """The hubs this hub replicates each owner's commits with."""


@peers.command("add")
@click.option("--owner", required=True, metavar="DID", help="The owner whose commits to sync.")
@click.option("--url", required=True, metavar="URL", help="The peer hub's endpoint URL.")
@click.option("--did", "peer_did", required=True, metavar="HUB_DID", help="The peer hub's DID.")
@click.pass_context
def peers_add(ctx: click.Context, owner: str, url: str, peer_did: str) -> None:
    """Pull OWNER's commits from the hub HUB_DID at URL (and send it hints after writes).

    The peer answers only if the owner authorized this hub there: a PermissionGrant from the
    owner to this hub's DID for schema.identity.foundation/0.1 HubSync, allow -R--
    (`identity-hub grant`), written on any of the owner's hubs.
    """
    from identity_hub.sync import peers as store

    if not owner.startswith("did:") or not peer_did.startswith("did:"):
        fail("--owner and --did must be DIDs")
    if not url.startswith(("http://", "https://")):
        fail("--url must be an http(s) URL")
    peer, created = _with_db(settings_of(ctx), lambda db: store.add_peer(db, owner, peer_did,
                                                                         url))
    click.echo(f"{'added' if created else 'updated'} peer {peer.id}: {peer.peer_did} at "
               f"{peer.url} for {peer.owner}")


@peers.command("remove")
@click.option("--owner", required=True, metavar="DID")
@click.option("--did", "peer_did", required=True, metavar="HUB_DID")
@click.pass_context
def peers_remove(ctx: click.Context, owner: str, peer_did: str) -> None:
    """Stop syncing OWNER with HUB_DID (its cursor is forgotten)."""
    from identity_hub.sync import peers as store

    if not _with_db(settings_of(ctx), lambda db: store.remove_peer(db, owner, peer_did)):
        fail("no such peer")
    click.echo("removed")


@peers.command("list")
@click.option("--owner", metavar="DID", help="Only this owner's peers.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def peers_list(ctx: click.Context, owner: str | None, as_json: bool) -> None:
    """The configured peers."""
    from identity_hub.sync import peers as store

    found = _with_db(settings_of(ctx), lambda db: store.list_peers(db, owner))
    if as_json:
        echo_json([p.to_json() for p in found])
        return
    for p in found:
        click.echo(f"{p.id}\t{p.owner}\t{p.peer_did}\t{p.url}")


@main.group()
def sync() -> None:
    """Replication status, and a pull now."""


def _age(us: int | None) -> str:
    if us is None:
        return "never"
    return f"{max(0, time.time() - us / 1e6):.0f} s ago"


@sync.command("status")
@click.option("--owner", metavar="DID", help="Only this owner.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def sync_status(ctx: click.Context, owner: str | None, as_json: bool) -> None:
    """Per owner and peer: the cursor, the lag in commits (as of the last pull), the last error,
    the commits parked (not judged yet), and the owner's commits held excluded (a grantee's
    commit that no grant in force at its committed_at covers, e.g. after a revocation dated
    before it; `identity-hub audit` lists them as CommitExclusion)."""
    from identity_hub.permissions.exclusion import excluded_count
    from identity_hub.sync import peers as store

    async def load(db: Any) -> tuple[list[Any], dict[str, int], dict[str, int]]:
        found = await store.list_peers(db, owner)
        parked = {o: await store.parked_count(db, o) for o in {p.owner for p in found}}
        async with db.read() as conn:
            excluded = await excluded_count(conn, owner)
        return found, parked, excluded

    found, parked, excluded = _with_db(settings_of(ctx), load)
    if as_json:
        echo_json([{**p.to_json(), "parked": parked.get(p.owner, 0),
                    "excluded": excluded.get(p.owner, 0)} for p in found])
        return
    if not found:
        click.echo("no peers (identity-hub peers add --owner DID --url URL --did HUB_DID)")
    for p in found:
        click.echo(f"{p.owner}\n  peer {p.peer_did[:60]} at {p.url}\n"
                   f"  cursor {p.cursor} of {p.peer_last_seq} (lag {p.lag}), "
                   f"last success {_age(p.last_success_us)}, refused {p.refused}, "
                   f"parked {parked.get(p.owner, 0)}, excluded {excluded.get(p.owner, 0)}")
        if p.last_error:
            click.echo(f"  last error ({p.failures} in a row, {_age(p.last_attempt_us)}): "
                       f"{p.last_error}")


@sync.command("now")
@click.option("--owner", metavar="DID", help="Only this owner's peers.")
@click.pass_context
def sync_now(ctx: click.Context, owner: str | None) -> None:
    """Pull every peer to the end of its log now, showing progress."""
    from identity_hub.runtime import open_runtime
    from identity_hub.sync.wiring import service_for

    settings = settings_of(ctx)
    last_shown = [0.0]

    def progress(peer: Any, cursor: int, last_seq: int) -> None:
        now = time.monotonic()
        if cursor >= last_seq or now - last_shown[0] > 0.5:
            last_shown[0] = now
            click.echo(f"  {peer.peer_did[:40]}…: {cursor}/{last_seq}", err=True)

    async def go() -> int:
        async with open_runtime(settings) as rt:
            service = service_for(rt.hub.commits, rt.resolver, settings, rt.identity)
            try:
                results = await service.sync_now(owner, progress)
            finally:
                await service.close()
        failed = 0
        for peer, result, error in results:
            if error is not None:
                failed += 1
                click.echo(f"{peer.owner[:40]}… ← {peer.url}: FAILED: {error}")
            elif result is not None:
                t = result.tally
                click.echo(f"{peer.owner[:40]}… ← {peer.url}: {t.stored} stored, {t.held} "
                           f"already held, {t.parked} parked, {t.refused} refused; "
                           f"cursor {result.peer.cursor}")
        return failed

    if run(go()):
        sys.exit(2)
