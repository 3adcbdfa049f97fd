"""The encrypted transport on PostgreSQL (issue #4): the hub's CPU per authenticated write, the
ceiling its own crypto allows, and writes/s over real HTTP with 1 and 32 connections.

    .venv/bin/python bench/transport.py [--runs N] [--quick] [--profile] [--no-http]

Requesters: Ed25519/X25519 (did:key; request EdDSA, ECDH-ES + A256GCM to the hub's X25519 key)
and RSA-2048 (a 2019-style DID document served by a universal resolver on 127.0.0.1; request
RS256, RSA-OAEP + A128GCM to the hub's RSA key). Every write is a WriteRequest with a fresh create
commit, a fresh did-requester-nonce and the access token; all bodies are built (signed and
encrypted) before the timed loop.

(a) hub CPU per write: `time.process_time` around `Pipeline.handle(body)` in this process over
    --writes requests (the database server's CPU is shown beside it, not included);
(b) the ceilings, measured here too: the 4 JOSE steps of a request (decrypt the JWE, verify the
    JWS, sign the response, encrypt it) with the `cryptography` calls alone and with
    identity_hub.crypto; the same plus the 2 other verifications a write needs (access token,
    commit); the whole envelope (auth/envelope.py: open_request, verify_token, seal_response,
    with the resolver's cache) without the database;
(c) writes/s over HTTP: `python -m identity_hub serve` in a subprocess, an aiohttp client here
    with 1 and 32 connections (one requester DID, and tenant, per connection: the hub limits
    each requester to 16 requests in flight), plus the server process's CPU per write.
Where hub CPU misses the target (1 ms Ed25519/X25519, 3.5 ms RSA) — or with --profile — a cProfile
of Pipeline.handle is printed. Figures are medians over --runs runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import inspect
import json
import os
import pathlib
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import _support as S
import aiohttp
import crypto_baseline
import psutil
import sqlalchemy as sa

from identity_hub import crypto
from identity_hub.auth.envelope import (
    RESPONSE_SIGNER,
    open_request,
    response_recipient,
    seal_response,
    verify_token,
)
from identity_hub.did import DidResolver, ResolverConfig, VerificationKey
from identity_hub.identity import HubIdentity
from identity_hub.runtime import open_runtime
from identity_hub.settings import load_settings
from identity_hub.storage import store
from identity_hub.storage.engine import Database
from identity_hub.storage.tables import commits as commits_table
from identity_hub.transport.pipeline import Pipeline
from tests.support.identities import Identity, identity_for
from tests.support.servers import UniversalResolver

FAMILIES = ("Ed25519", "RSA")
LABEL = {"Ed25519": "Ed25519/X25519", "RSA": "RSA-2048"}
TARGET_MS = {"Ed25519": 1.0, "RSA": 3.5}
REFERENCE_MS = {"RSA": 11.5}


@dataclasses.dataclass
class Config:
    runs: int = 5              # (a) and (b)
    writes: int = 200          # (a) requests per run and family
    crypto_seconds: float = 0.2  # (b) CPU seconds per run and variant
    http_runs: int = 3         # (c)
    http_writes: int = 320     # (c) requests per run, family and concurrency
    concurrency: tuple[int, ...] = (1, 32)
    profile_writes: int = 200


QUICK = Config(runs=2, writes=40, crypto_seconds=0.05, http_runs=1, http_writes=64,
               concurrency=(1, 8), profile_writes=40)


# --- requesters ----------------------------------------------------------------------------------

class Requester:
    """A requester DID with its private keys, building encrypted request bodies ahead of time."""

    def __init__(self, who: Identity, hub_did: str, hub_key: VerificationKey) -> None:
        self.who = who
        self.hub_did = hub_did
        self.hub_key = hub_key
        self.keys = {kid: crypto.private_key_from_jwk(jwk) for kid, jwk in who.keys}
        self.family, self.sign_key = self.keys[who.kid]
        self.signer = S.CommitSigner(who.did, who.kid, who.key)

    def seal(self, payload: bytes, token: str | None) -> bytes:
        """JWE(JWS(payload)) as a client sends it, with a fresh nonce."""
        header: dict[str, Any] = {"did-requester-nonce": str(uuid.uuid4())}
        if token:
            header["did-access-token"] = token
        header["kid"] = self.who.kid
        jws = crypto.sign_compact_jws(payload, header, self.family, self.sign_key)
        return crypto.encrypt_jwe(jws.encode("ascii"), self.hub_key.key_family,
                                  self.hub_key.crypto_key, self.hub_key.id).encode("ascii")

    def write_body(self, token: str) -> bytes:
        req = S.request("WriteRequest", self.who.did, self.hub_did,
                        commit=self.signer.commit(self.who.did))
        return self.seal(json.dumps(req, separators=(",", ":")).encode(), token)

    def open(self, body: bytes) -> bytes:
        """The payload of a hub response (decrypted; the bench trusts the hub's signature)."""
        jwe = crypto.parse_compact_jwe(body)
        family, key = self.keys[crypto.jwe_kid(jwe) or ""]
        return crypto.parse_compact_jws(crypto.decrypt_jwe(jwe, family, key)).payload

    async def handshake(self, send: Callable[[bytes], Awaitable[tuple[int, bytes]]]) -> str:
        status, body = await send(self.seal(b"", None))
        if status != 200:
            raise SystemExit(f"handshake refused: HTTP {status} {body[:200]!r}")
        return self.open(body).decode("ascii")


async def hub_encryption_key(resolver: DidResolver, hub_did: str, family: str
                             ) -> VerificationKey:
    """The hub key a client of this family encrypts to: RSA for 2019 clients, else X25519."""
    keys = [k for k in await resolver.keys(hub_did, "encrypt") if k.can_encrypt()]
    want = [k for k in keys if (k.key_family == "RSA") == (family == "RSA")]
    return want[0]


def enrol(family: str, ur: UniversalResolver) -> Identity:
    who = identity_for(family)
    if who.document is not None:
        ur.add(who.document)
    return who


# --- measuring -----------------------------------------------------------------------------------

async def cpu_per_call(fns: dict[str, Callable[[], Any]], runs: int, seconds: float
                       ) -> dict[str, float]:
    """Median over runs of mean process CPU seconds per call; fns take turns within a run.

    A function may return an awaitable (awaited inside the timed loop).
    """
    async def call(fn: Callable[[], Any]) -> None:
        out = fn()
        if inspect.isawaitable(out):
            await out

    iterations = {}
    for name, fn in fns.items():
        await call(fn)
        start, calls = time.process_time(), 0
        while time.process_time() - start < 0.03:
            await call(fn)
            calls += 1
        iterations[name] = max(10, int(seconds * calls / (time.process_time() - start)))
    results: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.process_time()
            for _ in range(iterations[name]):
                await call(fn)
            results[name].append((time.process_time() - t0) / iterations[name])
    return {name: S.median(v) for name, v in results.items()}


async def count_commits(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(
            sa.select(sa.func.count()).select_from(commits_table))).scalar() or 0)


def print_profile(prof: cProfile.Profile, requests: int, top: int) -> None:
    """Top functions by own time and by cumulative time, in ms per request."""
    stats = pstats.Stats(prof)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in entries.values())

    def name(func: tuple[str, int, str]) -> str:
        path, line, fn = func
        if path == "~":
            return fn
        for marker in ("site-packages/", "identity_hub/", "lib/python3"):
            if marker in path:
                path = path.split(marker, 1)[1] if marker != "identity_hub/" else (
                    "identity_hub/" + path.split(marker, 1)[1])
                break
        return f"{path}:{line}({fn})"

    rows = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    print(S.table(["own time: function", "calls/req", "own ms/req", "cum ms/req"], [
        [name(f)[:90], f"{nc / requests:.1f}", f"{tt / requests * 1e3:.3f}",
         f"{ct / requests * 1e3:.3f}"] for f, (_cc, nc, tt, ct, _c) in rows]))
    print()
    rows = sorted(entries.items(), key=lambda kv: kv[1][3], reverse=True)
    picked = [(f, v) for f, v in rows if "identity_hub/" in f[0]][:top]
    print(S.table(["cumulative, identity_hub: function", "calls/req", "own ms/req", "cum ms/req"], [
        [name(f)[:90], f"{nc / requests:.1f}", f"{tt / requests * 1e3:.3f}",
         f"{ct / requests * 1e3:.3f}"] for f, (_cc, nc, tt, ct, _c) in picked]))
    print(f"(profiled total {total / requests * 1e3:.2f} ms/req: cProfile inflates call-heavy "
          "code; a coroutine counts a call per resumption)")


# --- (a) and (b): in process ---------------------------------------------------------------------

def ceiling_fns(req: Requester, body: bytes, token: str, payload: bytes, pipeline: Pipeline,
                rt: Any, opened: Any, recipient: VerificationKey) -> dict[str, Callable[[], Any]]:
    """The (b) variants for one requester, with the hub's real keys, body and response."""
    hub_family, hub_priv = pipeline.keys.private(opened.hub_kid)  # type: ignore[misc]
    req_pub = opened.requester_key.crypto_key
    s_kid, s_family, s_key = pipeline.keys.signer(RESPONSE_SIGNER[opened.requester_key.key_family])
    compat = recipient.key_family == "RSA"
    t_kid = crypto.parse_compact_jws(token).header["kid"]  # the hub key's #fragment
    t_family, t_priv = pipeline.keys.private(  # type: ignore[misc]
        rt.identity.did + t_kid if t_kid.startswith("#") else t_kid)
    t_pub = t_priv.public_key()
    commit = json.loads(opened.payload)["commit"]
    hub_did = rt.identity.did

    def four_steps() -> str:
        jwe = crypto.parse_compact_jwe(body)
        jws = crypto.parse_compact_jws(crypto.decrypt_jwe(jwe, hub_family, hub_priv))
        crypto.verify_jws(jws, req.family, req_pub)
        signed = crypto.sign_compact_jws(
            payload, {"did-requester-nonce": opened.nonce, "kid": s_kid}, s_family, s_key)
        return crypto.encrypt_jwe(signed.encode("ascii"), recipient.key_family,
                                  recipient.crypto_key, recipient.id, compat_2019=compat)

    def six_ops() -> None:
        four_steps()
        crypto.verify_jws(crypto.parse_compact_jws(token), t_family, t_pub)
        crypto.verify_jws(crypto.parse_flattened_jws(commit), req.family, req_pub)

    async def envelope() -> None:
        o = await open_request(body, pipeline.keys, rt.resolver, pipeline.limits)
        verify_token(token, pipeline.keys, o.requester, hub_did)
        await seal_response(payload, o, pipeline.keys, rt.resolver, rt.settings.compat_2019)

    if req.family == "RSA":
        prim = crypto_baseline.rsa_primitives(crypto_baseline._rsa_setup())
    else:
        prim = crypto_baseline.okp_primitives(crypto_baseline._okp_setup())
    return {"primitives": prim, "four": four_steps, "six": six_ops, "envelope": envelope}


async def in_process(pg: S.Postgres, identity_dir: pathlib.Path, ur: UniversalResolver,
                     cfg: Config, force_profile: bool) -> dict[str, dict[str, float]]:
    """(a) and (b). The families take turns in every run, so load drift hits both alike."""
    url = await pg.create_database("pipeline")
    out: dict[str, dict[str, float]] = {f: {} for f in FAMILIES}
    with tempfile.TemporaryDirectory(prefix="identity-hub-bench-") as tmp:
        settings = load_settings({"data_dir": tmp, "database_url": url,
                                  "universal_resolver": f"http://{ur.host}",
                                  "allow_hosts": ur.host}, environ={})
        async with open_runtime(settings, identity=HubIdentity.load(identity_dir)) as rt:
            pipeline = Pipeline(rt)
            hub_did = rt.identity.did

            async def send(body: bytes) -> tuple[int, bytes]:
                status, _ctype, out_ = await pipeline.handle(body)
                return status, out_

            reqs: dict[str, tuple[Requester, str]] = {}
            for family in FAMILIES:
                who = enrol(family, ur)
                await store.add_tenant(rt.db, who.did)
                req = Requester(who, hub_did, await hub_encryption_key(rt.resolver, hub_did,
                                                                       family))
                token = await req.handshake(send)
                for _ in range(10):  # warm-up: resolver cache, statement cache, pool
                    status, _b = await send(req.write_body(token))
                    assert status == 200
                reqs[family] = (req, token)

            before = await count_commits(rt.db)
            counter = S.StatementCounter(rt.db.engine).__enter__()
            samples: dict[str, dict[str, list[float]]] = {
                f: {"pipeline": [], "wall": [], "pg": []} for f in FAMILIES}
            last: dict[str, bytes] = {}
            for _ in range(cfg.runs):
                for family, (req, token) in reqs.items():
                    bodies = [req.write_body(token) for _ in range(cfg.writes)]
                    p0, c0, w0 = pg.cpu_seconds(), time.process_time(), time.perf_counter()
                    for body in bodies:
                        status, _ct, last[family] = await pipeline.handle(body)
                        if status != 200:
                            raise SystemExit(f"write refused: HTTP {status} "
                                             f"{last[family][:200]!r}")
                    c1, w1, p1 = time.process_time(), time.perf_counter(), pg.cpu_seconds()
                    fig = samples[family]
                    fig["pipeline"].append((c1 - c0) / cfg.writes)
                    fig["wall"].append((w1 - w0) / cfg.writes)
                    if p0 is not None and p1 is not None:
                        fig["pg"].append((p1 - p0) / cfg.writes)
            stored = await count_commits(rt.db) - before
            if stored != cfg.runs * cfg.writes * len(FAMILIES):
                raise SystemExit(f"{stored} commits stored, "
                                 f"{cfg.runs * cfg.writes * len(FAMILIES)} sent")
            counter.__exit__()
            counts = {"statements": counter.statements, "checkouts": counter.checkouts}
            for family, fig in samples.items():
                out[family].update({k: S.median(v) for k, v in fig.items() if v})
                out[family].update({k: v / stored for k, v in counts.items()})

            # (b) the ceilings, all variants of both families taking turns
            fns: dict[str, Callable[[], Any]] = {}
            for family, (req, token) in reqs.items():
                payload = req.open(last[family])
                if json.loads(payload).get("@type") != "WriteResponse":
                    raise SystemExit(f"not a WriteResponse: {payload[:200]!r}")
                body = req.write_body(token)
                opened = await open_request(body, pipeline.keys, rt.resolver, pipeline.limits)
                recipient = await response_recipient(rt.resolver, opened)
                for name, fn in ceiling_fns(req, body, token, payload, pipeline, rt, opened,
                                            recipient).items():
                    fns[f"{family}/{name}"] = fn
            for key, value in (await cpu_per_call(fns, max(5, cfg.runs),
                                                  cfg.crypto_seconds)).items():
                family, name = key.split("/")
                out[family][name] = value

            profiles: list[tuple[str, cProfile.Profile]] = []
            for family, (req, token) in reqs.items():
                if not force_profile and out[family]["pipeline"] * 1e3 <= TARGET_MS[family]:
                    continue
                bodies = [req.write_body(token) for _ in range(cfg.profile_writes)]
                prof = cProfile.Profile(time.process_time)  # CPU, not time awaiting
                prof.enable()
                for b in bodies:
                    await pipeline.handle(b)
                prof.disable()
                profiles.append((family, prof))
    for family, prof in profiles:
        print(f"\n=== cProfile (CPU timer) of Pipeline.handle, {LABEL[family]} requester, "
              f"{cfg.profile_writes} writes, PostgreSQL ===")
        print_profile(prof, cfg.profile_writes, 25)
    return out


# --- (c): over HTTP ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_hub(data_dir: pathlib.Path, db_url: str, ur: UniversalResolver, port: int,
              log_path: pathlib.Path) -> subprocess.Popen[bytes]:
    """`python -m identity_hub serve` in a subprocess, its output to `log_path`."""
    env = {**os.environ, "IDENTITY_HUB_DATABASE_URL": db_url,
           "IDENTITY_HUB_UNIVERSAL_RESOLVER": f"http://{ur.host}",
           "IDENTITY_HUB_ALLOW_HOSTS": ur.host}
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "identity_hub", "--data-dir", str(data_dir), "serve",
             "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(S.REPO))


def stop_hub(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_tail(path: pathlib.Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.asynccontextmanager
async def hub_server(data_dir: pathlib.Path, db_url: str, ur: UniversalResolver,
                     log_path: pathlib.Path) -> Any:
    """A hub server process on 127.0.0.1; yields (base URL, psutil.Process of the server)."""
    port = free_port()
    proc = start_hub(data_dir, db_url, ur, port, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"the hub exited with {proc.returncode}:\n"
                                     + log_tail(log_path))
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(base + "/healthz") as resp:
                        if resp.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise SystemExit("the hub did not come up within 60 s:\n"
                                     + log_tail(log_path))
                await asyncio.sleep(0.2)
        yield base, psutil.Process(proc.pid)
    finally:
        stop_hub(proc)


def proc_cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


async def over_http(pg: S.Postgres, identity_dir: pathlib.Path, ur: UniversalResolver,
                    cfg: Config, workdir: pathlib.Path) -> dict[tuple[str, int], dict[str, float]]:
    """(c). Every run goes through all (family, concurrency) pairs in turn."""
    url = await pg.create_database("http")
    data_dir = workdir / "http-hub"
    S.copy_identity(identity_dir, data_dir)
    hub_did = HubIdentity.load(identity_dir).did
    db = Database(url)
    client_resolver = DidResolver(ResolverConfig())
    samples: dict[tuple[str, int], dict[str, list[float]]] = {
        (f, c): {"rate": [], "server_cpu": [], "pg": []} for f in FAMILIES
        for c in cfg.concurrency}
    log_path = workdir / "http-hub.log"
    try:
        async with hub_server(data_dir, url, ur, log_path) as (base, server):
            endpoint = base + "/.identity"
            n_conn = max(cfg.concurrency)
            connector = aiohttp.TCPConnector(limit=n_conn)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def send(body: bytes) -> tuple[int, bytes]:
                    async with session.post(endpoint, data=body, headers={
                            "Content-Type": "application/jwt"}) as resp:
                        return resp.status, await resp.read()

                # one requester DID (and tenant) per connection
                people: dict[str, list[tuple[Requester, str]]] = {}
                for family in FAMILIES:
                    hub_key = await hub_encryption_key(client_resolver, hub_did, family)
                    reqs = [Requester(enrol(family, ur), hub_did, hub_key)
                            for _ in range(n_conn)]
                    for r in reqs:
                        await store.add_tenant(db, r.who.did)
                    people[family] = [(r, await r.handshake(send)) for r in reqs]
                    for r, t in people[family]:  # warm-up: resolution, caches
                        status, _b = await send(r.write_body(t))
                        assert status == 200, status

                for _ in range(cfg.http_runs):
                    for family in FAMILIES:
                        for conc in cfg.concurrency:
                            per = cfg.http_writes // conc
                            work = [[r.write_body(t) for _ in range(per)]
                                    for r, t in people[family][:conc]]
                            total = per * conc
                            before = await count_commits(db)
                            failures: list[int] = []

                            async def worker(bodies: list[bytes], failures: list[int]
                                             ) -> None:
                                for b in bodies:
                                    status, _ = await send(b)
                                    if status != 200:
                                        failures.append(status)

                            s0, p0 = proc_cpu(server), pg.cpu_seconds()
                            t0 = time.perf_counter()
                            await asyncio.gather(*(worker(w, failures) for w in work))
                            wall = time.perf_counter() - t0
                            s1, p1 = proc_cpu(server), pg.cpu_seconds()
                            if failures:
                                raise SystemExit(f"{len(failures)} writes refused: "
                                                 f"{sorted(set(failures))}")
                            stored = await count_commits(db) - before
                            if stored != total:
                                raise SystemExit(f"{stored} commits stored, {total} sent")
                            fig = samples[(family, conc)]
                            fig["rate"].append(total / wall)
                            fig["server_cpu"].append((s1 - s0) / total)
                            if p0 is not None and p1 is not None:
                                fig["pg"].append((p1 - p0) / total)
    finally:
        await client_resolver.aclose()
        await db.dispose()
    return {key: {k: S.median(v) for k, v in fig.items() if v} for key, fig in samples.items()}


# --- report --------------------------------------------------------------------------------------

def report(cpu: dict[str, dict[str, float]], http: dict[tuple[str, int], dict[str, float]],
           cfg: Config) -> None:
    fams = [f for f in FAMILIES if f in cpu]

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1e3:.3f}"

    rows = [
        ["(b) 4 steps, cryptography calls only"] + [ms(cpu[f]["primitives"]) for f in fams],
        ["(b) 4 steps, identity_hub.crypto"] + [ms(cpu[f]["four"]) for f in fams],
        ["(b) + verify token + verify commit (6 ops)"] + [ms(cpu[f]["six"]) for f in fams],
        ["(b) envelope: open + verify_token + seal, no DB"] + [ms(cpu[f]["envelope"])
                                                               for f in fams],
        ["(a) hub CPU per write: Pipeline.handle"] + [ms(cpu[f]["pipeline"]) for f in fams],
        ["    target"] + [f"{TARGET_MS[f]:.3f}" for f in fams],
        ["    reference hub (DIF, 2019)"] + [f"{REFERENCE_MS[f]:.3f}" if f in REFERENCE_MS
                                             else "-" for f in fams],
        ["    (a) / (b) 4 steps with identity_hub.crypto"]
        + [f"{cpu[f]['pipeline'] / cpu[f]['four']:.1f}x" for f in fams],
        ["    hub CPU minus envelope (core, DB client)"]
        + [ms(cpu[f]["pipeline"] - cpu[f]["envelope"]) for f in fams],
        ["    PostgreSQL server CPU per write (not incl.)"] + [ms(cpu[f].get("pg"))
                                                              for f in fams],
        ["    wall time per write, sequential"] + [ms(cpu[f]["wall"]) for f in fams],
        ["    DB round trips / pool checkouts per write"]
        + [f"{cpu[f]['statements']:.1f} / {cpu[f]['checkouts']:.1f}" for f in fams],
    ]
    print()
    print(S.table(["process CPU ms per write"] + [LABEL[f] for f in fams], rows,
                  title=f"(a)+(b) in process, PostgreSQL: median of {cfg.runs} runs of "
                        f"{cfg.writes} writes; ceilings median of {max(5, cfg.runs)} runs"))
    if http:
        rows = []
        for f in fams:
            for conc in cfg.concurrency:
                fig = http.get((f, conc))
                if fig is None:
                    continue
                rows.append([f"{LABEL[f]}, {conc} connection{'s' if conc > 1 else ''}",
                             f"{fig['rate']:.0f}", ms(fig["server_cpu"]), ms(fig.get("pg")),
                             f"{1 / cpu[f]['four']:.0f}", f"{1 / cpu[f]['pipeline']:.0f}"])
        print()
        print(S.table(["(c) HTTP, PostgreSQL", "writes/s", "server CPU ms/write",
                       "PG CPU ms/write", "crypto ceiling/s", "1 core at (a)/s"], rows,
                      title=f"(c) over HTTP to `python -m identity_hub serve` on 127.0.0.1: "
                            f"median of {cfg.http_runs} runs of {cfg.http_writes} writes"))
        print("    crypto ceiling/s = 1 / (b) 4 steps with identity_hub.crypto, one core; "
              "1 core at (a)/s = 1 / (a)")


async def main_async(args: argparse.Namespace) -> None:
    cfg = dataclasses.replace(QUICK if args.quick else Config())
    if args.runs:
        cfg.runs = cfg.http_runs = args.runs
    S.quiet_logs()
    t_start = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="identity-hub-bench-") as tmp:
        root = pathlib.Path(tmp)
        S.new_hub_identity(root / "identity")
        ur = UniversalResolver()
        await ur.start()
        try:
            with S.postgres() as pg:
                t0 = time.perf_counter()
                cpu = await in_process(pg, root / "identity", ur, cfg, args.profile)
                print(f"in process: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
                http: dict[tuple[str, int], dict[str, float]] = {}
                if not args.no_http:
                    t0 = time.perf_counter()
                    http = await over_http(pg, root / "identity", ur, cfg, root)
                    print(f"over HTTP: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        finally:
            await ur.close()
    report(cpu, http, cfg)
    print(f"\n{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after; total {time.perf_counter() - t_start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=0,
                        help="runs per figure (default 5 in process, 3 over HTTP)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--profile", action="store_true",
                        help="print the cProfile of Pipeline.handle even when on target")
    parser.add_argument("--no-http", action="store_true", help="skip (c)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
