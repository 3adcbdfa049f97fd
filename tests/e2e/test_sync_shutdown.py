"""SIGTERM to a hub while it pulls a backlog from its peer: the sync tasks are closed before the
database engine, so the hub stops cleanly (exit code 0, no "rollback failed", no traceback),
and what it stored before stopping stays stored. Two real hubs, `identity-hub serve` in their
own processes; both backends."""

from __future__ import annotations

import asyncio
import os
import pathlib
import shutil
import signal
import socket
import sys
import time
from typing import Any

import pytest

from identity_hub.identity import HubIdentity
from identity_hub.runtime import open_runtime
from identity_hub.settings import load_settings
from identity_hub.storage import store
from identity_hub.sync import peers
from tests.support.actors import Actor, playlist
from tests.support.sync import commit_revs, drop_db, make_identities, new_db_url, sync_grant

ROOT = pathlib.Path(__file__).resolve().parents[2]
BACKLOG = 1500
STOPS = 6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _View:
    def __init__(self, runtime: object) -> None:
        self.runtime = runtime


def data_dir(root: pathlib.Path, identity_dir: pathlib.Path, db_url: str, port: int
             ) -> pathlib.Path:
    """A hub's data directory: its identity and a config.toml naming its database and port."""
    root.mkdir(parents=True)
    for item in identity_dir.iterdir():
        if item.is_file():
            shutil.copy2(item, root / item.name)
        else:
            shutil.copytree(item, root / item.name)
    (root / "config.toml").write_text(f'database_url = "{db_url}"\nport = {port}\n'
                                      'log_level = "INFO"\n')
    return root


def settings_of(path: pathlib.Path) -> object:
    return load_settings({"data_dir": str(path)}, environ={})


async def serve(path: pathlib.Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_HUB_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "identity_hub", "--data-dir", str(path), "serve", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**env, "PYTHONPATH": str(ROOT)})


async def wait_listening(port: int, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.returncode is None, await proc.stderr.read()  # type: ignore[union-attr]
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError("the hub did not start")


async def test_sigterm_during_a_sync_round_stops_cleanly(backend: str, tmp_path: pathlib.Path,
                                                        request: pytest.FixtureRequest) -> None:
    admin = request.getfixturevalue("pg_admin_url") if backend == "postgres" else None
    ids = make_identities(tmp_path, 2)
    urls = [await new_db_url(backend, tmp_path, admin) for _ in range(2)]
    owner = Actor()
    ports = [free_port(), free_port()]
    a_dir = data_dir(tmp_path / "a", ids[0], urls[0], ports[0])
    b_dir = data_dir(tmp_path / "b", ids[1], urls[1], ports[1])
    a_did, b_did = (HubIdentity.load(i).did for i in ids)
    procs: list[asyncio.subprocess.Process] = []
    try:
        # a holds a backlog of the owner's commits and the grant that lets b pull them
        async with open_runtime(settings_of(a_dir), migrate=False) as rt:  # type: ignore[arg-type]
            await store.add_tenant(rt.db, owner.did)
            for commit in [sync_grant(owner, b_did),
                           *(owner.commit(owner.did, payload=playlist(f"p{i}"))
                             for i in range(BACKLOG))]:
                answer = await rt.hub.handle(owner.did, owner.write(a_did, commit, owner.did))
                assert answer["@type"] == "WriteResponse", answer
        async with open_runtime(settings_of(b_dir), migrate=False) as rt:  # type: ignore[arg-type]
            await store.add_tenant(rt.db, owner.did)
            await peers.add_peer(rt.db, owner.did, a_did, f"http://127.0.0.1:{ports[0]}/.identity")
        a = await serve(a_dir)
        procs.append(a)
        await wait_listening(ports[0], a)
        # b starts (its first round pulls the backlog) and gets SIGTERM once it is into it;
        # again, from where it stopped: each stop lands somewhere else in the round
        async with open_runtime(settings_of(b_dir), migrate=False) as rt:  # type: ignore[arg-type]
            view: Any = _View(rt)
            held = 0
            for _stop in range(STOPS):
                b = await serve(b_dir)
                procs.append(b)
                await wait_listening(ports[1], b)
                deadline = time.monotonic() + 60
                while len(await commit_revs(view, owner.did)) < held + 40:
                    assert time.monotonic() < deadline, "b does not pull"
                    await asyncio.sleep(0.02)
                b.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(b.communicate(), 60)
                log = err.decode()
                assert b.returncode == 0, log[-3000:]
                assert "rollback failed" not in log, log[-3000:]
                assert "Traceback" not in log, log[-3000:]
                before, held = held, len(await commit_revs(view, owner.did))
                assert held >= before + 40  # what it stored before stopping stays
                if held > BACKLOG:
                    break
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        for url in urls:
            await drop_db(url, admin)


@pytest.mark.parametrize("env", [{"IDENTITY_HUB_SYNC_PAGE_COMMITS": "5000"},
                                 {"IDENTITY_HUB_SYNC_MAX_PAGE_BYTES": "1000"}])
def test_serve_refuses_sync_limits_out_of_range(tmp_path: pathlib.Path,
                                                env: dict[str, str]) -> None:
    """One line naming the setting, no traceback, nothing started."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "identity_hub", "--data-dir", str(tmp_path / "d"), "serve",
         "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env})
    assert out.returncode == 1, out
    (name,) = (k.removeprefix("IDENTITY_HUB_").lower() for k in env)
    assert name in out.stderr and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "d").exists()  # refused before the data directory is created
