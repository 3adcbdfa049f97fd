"""Sidetree 1.0.6 building blocks used by did:ion: JCS, multihashes, commitments, the schema
checks of `Delta`/`DocumentComposer`/`InputValidator` with the reference error codes, and patch
application. Internal to `methods/ion.py`.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import rfc8785

from identity_hub.did.encoding import b64url_decode_lenient, b64url_encode, decode_varint, is_b64url

logger = logging.getLogger(__name__)

MAX_DELTA_SIZE = 1000
SHA2_256 = 0x12
SHA3_256 = 0x16
NOT_BASE64URL = "encoder_validate_base64_url_string_input_not_base64_url_string"
PURPOSES = frozenset(
    {"authentication", "assertionMethod", "capabilityInvocation", "capabilityDelegation",
     "keyAgreement"}
)


class SidetreeFailure(Exception):
    """A Sidetree validation failure; `code` is the reference implementation's error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# --- building blocks ------------------------------------------------------------------------


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON.

    Raises:
        ValueError: a value JCS cannot represent (NaN, integers beyond 2**53).
    """
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise ValueError(str(exc)) from exc


def _digest(code: int, data: bytes) -> bytes:
    if code == SHA2_256:
        return hashlib.sha256(data).digest()
    if code == SHA3_256:
        return hashlib.sha3_256(data).digest()
    raise ValueError("unsupported hash")


def multihash(data: bytes, code: int = SHA2_256) -> str:
    """base64url(multihash(data)): `0x12 0x20 || SHA-256(data)`, 46 characters starting `Ei`."""
    digest = _digest(code, data)
    return b64url_encode(bytes([code, len(digest)]) + digest)


def commitment(public_jwk: dict[str, Any]) -> str:
    """A Sidetree commitment: multihash(SHA-256(SHA-256(JCS(jwk)))), the inner hash plain."""
    return multihash(hashlib.sha256(jcs(public_jwk)).digest())


def _decode_multihash(encoded: Any) -> tuple[int, bytes]:
    if not isinstance(encoded, str):
        raise SidetreeFailure("encoded_multihash_must_be_a_string")
    try:
        data = b64url_decode_lenient(encoded)
    except ValueError as exc:
        raise SidetreeFailure(NOT_BASE64URL) from exc
    try:
        if len(data) < 2:
            raise ValueError("too short")
        code, used = decode_varint(data, strict=False)
        length, used2 = decode_varint(data[used:], strict=False)
    except ValueError as exc:
        raise SidetreeFailure("multihash_string_not_a_multihash") from exc
    digest = data[used + used2:]
    if len(digest) != length:
        raise SidetreeFailure("multihash_string_not_a_multihash")
    return code, digest


def _validate_multihash(encoded: Any) -> None:
    code, _ = _decode_multihash(encoded)
    if code != SHA2_256:
        raise SidetreeFailure("multihash_not_supported")


def hash_matches(content: bytes, encoded: str) -> bool:
    """True if `encoded` is the multihash of `content` (Sidetree's
    `verifyEncodedMultihashForContent`: rehash with the multihash's algorithm, compare strings)."""
    try:
        code, _ = _decode_multihash(encoded)
        return multihash(content, code) == encoded
    except (SidetreeFailure, ValueError):
        return False


def js_len(text: str) -> int:
    """The length JavaScript reports for `text` (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


# --- schema validation (DocumentComposer / InputValidator) ----------------------------------


def _non_array_object(value: Any) -> None:
    # JavaScript `typeof value === 'object' && !Array.isArray(value)`: null passes.
    if isinstance(value, list):
        raise SidetreeFailure("input_validator_input_cannot_be_an_array")
    if value is not None and not isinstance(value, dict):
        raise SidetreeFailure("input_validator_input_is_not_an_object")


def _only(value: dict[str, Any], allowed: set[str]) -> None:
    if not set(value).issubset(allowed):
        raise SidetreeFailure("input_validator_input_contains_now_allowed_property")


def _validate_id(ident: Any) -> None:
    if not isinstance(ident, str):
        raise SidetreeFailure("document_composer_id_not_string")
    if js_len(ident) > 50:
        raise SidetreeFailure("document_composer_id_too_long")
    if not is_b64url(ident):
        raise SidetreeFailure("document_composer_id_not_using_base64url_character_set")


def _validate_public_keys(keys: Any) -> None:
    if not isinstance(keys, list):
        raise SidetreeFailure("document_composer_public_keys_not_array")
    seen: set[str] = set()
    for key in keys:
        if not isinstance(key, dict):
            raise SidetreeFailure("document_composer_public_key_unknown_property")
        if not set(key).issubset({"id", "type", "purposes", "publicKeyJwk"}):
            raise SidetreeFailure("document_composer_public_key_unknown_property")
        if "publicKeyJwk" not in key:
            raise SidetreeFailure("input_validator_input_is_not_an_object")
        _non_array_object(key["publicKeyJwk"])
        if not isinstance(key.get("type"), str):
            raise SidetreeFailure("document_composer_public_key_type_missing_or_incorrect_type")
        _validate_id(key.get("id"))
        if key["id"] in seen:
            raise SidetreeFailure("document_composer_public_key_id_duplicated")
        seen.add(key["id"])
        if "purposes" in key:
            purposes = key["purposes"]
            if not isinstance(purposes, list):
                raise SidetreeFailure("document_composer_public_key_purposes_incorrect_type")
            if not all(isinstance(p, str) for p in purposes):
                raise SidetreeFailure("document_composer_public_key_invalid_purpose")
            if len(set(purposes)) != len(purposes):
                raise SidetreeFailure("document_composer_public_key_purposes_duplicated")
            if not set(purposes).issubset(PURPOSES):
                raise SidetreeFailure("document_composer_public_key_invalid_purpose")


def _validate_services(services: Any) -> None:
    if not isinstance(services, list):
        raise SidetreeFailure("document_composer_patch_services_not_array")
    seen: set[str] = set()
    for service in services:
        if not isinstance(service, dict) or len(service) != 3:
            raise SidetreeFailure("document_composer_service_has_missing_or_unknown_property")
        _validate_id(service.get("id"))
        if service["id"] in seen:
            raise SidetreeFailure("document_composer_patch_service_id_not_unique")
        seen.add(service["id"])
        if not isinstance(service.get("type"), str):
            raise SidetreeFailure("document_composer_patch_service_type_not_string")
        if js_len(service["type"]) > 30:
            raise SidetreeFailure("document_composer_patch_service_type_too_long")
        endpoint = service.get("serviceEndpoint", ...)
        if isinstance(endpoint, list):
            raise SidetreeFailure("document_composer_patch_service_endpoint_cannot_be_an_array")
        if not (isinstance(endpoint, str | dict) or endpoint is None):
            raise SidetreeFailure(
                "document_composer_patch_service_endpoint_must_be_string_or_non_array_object"
            )


def _validate_document(document: Any) -> None:
    if isinstance(document, list) and not document:
        return  # JavaScript treats [] like an empty object here
    if not isinstance(document, dict):
        raise SidetreeFailure("document_composer_document_missing")
    if not set(document).issubset({"publicKeys", "services"}):
        raise SidetreeFailure("document_composer_unknown_property_in_document")
    if "publicKeys" in document:
        _validate_public_keys(document["publicKeys"])
    if "services" in document:
        _validate_services(document["services"])


def _validate_patch(patch: Any) -> None:
    action = patch.get("action") if isinstance(patch, dict) else None
    if action == "replace":
        if "document" not in patch:
            raise SidetreeFailure("document_composer_document_missing")
        _validate_document(patch["document"])
    elif action == "add-public-keys":
        if len(patch) != 2:
            raise SidetreeFailure("document_composer_patch_missing_or_unknown_property")
        _validate_public_keys(patch.get("publicKeys"))
    elif action in ("remove-public-keys", "remove-services"):
        _only(patch, {"action", "ids"})
        ids = patch.get("ids")
        if not isinstance(ids, list):
            raise SidetreeFailure("document_composer_patch_ids_not_array")
        for ident in ids:
            _validate_id(ident)
    elif action == "add-services":
        if len(patch) != 2:
            raise SidetreeFailure("document_composer_patch_missing_or_unknown_property")
        _validate_services(patch.get("services"))
    else:
        raise SidetreeFailure("document_composer_patch_missing_or_unknown_action")


def validate_delta(delta: Any) -> None:
    """`Delta.validateDelta`: present, at most 1000 bytes of JCS, then the schema.

    Raises:
        SidetreeFailure
    """
    if delta is None:
        raise SidetreeFailure("delta_is_null_or_undefined")
    try:
        size = len(jcs(delta))
    except ValueError as exc:
        raise SidetreeFailure("delta_is_not_canonicalizable") from exc
    if size > MAX_DELTA_SIZE:
        raise SidetreeFailure("delta_exceeds_maximum_size")
    _non_array_object(delta)
    _only(delta, {"patches", "updateCommitment"})
    patches = delta.get("patches")
    if not isinstance(patches, list):
        raise SidetreeFailure("document_composer_update_operation_document_patches_not_array")
    for patch in patches:
        _validate_patch(patch)
    _validate_multihash(delta.get("updateCommitment"))


def validate_suffix_data(suffix_data: Any) -> None:
    """`InputValidator.validateSuffixData`: only deltaHash, recoveryCommitment and type.

    Raises:
        SidetreeFailure
    """
    if not isinstance(suffix_data, dict):
        _non_array_object(suffix_data)
        raise SidetreeFailure("input_validator_input_is_not_an_object")
    _only(suffix_data, {"deltaHash", "recoveryCommitment", "type"})
    _validate_multihash(suffix_data.get("deltaHash"))
    _validate_multihash(suffix_data.get("recoveryCommitment"))
    if "type" in suffix_data:
        kind = suffix_data["type"]
        if not isinstance(kind, str):
            raise SidetreeFailure("suffix_data_type_is_not_string")
        if js_len(kind) > 4:
            raise SidetreeFailure("suffix_data_type_length_greater_than_four")
        if not is_b64url(kind):
            raise SidetreeFailure("suffix_data_type_invalid_character")


# --- patches (DocumentComposer) -------------------------------------------------------------


def apply_patches(patches: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply validated patches, in order, to an empty internal document."""
    document: dict[str, Any] = {}
    for patch in patches:
        action = patch["action"]
        if action == "replace":
            document = dict(patch["document"]) if isinstance(patch["document"], dict) else {}
        elif action == "add-public-keys":
            keys = {k["id"]: k for k in document.get("publicKeys") or []}
            for key in patch["publicKeys"]:
                keys[key["id"]] = key
            document["publicKeys"] = list(keys.values())
        elif action == "remove-public-keys" and "publicKeys" in document:
            drop = set(patch["ids"])
            document["publicKeys"] = [k for k in document["publicKeys"] if k["id"] not in drop]
        elif action == "add-services":
            services = list(document.get("services") or [])
            positions = {s["id"]: i for i, s in enumerate(services)}
            for service in patch["services"]:
                if service["id"] in positions:
                    services[positions[service["id"]]] = service
                else:
                    positions[service["id"]] = len(services)
                    services.append(service)
            document["services"] = services
        elif action == "remove-services" and "services" in document:
            drop = set(patch["ids"])
            document["services"] = [s for s in document["services"] if s["id"] not in drop]
    return document
