"""Long-form did:ion, resolved offline by the Sidetree 1.0.6 rules (did-methods.md §4).

`did:ion[:test]:<suffix>:<base64url(JCS({delta, suffixData}))>`. The checks run in the reference
implementation's order (`Did.create`, `Delta.validateDelta`, `CreateOperation.parseObject`), so a
DID with several defects fails with the same Sidetree code (kept in `InvalidDid.reason`):

1. prefix, suffix present (`did_no_unique_suffix`);
2. initial state is base64url (`encoder_validate_base64_url_string_input_not_base64_url_string`);
3. it is JSON (`did_initial_state_jcs_is_not_json`);
4. re-encoding JCS gives the same string (`did_initial_state_jcs_is_not_jcs`);
5. delta present (`delta_is_null_or_undefined`), at most 1000 bytes of JCS
   (`delta_exceeds_maximum_size`), then its schema (patches, keys, services, commitment);
6. suffixData schema (`input_validator_input_contains_now_allowed_property`, multihash codes);
7. the suffix is the hash of JCS(suffixData) (`did_unique_suffix_from_initial_state_mismatch`).

A delta whose hash differs from `suffixData.deltaHash` is **not** an error, as in Sidetree: the
DID resolves to an empty document (no keys, no services), so no key of it is ever usable.

Only the initial state is visible offline: a published DID whose keys were later rotated still
resolves to its initial keys here. Short-form DIDs need a node (the universal resolver).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from identity_hub.did.encoding import b64url_decode_lenient, b64url_encode
from identity_hub.did.errors import InvalidDid
from identity_hub.did.methods.sidetree import (
    MAX_DELTA_SIZE,
    NOT_BASE64URL,
    SidetreeFailure,
    apply_patches,
    commitment,
    hash_matches,
    jcs,
    multihash,
    validate_delta,
    validate_suffix_data,
)

logger = logging.getLogger(__name__)

__all__ = ["MAX_DELTA_SIZE", "commitment", "create_long_form", "delta_size", "is_long_form", "jcs",
           "multihash", "resolve_long_form", "short_form", "split_ion_did"]

DID_V1 = "https://www.w3.org/ns/did/v1"
RESOLUTION_CONTEXT = "https://w3id.org/did-resolution/v1"


def _external_document(did: str, internal: dict[str, Any]) -> dict[str, Any]:
    """Sidetree's `transformToExternalDocument` with every id made absolute against the DID."""
    doc: dict[str, Any] = {"id": did, "@context": [DID_V1, {"@base": did}]}
    if isinstance(internal.get("services"), list):
        doc["service"] = [
            {"id": f"{did}#{s['id']}", "type": s["type"], "serviceEndpoint": s["serviceEndpoint"]}
            for s in internal["services"]
        ]
    methods = []
    relationships: dict[str, list[str]] = {}
    for key in internal.get("publicKeys") or []:
        ident = f"{did}#{key['id']}"
        methods.append({"id": ident, "controller": did, "type": key["type"],
                        "publicKeyJwk": key["publicKeyJwk"]})
        for purpose in key.get("purposes", []):
            relationships.setdefault(purpose, []).append(ident)
    if methods:
        doc["verificationMethod"] = methods
    doc.update(relationships)
    return doc


# --- parsing and resolution -----------------------------------------------------------------


def split_ion_did(did: str) -> tuple[str, str, str | None]:
    """Split a did:ion into (prefix `did:ion:` or `did:ion:test:`, unique suffix, initial state or
    None for a short-form DID).

    Raises:
        InvalidDid: not did:ion, or an empty suffix.
    """
    if not did.startswith("did:ion:"):
        raise InvalidDid("not a did:ion", reason="did_incorrect_prefix")
    prefix = "did:ion:test:" if did.startswith("did:ion:test:") else "did:ion:"
    rest = did[len(prefix):]
    if ":" not in rest:
        suffix, state = rest, None
    else:
        suffix, state = rest.rsplit(":", 1)
    if not suffix:
        raise InvalidDid("did:ion without a unique suffix", reason="did_no_unique_suffix")
    return prefix, suffix, state


def is_long_form(did: str) -> bool:
    """True for a did:ion that carries its initial state."""
    try:
        return split_ion_did(did)[2] is not None
    except InvalidDid:
        return False


def short_form(did: str) -> str:
    """`did:ion[:test]:<suffix>` of a did:ion (short or long)."""
    prefix, suffix, _ = split_ion_did(did)
    return prefix + suffix


def _check_initial_state(state: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        text = b64url_decode_lenient(state).decode("utf-8")
    except ValueError as exc:  # UnicodeDecodeError is a ValueError
        if isinstance(exc, UnicodeDecodeError):
            raise SidetreeFailure("did_initial_state_jcs_is_not_json") from exc
        raise SidetreeFailure(NOT_BASE64URL) from exc
    try:
        parsed = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise SidetreeFailure("did_initial_state_jcs_is_not_json") from exc
    try:
        canonical = b64url_encode(jcs(parsed))
    except (ValueError, RecursionError) as exc:
        raise SidetreeFailure("did_initial_state_jcs_is_not_jcs") from exc
    if canonical != state:
        raise SidetreeFailure("did_initial_state_jcs_is_not_jcs")
    if not isinstance(parsed, dict):
        raise SidetreeFailure("did_initial_state_is_not_an_object")
    delta = parsed.get("delta")
    validate_delta(delta)
    suffix_data = parsed.get("suffixData")
    validate_suffix_data(suffix_data)
    assert isinstance(delta, dict) and isinstance(suffix_data, dict)  # checked just above
    return delta, suffix_data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def resolve_long_form(did: str) -> dict[str, Any]:
    """Resolve a long-form did:ion from its initial state.

    Returns:
        A DID resolution result: `didDocument` (ids absolute), `didDocumentMetadata` with
        `method.published = false`, the commitments and `equivalentId = [short form]`.

    Raises:
        InvalidDid: a short-form DID, or any Sidetree validation failure (`.reason` holds the
            Sidetree error code).
    """
    prefix, suffix, state = split_ion_did(did)
    if state is None:
        raise InvalidDid("short-form did:ion cannot be resolved offline", reason="short_form")
    try:
        delta, suffix_data = _check_initial_state(state)
        if not hash_matches(jcs(suffix_data), suffix):
            raise SidetreeFailure("did_unique_suffix_from_initial_state_mismatch")
    except SidetreeFailure as fail:
        raise InvalidDid(f"invalid long-form did:ion ({fail.code})", reason=fail.code) from None
    method_meta: dict[str, Any] = {
        "published": False,
        "recoveryCommitment": suffix_data["recoveryCommitment"],
    }
    if hash_matches(jcs(delta), suffix_data["deltaHash"]):
        method_meta["updateCommitment"] = delta["updateCommitment"]
        try:
            internal = apply_patches(delta["patches"])
        except (KeyError, TypeError):  # Sidetree keeps an empty document when a patch throws
            internal = {}
    else:
        logger.info("did:ion delta does not match its deltaHash: resolving to an empty document")
        internal = {}
    return {
        "@context": RESOLUTION_CONTEXT,
        "didDocument": _external_document(did, internal),
        "didDocumentMetadata": {"method": method_meta, "equivalentId": [prefix + suffix]},
        "didResolutionMetadata": {"contentType": "application/did+ld+json"},
    }


def create_long_form(
    public_keys: list[dict[str, Any]],
    services: list[dict[str, Any]],
    update_public_jwk: dict[str, Any],
    recovery_public_jwk: dict[str, Any],
    *,
    testnet: bool = False,
) -> str:
    """Build a long-form did:ion with one `replace` patch (what ion-sdk's create request does;
    an empty `services` array is left out, which saves 14 of the 1000 delta bytes).

    `public_keys` entries are Sidetree keys `{id, type, publicKeyJwk, purposes}` (relative ids);
    `services` entries `{id, type, serviceEndpoint}`.

    Raises:
        ValueError: the keys or services break a Sidetree rule, e.g. the 1000-byte delta limit.
    """
    document: dict[str, Any] = {"publicKeys": public_keys}
    if services:
        document["services"] = services
    delta = {
        "patches": [{"action": "replace", "document": document}],
        "updateCommitment": commitment(update_public_jwk),
    }
    size = len(jcs(delta))
    if size > MAX_DELTA_SIZE:
        raise ValueError(f"did:ion delta is {size} bytes; Sidetree allows {MAX_DELTA_SIZE}")
    try:
        validate_delta(delta)
    except SidetreeFailure as fail:
        raise ValueError(f"invalid did:ion content: {fail.code}") from None
    suffix_data = {"deltaHash": multihash(jcs(delta)),
                   "recoveryCommitment": commitment(recovery_public_jwk)}
    suffix = multihash(jcs(suffix_data))
    state = b64url_encode(jcs({"delta": delta, "suffixData": suffix_data}))
    return ("did:ion:test:" if testnet else "did:ion:") + f"{suffix}:{state}"


def delta_size(public_keys: list[dict[str, Any]], services: list[dict[str, Any]]) -> int:
    """Bytes of JCS(delta) a create request with these keys and services would have."""
    document: dict[str, Any] = {"publicKeys": public_keys}
    if services:
        document["services"] = services
    delta = {"patches": [{"action": "replace", "document": document}], "updateCommitment": "E" * 46}
    return len(jcs(delta))
