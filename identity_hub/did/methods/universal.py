"""Universal resolver client (did-methods.md §5, protocol §b.7).

`GET {base}/1.0/identifiers/{did}` (the DID percent-encoded as one path segment, colons kept).
Accepted bodies: today's resolution result (`didDocument`, `didDocumentMetadata`,
`didResolutionMetadata`), the 2019 shape (`document` with `resolverMetadata`/`methodMetadata`),
or a bare document. The document id must be the requested DID, its `canonicalId`, one of its
`equivalentId`s, or (for a long-form did:ion) its short form.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import yarl

from identity_hub.did.errors import (
    DidError,
    DidNotFound,
    InvalidDid,
    InvalidDocument,
    InvalidPublicKey,
    InvalidPublicKeyLength,
    MethodNotSupported,
    NetworkError,
    UnsupportedPublicKeyType,
)
from identity_hub.did.http import GuardedHttp
from identity_hub.did.methods import ion

logger = logging.getLogger(__name__)

ACCEPT = (
    'application/did-resolution, application/ld+json;profile="https://w3id.org/did-resolution";'
    "q=0.9, application/did+ld+json;q=0.8, application/json;q=0.7"
)
_ERRORS: dict[str, type[DidError]] = {
    "invalidDid": InvalidDid,
    "notFound": DidNotFound,
    "methodNotSupported": MethodNotSupported,
    "invalidPublicKey": InvalidPublicKey,
    "invalidPublicKeyLength": InvalidPublicKeyLength,
    "unsupportedPublicKeyType": UnsupportedPublicKeyType,
    "invalidDidDocument": InvalidDocument,
}
_STATUS: dict[int, type[DidError]] = {
    400: InvalidDid,
    404: DidNotFound,
    410: DidNotFound,
    501: MethodNotSupported,
}


def identifiers_url(base: str, did: str) -> yarl.URL:
    """`{base}/1.0/identifiers/{did}`."""
    root = str(yarl.URL(base)).rstrip("/")
    return yarl.URL(f"{root}/1.0/identifiers/{quote(did, safe=':')}", encoded=True)


def _error_of(body: Any) -> str | None:
    if isinstance(body, dict):
        meta = body.get("didResolutionMetadata")
        if isinstance(meta, dict) and isinstance(meta.get("error"), str):
            return str(meta["error"])
    return None


def _id_matches(did: str, doc_id: Any, meta: dict[str, Any]) -> bool:
    if doc_id == did or meta.get("canonicalId") == did:
        return True
    equivalent = meta.get("equivalentId")
    if isinstance(equivalent, list) and did in equivalent:
        return True
    return did.startswith("did:ion:") and ion.is_long_form(did) and doc_id == ion.short_form(did)


async def resolve_universal(did: str, http: GuardedHttp, base: str) -> dict[str, Any]:
    """Resolve `did` through a universal resolver.

    Returns:
        A resolution result whose document's id is checked against `did`.

    Raises:
        InvalidDid, DidNotFound, MethodNotSupported, InvalidDocument, NetworkRefused,
        NetworkError, ResolutionTimeout
    """
    resp = await http.get(identifiers_url(base, did), accept=ACCEPT)
    try:
        body = resp.json()
    except InvalidDocument:
        body = None
    error = _error_of(body)
    if resp.status != 200 or error:
        if error in _ERRORS:
            raise _ERRORS[error](f"universal resolver: {error}")
        if resp.status in _STATUS:
            raise _STATUS[resp.status](f"universal resolver answered HTTP {resp.status}")
        if resp.status == 200:
            raise NetworkError(f"universal resolver error {error!r}")
        raise NetworkError(f"universal resolver answered HTTP {resp.status}")
    if not isinstance(body, dict):
        raise InvalidDocument("universal resolver answer is not a JSON object")
    if "didDocument" in body:
        doc, meta = body["didDocument"], body.get("didDocumentMetadata")
    elif "document" in body:
        doc, meta = body["document"], body.get("methodMetadata")
    elif "id" in body:
        doc, meta = body, None
    else:
        raise InvalidDocument("universal resolver answer has no DID document")
    meta = meta if isinstance(meta, dict) else {}
    if doc is None or meta.get("deactivated") is True:
        raise DidNotFound("DID not found or deactivated")
    if not isinstance(doc, dict):
        raise InvalidDocument("DID document is not a JSON object")
    if not _id_matches(did, doc.get("id"), meta):
        raise InvalidDocument("universal resolver returned a document for another DID")
    return {
        "didDocument": doc,
        "didDocumentMetadata": meta,
        "didResolutionMetadata": {"contentType": "application/did+json", "retrieved": resp.url},
    }
