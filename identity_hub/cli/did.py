"""`identity-hub did ...` and `identity-hub keys ...`: the click groups `did` and `keys`.

The main `identity-hub` group registers both; its context object is an
`identity_hub.settings.Settings`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import click

from identity_hub.did import DidError, DidResolver, ResolverConfig
from identity_hub.did.keyfile import write_key_file
from identity_hub.did.keygen import create_did_ion, create_did_jwk, create_did_key, private_dict
from identity_hub.identity import HubIdentity, IdentityError
from identity_hub.settings import Settings, load_settings

logger = logging.getLogger(__name__)

KEY_TYPES = ("Ed25519", "secp256k1", "P-256", "RSA")


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else load_settings()


@click.group("did")
def did() -> None:
    """Create and resolve DIDs.

    Offline: did:key, did:jwk, long-form did:ion. did:web over HTTPS with --did-web.
    Other methods and short-form did:ion need a universal resolver (--universal-resolver or the
    universal_resolver setting).
    """


@did.command("create")
@click.option("--method", "method", type=click.Choice(["key", "jwk", "ion"]), default="key",
              show_default=True, help="DID method of the new DID.")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="Ed25519", show_default=True,
              help="Type of the signing key. did:key Ed25519 also gets the derived X25519 "
                   "key-agreement key; did:ion always gets an X25519 key-agreement key.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("did-keys.json"), show_default=True,
              help="Key file to write (mode 0600; never overwritten).")
@click.option("--testnet", is_flag=True, help="did:ion only: make a did:ion:test DID.")
def create(method: str, key_type: str, out: Path, testnet: bool) -> None:
    """Make a new DID and its private keys; print the DID.

    The key file is JSON: {"did": ..., "keys": [{"kid": "<did>#<fragment>", "privateJwk":
    {...}}]}; for did:ion it also holds the Sidetree update and recovery keys.
    """
    if out.exists():
        raise click.ClickException(f"{out} exists; choose another --out")
    extra: dict[str, Any] = {}
    if method == "key":
        new_did, keys = create_did_key(key_type)
    elif method == "jwk":
        new_did, keys = create_did_jwk(key_type)
    else:
        try:
            new_did, keys, operation_keys = create_did_ion(key_type, testnet=testnet)
        except ValueError as exc:
            raise click.ClickException(f"cannot make this did:ion: {exc}") from exc
        extra["ionOperationKeys"] = {k: private_dict(v) for k, v in operation_keys.items()}
    try:
        write_key_file(out, new_did, keys, **extra)
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from exc
    click.echo(f"wrote {len(keys)} private key(s) to {out}", err=True)
    click.echo(new_did)


@did.command("resolve")
@click.argument("did_string", metavar="DID")
@click.option("--universal-resolver", metavar="URL",
              help="Base URL of a universal resolver (GET URL/1.0/identifiers/DID); overrides "
                   "the universal_resolver setting.")
@click.option("--allow-host", "allow_hosts", multiple=True, metavar="HOST[:PORT]",
              help="Host that may be reached over plain http or on a private/loopback address "
                   "(repeatable; adds to the allow_hosts setting).")
@click.option("--result", "full_result", is_flag=True,
              help="Print the whole resolution result (document and metadata), not only the "
                   "document.")
@click.pass_context
def resolve(ctx: click.Context, did_string: str, universal_resolver: str | None,
            allow_hosts: tuple[str, ...], full_result: bool) -> None:
    """Resolve DID and print its DID document as JSON (every id absolute)."""
    config = ResolverConfig.from_settings(_settings(ctx))
    changes: dict[str, Any] = {"allow_hosts": config.allow_hosts | set(allow_hosts)}
    if universal_resolver:
        changes["universal_resolver"] = universal_resolver
    config = dataclasses.replace(config, **changes)

    async def run() -> dict[str, Any]:
        resolver = DidResolver(config)
        try:
            if full_result:
                return await resolver.resolve_result(did_string)
            return await resolver.resolve(did_string)
        finally:
            await resolver.aclose()

    try:
        document = asyncio.run(run())
    except DidError as exc:
        raise click.ClickException(f"{exc.error}: {exc.message}") from exc
    click.echo(json.dumps(document, indent=2))


@click.group("keys")
def keys() -> None:
    """Manage the hub's own keys (in the data directory)."""


@keys.command("rotate")
@click.option("--grace", type=click.IntRange(min=0), default=86400, show_default=True,
              metavar="SECONDS",
              help="How long the old private keys keep decrypting and verifying.")
@click.pass_context
def rotate(ctx: click.Context, grace: int) -> None:
    """Replace the hub's keys; the old ones stay usable for --grace seconds.

    did:web keeps its DID. A long-form did:ion gets a NEW DID (its keys are part of the DID):
    publish it to clients. A running hub picks the new keys up when restarted.
    """
    data_dir = _settings(ctx).data_path
    try:
        identity = HubIdentity.load(data_dir)
        old = identity.did
        identity.rotate(grace_seconds=grace)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from exc
    if identity.did != old:
        click.echo("the hub DID changed (did:ion); the old one works for "
                   f"{grace} s", err=True)
    kids = [m["id"] for m in identity.document.get("verificationMethod", [])]
    click.echo(json.dumps({"did": identity.did, "keys": kids}, indent=2))
