"""`identity-hub serve --log-format json` as an operator runs it: a real subprocess on a free
port, whose stderr must be JSON on every line (the start banner, the access lines, the
malformed-request lines and the shutdown line), naming no DID."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.e2e.test_cli import free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
CANARY = "CANARY7f3a"


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/jwt"})
    return _get_req(req)


def _get_req(req: urllib.request.Request) -> int:
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


@pytest.mark.timeout(120)
def test_serve_log_format_json_makes_every_line_json(tmp_path: pathlib.Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "identity_hub", "--data-dir", str(tmp_path / "hub"), "serve",
         "--port", str(port), "--log-format", "json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if _get(f"{base}/healthz") == 200:
                    break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
        assert _post(f"{base}/.identity", b"not a JWE " + CANARY.encode()) == 401
        assert _get(f"{base}/1.0/identifiers/did:example:{CANARY}") == 404
        reply = _raw(port, b"GARBAGE\x00" + CANARY.encode() + b"\x1b[31m\r\n\r\n")
        assert reply.split(b" ", 2)[1] == b"400"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    assert out == b"", "with --log-format json nothing goes to stdout"
    lines = err.decode().splitlines()
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    events = [e.get("event") for e in entries]
    assert "start" in events and events[-1] == "stop", events
    start = entries[events.index("start")]
    assert start["port"] == port and start["endpoint"].startswith(base)
    access = [e for e in entries if e["logger"] == "identity_hub.access"]
    by_status = {e["status"]: e for e in access}
    assert by_status[200]["route"] == "/healthz"
    assert by_status[401]["error_code"] == "authentication_failed"
    assert by_status[401]["bytes_in"] == len(b"not a JWE ") + len(CANARY)
    assert by_status[404]["route"] == "/1.0/identifiers/{did}"
    assert by_status[400]["error_code"] == "malformed_http"
    assert all(len(e["request_id"]) == 16 for e in access)
    for entry in entries:  # a stranger's bytes only ever appear escaped, and no traceback
        assert "exc" not in entry, entry
        for value in entry.values():
            if isinstance(value, str):
                assert not any(ord(c) < 0x20 or c == "\x7f" for c in value), entry
    # No line echoes the path's DID or the body; the malformed line shows a quoted excerpt.
    assert "did:example" not in err.decode()
    assert [e["error_code"] for e in access if CANARY in json.dumps(e)] == ["malformed_http"]


def test_a_command_error_is_a_json_line_with_log_format_json(tmp_path: pathlib.Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "identity_hub", "--data-dir", str(tmp_path / "none"), "info"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "IDENTITY_HUB_LOG_FORMAT": "json"})
    assert out.returncode == 1
    [entry] = [json.loads(line) for line in out.stderr.splitlines()]
    assert entry["level"] == "ERROR" and "identity-hub init" in entry["msg"]


def test_an_unknown_log_format_is_one_line_saying_so(tmp_path: pathlib.Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "identity_hub", "--data-dir", str(tmp_path), "info"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), "IDENTITY_HUB_LOG_FORMAT": "yaml"})
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == ["error: log_format must be text or json, not 'yaml'"]
