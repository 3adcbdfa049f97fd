"""An acknowledged write survives SIGKILL of the hub process; two processes writing to one
PostgreSQL lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import sys
from typing import Any

import sqlalchemy as sa

from identity_hub.storage.engine import Database
from identity_hub.storage.tables import commits
from tests.support.actors import Actor

ROOT = pathlib.Path(__file__).resolve().parents[2]


async def start_writer(tmp: pathlib.Path, db_url: str, identity_dir: pathlib.Path,
                       owner: Actor, count: int, tag: str) -> asyncio.subprocess.Process:
    jwk_file = tmp / f"owner-{tag}.jwk"
    jwk_file.write_text(owner.private_jwk())
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.writer", str(tmp / f"data-{tag}"), db_url,
        str(identity_dir), str(jwk_file), str(count), tag,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def stored_revs(db_url: str) -> list[tuple[str, int]]:
    db = Database(db_url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(sa.select(commits.c.rev, commits.c.seq))
            return [(r[0], r[1]) for r in rows]
    finally:
        await db.dispose()


async def test_acknowledged_writes_survive_sigkill(db_url: str, tmp_path: pathlib.Path,
                                                   hub_identity_dir: pathlib.Path) -> None:
    owner = Actor()
    proc = await start_writer(tmp_path, db_url, hub_identity_dir, owner, 10_000, "kill")
    acked: list[str] = []
    assert proc.stdout is not None
    while len(acked) < 40:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        assert line and not line.startswith("ERROR"), (line, await proc.stderr.read())
        acked.append(line)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    held = {rev for rev, _ in await stored_revs(db_url)}
    missing = [rev for rev in acked if rev not in held]
    assert missing == [], f"{len(missing)} acknowledged writes lost"


async def test_two_processes_writing_concurrently(backend: str, db_url: str,
                                                  tmp_path: pathlib.Path,
                                                  hub_identity_dir: pathlib.Path) -> None:
    owner = Actor()
    n = 60
    procs = [await start_writer(tmp_path, db_url, hub_identity_dir, owner, n, tag)
             for tag in ("a", "b")]
    outputs: list[Any] = await asyncio.gather(*(p.communicate() for p in procs))
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    acked = [line for out, _ in outputs for line in out.decode().split() if line != "DONE"]
    assert len(acked) == 2 * n
    rows = await stored_revs(db_url)
    assert sorted(rev for rev, _ in rows) == sorted(set(acked))  # none lost, none doubled
    assert sorted(seq for _, seq in rows) == list(range(1, 2 * n + 1))  # gap-free sequence
