"""The `identity-hub` command as a user runs it: real subprocesses."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.support.actors import Actor

ROOT = pathlib.Path(__file__).resolve().parents[2]


def hub(*args: str, data_dir: pathlib.Path, check: bool = True, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "identity_hub", "--data-dir", str(data_dir), *args],
        cwd=ROOT, capture_output=True, text=True, check=check, timeout=120,
        env={**os.environ, **(env or {})},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_help_everywhere(tmp_path: pathlib.Path) -> None:
    for args in ([], ["init"], ["serve"], ["migrate"], ["tenants"], ["tenants", "add"],
                 ["refold"], ["info"], ["did"], ["did", "create"], ["did", "resolve"],
                 ["keys", "rotate"]):
        out = hub(*args, "--help", data_dir=tmp_path)
        assert "Usage:" in out.stdout and len(out.stdout) > 100, args


def test_init_info_tenants_refold(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "hub"
    out = hub("init", data_dir=data)
    assert "hub DID: did:" in out.stdout
    assert (data / "hub.db").exists()
    again = hub("init", data_dir=data, check=False)
    assert again.returncode != 0 and "already" in again.stderr
    info = json.loads(hub("info", "--json", data_dir=data).stdout)
    assert set(info) == {"did", "didDocument", "endpoint"}
    assert info["didDocument"]["id"] == info["did"]
    owner = Actor()
    assert "added" in hub("tenants", "add", owner.did, data_dir=data).stdout
    assert owner.did in hub("tenants", "list", data_dir=data).stdout
    refolded = hub("refold", data_dir=data)
    assert "0 differed" in refolded.stdout
    assert "removed" in hub("tenants", "remove", owner.did, data_dir=data).stdout
    assert hub("tenants", "remove", owner.did, data_dir=data, check=False).returncode == 1
    migrated = hub("migrate", data_dir=data)
    assert "database at revision" in migrated.stdout


def test_info_without_a_hub_says_what_to_do(tmp_path: pathlib.Path) -> None:
    out = hub("info", data_dir=tmp_path / "none", check=False)
    assert out.returncode == 1 and "identity-hub init" in out.stderr


@pytest.mark.timeout(120)
def test_serve_on_a_fresh_data_dir_answers_healthz(tmp_path: pathlib.Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "identity_hub", "--data-dir", str(tmp_path / "fresh"), "serve",
         "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.time() + 60
        body = None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = json.loads(r.read())
                    break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(proc.stderr.read() if proc.stderr else "") from None
                time.sleep(0.2)
        assert body == {"status": "ok"}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0


def test_index_add_creates_a_field_index_once(tmp_path: pathlib.Path) -> None:
    import sqlite3

    data = tmp_path / "hub"
    hub("init", data_dir=data)
    out = hub("index", "add", "numTracks", data_dir=data)
    assert "ix_objects_data_numtracks_updated_at" in out.stdout
    assert hub("index", "add", "numTracks", data_dir=data).returncode == 0  # idempotent
    with sqlite3.connect(data / "hub.db") as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "ix_objects_data_numtracks_updated_at" in names
    bad = hub("index", "add", "not a field!", data_dir=data, check=False)
    assert bad.returncode == 1 and "not a field" in bad.stderr
