"""The issue's "done when", end to end on both backends: the real aiohttp server on 127.0.0.1, the
Python client, and the `identity-hub` command in subprocesses.

An app DID with a `-R--` grant on MusicPlaylist (given with `identity-hub grant`) reads the
owner's playlists and nothing else; the owner revokes it (`identity-hub revoke`); the next read is
refused; the owner's audit log, through the protocol and through `identity-hub audit`, shows both.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
from collections.abc import AsyncIterator

import pytest

from identity_hub.client import HubClient, HubErrorResponse
from identity_hub.did import DidResolver, ResolverConfig
from identity_hub.storage import store
from tests.support.identities import Identity, identity_for
from tests.support.servers import RunningHub, running_hub

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = "https://schema.org"
PLAYLIST = {"@context": SCHEMA, "@type": "MusicPlaylist", "name": "Mix", "numTracks": 2}
PERSON = {"@context": SCHEMA, "@type": "Person", "name": "Alice"}


@pytest.fixture
async def hub(db_url: str, tmp_path: pathlib.Path, hub_identity_dir: pathlib.Path
              ) -> AsyncIterator[RunningHub]:
    async with running_hub(tmp_path / "hub", db_url, hub_identity_dir) as h:
        yield h


async def cli(tmp_path: pathlib.Path, db_url: str, *args: str) -> str:
    """Run `identity-hub ARGS` in a subprocess (the hub keeps serving meanwhile)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "identity_hub", "--data-dir", str(tmp_path / "cli"),
        "--database-url", db_url, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "IDENTITY_HUB_LOG_LEVEL": "WARNING"})
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, (args, err.decode())
    return out.decode()


def client(hub: RunningHub, who: Identity) -> HubClient:
    return HubClient(hub.url, who.did, who.keys, resolver=DidResolver(ResolverConfig()))


async def test_an_app_reads_until_revoked_and_the_owner_sees_it_all(
        hub: RunningHub, db_url: str, tmp_path: pathlib.Path) -> None:
    owner, app = identity_for("Ed25519"), identity_for("Ed25519")
    await store.add_tenant(hub.runtime.db, owner.did)
    owner_keys = owner.key_file(tmp_path / "owner.json")
    async with client(hub, owner) as mine, client(hub, app) as theirs:
        playlist = await mine.create(PLAYLIST)
        person = await mine.create(PERSON)
        with pytest.raises(HubErrorResponse) as denied:
            await theirs.query_objects(sub=owner.did, context=SCHEMA, type_="MusicPlaylist")
        assert denied.value.error_code == "permissions_required"

        grant_id = (await cli(tmp_path, db_url, "grant", "--hub", hub.url, "--as", owner_keys,
                              "--grantee", app.did, "--context", SCHEMA, "--type",
                              "MusicPlaylist", "--allow", "-R--")).strip()
        assert len(grant_id) == 64
        listed = await cli(tmp_path, db_url, "grants", "--hub", hub.url, "--as", owner_keys,
                           "--json")
        [shown] = json.loads(listed)
        assert shown["id"] == grant_id and shown["grantee"] == app.did
        assert shown["allow"] == "-R--"

        # the app reads the owner's playlists, and nothing else
        found = await theirs.query_objects(sub=owner.did, context=SCHEMA,
                                           type_="MusicPlaylist", include_data=True)
        assert [o["id"] for o in found] == [playlist] and found[0]["data"]["name"] == "Mix"
        assert [o["id"] for o in await theirs.query_objects(sub=owner.did)] == [playlist]
        history = await theirs.query_commits(sub=owner.did)
        assert {c["header"]["rev"] for c in history} == {playlist, grant_id}
        assert await theirs.query_commits(sub=owner.did, object_ids=[person]) == []
        with pytest.raises(HubErrorResponse) as other:
            await theirs.query_objects(sub=owner.did, context=SCHEMA, type_="Person")
        assert other.value.error_code == "permissions_required"
        with pytest.raises(HubErrorResponse) as write:
            await theirs.update(playlist, {**PLAYLIST, "name": "Hijacked"}, sub=owner.did)
        assert write.value.error_code == "permissions_required"

        out = await cli(tmp_path, db_url, "revoke", grant_id, "--hub", hub.url, "--as",
                        owner_keys)
        assert f"revoked {grant_id}" in out
        with pytest.raises(HubErrorResponse) as revoked:
            await theirs.query_objects(sub=owner.did, context=SCHEMA, type_="MusicPlaylist")
        assert revoked.value.error_code == "permissions_required"
        assert await mine.grants() == []

        log = await mine.audit()
        assert [(e["operation"], e["allowed"]) for e in log] == [
            ("read", False), ("read", True), ("read", True), ("read", True), ("read", True),
            ("read", False), ("update", False), ("read", False)]
        assert all(e["requester"] == app.did for e in log)
        assert log[1]["grant_ids"] == [grant_id] and log[1]["object_ids"] == [playlist]
        assert log[-1]["outcome"] == "permissions_required" and "grant_ids" not in log[-1]
        assert await mine.audit(grantee=owner.did) == []
        with pytest.raises(HubErrorResponse) as not_owner:
            await theirs.send(theirs.request("AuditQueryRequest", owner.did))
        assert not_owner.value.error_code == "permissions_required"

    text = await cli(tmp_path, db_url, "audit", "--owner", owner.did)
    lines = text.strip().splitlines()
    assert len(lines) == len(log) + 1  # and the refused AuditQueryRequest
    assert "allowed(ok)" in lines[1] and grant_id in lines[1] and playlist in lines[1]
    assert "DENIED(permissions_required)" in lines[-2] and "MusicPlaylist" in lines[-2]
    as_json = json.loads(await cli(tmp_path, db_url, "audit", "--owner", owner.did,
                                   "--grantee", app.did, "--json", "--since", log[5]["at"]))
    ids = [e["id"] for e in as_json]
    assert ids[-len(log[5:]) - 1:-1] == [e["id"] for e in log[5:]]
    assert all(e["at"] >= log[5]["at"] and e["requester"] == app.did for e in as_json)
    assert as_json[-1]["request_type"] == "AuditQueryRequest"


def test_the_permission_commands_explain_themselves(tmp_path: pathlib.Path) -> None:
    import subprocess

    for command, words in (("grant", ["--grantee", "--allow", "--unrevocable-until"]),
                           ("revoke", ["GRANT_ID", "--hub", "--as"]),
                           ("grants", ["--hub", "--as", "--json"]),
                           ("audit", ["--owner", "--grantee", "--since"])):
        out = subprocess.run(
            [sys.executable, "-m", "identity_hub", "--data-dir", str(tmp_path), command,
             "--help"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
        assert out.stdout.startswith(f"Usage: identity-hub {command}"), out.stdout
        assert all(w in out.stdout for w in words), (command, out.stdout)
