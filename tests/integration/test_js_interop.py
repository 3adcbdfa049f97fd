"""The real 2019 JavaScript clients against the real hub, on SQLite and PostgreSQL.

`tests/interop/driver.js` runs the published npm packages unchanged (hub-sdk-js 0.1.2 on its
pinned did-auth-jose 0.1.9, and did-auth-jose 0.1.14 used directly) through a whole session:
handshake, create, object query, commit query, update, token renewal after a 401, delete and an
encrypted ErrorResponse. The client DID documents and the hub's DID document are served in the
2019 shape (`publicKey` entries with `publicKeyJwk`) by a universal resolver on 127.0.0.1, which
both the JS clients and the hub use. Afterwards the hub's database is checked directly.

Needs `node` and `npm` (skipped with a reason otherwise); runs `npm ci --ignore-scripts` in
tests/interop once if its node_modules are missing or older than the lock file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pathlib
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from jwcrypto import jwk

from identity_hub.storage import store
from identity_hub.storage.tables import commits, objects, owners
from tests.support.servers import RunningHub, UniversalResolver, running_hub

INTEROP_DIR = pathlib.Path(__file__).resolve().parents[1] / "interop"
DRIVER = INTEROP_DIR / "driver.js"
NPM_TIMEOUT = 300.0
DRIVER_TIMEOUT = 60.0

NODE = shutil.which("node")
NPM = shutil.which("npm")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(NODE is None or NPM is None,
                       reason="the JavaScript interop tests need `node` and `npm` on PATH"),
]

# name: (sdk, requester key type, hub identity). "ion" is the default hub (long-form did:ion: the
# compat RSA key first, Ed25519, X25519); "web-k1" is a did:web hub that also has a secp256k1 key,
# so it answers ES256K requesters with ES256K (DER-encoded, as ec-key verifies).
SCENARIOS = {
    "hub-sdk-js-rsa": ("hub-sdk-js", "RSA", "ion"),
    "hub-sdk-js-rsa-use-enc": ("hub-sdk-js", "RSA", "ion"),
    "did-auth-jose-rsa": ("did-auth-jose", "RSA", "ion"),
    "did-auth-jose-es256k": ("did-auth-jose", "secp256k1", "ion"),
    "did-auth-jose-es256k-hub-k1": ("did-auth-jose", "secp256k1", "web-k1"),
}
# Documents made by the 2019 tooling (did-auth-jose 0.1.11+, the ION/Sidetree test documents): the
# one RSA key says JWK `use: "enc"`, and hub-sdk-js 0.1.2 signs its requests with it.
USE_ENC_SCENARIOS = frozenset({"hub-sdk-js-rsa-use-enc"})


# --- npm -----------------------------------------------------------------------------------------

def _modules_fresh() -> bool:
    installed = INTEROP_DIR / "node_modules" / ".package-lock.json"
    inputs = (INTEROP_DIR / "package.json", INTEROP_DIR / "package-lock.json")
    return installed.exists() and all(installed.stat().st_mtime >= p.stat().st_mtime
                                      for p in inputs)


@pytest.fixture(scope="session")
def interop_modules() -> pathlib.Path:
    """tests/interop/node_modules, installed exactly from package-lock.json if needed.

    `--ignore-scripts`: hub-sdk-js pulls in node-webcrypto-ossl, a native module it never loads and
    that does not build on current Node.
    """
    if not _modules_fresh():
        assert NPM is not None
        try:
            done = subprocess.run(
                [NPM, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=INTEROP_DIR, capture_output=True, text=True, timeout=NPM_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` in {INTEROP_DIR} took more than {NPM_TIMEOUT:.0f} s")
        if done.returncode != 0:
            pytest.fail(f"`npm ci --ignore-scripts` failed in {INTEROP_DIR}:\n"
                        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return INTEROP_DIR / "node_modules"


# --- 2019-style identities -------------------------------------------------------------------------

def _b64u_json(data: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))


class JsRequester:
    """A `did:test` DID with a 2019 `publicKey`-only document and the private JWKs for the driver."""

    def __init__(self, scenario: str) -> None:
        sdk, family, _ = SCENARIOS[scenario]
        self.did = f"did:test:{scenario}-{uuid.uuid4().hex[:12]}"
        self.family = family
        entries: list[dict[str, Any]] = []
        if sdk == "hub-sdk-js":
            # hub-sdk-js 0.1.2 (did-auth-jose 0.1.9): one RSA key that signs the request and
            # receives the response; no `use`, or `use: "enc"` (USE_ENC_SCENARIOS).
            key = jwk.JWK.generate(kty="RSA", size=2048)
            use = "enc" if scenario in USE_ENC_SCENARIOS else None
            self.kid, self.private = self._rsa_entry(entries, key, "key-1", use=use)
            self.encryption: dict[str, Any] | None = None
        else:
            # did-auth-jose 0.1.14 signs only with a key whose JWK `use` is "sig", and expects the
            # response encrypted to a key with `use` "enc" (only RSA can receive JWEs there).
            if family == "RSA":
                self.kid, self.private = self._rsa_entry(
                    entries, jwk.JWK.generate(kty="RSA", size=2048), "key-sig", use="sig")
            else:
                self.kid, self.private = self._secp256k1_entry(entries, "key-es256k")
            enc_kid, enc_private = self._rsa_entry(
                entries, jwk.JWK.generate(kty="RSA", size=2048), "key-enc", use="enc")
            self.encryption = {"kid": enc_kid, "privateJwk": enc_private}
        self.document = {"@context": "https://w3id.org/did/v1", "id": self.did,
                         "publicKey": entries}
        # the requester key the hub must encrypt its responses to
        self.response_kid = self.encryption["kid"] if self.encryption else self.kid

    def _rsa_entry(self, entries: list[dict[str, Any]], key: jwk.JWK, fragment: str,
                   use: str | None) -> tuple[str, dict[str, Any]]:
        kid = f"{self.did}#{fragment}"
        # RsaPublicKey requires the DID key id to end with the JWK kid; the fragment is what
        # hub-sdk-js's example uses.
        extra = {"kid": fragment, **({"use": use} if use else {})}
        public = {**json.loads(key.export_public()), **extra}
        entries.append({"id": kid, "type": "RsaVerificationKey2018", "controller": self.did,
                        "publicKeyJwk": public})
        return kid, {**json.loads(key.export_private()), **extra}

    def _secp256k1_entry(self, entries: list[dict[str, Any]], fragment: str
                         ) -> tuple[str, dict[str, Any]]:
        kid = f"{self.did}#{fragment}"
        key = jwk.JWK.generate(kty="EC", crv="secp256k1")
        # did-auth-jose 0.1.14 (ec-key) names the curve "P-256K" and takes the EC key's kid from
        # the JWK itself, so the JWK kid is the full key id.
        extra = {"crv": "P-256K", "kid": kid, "use": "sig"}
        public = {**json.loads(key.export_public()), **extra}
        entries.append({"id": kid, "type": "Secp256k1VerificationKey2018", "controller": self.did,
                        "publicKeyJwk": public})
        return kid, {**json.loads(key.export_private()), **extra}

    def driver_config(self, hub: RunningHub, resolver_url: str, sdk: str) -> dict[str, Any]:
        client: dict[str, Any] = {"did": self.did, "kid": self.kid, "privateJwk": self.private}
        if self.encryption:
            client["encryption"] = self.encryption
        return {"hubEndpoint": hub.url, "hubDid": hub.did, "resolverUrl": resolver_url,
                "sdk": sdk, "client": client}


@pytest.fixture(scope="module")
def requesters() -> dict[str, JsRequester]:
    """One requester per scenario for the module (RSA key generation is slow; keys are not state:
    each test has a fresh hub database)."""
    return {name: JsRequester(name) for name in SCENARIOS}


# --- servers ---------------------------------------------------------------------------------------

@pytest.fixture
async def resolver_server() -> AsyncIterator[UniversalResolver]:
    ur = UniversalResolver(shape="document")
    await ur.start()
    yield ur
    await ur.close()


@pytest.fixture(params=list(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def web_k1_identity_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A did:web hub identity with a secp256k1 signing key besides the compat RSA key."""
    from identity_hub.identity import HubIdentity

    path = pathlib.Path(tmp_path_factory.mktemp("hub-identity-web-k1"))
    HubIdentity.create(path, method="web", web_host="hub.example.com",
                       key_types=("Ed25519", "X25519", "secp256k1"), compat_2019=True)
    return path


@pytest.fixture
async def hub(db_url: str, tmp_path: pathlib.Path, scenario: str, request: pytest.FixtureRequest,
              resolver_server: UniversalResolver) -> AsyncIterator[RunningHub]:
    fixture = "hub_identity_dir" if SCENARIOS[scenario][2] == "ion" else "web_k1_identity_dir"
    identity_dir = request.getfixturevalue(fixture)
    async with running_hub(tmp_path / "hub", db_url, identity_dir,
                           universal_resolver=f"http://{resolver_server.host}",
                           allow_hosts=resolver_server.host, compat_2019=True) as h:
        # The hub's document as the 2019 clients need it: `publicKey` entries with publicKeyJwk,
        # the RSA `use: "enc"` key first (HubIdentity.static_document in compat mode).
        document = h.runtime.identity.static_document()
        assert document["publicKey"][0]["type"] == "RsaVerificationKey2018"
        resolver_server.add(document)
        yield h


async def run_driver(config: dict[str, Any]) -> dict[str, Any]:
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE, str(DRIVER), "-", cwd=INTEROP_DIR, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NODE_NO_WARNINGS": "1"})
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(config).encode()),
                                          DRIVER_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        pytest.fail(f"driver.js ({config['sdk']}) took more than {DRIVER_TIMEOUT:.0f} s")
    if proc.returncode != 0:
        pytest.fail(f"driver.js ({config['sdk']}) exited {proc.returncode}:\n"
                    f"{err.decode(errors='replace')[-3000:]}")
    lines = out.decode().strip().splitlines()
    assert lines, f"driver.js printed nothing; stderr:\n{err.decode(errors='replace')[-2000:]}"
    return dict(json.loads(lines[-1]))


# --- the test --------------------------------------------------------------------------------------

async def test_2019_js_client_session(interop_modules: pathlib.Path, hub: RunningHub,
                                      resolver_server: UniversalResolver,
                                      requesters: dict[str, JsRequester], scenario: str) -> None:
    sdk, family, hub_kind = SCENARIOS[scenario]
    who = requesters[scenario]
    resolver_server.add(who.document)
    await store.add_tenant(hub.runtime.db, who.did)

    result = await run_driver(who.driver_config(hub, f"http://{resolver_server.host}", sdk))

    if scenario in USE_ENC_SCENARIOS:
        assert who.document["publicKey"][0]["publicKeyJwk"]["use"] == "enc"
    assert result["ok"] is True and result["sdk"] == sdk and result["did"] == who.did
    expected_versions = ({"hub-sdk-js": "0.1.2", "did-auth-jose": "0.1.9",
                          "did-common-typescript": "0.1.4"} if sdk == "hub-sdk-js"
                         else {"did-auth-jose": "0.1.14", "did-common-typescript": "0.1.19"})
    assert result["versions"] == expected_versions
    assert result["alg"] == ("RS256" if family == "RSA" else "ES256K")
    assert result["kid"] == who.kid
    assert result["renewalStatuses"] == [401, 200, 200]
    assert result["errorCode"] == "not_found"
    assert "sub" in result["tokenClaims"] and "exp" in result["tokenClaims"]

    # Every response, as the client decrypted it: RSA-OAEP + A128GCM to the requester's
    # encryption key, signed by a hub key with the nonce echoed; ES256K only when the hub has a
    # secp256k1 key and the requester signs ES256K.
    signer_alg = "ES256K" if (family, hub_kind) == ("secp256k1", "web-k1") else "RS256"
    [envelope] = result["responseEnvelopes"]
    assert envelope["jwe"] == {"kid": who.response_kid, "alg": "RSA-OAEP", "enc": "A128GCM"}
    assert envelope["jws"]["alg"] == signer_alg and envelope["jws"]["nonce"] is True
    assert envelope["jws"]["kid"].split("#")[0] == hub.did

    # The objects really landed: the hub's own tables hold the three commits the client made.
    object_id = result["objectId"]
    revs = result["revisions"]
    async with hub.runtime.db.read() as conn:
        owner = (await conn.execute(sa.select(owners.c.id).where(owners.c.did == who.did))
                 ).scalar_one()
        rows = (await conn.execute(
            sa.select(commits.c.rev, commits.c.operation, commits.c.object_id,
                      commits.c.protected, commits.c.signer)
            .where(commits.c.owner_id == owner).order_by(commits.c.seq))).all()
        obj = (await conn.execute(sa.select(objects).where(
            objects.c.owner_id == owner, objects.c.object_id == object_id))).one()
    assert [r.operation for r in rows] == ["create", "update", "delete"]
    assert {r.object_id for r in rows} == {object_id}
    assert rows[0].rev == object_id == revs["create"][0]
    assert set(revs["delete"]) == {r.rev for r in rows}
    for row in rows:
        header = _b64u_json(row.protected)
        assert header["kid"] == who.kid and header["iss"] == who.did
        assert header["alg"] == result["alg"]
        assert row.signer == who.did
    assert obj.deleted is True and obj.commit_count == 3
    assert obj.created_by == who.did and obj.type == "MusicPlaylist"
