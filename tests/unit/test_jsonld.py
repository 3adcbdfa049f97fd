"""JSON-LD offline: the shipped contexts, type IRIs, payload agreement, owner contexts, and proof
that no context is ever fetched (a server on 127.0.0.1 serving one sees no request)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pyld import jsonld as pyld_jsonld

from identity_hub.errors import BadRequest
from identity_hub.jsonld import (
    SHIPPED_DIR,
    ContextConfigError,
    ContextLibrary,
    JsonLd,
    UnknownContext,
    normalize_url,
    payload_matches,
    type_iri,
)

PLAYLIST = "http://schema.org/MusicPlaylist"


class CountingJsonLd(JsonLd):
    """Records each pyld expansion and the thread it ran on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expansions: list[int] = []

    def _expand(self, doc: dict[str, Any]) -> list[Any]:
        self.expansions.append(threading.get_ident())
        return super()._expand(doc)


class ContextServer:
    """A real HTTP server on 127.0.0.1 that would serve a context; counts requests."""

    def __init__(self) -> None:
        self.hits = 0
        self.server: TestServer | None = None

    async def _serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response({"@context": {"@vocab": "https://evil.example/"}})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._serve)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return f"http://127.0.0.1:{self.server.port}/context.jsonld"


@pytest.fixture
async def context_server() -> AsyncIterator[tuple[ContextServer, str]]:
    srv = ContextServer()
    url = await srv.start()
    yield srv, url
    assert srv.server is not None
    await srv.server.close()


# --- the shipped contexts --------------------------------------------------------------------

def shipped_manifest() -> dict[str, str]:
    return dict(json.loads((SHIPPED_DIR / "manifest.json").read_text())["contexts"])


def test_every_shipped_file_is_listed_and_documented() -> None:
    manifest = shipped_manifest()
    files = {p.name for p in SHIPPED_DIR.iterdir() if p.suffix == ".jsonld"}
    assert files == set(manifest.values())
    readme = (SHIPPED_DIR / "README.md").read_text()
    for name in files:
        assert name in readme, f"{name} has no source in schemas/contexts/README.md"


@pytest.mark.parametrize("url", sorted(shipped_manifest()))
def test_each_shipped_context_is_processed(url: str) -> None:
    """pyld processes every shipped context (and any context it imports) offline."""
    jl = JsonLd()
    assert jl.type_iri(url, "https://example.com/T") == "https://example.com/T"


@pytest.mark.parametrize("context,type_,iri", [
    ("https://www.w3.org/2018/credentials/v1", "VerifiableCredential",
     "https://www.w3.org/2018/credentials#VerifiableCredential"),
    ("https://www.w3.org/ns/credentials/v2", "VerifiablePresentation",
     "https://www.w3.org/2018/credentials#VerifiablePresentation"),
    ("https://w3id.org/security/v2", "Ed25519Signature2018",
     "https://w3id.org/security#Ed25519Signature2018"),
    ("https://w3id.org/security/suites/ed25519-2020/v1", "Ed25519VerificationKey2020",
     "https://w3id.org/security#Ed25519VerificationKey2020"),
    ("https://w3id.org/security/suites/x25519-2020/v1", "X25519KeyAgreementKey2020",
     "https://w3id.org/security#X25519KeyAgreementKey2020"),
    ("https://w3id.org/security/suites/jws-2020/v1", "JsonWebKey2020",
     "https://w3id.org/security#JsonWebKey2020"),
    ("https://w3id.org/security/multikey/v1", "Multikey", "https://w3id.org/security#Multikey"),
    ("https://w3id.org/security/data-integrity/v2", "DataIntegrityProof",
     "https://w3id.org/security#DataIntegrityProof"),
    ("schema.identity.foundation/0.1", "PermissionGrant",
     "https://schema.identity.foundation/0.1/PermissionGrant"),
    ("https://schema.org", "Person", "http://schema.org/Person"),
])
def test_types_of_the_shipped_contexts(context: str, type_: str, iri: str) -> None:
    assert type_iri(context, type_) == iri


@pytest.mark.parametrize("context,type_", [
    ("https://schema.org", "MusicPlaylist"),
    ("http://schema.org/", "MusicPlaylist"),
    ("http://schema.org", "MusicPlaylist"),
    ("schema.org", "MusicPlaylist"),
    ("HTTPS://Schema.org/", "MusicPlaylist"),
    ("https://schema.org/docs/jsonldcontext.jsonld", "MusicPlaylist"),
    ("https://schema.org", "http://schema.org/MusicPlaylist"),
    ("https://schema.org", "https://schema.org/MusicPlaylist"),
    ("https://schema.org", "schema:MusicPlaylist"),
    ("http://schema.org/", "http://schema.org/MusicPlaylist"),
])
def test_context_spellings_are_one_collection(context: str, type_: str) -> None:
    assert type_iri(context, type_) == PLAYLIST


def test_a_different_type_is_a_different_iri() -> None:
    assert type_iri("https://schema.org", "MusicAlbum") != PLAYLIST
    # The same word under another vocabulary is another type.
    assert type_iri("schema.identity.foundation/0.1", "MusicPlaylist") != PLAYLIST


@pytest.mark.parametrize("payload,expected", [
    ({"@context": "https://schema.org", "@type": "MusicPlaylist"}, True),
    ({"@context": "http://schema.org/", "@type": "MusicPlaylist", "name": "x"}, True),
    ({"@context": "schema.org", "@type": "https://schema.org/MusicPlaylist"}, True),
    ({"@context": "https://www.w3.org/ns/did/v1", "@type": PLAYLIST}, True),
    ({"@context": ["https://schema.org", {"x": "https://ex.org/x"}],
      "@type": ["Thing", "MusicPlaylist"]}, True),
    ({"@context": "https://schema.org", "@type": "Person"}, False),
    ({"@context": {"@vocab": "https://other.example/"}, "@type": "MusicPlaylist"}, False),
    ({"@context": "https://schema.identity.foundation/0.1", "@type": "MusicPlaylist"}, False),
])
def test_payload_agrees_with_headers_by_iri(payload: dict[str, Any], expected: bool) -> None:
    assert payload_matches(payload, "https://schema.org", "MusicPlaylist") is expected


def test_type_alias_of_the_credentials_context() -> None:
    vc = {"@context": ["https://www.w3.org/ns/credentials/v2"],
          "type": ["VerifiableCredential"], "issuer": "did:example:1"}
    assert payload_matches(vc, "https://www.w3.org/ns/credentials/v2", "VerifiableCredential")


def test_grant_payload_type_member_is_not_its_type() -> None:
    grant = {"@context": "schema.identity.foundation/0.1", "@type": "PermissionGrant",
             "context": "https://schema.org", "type": "MusicPlaylist", "allow": "-R--"}
    assert payload_matches(grant, "schema.identity.foundation/0.1", "PermissionGrant")
    assert not payload_matches(grant, "https://schema.org", "MusicPlaylist")


@pytest.mark.parametrize("payload", [
    "not an object", {"@type": "MusicPlaylist"}, {"@context": "https://schema.org"},
    {"@context": 5, "@type": "MusicPlaylist"}, {"@context": "https://schema.org", "@type": 3},
])
def test_malformed_payloads_are_bad_requests(payload: Any) -> None:
    with pytest.raises(BadRequest) as info:
        payload_matches(payload, "https://schema.org", "MusicPlaylist")
    assert info.value.target == "commit.payload"


def test_type_not_defined_by_context() -> None:
    with pytest.raises(BadRequest) as info:
        type_iri("https://www.w3.org/ns/credentials/v2", "NoSuchType")
    assert info.value.target == "commit.protected.type"
    assert "NoSuchType" in info.value.message


# --- never the network -----------------------------------------------------------------------

async def test_unknown_context_in_headers_is_refused_without_a_request(
        context_server: tuple[ContextServer, str]) -> None:
    srv, url = context_server
    jl = JsonLd()
    with pytest.raises(BadRequest) as info:
        await jl.type_iri_async(url, "Thing")
    assert info.value.target == "commit.protected.context"
    assert url in info.value.message
    with pytest.raises(BadRequest):
        jl.type_iri(url.replace("http://", "https://"), "Thing")
    assert srv.hits == 0


@pytest.mark.parametrize("shape", ["string", "list", "import", "scoped", "nested-owner"])
async def test_unknown_context_in_payload_is_refused_without_a_request(
        context_server: tuple[ContextServer, str], tmp_path: Path, shape: str) -> None:
    srv, url = context_server
    library = None
    payload: dict[str, Any] = {"@type": "MusicPlaylist"}
    if shape == "string":
        payload["@context"] = url
    elif shape == "list":
        payload["@context"] = ["https://schema.org", url]
    elif shape == "import":
        payload["@context"] = [{"@import": url}]
    elif shape == "scoped":
        payload["@context"] = ["https://schema.org", {"byArtist": {"@id": "schema:byArtist",
                                                                   "@context": url}}]
        payload["byArtist"] = {"name": "x"}
        payload["@type"] = ["MusicPlaylist", "byArtist"]
    else:  # an owner's context that itself refers to a remote one
        (tmp_path / "mine.jsonld").write_text(json.dumps({"@context": [url, {"a": "b:a"}]}))
        (tmp_path / "manifest.json").write_text(json.dumps(
            {"contexts": {"https://owner.example/ctx": "mine.jsonld"}}))
        library = ContextLibrary.load(tmp_path)
        payload["@context"] = "https://owner.example/ctx"
    jl = JsonLd(library)
    with pytest.raises(BadRequest) as info:
        await jl.payload_matches_async(payload, "https://schema.org", "MusicPlaylist")
    assert info.value.target == "commit.payload"
    assert "Unknown JSON-LD context" in info.value.message and url in info.value.message
    assert srv.hits == 0


async def test_pyld_default_loader_is_replaced(context_server: tuple[ContextServer, str]
                                               ) -> None:
    """Once a JsonLd exists, pyld called directly elsewhere in the process fetches nothing."""
    srv, url = context_server
    JsonLd()
    with pytest.raises(pyld_jsonld.JsonLdError):
        await asyncio.to_thread(pyld_jsonld.expand, {"@context": url, "@type": "T"})
    assert srv.hits == 0


def test_loader_refuses_before_any_io() -> None:
    library = ContextLibrary.shipped()
    with pytest.raises(UnknownContext):
        library("http://127.0.0.1:9/ctx", {})
    with pytest.raises(UnknownContext):
        library("file:///etc/passwd", {})
    assert library("http://w3id.org/security/v1/", {})["document"]["@context"]


def test_url_normalization() -> None:
    assert normalize_url("HTTP://W3ID.org/security/v1/#x") == "https://w3id.org/security/v1"
    assert normalize_url("https://schema.org/") == normalize_url("http://schema.org")


# --- the owner's contexts --------------------------------------------------------------------

def write_owner_contexts(directory: Path, contexts: dict[str, Any], files: dict[str, Any]
                         ) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, doc in files.items():
        (directory / name).write_text(json.dumps(doc))
    (directory / "manifest.json").write_text(json.dumps({"contexts": contexts}))


def test_owner_context_is_served(tmp_path: Path) -> None:
    write_owner_contexts(tmp_path / "contexts", {"https://music.example/v1": "music.jsonld"},
                         {"music.jsonld": {"@context": {"@vocab": "https://music.example/v#"}}})
    jl = JsonLd(ContextLibrary.load(tmp_path / "contexts"))
    assert jl.type_iri("https://music.example/v1", "Gig") == "https://music.example/v#Gig"
    assert jl.payload_matches({"@context": "http://music.example/v1/", "@type": "Gig"},
                              "https://music.example/v1", "Gig")
    assert jl.type_iri("https://schema.org", "MusicPlaylist") == PLAYLIST
    with pytest.raises(BadRequest):
        JsonLd().type_iri("https://music.example/v1", "Gig")  # only where the owner added it


@pytest.mark.parametrize("case", ["replaces shipped", "outside dir", "bad json", "no @context",
                                  "bad manifest"])
def test_bad_owner_contexts_fail_at_startup(tmp_path: Path, case: str) -> None:
    d = tmp_path / "contexts"
    good = {"@context": {"@vocab": "https://x.example/"}}
    if case == "replaces shipped":
        write_owner_contexts(d, {"http://schema.org/": "s.jsonld"}, {"s.jsonld": good})
    elif case == "outside dir":
        (tmp_path / "outside.jsonld").write_text(json.dumps(good))
        write_owner_contexts(d, {"https://x.example/v1": "../outside.jsonld"}, {})
    elif case == "bad json":
        write_owner_contexts(d, {"https://x.example/v1": "x.jsonld"}, {})
        (d / "x.jsonld").write_text('{"@context": {"a": 1, "a": 2}}')
    elif case == "no @context":
        write_owner_contexts(d, {"https://x.example/v1": "x.jsonld"}, {"x.jsonld": {"a": 1}})
    else:
        write_owner_contexts(d, {}, {})
        (d / "manifest.json").write_text('["https://x.example/v1"]')
    with pytest.raises(ContextConfigError):
        ContextLibrary.load(d)


def test_no_owner_manifest_means_shipped_only(tmp_path: Path) -> None:
    assert ContextLibrary.load(tmp_path).urls() == ContextLibrary.shipped().urls()


# --- policy, cache and the event loop --------------------------------------------------------

def test_opaque_policy_uses_the_context_as_written() -> None:
    jl = JsonLd(unknown_contexts="opaque")
    assert jl.type_iri("https://apps.example/ns", "Note") == "https://apps.example/ns/Note"
    assert jl.type_iri("apps.example/ns#", "Note") == "https://apps.example/ns#Note"
    assert jl.payload_matches({"@context": "https://apps.example/ns", "@type": "Note"},
                              "https://apps.example/ns", "Note")
    assert not jl.payload_matches({"@context": "https://apps.example/ns", "@type": "Other"},
                                  "https://apps.example/ns", "Note")
    assert jl.type_iri("https://schema.org", "MusicPlaylist") == PLAYLIST  # known: expanded
    with pytest.raises(ValueError):
        JsonLd(unknown_contexts="fetch")  # type: ignore[arg-type]


def test_cache_is_per_context_and_type_and_bounded() -> None:
    jl = CountingJsonLd(cache_size=2)
    for _ in range(3):
        assert jl.type_iri("https://schema.org", "MusicPlaylist") == PLAYLIST
    assert len(jl.expansions) == 1
    jl.type_iri("http://schema.org/", "MusicPlaylist")  # another spelling: its own entry
    jl.type_iri("https://schema.org", "Person")
    assert len(jl.expansions) == 3
    jl.type_iri("https://schema.org", "MusicPlaylist")  # evicted (LRU of 2): expanded again
    assert len(jl.expansions) == 4
    with pytest.raises(BadRequest):
        jl.type_iri("https://unknown.example/", "X")
    with pytest.raises(BadRequest):
        jl.type_iri("https://unknown.example/", "X")  # refusals are cached too
    assert len(jl.expansions) == 5


async def test_async_expansion_runs_off_the_event_loop() -> None:
    jl = CountingJsonLd()
    loop_thread = threading.get_ident()
    results = await asyncio.gather(*(jl.type_iri_async("https://schema.org", t)
                                     for t in ("MusicPlaylist", "Person", "MusicAlbum")))
    assert results == [PLAYLIST, "http://schema.org/Person", "http://schema.org/MusicAlbum"]
    assert jl.expansions and loop_thread not in jl.expansions
    before = len(jl.expansions)
    assert await jl.type_iri_async("https://schema.org", "Person") == "http://schema.org/Person"
    assert await jl.payload_matches_async({"@context": "https://schema.org", "@type": "Person"},
                                          "https://schema.org", "Person")
    assert loop_thread not in jl.expansions
    assert len(jl.expansions) == before + 1  # the payload's expansion; the header was cached
    jl.close()
