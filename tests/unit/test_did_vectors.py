"""Every case of tests/vectors/did/vectors.json (made with third-party resolvers)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from identity_hub.did import DidError, DidResolver
from identity_hub.did.document import index_methods
from identity_hub.did.keys import RELATIONSHIPS, key_material
from identity_hub.did.methods.web import did_web_url

VECTORS = pathlib.Path(__file__).parent.parent / "vectors" / "did" / "vectors.json"
DATA = json.loads(VECTORS.read_text(encoding="utf-8"))
CASES = DATA["cases"]


def normalized_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The README's normalized view of a resolved document (absolute ids, public members)."""
    methods = [
        {"id": rec.method["id"], "publicKeyJwk": key_material(rec.method)[0]}
        for rec in index_methods(doc)
    ]
    relationships = {
        rel: sorted(e if isinstance(e, str) else e["id"] for e in doc[rel])
        for rel in RELATIONSHIPS if doc.get(rel)
    }
    services = [
        {"id": s["id"], "type": s["type"], "serviceEndpoint": s["serviceEndpoint"]}
        for s in doc.get("service", [])
    ]
    return {
        "id": doc["id"],
        "verificationMethods": sorted(methods, key=lambda m: m["id"]),
        "relationships": relationships,
        "services": sorted(services, key=lambda s: s["id"]),
    }


def _expected(case: dict[str, Any]) -> dict[str, Any]:
    exp = dict(case["expected"]["normalized"])
    exp["relationships"] = {k: sorted(v) for k, v in exp["relationships"].items()}
    return exp


def test_vector_count() -> None:
    counts = DATA["counts"]
    print(f"DID vectors: {len(CASES)} cases {counts}")
    assert len(CASES) == sum(counts.values()) == 21
    kinds = {c["kind"] for c in CASES}
    assert kinds == {"valid", "invalid", "url-mapping"}


@pytest.fixture(scope="module")
def resolver() -> DidResolver:
    return DidResolver(offline=True)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
async def test_vector(case: dict[str, Any], resolver: DidResolver) -> None:
    if case["kind"] == "url-mapping":
        assert did_web_url(case["did"]) == case["expected"]["url"]
        return
    if case["kind"] == "invalid":
        with pytest.raises(DidError) as info:
            await resolver.resolve(case["did"])
        assert info.value.error == case["expectedError"], repr(info.value)
        return
    try:
        doc = await resolver.resolve(case["did"])
    except DidError:
        if case.get("acceptError"):
            return
        raise
    assert normalized_view(doc) == _expected(case)
    if case.get("acceptError"):
        assert await resolver.keys(case["did"], "sign") == []


VALID_WITH_KEYS = [c for c in CASES if c["kind"] == "valid" and c.get("privateJwks")]


@pytest.mark.parametrize("case", VALID_WITH_KEYS, ids=[c["id"] for c in VALID_WITH_KEYS])
async def test_vector_private_keys_match_resolved_keys(case: dict[str, Any],
                                                       resolver: DidResolver) -> None:
    """Each private test key pairs with the key the resolver returns for its id, and that key
    is usable exactly for the relationships the normalized view lists."""
    rels = _expected(case)["relationships"]
    for kid, private in case["privateJwks"].items():
        purposes = [r for r in ("authentication", "assertionMethod", "keyAgreement")
                    if kid in rels.get(r, [])]
        for purpose in purposes:
            key = await resolver.key(kid, purpose)
            members = {k: private[k] for k in ("kty", "crv", "x", "y", "n", "e") if k in private}
            if members.get("crv") in ("P-256K", "K-256"):
                members["crv"] = "secp256k1"
            assert key.public_jwk == members
