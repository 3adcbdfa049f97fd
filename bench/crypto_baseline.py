"""CPU cost of the hub's four JOSE steps per authenticated request, three ways.

Steps: decrypt the request JWE, verify the request JWS, sign the response JWS, encrypt the
response JWE. Measured for
  * Ed25519/X25519: request EdDSA-signed, ECDH-ES + A256GCM to the hub's X25519 key; response
    EdDSA, ECDH-ES + A256GCM to the requester's X25519 key;
  * RSA-2048: request RS256, RSA-OAEP + A128GCM to the hub's RSA key; response RS256,
    RSA-OAEP + A128GCM to the requester's RSA key;
each as
  * raw: `cryptography` calls plus the least encoding work that handles the same tokens
    (no validation), and "primitives": the crypto calls alone;
  * ours: identity_hub.crypto;
  * jwcrypto 1.6 with keys already imported (JWK objects reused, allowed algs set).

Each figure is the median over --runs runs of the mean per-request process CPU time, each run
lasting about --seconds. Run: `.venv/bin/python bench/crypto_baseline.py [--runs 7]`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwcrypto import jwe as jc_jwe  # type: ignore[import-untyped]
from jwcrypto import jwk as jc_jwk
from jwcrypto import jws as jc_jws

from identity_hub.crypto import (
    decrypt_jwe,
    encrypt_jwe,
    parse_compact_jwe,
    parse_compact_jws,
    private_key_from_jwk,
    public_key_from_jwk,
    sign_compact_jws,
    verify_jws,
)

REQUEST = json.dumps(
    {
        "@context": "https://schema.identity.foundation/0.1",
        "@type": "ObjectQueryRequest",
        "iss": "did:example:alice",
        "sub": "did:example:alice",
        "aud": "did:example:hub",
        "query": {"interface": "Collections", "context": "https://schema.org", "type": "Playlist"},
    }
).encode()
RESPONSE = json.dumps(
    {
        "@context": "https://schema.identity.foundation/0.1",
        "@type": "ObjectQueryResponse",
        "objects": [{"interface": "Collections", "id": os.urandom(32).hex()} for _ in range(8)],
        "skip_token": None,
    }
).encode()
NONCE = "7f3a9c4e-1b2d-4e5f-8a9b-0c1d2e3f4a5b"
HUB_KID = "did:example:hub#key-1"
REQ_KID = "did:example:alice#key-1"
REQ_ENC_KID = "did:example:alice#key-enc"

_OAEP_SHA1 = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
_PKCS1 = padding.PKCS1v15()


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64d(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def _kdf(z: bytes, alg_id: bytes, apu: bytes = b"", apv: bytes = b"", bits: int = 256) -> bytes:
    info = b"".join(
        (
            len(alg_id).to_bytes(4, "big"),
            alg_id,
            len(apu).to_bytes(4, "big"),
            apu,
            len(apv).to_bytes(4, "big"),
            apv,
            bits.to_bytes(4, "big"),
        )
    )
    return ConcatKDFHash(hashes.SHA256(), bits // 8, info).derive(z)


# ----------------------------------------------------------------------------------------------
# Ed25519 / X25519


def _okp_setup() -> dict[str, Any]:
    jw = {
        name: jc_jwk.JWK.generate(kty="OKP", crv=crv)
        for name, crv in (
            ("hub_sig", "Ed25519"),
            ("hub_enc", "X25519"),
            ("req_sig", "Ed25519"),
            ("req_enc", "X25519"),
        )
    }
    keys = {name: private_key_from_jwk(k)[1] for name, k in jw.items()}
    pubs = {name: public_key_from_jwk(k.export_public(as_dict=True))[1] for name, k in jw.items()}
    inner = sign_compact_jws(
        REQUEST,
        {"did-requester-nonce": NONCE, "did-access-token": "x" * 300, "kid": REQ_KID},
        "Ed25519",
        keys["req_sig"],
    )
    token = encrypt_jwe(inner.encode(), "X25519", pubs["hub_enc"], HUB_KID)
    return {"jw": jw, "keys": keys, "pubs": pubs, "token": token}


def okp_primitives(s: dict[str, Any]) -> Callable[[], object]:
    """Only the crypto calls, on pre-split inputs."""
    k, p = s["keys"], s["pubs"]
    prot, _, iv_b, ct_b, tag_b = s["token"].split(".")
    epk_x = _b64d(json.loads(_b64d(prot))["epk"]["x"])
    iv, ct, tag, aad = _b64d(iv_b), _b64d(ct_b), _b64d(tag_b), prot.encode()
    jws_token = AESGCM(
        _kdf(k["hub_enc"].exchange(X25519PublicKey.from_public_bytes(epk_x)), b"A256GCM")
    ).decrypt(iv, ct + tag, aad)
    si, _, sig_b = jws_token.rpartition(b".")
    sig = _b64d(sig_b)

    def run() -> object:
        z = k["hub_enc"].exchange(X25519PublicKey.from_public_bytes(epk_x))
        AESGCM(_kdf(z, b"A256GCM")).decrypt(iv, ct + tag, aad)
        p["req_sig"].verify(sig, si)
        out_sig = k["hub_sig"].sign(si)
        eph = X25519PrivateKey.generate()
        cek = _kdf(eph.exchange(p["req_enc"]), b"A256GCM")
        eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return AESGCM(cek).encrypt(os.urandom(12), RESPONSE + out_sig, aad)

    return run


def okp_raw(s: dict[str, Any]) -> Callable[[], object]:
    """The same steps with the least (unvalidated) token encoding work."""
    k, p, token = s["keys"], s["pubs"], s["token"]

    def run() -> str:
        prot, _, iv, ct, tag = token.split(".")
        hdr = json.loads(_b64d(prot))
        z = k["hub_enc"].exchange(X25519PublicKey.from_public_bytes(_b64d(hdr["epk"]["x"])))
        inner = AESGCM(_kdf(z, b"A256GCM")).decrypt(
            _b64d(iv), _b64d(ct) + _b64d(tag), prot.encode()
        )
        h_b, pl_b, sig_b = inner.split(b".")
        req_hdr = json.loads(_b64d(h_b))
        p["req_sig"].verify(_b64d(sig_b), h_b + b"." + pl_b)
        _ = _b64d(pl_b)
        out_h = _b64e(
            json.dumps(
                {
                    "did-requester-nonce": req_hdr["did-requester-nonce"],
                    "alg": "EdDSA",
                    "kid": HUB_KID,
                }
            ).encode()
        )
        si = out_h + "." + _b64e(RESPONSE)
        jws_out = si + "." + _b64e(k["hub_sig"].sign(si.encode()))
        eph = X25519PrivateKey.generate()
        epk = _b64e(eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
        cek = _kdf(eph.exchange(p["req_enc"]), b"A256GCM")
        ph = _b64e(
            json.dumps(
                {
                    "kid": REQ_ENC_KID,
                    "alg": "ECDH-ES",
                    "enc": "A256GCM",
                    "epk": {"kty": "OKP", "crv": "X25519", "x": epk},
                }
            ).encode()
        )
        nonce = os.urandom(12)
        sealed = AESGCM(cek).encrypt(nonce, jws_out.encode(), ph.encode())
        return ".".join((ph, "", _b64e(nonce), _b64e(sealed[:-16]), _b64e(sealed[-16:])))

    return run


def okp_ours(s: dict[str, Any]) -> Callable[[], object]:
    k, p, token = s["keys"], s["pubs"], s["token"]

    def run() -> str:
        inner = decrypt_jwe(parse_compact_jwe(token), "X25519", k["hub_enc"])
        req = parse_compact_jws(inner)
        verify_jws(req, "Ed25519", p["req_sig"])
        out = sign_compact_jws(
            RESPONSE,
            {"did-requester-nonce": req.header["did-requester-nonce"], "kid": HUB_KID},
            "Ed25519",
            k["hub_sig"],
        )
        return encrypt_jwe(out.encode(), "X25519", p["req_enc"], REQ_ENC_KID)

    return run


def _jwcrypto_run(
    s: dict[str, Any],
    sig_alg: str,
    enc_alg: str,
    enc: str,
    hub_enc: Any,
    req_sig: Any,
    hub_sig: Any,
    req_enc: Any,
) -> Callable[[], object]:
    token = s["token"]

    def run() -> str:
        e = jc_jwe.JWE()
        e.allowed_algs = [enc_alg, enc]
        e.deserialize(token, key=hub_enc)
        inner = e.payload
        j = jc_jws.JWS()
        j.allowed_algs = [sig_alg]
        j.deserialize(inner.decode())
        j.verify(req_sig, alg=sig_alg)
        hdr = j.jose_header
        out = jc_jws.JWS(RESPONSE)
        out.add_signature(
            hub_sig,
            alg=sig_alg,
            protected=json.dumps(
                {"did-requester-nonce": hdr["did-requester-nonce"], "alg": sig_alg, "kid": HUB_KID}
            ),
        )
        signed = out.serialize(compact=True)
        r = jc_jwe.JWE(
            signed.encode(), protected=json.dumps({"kid": REQ_ENC_KID, "alg": enc_alg, "enc": enc})
        )
        r.allowed_algs = [enc_alg, enc]
        r.add_recipient(req_enc)
        return str(r.serialize(compact=True))

    return run


def okp_jwcrypto(s: dict[str, Any]) -> Callable[[], object]:
    jw = s["jw"]
    req_sig_pub = jc_jwk.JWK(**jw["req_sig"].export_public(as_dict=True))
    req_enc_pub = jc_jwk.JWK(**jw["req_enc"].export_public(as_dict=True))
    return _jwcrypto_run(
        s, "EdDSA", "ECDH-ES", "A256GCM", jw["hub_enc"], req_sig_pub, jw["hub_sig"], req_enc_pub
    )


# ----------------------------------------------------------------------------------------------
# RSA-2048


def _rsa_setup() -> dict[str, Any]:
    jw = {name: jc_jwk.JWK.generate(kty="RSA", size=2048) for name in ("hub", "req")}
    keys = {name: private_key_from_jwk(k)[1] for name, k in jw.items()}
    pubs = {name: public_key_from_jwk(k.export_public(as_dict=True))[1] for name, k in jw.items()}
    inner = sign_compact_jws(
        REQUEST,
        {"did-requester-nonce": NONCE, "did-access-token": "x" * 300, "kid": REQ_KID},
        "RSA",
        keys["req"],
    )
    token = encrypt_jwe(inner.encode(), "RSA", pubs["hub"], HUB_KID, compat_2019=True)
    return {"jw": jw, "keys": keys, "pubs": pubs, "token": token}


def rsa_primitives(s: dict[str, Any]) -> Callable[[], object]:
    k, p = s["keys"], s["pubs"]
    prot, ek_b, iv_b, ct_b, tag_b = s["token"].split(".")
    ek, iv, ct, tag, aad = _b64d(ek_b), _b64d(iv_b), _b64d(ct_b), _b64d(tag_b), prot.encode()
    jws_token = AESGCM(k["hub"].decrypt(ek, _OAEP_SHA1)).decrypt(iv, ct + tag, aad)
    si, _, sig_b = jws_token.rpartition(b".")
    sig = _b64d(sig_b)

    def run() -> object:
        cek = k["hub"].decrypt(ek, _OAEP_SHA1)
        AESGCM(cek).decrypt(iv, ct + tag, aad)
        p["req"].verify(sig, si, _PKCS1, hashes.SHA256())
        out_sig = k["hub"].sign(si, _PKCS1, hashes.SHA256())
        new_cek = os.urandom(16)
        p["req"].encrypt(new_cek, _OAEP_SHA1)
        return AESGCM(new_cek).encrypt(os.urandom(12), RESPONSE + out_sig, aad)

    return run


def rsa_raw(s: dict[str, Any]) -> Callable[[], object]:
    k, p, token = s["keys"], s["pubs"], s["token"]

    def run() -> str:
        prot, ek, iv, ct, tag = token.split(".")
        json.loads(_b64d(prot))
        cek = k["hub"].decrypt(_b64d(ek), _OAEP_SHA1)
        inner = AESGCM(cek).decrypt(_b64d(iv), _b64d(ct) + _b64d(tag), prot.encode())
        h_b, pl_b, sig_b = inner.split(b".")
        req_hdr = json.loads(_b64d(h_b))
        p["req"].verify(_b64d(sig_b), h_b + b"." + pl_b, _PKCS1, hashes.SHA256())
        _ = _b64d(pl_b)
        out_h = _b64e(
            json.dumps(
                {
                    "did-requester-nonce": req_hdr["did-requester-nonce"],
                    "alg": "RS256",
                    "kid": HUB_KID,
                }
            ).encode()
        )
        si = out_h + "." + _b64e(RESPONSE)
        jws_out = si + "." + _b64e(k["hub"].sign(si.encode(), _PKCS1, hashes.SHA256()))
        new_cek = os.urandom(16)
        new_ek = p["req"].encrypt(new_cek, _OAEP_SHA1)
        ph = _b64e(json.dumps({"kid": REQ_ENC_KID, "alg": "RSA-OAEP", "enc": "A128GCM"}).encode())
        nonce = os.urandom(12)
        sealed = AESGCM(new_cek).encrypt(nonce, jws_out.encode(), ph.encode())
        return ".".join((ph, _b64e(new_ek), _b64e(nonce), _b64e(sealed[:-16]), _b64e(sealed[-16:])))

    return run


def rsa_ours(s: dict[str, Any]) -> Callable[[], object]:
    k, p, token = s["keys"], s["pubs"], s["token"]

    def run() -> str:
        inner = decrypt_jwe(parse_compact_jwe(token), "RSA", k["hub"])
        req = parse_compact_jws(inner)
        verify_jws(req, "RSA", p["req"])
        out = sign_compact_jws(
            RESPONSE,
            {"did-requester-nonce": req.header["did-requester-nonce"], "kid": HUB_KID},
            "RSA",
            k["hub"],
        )
        return encrypt_jwe(out.encode(), "RSA", p["req"], REQ_ENC_KID, compat_2019=True)

    return run


def rsa_jwcrypto(s: dict[str, Any]) -> Callable[[], object]:
    jw = s["jw"]
    req_pub = jc_jwk.JWK(**jw["req"].export_public(as_dict=True))
    return _jwcrypto_run(s, "RS256", "RSA-OAEP", "A128GCM", jw["hub"], req_pub, jw["hub"], req_pub)


# ----------------------------------------------------------------------------------------------


def _calibrate(fn: Callable[[], object], seconds: float) -> int:
    fn()
    start = time.process_time()
    calls = 0
    while time.process_time() - start < 0.05:
        fn()
        calls += 1
    return max(20, int(seconds * calls / (time.process_time() - start)))


def measure(fns: dict[str, Callable[[], object]], runs: int, seconds: float) -> dict[str, float]:
    """Median over `runs` of the mean process CPU seconds per call, for each function.

    The functions take turns within each run, so that drift in machine load (the box is shared)
    hits all of them alike.
    """
    iterations = {name: _calibrate(fn, seconds) for name, fn in fns.items()}
    results: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.process_time()
            for _ in range(iterations[name]):
                fn()
            results[name].append((time.process_time() - t0) / iterations[name])
    return {name: statistics.median(values) for name, values in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.4, help="CPU seconds per run")
    args = parser.parse_args()
    print(f"4 hub steps per request; median of {args.runs} runs; process CPU ms per request")
    for title, setup, impls in (
        (
            "Ed25519/X25519 (EdDSA, ECDH-ES + A256GCM)",
            _okp_setup,
            (
                ("primitives", okp_primitives),
                ("raw", okp_raw),
                ("ours", okp_ours),
                ("jwcrypto", okp_jwcrypto),
            ),
        ),
        (
            "RSA-2048 (RS256, RSA-OAEP + A128GCM)",
            _rsa_setup,
            (
                ("primitives", rsa_primitives),
                ("raw", rsa_raw),
                ("ours", rsa_ours),
                ("jwcrypto", rsa_jwcrypto),
            ),
        ),
    ):
        state = setup()
        print(f"\n{title}")
        numbers = measure(
            {name: factory(state) for name, factory in impls}, args.runs, args.seconds
        )
        for name, value in numbers.items():
            print(f"  {name:<11} {value * 1e3:7.3f} ms")
        print(f"  ours - raw  {(numbers['ours'] - numbers['raw']) * 1e3:+7.3f} ms")


if __name__ == "__main__":
    main()
