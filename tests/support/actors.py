"""Test actors: a DID with its private key, signing commits and requests with jwcrypto.

Commits are signed with jwcrypto, not with the hub's own crypto layer, so the tests check the hub
against an independent JOSE implementation. Actors use did:jwk (resolvable offline).
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from typing import Any

from jwcrypto import jwk, jws

PROTOCOL_CONTEXT = "https://schema.identity.foundation/0.1"

_GEN = {
    "Ed25519": ({"kty": "OKP", "crv": "Ed25519"}, "EdDSA"),
    "secp256k1": ({"kty": "EC", "crv": "secp256k1"}, "ES256K"),
    "P-256": ({"kty": "EC", "crv": "P-256"}, "ES256"),
    "RSA": ({"kty": "RSA", "size": 2048}, "RS256"),
}


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def iso(ts: float | None = None) -> str:
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def playlist(name: str = "Road trip", tracks: int = 3) -> dict[str, Any]:
    return {"@context": "https://schema.org", "@type": "MusicPlaylist", "name": name,
            "numTracks": tracks}


class Actor:
    """A requester or owner identity: `did`, `kid`, and a private JWK."""

    def __init__(self, family: str = "Ed25519", key: jwk.JWK | None = None) -> None:
        params, self.alg = _GEN[family]
        self.family = family
        self.key = key or jwk.JWK.generate(**params)
        public = json.loads(self.key.export_public())
        public.pop("kid", None)
        self.did = "did:jwk:" + b64u(json.dumps(public, separators=(",", ":")).encode())
        self.kid = self.did + "#0"

    @classmethod
    def from_private_jwk(cls, family: str, private_jwk: str) -> Actor:
        return cls(family, jwk.JWK.from_json(private_jwk))

    def private_jwk(self) -> str:
        return self.key.export_private()

    def sign_flattened(self, protected: dict[str, Any], payload: bytes) -> dict[str, Any]:
        token = jws.JWS(payload)
        token.add_signature(self.key, None, protected=json.dumps(protected))
        out = json.loads(token.serialize(compact=False))
        return {"protected": out["protected"], "payload": out["payload"],
                "signature": out["signature"]}

    def commit(
        self,
        sub: str,
        *,
        operation: str = "create",
        payload: Any = None,
        object_id: str | None = None,
        interface: str = "Collections",
        context: str = "https://schema.org",
        type_: str = "MusicPlaylist",
        strategy: str = "basic",
        committed_at: str | None = None,
        meta: Any = None,
        header: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        protected: dict[str, Any] = {
            "interface": interface, "context": context, "type": type_,
            "operation": operation, "committed_at": committed_at or iso(),
            "commit_strategy": strategy, "sub": sub, "kid": self.kid, "alg": self.alg,
            "iss": self.did,
        }
        if object_id is not None:
            protected["object_id"] = object_id
        if meta is not None:
            protected["meta"] = meta
        protected.update(extra)
        if payload is None:
            payload = playlist() if operation != "delete" else {}
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        out = self.sign_flattened(protected, raw)
        if header is not None:
            out["header"] = header
        return out

    def request(self, type_: str, hub_did: str, sub: str | None = None, **members: Any
                ) -> dict[str, Any]:
        body = {"@context": PROTOCOL_CONTEXT, "@type": type_, "iss": self.did, "aud": hub_did,
                "sub": sub or self.did}
        body.update(members)
        return body

    def write(self, hub_did: str, commit: dict[str, Any], sub: str | None = None
              ) -> dict[str, Any]:
        return self.request("WriteRequest", hub_did, sub, commit=commit)

    def object_query(self, hub_did: str, sub: str | None = None, **query: Any) -> dict[str, Any]:
        query.setdefault("interface", "Collections")
        return self.request("ObjectQueryRequest", hub_did, sub, query=query)

    def commit_query(self, hub_did: str, sub: str | None = None, **query: Any
                     ) -> dict[str, Any]:
        return self.request("CommitQueryRequest", hub_did, sub, query=query)
