"""did:web (did-methods.md §3): the URL mapping, and fetching over the guarded HTTP client.

`did:web:<domain>[%3A<port>][:<path>]*` maps to `https://<domain>[:<port>]/<path>/did.json`, or to
`/.well-known/did.json` without a path. The fetched document's `id` must equal the DID.
Plain http is never used except for an allow-listed host whose https attempt failed to connect
(a development hub on 127.0.0.1 without TLS); that fallback is logged by the HTTP client.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote, unquote

import yarl

from identity_hub.did.config import ResolverConfig
from identity_hub.did.errors import (
    DidNotFound,
    InvalidDid,
    InvalidDocument,
    NetworkError,
    ResolutionTimeout,
)
from identity_hub.did.http import GuardedHttp, HttpResponse

logger = logging.getLogger(__name__)

ACCEPT = "application/did+json, application/did+ld+json;q=0.9, application/json;q=0.8"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"({_LABEL}(?:\.{_LABEL})*)(?::([0-9]{{1,5}}))?")
_BAD_SEGMENT_CHARS = set("/?#\\@%") | {chr(c) for c in range(0x21)} | {"\x7f"}


def _parts(did: str) -> tuple[str, int | None, list[str]]:
    if not did.startswith("did:web:"):
        raise InvalidDid("not a did:web")
    segments = did[len("did:web:"):].split(":")
    domain = unquote(segments[0])
    match = _HOST_RE.fullmatch(domain)
    if match is None:
        raise InvalidDid("did:web domain is not a host name with an optional port")
    port = int(match.group(2)) if match.group(2) else None
    if port is not None and not 0 < port < 65536:
        raise InvalidDid("did:web port out of range")
    path = [unquote(s) for s in segments[1:]]
    for segment in path:
        if segment in ("", ".", "..") or _BAD_SEGMENT_CHARS.intersection(segment):
            raise InvalidDid("did:web path segment is empty or contains reserved characters")
    return match.group(1), port, path


def did_web_url(did: str) -> str:
    """The https URL of a did:web document (a pure function; no policy applied).

    Raises:
        InvalidDid: the method-specific id is not a host[:port] followed by safe path segments.
    """
    host, port, path = _parts(did)
    authority = f"{host}:{port}" if port is not None else host
    return f"https://{authority}/{'/'.join(path) if path else '.well-known'}/did.json"


def web_document_path(did: str) -> str:
    """The path a host serves the document of `did` at, e.g. `/.well-known/did.json`."""
    _, _, path = _parts(did)
    return f"/{'/'.join(path) if path else '.well-known'}/did.json"


def did_web_from_host(host: str) -> str:
    """`host[:port][/path...]` -> `did:web:host[%3Aport][:path...]`.

    Raises:
        InvalidDid: not a host name with optional port and path.
    """
    authority, _, path = host.strip().strip("/").partition("/")
    segments = [s for s in path.split("/") if s]
    did = "did:web:" + quote(authority.lower(), safe="") + "".join(
        ":" + quote(s, safe="") for s in segments
    )
    _parts(did)
    return did


def _max_age(headers: dict[str, str]) -> float | None:
    for directive in headers.get("Cache-Control", "").split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() in ("no-store", "no-cache"):
            return 1.0
        if name.lower() == "max-age" and value.strip().isdigit():
            return max(1.0, float(value.strip()))
    return None


async def fetch_did_web(
    did: str, http: GuardedHttp, config: ResolverConfig
) -> tuple[dict[str, Any], float | None]:
    """Fetch and check a did:web document.

    Returns:
        (resolution result, cache TTL from `Cache-Control` or None)

    Raises:
        InvalidDid, DidNotFound, InvalidDocument, NetworkRefused, NetworkError, ResolutionTimeout
    """
    url = yarl.URL(did_web_url(did))
    try:
        resp = await http.get(url, accept=ACCEPT)
    except ResolutionTimeout:
        raise
    except NetworkError:
        if not config.host_allowed(url.host or "", url.port):
            raise
        logger.warning("did:web %s: https failed on allow-listed host, trying plain http", did)
        resp = await http.get(url.with_scheme("http"), accept=ACCEPT)
    return _document_from(did, resp), _max_age(resp.headers)


def _document_from(did: str, resp: HttpResponse) -> dict[str, Any]:
    if resp.status != 200:
        raise DidNotFound(f"did:web host answered HTTP {resp.status}")
    doc = resp.json()
    if not isinstance(doc, dict):
        raise InvalidDocument("did:web document is not a JSON object")
    if doc.get("id") != did:
        raise InvalidDocument("did:web document id does not match the DID")
    return {
        "didDocument": doc,
        "didDocumentMetadata": {},
        "didResolutionMetadata": {
            "contentType": resp.headers.get("Content-Type", "application/did+json"),
            "retrieved": resp.url,
        },
    }
