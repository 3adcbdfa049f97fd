"""DID documents: make every id absolute, fold the 2019 `publicKey` array into
`verificationMethod`, and work out which relationships authorize each key.

Relationship policy (did-methods.md §0.2, and the 2019 documents of protocol §b.2):

* A document with **at least one** relationship array (`authentication`, `assertionMethod`,
  `keyAgreement`, `capabilityInvocation`, `capabilityDelegation`): a key counts only for the
  relationships that list it (by reference or embedded). A key in no relationship is unusable.
* A document with **no** relationship array at all (what the 2019 JS clients and universal
  resolvers of that era produce: only `publicKey`): every listed key counts as `authentication`
  and `assertionMethod` *whatever its JWK `use`*, and as `keyAgreement` (RSA, X25519 and EC keys
  only, never Ed25519) unless its JWK `use` is `"sig"`. The 2019 tooling (did-auth-jose 0.1.11+,
  the ION/Sidetree test documents) publishes one RSA key with `"use": "enc"` and hub-sdk-js 0.1.2
  signs its requests with that same key (the reference hub accepted it).
* Whatever the document says, an X25519 key never verifies signatures and an Ed25519 key is never
  used for key agreement (`VerificationKey.can_sign` / `can_encrypt`).

A 2019 relationship entry `{"type": "...Authentication2018", "publicKey": "did:x#key-1"}` is read
as a reference to `did:x#key-1`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from identity_hub.did.errors import InvalidDocument
from identity_hub.did.keys import RELATIONSHIPS, family_of_jwk

logger = logging.getLogger(__name__)

_KEY_MATERIAL = ("publicKeyJwk", "publicKeyMultibase", "publicKeyBase58", "publicKeyHex")
_AGREEMENT_FAMILIES = frozenset({"RSA", "X25519", "secp256k1", "P-256", "P-384"})


def absolute_id(ref: str, base: str) -> str:
    """`#frag` and a bare legacy `frag` become `base#frag`; anything with a colon is kept."""
    if ref.startswith("#"):
        return base + ref
    if ":" not in ref:
        return f"{base}#{ref}"
    return ref


def _method_copy(entry: dict[str, Any], base: str) -> dict[str, Any] | None:
    ident = entry.get("id")
    if not isinstance(ident, str) or not ident:
        logger.debug("skipping a verification method without an id")
        return None
    method = dict(entry)
    method["id"] = absolute_id(ident, base)
    controller = method.get("controller")
    if isinstance(controller, str) and controller.startswith("#"):
        method["controller"] = base
    return method


def _list_member(doc: dict[str, Any], name: str) -> list[Any]:
    value = doc.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidDocument(f"{name} must be an array")
    return value


def normalize_document(doc: Any) -> dict[str, Any]:
    """A copy of `doc` with absolute ids and `publicKey` merged into `verificationMethod`.

    Raises:
        InvalidDocument: not an object, no string `id`, or a member of the wrong JSON type.
    """
    if not isinstance(doc, dict):
        raise InvalidDocument("a DID document must be a JSON object")
    base = doc.get("id")
    if not isinstance(base, str) or not base.startswith("did:"):
        raise InvalidDocument("a DID document needs a DID as its id")
    out = {k: v for k, v in doc.items() if k not in ("publicKey", "verificationMethod")}

    methods: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name in ("verificationMethod", "publicKey"):
        for entry in _list_member(doc, name):
            method = _method_copy(entry, base) if isinstance(entry, dict) else None
            if method is not None and method["id"] not in seen:
                seen.add(method["id"])
                methods.append(method)
    if methods or "verificationMethod" in doc:
        out["verificationMethod"] = methods

    for rel in RELATIONSHIPS:
        if rel not in doc:
            continue
        refs: list[Any] = []
        for entry in _list_member(doc, rel):
            if isinstance(entry, str):
                refs.append(absolute_id(entry, base))
            elif isinstance(entry, dict):
                legacy_ref = entry.get("publicKey")
                if isinstance(legacy_ref, str) and not any(m in entry for m in _KEY_MATERIAL):
                    refs.append(absolute_id(legacy_ref, base))
                else:
                    method = _method_copy(entry, base)
                    if method is not None:
                        refs.append(method)
        out[rel] = refs

    services = []
    for entry in _list_member(doc, "service"):
        if isinstance(entry, dict):
            service = dict(entry)
            if isinstance(service.get("id"), str):
                service["id"] = absolute_id(service["id"], base)
            services.append(service)
    if "service" in doc:
        out["service"] = services
    return out


@dataclasses.dataclass(frozen=True)
class MethodRecord:
    """A verification method of a normalized document and the relationships it counts for."""

    method: dict[str, Any]
    relationships: frozenset[str]


def _legacy_relationships(method: dict[str, Any]) -> frozenset[str]:
    jwk = method.get("publicKeyJwk")
    use = jwk.get("use") if isinstance(jwk, dict) else None
    family = family_of_jwk(jwk)
    if family is None:
        lowered = str(method.get("type", "")).lower()
        family = "RSA" if "rsa" in lowered else ("secp256k1" if "secp256k1" in lowered else None)
    rels: set[str] = {"authentication", "assertionMethod"}  # whatever `use` says (module doc)
    if use != "sig" and family in _AGREEMENT_FAMILIES:
        rels.add("keyAgreement")
    return frozenset(rels)


def index_methods(doc: dict[str, Any]) -> list[MethodRecord]:
    """Every verification method of a normalized document, in document order (listed methods
    first, then those embedded in relationships), each with the relationships it counts for."""
    order: list[str] = []
    methods: dict[str, dict[str, Any]] = {}
    rels: dict[str, set[str]] = {}
    for method in doc.get("verificationMethod") or []:
        if method["id"] not in methods:
            order.append(method["id"])
            methods[method["id"]] = method
            rels[method["id"]] = set()
    has_relationships = any(rel in doc for rel in RELATIONSHIPS)
    for rel in RELATIONSHIPS:
        for entry in doc.get(rel) or []:
            ident = entry if isinstance(entry, str) else entry["id"]
            if isinstance(entry, dict) and ident not in methods:
                order.append(ident)
                methods[ident] = entry
                rels[ident] = set()
            if ident in rels:
                rels[ident].add(rel)
    records = []
    for ident in order:
        method = methods[ident]
        granted = frozenset(rels[ident]) if has_relationships else _legacy_relationships(method)
        records.append(MethodRecord(method, granted))
    return records
