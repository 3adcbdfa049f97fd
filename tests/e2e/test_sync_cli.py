"""`identity-hub peers …` and `identity-hub sync status|now` in subprocesses."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
OWNER = "did:example:owner"
PEER = "did:example:peer-hub"


def cli(data: pathlib.Path, *args: str, code: int = 0) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "identity_hub", "--data-dir", str(data), *args], cwd=ROOT,
        check=False, capture_output=True, text=True, timeout=120,
        env={**os.environ, "IDENTITY_HUB_LOG_LEVEL": "ERROR", "IDENTITY_HUB_COMPAT_2019": "false"})
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc.stdout


def test_peers_and_status_and_a_failing_peer(tmp_path: pathlib.Path) -> None:
    data = tmp_path / "hub"
    cli(data, "init", "--no-rsa")
    # nothing listens on port 9 of the loopback: the pull fails, and says so
    assert "added peer" in cli(data, "peers", "add", "--owner", OWNER, "--url",
                               "http://127.0.0.1:9/.identity", "--did", PEER)
    assert "updated peer" in cli(data, "peers", "add", "--owner", OWNER, "--url",
                                 "http://127.0.0.1:9/", "--did", PEER)
    listed = json.loads(cli(data, "peers", "list", "--json"))
    assert [(p["owner"], p["peer_did"], p["url"]) for p in listed] == [
        (OWNER, PEER, "http://127.0.0.1:9/")]
    out = cli(data, "sync", "now", code=2)
    assert "FAILED" in out
    status = json.loads(cli(data, "sync", "status", "--json"))
    assert status[0]["failures"] == 1 and status[0]["last_error"]
    assert status[0]["cursor"] == 0 and status[0]["parked"] == 0
    assert "last error (1 in a row" in cli(data, "sync", "status")
    cli(data, "peers", "remove", "--owner", OWNER, "--did", PEER)
    assert json.loads(cli(data, "peers", "list", "--json")) == []
    cli(data, "peers", "remove", "--owner", OWNER, "--did", PEER, code=1)
