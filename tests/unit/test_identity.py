"""The hub identity: create, load, rotate, files and permissions, and what resolvers see."""

from __future__ import annotations

import base64
import json
import pathlib
import stat
import time

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric import rsa
from jwcrypto import jwe, jws

from identity_hub.did import DidResolver, KeyNotAuthorized
from identity_hub.did.methods import ion
from identity_hub.identity import (
    HubIdentity,
    IdentityError,
    IdentityExists,
    IdentityNotFound,
    web_host_from_url,
)


@pytest.fixture(scope="module")
def compat_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = pathlib.Path(tmp_path_factory.mktemp("hub")) / "data"
    HubIdentity.create(path)  # the defaults: did:ion, compat_2019
    return path


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _delta_bytes(did: str) -> int:
    state = did.rsplit(":", 1)[1]
    initial = json.loads(base64.urlsafe_b64decode(state + "=" * (-len(state) % 4)))
    return len(rfc8785.dumps(initial["delta"]))


def test_default_identity_is_compat_did_ion(compat_dir: pathlib.Path) -> None:
    identity = HubIdentity.load(compat_dir)
    assert identity.method == "ion" and ion.is_long_form(identity.did)
    size = _delta_bytes(identity.did)
    print(f"compat did:ion delta: {size} bytes of 1000; DID {len(identity.did)} characters")
    assert size <= ion.MAX_DELTA_SIZE
    first = identity.document["verificationMethod"][0]
    assert first["publicKeyJwk"]["kty"] == "RSA" and first["publicKeyJwk"]["use"] == "enc"
    assert first["id"].endswith(first["publicKeyJwk"]["kid"])
    assert first["id"] == f"{identity.did}#rsa"


def test_files_and_permissions(compat_dir: pathlib.Path) -> None:
    assert _mode(compat_dir / "keys") == 0o700
    files = list((compat_dir / "keys").iterdir())
    assert len(files) == 5  # rsa, ed, x + the Sidetree update and recovery keys
    assert all(_mode(f) == 0o600 for f in files)
    meta = json.loads((compat_dir / "identity.json").read_text())
    assert "\"d\"" not in (compat_dir / "identity.json").read_text()  # no private material
    assert meta["did"] == HubIdentity.load(compat_dir).did


async def test_hub_did_resolves_offline_rsa_enc_first(compat_dir: pathlib.Path) -> None:
    identity = HubIdentity.load(compat_dir)
    resolver = DidResolver(offline=True)  # no add_static: did:ion resolves from the DID alone
    doc = await resolver.resolve(identity.did)
    first = doc["verificationMethod"][0]
    assert first["publicKeyJwk"]["kty"] == "RSA" and first["publicKeyJwk"]["use"] == "enc"
    rsa_key = await resolver.key(first["id"], "encrypt")
    assert rsa_key.key_family == "RSA"
    assert isinstance(rsa_key.crypto_key, rsa.RSAPublicKey) and rsa_key.crypto_key.key_size == 2048
    # a client encrypts to the resolved key; the hub decrypts with its private key
    token = jwe.JWE(b"hello hub", json.dumps({"alg": "RSA-OAEP", "enc": "A128GCM",
                                              "kid": first["id"]}))
    token.add_recipient(rsa_key.jwk)
    opened = jwe.JWE()
    opened.deserialize(token.serialize(compact=True), identity.private_key(first["id"]))
    assert opened.payload == b"hello hub"
    # every signing key of the hub verifies under the resolved document
    for family in ("RSA", "Ed25519"):
        kid, private = identity.signing_key(family)
        alg = {"RSA": "RS256", "Ed25519": "EdDSA"}[family]
        signed = jws.JWS(b"response")
        signed.add_signature(private, alg, json.dumps({"alg": alg, "kid": kid}))
        check = jws.JWS()
        check.deserialize(signed.serialize(compact=True))
        check.verify((await resolver.key(kid, "sign")).jwk, alg)
    x_kid = [kid for kid, _ in identity.encryption_keys()][1]
    assert (await resolver.key(x_kid, "encrypt")).key_family == "X25519"
    with pytest.raises(KeyNotAuthorized):
        await resolver.key(identity.signing_key("Ed25519")[0], "encrypt")


async def test_static_document_for_2019_clients(compat_dir: pathlib.Path) -> None:
    identity = HubIdentity.load(compat_dir)
    doc = identity.static_document()
    first = doc["publicKey"][0]  # did-auth-jose 0.1.9 encrypts to publicKey[0]
    assert first["type"] == "RsaVerificationKey2018"
    assert first["publicKeyJwk"]["use"] == "enc"  # 0.1.14: the first `use: enc` key
    assert first["id"].endswith(first["publicKeyJwk"]["kid"]) and first["id"].startswith("did:")
    resolver = DidResolver(offline=True)
    resolver.add_static(doc)
    resolved = await resolver.resolve(identity.did)
    assert "publicKey" not in resolved
    assert [m["id"] for m in resolved["verificationMethod"]] == \
        [m["id"] for m in identity.document["verificationMethod"]]


def test_key_selection(compat_dir: pathlib.Path) -> None:
    identity = HubIdentity.load(compat_dir)
    rsa_kid = f"{identity.did}#rsa"
    assert identity.signing_key()[0] == rsa_kid  # document order: the compat key first
    assert identity.signing_key("RSA")[0] == rsa_kid
    assert identity.signing_key("Ed25519")[0] == f"{identity.did}#ed"
    assert identity.signing_key("secp256k1")[0] == rsa_kid  # absent family: first signing key
    assert [k for k, _ in identity.encryption_keys()] == [rsa_kid, f"{identity.did}#x"]
    short = ion.short_form(identity.did)
    assert identity.private_key(f"{short}#rsa") is identity.private_key(rsa_kid)
    assert identity.private_key(f"{identity.did}#nope") is None
    private = identity.private_key(rsa_kid)
    assert private is not None and private.has_private


def test_create_refuses_to_overwrite(compat_dir: pathlib.Path) -> None:
    with pytest.raises(IdentityExists):
        HubIdentity.create(compat_dir)


def test_load_missing_tells_to_init(tmp_path: pathlib.Path) -> None:
    assert not HubIdentity.exists(tmp_path)
    with pytest.raises(IdentityNotFound, match="identity-hub init"):
        HubIdentity.load(tmp_path)


def test_rotate_did_ion(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    identity = HubIdentity.create(tmp_path, compat_2019=False)
    assert identity.document["verificationMethod"][0]["publicKeyJwk"]["crv"] == "Ed25519"
    old_did, (old_kid, _) = identity.did, identity.signing_key()
    old_enc = identity.encryption_keys()[0][0]
    identity.rotate(grace_seconds=60)
    assert identity.did != old_did  # long-form did:ion: new keys, new DID
    assert identity.previous_dids == [old_did]
    assert identity.signing_key()[0] == f"{identity.did}#ed"
    loaded = HubIdentity.load(tmp_path)
    assert loaded.did == identity.did
    assert loaded.private_key(old_kid) is not None  # still in its grace period
    assert loaded.private_key(old_enc) is not None
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    assert loaded.private_key(old_kid) is None and loaded.previous_dids == []
    old_files = {r["file"] for r in loaded._meta["keys"] if r["kid"] in (old_kid, old_enc)}
    loaded.rotate(grace_seconds=60)  # purges the expired keys and their files
    assert all(not (tmp_path / f).exists() for f in old_files)
    assert len(list((tmp_path / "keys").iterdir())) == 2 * 2 + 2  # two generations + ops


async def test_rotate_did_web_keeps_the_did(tmp_path: pathlib.Path) -> None:
    identity = HubIdentity.create(tmp_path, method="web", web_host="hub.example.com:8443",
                                  service_endpoint="https://hub.example.com:8443/.identity")
    assert identity.did == "did:web:hub.example.com%3A8443"
    assert identity.document_path == "/.well-known/did.json"
    doc = identity.static_document()
    assert doc["publicKey"][0]["publicKeyJwk"]["use"] == "enc"
    assert doc["service"][0]["serviceEndpoint"]["locations"] == [
        "https://hub.example.com:8443/.identity"]
    old_kid = identity.encryption_keys()[0][0]
    identity.rotate(grace_seconds=300)
    assert identity.did == "did:web:hub.example.com%3A8443"
    ids = [m["id"] for m in identity.document["verificationMethod"]]
    assert ids == [f"{identity.did}#{f}" for f in ("rsa-2", "ed25519-2", "x25519-2")]
    assert old_kid not in ids and identity.private_key(old_kid) is not None
    resolver = DidResolver(offline=True)
    resolver.add_static(identity.static_document())
    assert (await resolver.key(f"{identity.did}#rsa-2", "encrypt")).key_family == "RSA"


def test_ion_falls_back_to_web_only_with_a_host(tmp_path: pathlib.Path) -> None:
    many = ("Ed25519", "X25519", "RSA", "secp256k1")
    with pytest.raises(IdentityError, match="did:web"):
        HubIdentity.create(tmp_path / "a", key_types=many)
    identity = HubIdentity.create(tmp_path / "b", key_types=many, web_host="localhost:8080")
    assert identity.method == "web"
    fragments = [m["id"].split("#")[1] for m in identity.document["verificationMethod"]]
    assert fragments == ["rsa-1", "ed25519-1", "x25519-1", "rsa-sig-1", "secp256k1-1"]
    assert identity.signing_key("RSA")[0].endswith("#rsa-sig-1")  # dedicated before dual-use
    assert identity.static_document()["publicKey"][4]["type"] == "Secp256k1VerificationKey2018"


def test_did_key_identity(tmp_path: pathlib.Path) -> None:
    identity = HubIdentity.create(tmp_path / "k", method="key", compat_2019=False)
    assert identity.did.startswith("did:key:z6Mk")
    assert identity.encryption_keys()[0][0].split("#")[1].startswith("z6LS")
    with pytest.raises(IdentityError):
        HubIdentity.create(tmp_path / "k2", method="key")  # compat needs an RSA key


def test_invalid_requests(tmp_path: pathlib.Path) -> None:
    with pytest.raises(IdentityError):
        HubIdentity.create(tmp_path / "a", method="web")  # no host
    with pytest.raises(IdentityError):
        HubIdentity.create(tmp_path / "b", key_types=("X25519",), compat_2019=False)
    with pytest.raises(IdentityError):
        HubIdentity.create(tmp_path / "c", key_types=("Ed448",))
    assert issubclass(IdentityError, ValueError)
    assert web_host_from_url("https://hub.example.com:8443/x") == "hub.example.com:8443"
    assert web_host_from_url("http://127.0.0.1/") == "127.0.0.1"
