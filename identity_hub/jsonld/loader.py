"""The JSON-LD contexts this hub knows, and the pyld document loader that serves only them.

pyld's default loader fetches any remote `@context` URL (an SSRF, no timeout, follows
redirects: docs/security-notes.md). The hub never fetches a context: it serves the files shipped
in `schemas/contexts/` (listed in its `manifest.json`, sources in its README) and, optionally,
files an owner puts in `<data dir>/contexts/` with a `manifest.json` of the same shape:

    {"contexts": {"https://example.com/vocab/v1": "example-v1.jsonld", ...}}

Every other URL is refused with `UnknownContext`, before any I/O.

URLs are compared after `normalize_url`: the `http` and `https` spellings, the case of scheme
and host, trailing slashes and a fragment do not distinguish two contexts.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from identity_hub.protocol.jsonutil import StrictJsonError, parse_strict

logger = logging.getLogger(__name__)

SHIPPED_DIR = Path(__file__).resolve().parents[2] / "schemas" / "contexts"
MANIFEST = "manifest.json"
MAX_CONTEXT_BYTES = 1 << 20  # the largest shipped file, schema.org's, is 163 KB
MAX_OWNER_CONTEXTS = 256
MAX_CONTEXT_DEPTH = 32

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class UnknownContext(Exception):
    """A context URL the hub does not ship and no owner added: never fetched."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"unknown JSON-LD context {url[:200]!r}")


class ContextConfigError(ValueError):
    """The owner's `contexts/manifest.json` or one of its files is unusable (startup error)."""


def normalize_url(url: str) -> str:
    """The key under which a context URL is looked up: `http`/`https`, case of scheme and host,
    trailing slashes and a fragment make no difference."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "http":
        scheme = "https"
    return urlunsplit((scheme, parts.netloc.lower(), parts.path.rstrip("/"), parts.query, ""))


def absolute_context(value: str) -> str:
    """A context reference without a scheme, as the 2019 clients write them (`schema.org`,
    `schema.identity.foundation/0.1`), read as an `https` URL; others unchanged."""
    text = value.strip()
    if _SCHEME.match(text):
        return text
    return "https://" + text


def _read_json(path: Path, what: str) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_CONTEXT_BYTES:
            raise ContextConfigError(f"{what} {path.name} is larger than {MAX_CONTEXT_BYTES} "
                                     "bytes")
        return parse_strict(path.read_bytes(), max_depth=MAX_CONTEXT_DEPTH)
    except OSError as exc:
        raise ContextConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except StrictJsonError as exc:
        raise ContextConfigError(f"{what} {path.name} is not valid JSON: {exc}") from None


def read_manifest(directory: Path) -> dict[str, Path]:
    """The `URL → file` map of `directory/manifest.json`; files must lie in `directory`.

    Raises:
        ContextConfigError: a missing or malformed manifest, a file outside the directory.
    """
    root = directory.resolve()
    manifest = _read_json(root / MANIFEST, "context manifest")
    entries = manifest.get("contexts") if isinstance(manifest, dict) else None
    if not isinstance(entries, dict):
        raise ContextConfigError(f'{root / MANIFEST} must be {{"contexts": {{URL: file}}}}')
    if len(entries) > MAX_OWNER_CONTEXTS:
        raise ContextConfigError(f"at most {MAX_OWNER_CONTEXTS} contexts in {root / MANIFEST}")
    out: dict[str, Path] = {}
    for url, name in entries.items():
        if not isinstance(name, str) or not _SCHEME.match(url):
            raise ContextConfigError(f"{MANIFEST}: {url!r} must be an absolute URL naming a "
                                     "file")
        path = (root / name).resolve()
        if path.parent != root or not path.is_file():
            raise ContextConfigError(f"{MANIFEST}: {name!r} is not a file in {root}")
        out[url] = path
    return out


class ContextLibrary:
    """Context documents by URL, read from disk once; callable as a pyld document loader.

    Thread-safe: the hub expands in a worker thread while the event loop may expand too.
    """

    def __init__(self, documents: Mapping[str, Path | dict[str, Any]]) -> None:
        self._sources: dict[str, Path | dict[str, Any]] = {}
        for url, source in documents.items():
            self._sources[normalize_url(url)] = source
        self._parsed: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def shipped(cls) -> ContextLibrary:
        """The contexts shipped in `schemas/contexts/`."""
        return cls(read_manifest(SHIPPED_DIR))

    @classmethod
    def load(cls, owner_dir: Path | None = None) -> ContextLibrary:
        """The shipped contexts plus the owner's `owner_dir/manifest.json` if there is one.

        An owner's file may add URLs but not replace a shipped one: the type IRIs of stored
        objects must not change under them.

        Raises:
            ContextConfigError
        """
        documents: dict[str, Path | dict[str, Any]] = dict(read_manifest(SHIPPED_DIR))
        if owner_dir is not None and (owner_dir / MANIFEST).is_file():
            shipped = {normalize_url(u) for u in documents}
            for url, path in read_manifest(owner_dir).items():
                if normalize_url(url) in shipped:
                    raise ContextConfigError(f"{owner_dir / MANIFEST}: {url} is shipped with the "
                                             "hub and cannot be replaced")
                documents[url] = path
            library = cls(documents)
            for url in library.urls():  # parse everything now: a bad file fails at startup
                library.document(url)
            logger.info("JSON-LD contexts: %d shipped, %d from %s", len(shipped),
                        len(documents) - len(shipped), owner_dir)
            return library
        return cls(documents)

    def urls(self) -> list[str]:
        """The normalized URLs this library serves."""
        return sorted(self._sources)

    def knows(self, url: str) -> bool:
        return normalize_url(absolute_context(url)) in self._sources

    def document(self, url: str) -> dict[str, Any]:
        """The parsed context document (shared: do not modify).

        Raises:
            UnknownContext: the URL is neither shipped nor added by the owner.
            ContextConfigError: its file is unusable.
        """
        key = normalize_url(url)
        with self._lock:
            found = self._parsed.get(key)
            if found is not None:
                return found
            source = self._sources.get(key)
            if source is None:
                raise UnknownContext(url)
            doc = source if isinstance(source, dict) else _read_json(source, "context")
            if not isinstance(doc, dict) or "@context" not in doc:
                raise ContextConfigError(f"the context for {url} has no @context member")
            self._parsed[key] = doc
            return doc

    def __call__(self, url: str, options: Any = None) -> dict[str, Any]:
        """pyld's document loader interface: a RemoteDocument, or UnknownContext. No I/O but
        the first read of a local file."""
        doc = self.document(url)
        return {
            "contentType": "application/ld+json",
            "contextUrl": None,
            "documentUrl": url,
            # pyld rewrites relative @context URLs of what it gets in place: hand it a copy
            "document": copy.deepcopy(doc),
            # cached as resolved by this library's own resolver cache (expand.py)
            "tag": "static",
        }
