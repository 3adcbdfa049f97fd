"""JWE: every alg/enc round trip, interop with jwcrypto both ways, the 2019 RSA-OAEP-256 quirk."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from jwcrypto import jwe, jwk  # type: ignore[import-untyped]

from identity_hub.crypto import (
    DEFAULT_ALGS,
    JoseError,
    Limits,
    b64url_decode,
    b64url_encode,
    decrypt_jwe,
    encrypt_jwe,
    jwe_kid,
    parse_compact_jwe,
    parse_compact_jws,
    private_key_from_jwk,
    public_key_from_jwk,
    sign_compact_jws,
    verify_jws,
)

RECIPIENTS: dict[str, dict[str, Any]] = {
    "RSA": {"kty": "RSA", "size": 2048},
    "X25519": {"kty": "OKP", "crv": "X25519"},
    "P-256": {"kty": "EC", "crv": "P-256"},
    "P-384": {"kty": "EC", "crv": "P-384"},
    "secp256k1": {"kty": "EC", "crv": "secp256k1"},
}
ENCS = ["A128GCM", "A192GCM", "A256GCM", "A128CBC-HS256", "A192CBC-HS384", "A256CBC-HS512"]
RSA_ALGS = ["RSA-OAEP", "RSA-OAEP-256"]
ECDH_ALGS = ["ECDH-ES", "ECDH-ES+A128KW", "ECDH-ES+A192KW", "ECDH-ES+A256KW"]
COMBOS = [("RSA", a, e) for a in RSA_ALGS for e in ENCS] + [
    (f, a, e) for f in RECIPIENTS if f != "RSA" for a in ECDH_ALGS for e in ENCS
]
PLAINTEXT = b"eyJhbGciOiJFZERTQSJ9." + os.urandom(300).hex().encode()
KID = "did:ex:hub#key-1"


class Keys:
    def __init__(self) -> None:
        self.jw = {f: jwk.JWK.generate(**spec) for f, spec in RECIPIENTS.items()}
        self.private = {f: private_key_from_jwk(k)[1] for f, k in self.jw.items()}
        self.public = {
            f: public_key_from_jwk(k.export_public(as_dict=True))[1] for f, k in self.jw.items()
        }
        self.jw_public = {f: jwk.JWK(**k.export_public(as_dict=True)) for f, k in self.jw.items()}


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


def _jwcrypto_encrypt(
    key: jwk.JWK,
    alg: str,
    enc: str,
    plaintext: bytes = PLAINTEXT,
    compact: bool = True,
    **extra: str,
) -> str:
    token = jwe.JWE(plaintext, protected=json.dumps({"alg": alg, "enc": enc, "kid": KID, **extra}))
    token.allowed_algs = [alg, enc]
    token.add_recipient(key)
    return str(token.serialize(compact=compact))


def _jwcrypto_decrypt(key: jwk.JWK, token: str, alg: str, enc: str) -> bytes:
    obj = jwe.JWE()
    obj.allowed_algs = [alg, enc]
    obj.deserialize(token, key=key)
    return bytes(obj.payload)


@pytest.mark.parametrize(("family", "alg", "enc"), COMBOS)
def test_round_trip_and_interop(keys: Keys, family: str, alg: str, enc: str) -> None:
    # ours -> ours
    ours = encrypt_jwe(PLAINTEXT, family, keys.public[family], KID, alg=alg, enc=enc)
    parsed = parse_compact_jwe(ours)
    assert (parsed.header["alg"], parsed.header["enc"], jwe_kid(parsed)) == (alg, enc, KID)
    assert decrypt_jwe(parsed, family, keys.private[family]) == PLAINTEXT
    # ours -> jwcrypto
    assert _jwcrypto_decrypt(keys.jw[family], ours, alg, enc) == PLAINTEXT
    # jwcrypto -> ours
    theirs = _jwcrypto_encrypt(keys.jw_public[family], alg, enc)
    assert decrypt_jwe(parse_compact_jwe(theirs), family, keys.private[family]) == PLAINTEXT


@pytest.mark.parametrize("family", list(RECIPIENTS))
def test_defaults_and_jwcrypto_decrypts_them(keys: Keys, family: str) -> None:
    token = encrypt_jwe(PLAINTEXT, family, keys.public[family], KID)
    protected = json.loads(b64url_decode(token.split(".")[0]))
    alg, enc = DEFAULT_ALGS[family]
    assert list(protected)[:3] == ["kid", "alg", "enc"]
    assert (protected["kid"], protected["alg"], protected["enc"]) == (KID, alg, enc)
    assert _jwcrypto_decrypt(keys.jw[family], token, alg, enc) == PLAINTEXT


def test_rsa_default_is_exactly_the_2019_header(keys: Keys) -> None:
    for compat in (False, True):
        token = encrypt_jwe(b"x", "RSA", keys.public["RSA"], KID, compat_2019=compat)
        assert b64url_decode(token.split(".")[0]) == (
            b'{"kid":"did:ex:hub#key-1","alg":"RSA-OAEP","enc":"A128GCM"}'
        )
    # SHA-1 OAEP, as the 2019 clients decrypt it: unwrap the CEK by hand with cryptography.
    token = encrypt_jwe(b"x", "RSA", keys.public["RSA"], KID)
    sha1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    private = keys.private["RSA"]
    assert isinstance(private, rsa.RSAPrivateKey)
    assert len(private.decrypt(b64url_decode(token.split(".")[1]), sha1)) == 16


def test_compat_2019_refuses_what_old_clients_cannot_read(keys: Keys) -> None:
    with pytest.raises(JoseError):
        encrypt_jwe(b"x", "X25519", keys.public["X25519"], KID, compat_2019=True)
    with pytest.raises(JoseError):
        encrypt_jwe(b"x", "RSA", keys.public["RSA"], KID, compat_2019=True, enc="A128CBC-HS256")
    with pytest.raises(JoseError):  # Ed25519 keys cannot receive
        encrypt_jwe(b"x", "Ed25519", keys.public["X25519"], KID)
    with pytest.raises(JoseError):
        encrypt_jwe(b"x", "RSA", keys.public["RSA"], KID, alg="ECDH-ES")
    with pytest.raises(JoseError):
        encrypt_jwe(b"x", "X25519", keys.public["P-256"], KID)
    with pytest.raises(JoseError):
        encrypt_jwe(b"x", "RSA", keys.public["RSA"], "")


def _hand_made_oaep256_as_sha1(
    public: rsa.RSAPublicKey, plaintext: bytes, oaep_hash: hashes.HashAlgorithm
) -> str:
    """What did-auth-jose 0.1.14 sends for "RSA-OAEP-256": OAEP with SHA-1 (or, for modern
    senders, real SHA-256), built by hand with cryptography."""
    protected = b64url_encode(
        json.dumps({"kid": KID, "alg": "RSA-OAEP-256", "enc": "A128GCM"}).encode()
    )
    cek, iv = os.urandom(16), os.urandom(12)
    pad = padding.OAEP(mgf=padding.MGF1(oaep_hash), algorithm=oaep_hash, label=None)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode())
    return ".".join(
        (
            protected,
            b64url_encode(public.encrypt(cek, pad)),
            b64url_encode(iv),
            b64url_encode(sealed[:-16]),
            b64url_encode(sealed[-16:]),
        )
    )


@pytest.mark.parametrize("oaep_hash", [hashes.SHA1(), hashes.SHA256()], ids=["sha1", "sha256"])
def test_rsa_oaep_256_as_sha1_and_genuine(keys: Keys, oaep_hash: hashes.HashAlgorithm) -> None:
    public = keys.public["RSA"]
    assert isinstance(public, rsa.RSAPublicKey)
    token = _hand_made_oaep256_as_sha1(public, PLAINTEXT, oaep_hash)
    assert decrypt_jwe(parse_compact_jwe(token), "RSA", keys.private["RSA"]) == PLAINTEXT


def test_plain_rsa_oaep_does_not_fall_back_to_sha256(keys: Keys) -> None:
    """Only "RSA-OAEP-256" gets the two-hash treatment; "RSA-OAEP" means SHA-1."""
    public = keys.public["RSA"]
    assert isinstance(public, rsa.RSAPublicKey)
    token = _hand_made_oaep256_as_sha1(public, PLAINTEXT, hashes.SHA256())
    relabelled = b64url_encode(
        json.dumps({"kid": KID, "alg": "RSA-OAEP", "enc": "A128GCM"}).encode()
    )
    # Same key material, header relabelled (so the AAD changes too): must fail either way.
    bad = ".".join([relabelled, *token.split(".")[1:]])
    with pytest.raises(JoseError):
        decrypt_jwe(parse_compact_jwe(bad), "RSA", keys.private["RSA"])


def test_apu_apv_are_honoured(keys: Keys) -> None:
    apu, apv = b64url_encode(b"Alice"), b64url_encode(b"Bob")
    for family in ("X25519", "P-256"):
        token = _jwcrypto_encrypt(keys.jw_public[family], "ECDH-ES", "A256GCM", apu=apu, apv=apv)
        parsed = parse_compact_jwe(token)
        assert decrypt_jwe(parsed, family, keys.private[family]) == PLAINTEXT
        # Ignoring apv would derive another key: prove the KDF input matters.
        without = replace(parsed, header={k: v for k, v in parsed.header.items() if k != "apv"})
        with pytest.raises(JoseError):
            decrypt_jwe(without, family, keys.private[family])


@pytest.mark.parametrize("family", ["RSA", "X25519", "secp256k1"])
def test_flattened_json_form(keys: Keys, family: str) -> None:
    alg, enc = DEFAULT_ALGS[family]
    token = _jwcrypto_encrypt(keys.jw_public[family], alg, enc, compact=False)
    obj = json.loads(token)
    assert "protected" in obj and "recipients" not in obj
    parsed = parse_compact_jwe(token)
    assert decrypt_jwe(parsed, family, keys.private[family]) == PLAINTEXT
    # bytes with surrounding whitespace work too
    assert (
        decrypt_jwe(parse_compact_jwe(b"\n " + token.encode()), family, keys.private[family])
        == PLAINTEXT
    )


def test_flattened_json_refuses_unprotected_alg(keys: Keys) -> None:
    token = json.loads(
        _jwcrypto_encrypt(keys.jw_public["RSA"], "RSA-OAEP", "A128GCM", compact=False)
    )
    for extra in (
        {"unprotected": {"alg": "RSA-OAEP"}},
        {"header": {"zip": "DEF"}},
        {"aad": "YWFk"},
        {"header": {"kid": "a"}, "unprotected": {"kid": "b"}},
        {"header": {"kid": KID}},
    ):
        with pytest.raises(JoseError):
            parse_compact_jwe(json.dumps({**token, **extra}))


def test_nested_request_envelope(keys: Keys) -> None:
    """The whole hub envelope: JWE(JWS(request)), and the reply the same way."""
    signer = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    s_family, s_private = private_key_from_jwk(signer)
    _, s_public = public_key_from_jwk(signer.export_public(as_dict=True))
    request = json.dumps({"@type": "WriteRequest", "iss": "did:ex:alice"}).encode()
    inner = sign_compact_jws(
        request, {"did-requester-nonce": "n", "kid": "did:ex:alice#s"}, s_family, s_private
    )
    body = encrypt_jwe(inner.encode(), "X25519", keys.public["X25519"], KID)
    # hub side
    parsed = parse_compact_jwe(body)
    assert jwe_kid(parsed) == KID
    jws_obj = parse_compact_jws(decrypt_jwe(parsed, "X25519", keys.private["X25519"]))
    verify_jws(jws_obj, "Ed25519", s_public)
    assert jws_obj.payload == request and jws_obj.header["did-requester-nonce"] == "n"


def test_plaintext_at_the_limit_is_accepted(keys: Keys) -> None:
    limits = Limits(max_plaintext=1000)
    for enc in ("A128GCM", "A128CBC-HS256"):
        token = encrypt_jwe(b"a" * 1000, "P-256", keys.public["P-256"], KID, enc=enc)
        assert (
            decrypt_jwe(parse_compact_jwe(token, limits), "P-256", keys.private["P-256"], limits)
            == b"a" * 1000
        )


def test_private_key_as_jwk_is_accepted(keys: Keys) -> None:
    token = encrypt_jwe(PLAINTEXT, "X25519", keys.public["X25519"], KID)
    assert decrypt_jwe(parse_compact_jwe(token), "X25519", keys.jw["X25519"]) == PLAINTEXT
    with pytest.raises(JoseError):  # family and key must agree
        decrypt_jwe(parse_compact_jwe(token), "X25519", keys.jw["P-256"])
