"""`identity-hub did ...` and `identity-hub keys rotate` through click's CliRunner; key files."""

from __future__ import annotations

import json
import pathlib
import stat

import pytest
from click.testing import CliRunner
from jwcrypto import jws

from identity_hub.cli.did import did, keys
from identity_hub.did import DidResolver
from identity_hub.did.keyfile import KeyFileError, load_key_file
from identity_hub.identity import HubIdentity
from identity_hub.settings import Settings


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _settings(path: pathlib.Path) -> Settings:
    return Settings(data_dir=str(path))


def test_create_ion_then_resolve_offline(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "alice.json"
    created = runner.invoke(did, ["create", "--method", "ion", "--out", str(out)],
                            obj=_settings(tmp_path))
    assert created.exit_code == 0, created.output
    new_did = created.stdout.strip().splitlines()[-1]
    assert new_did.startswith("did:ion:") and stat.S_IMODE(out.stat().st_mode) == 0o600
    resolved = runner.invoke(did, ["resolve", new_did], obj=_settings(tmp_path))
    assert resolved.exit_code == 0, resolved.output
    document = json.loads(resolved.stdout)
    assert document["id"] == new_did
    assert document["authentication"] == [f"{new_did}#key-1"]
    assert document["keyAgreement"] == [f"{new_did}#key-2"]
    body = json.loads(out.read_text())
    assert set(body["ionOperationKeys"]) == {"update", "recovery"}
    full = runner.invoke(did, ["resolve", "--result", new_did], obj=_settings(tmp_path))
    assert json.loads(full.stdout)["didDocumentMetadata"]["method"]["published"] is False


@pytest.mark.parametrize(("method", "key_type", "alg"), [
    ("key", "Ed25519", "EdDSA"), ("key", "P-256", "ES256"), ("jwk", "secp256k1", "ES256K"),
    ("ion", "RSA", "RS256")])
async def test_key_file_signs_for_its_did(runner: CliRunner, tmp_path: pathlib.Path,
                                          method: str, key_type: str, alg: str) -> None:
    out = tmp_path / "k.json"
    result = runner.invoke(did, ["create", "--method", method, "--key-type", key_type,
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    loaded_did, pairs = load_key_file(out)
    assert loaded_did == result.stdout.strip().splitlines()[-1]
    kid, private = pairs[0]
    assert private.get("kid") == kid and private.has_private
    token = jws.JWS(b"commit")
    token.add_signature(private, alg, json.dumps({"alg": alg, "kid": kid}))
    check = jws.JWS()
    check.deserialize(token.serialize(compact=True))
    check.verify((await DidResolver(offline=True).key(kid, "sign")).jwk, alg)


def test_create_refuses_existing_file(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "k.json"
    out.write_text("{}")
    result = runner.invoke(did, ["create", "--out", str(out)])
    assert result.exit_code != 0 and "exists" in result.output
    assert out.read_text() == "{}"


def test_resolve_errors_are_reported(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    bad = runner.invoke(did, ["resolve", "did:key:zBAD0"], obj=_settings(tmp_path))
    assert bad.exit_code == 1 and "invalidDid" in bad.output
    unknown = runner.invoke(did, ["resolve", "did:example:123"], obj=_settings(tmp_path))
    assert unknown.exit_code == 1 and "methodNotSupported" in unknown.output
    refused = runner.invoke(did, ["resolve", "did:example:123", "--universal-resolver",
                                  "http://127.0.0.1:9"], obj=_settings(tmp_path))
    assert refused.exit_code == 1 and "allow_hosts" in refused.output


def test_keys_rotate(runner: CliRunner, tmp_path: pathlib.Path) -> None:
    missing = runner.invoke(keys, ["rotate"], obj=_settings(tmp_path))
    assert missing.exit_code == 1 and "identity-hub init" in missing.output
    identity = HubIdentity.create(tmp_path, compat_2019=False)
    result = runner.invoke(keys, ["rotate", "--grace", "60"], obj=_settings(tmp_path))
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["did"] != identity.did == HubIdentity.load(tmp_path).previous_dids[0]
    assert shown["keys"] == [f"{shown['did']}#ed", f"{shown['did']}#x"]


@pytest.mark.parametrize("args", [["--help"], ["create", "--help"], ["resolve", "--help"]])
def test_did_help(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(did, args)
    assert result.exit_code == 0 and "Usage" in result.output and len(result.output) > 200


def test_keys_help(runner: CliRunner) -> None:
    assert "--grace" in runner.invoke(keys, ["rotate", "--help"]).output
    assert "rotate" in runner.invoke(keys, ["--help"]).output


@pytest.mark.parametrize("content", [
    "not json", "{}", '{"did": "nope", "keys": []}',
    '{"did": "did:key:z6Mk", "keys": [{"kid": "did:other:x#1", "privateJwk": {"d": "x"}}]}',
    '{"did": "did:key:z6Mk", "keys": [{"kid": "did:key:z6Mk#1", "privateJwk": {"kty": "OKP"}}]}',
])
def test_bad_key_files(tmp_path: pathlib.Path, content: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(KeyFileError):
        load_key_file(path)
    with pytest.raises(KeyFileError):
        load_key_file(tmp_path / "missing.json")
