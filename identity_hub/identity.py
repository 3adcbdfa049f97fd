"""The hub's own identity: its DID, its DID document and its private keys.

Storage: `<data dir>/identity.json` holds public metadata (DID, document, key records);
`<data dir>/keys/` (mode 0700) holds one private JWK per file (mode 0600).

Which DID method (measured, see `bench/` and tests/unit/test_identity.py):

* **Default: long-form did:ion** (resolvable offline). With `compat_2019` the document carries
  one RSA-2048 key `#rsa`, listed FIRST, `publicKeyJwk.use = "enc"`, `publicKeyJwk.kid = "rsa"`
  (the method id ends with it), type `RsaVerificationKey2018`, in `keyAgreement`,
  `authentication` and `assertionMethod` (2019 clients encrypt to it and verify the hub's RS256
  signatures with it, as the 0.1.9 reference hub signed with the key that decrypted). Sidetree
  allows it: key properties stay within `id/type/purposes/publicKeyJwk`, and the JCS delta with
  RSA + Ed25519 + X25519 is 987 bytes, under the 1000-byte limit
  (an empty `services` array is left out; it would add 14 bytes). Nothing more fits: a second
  RSA key (~530 bytes), a secp256k1 key or a service endpoint pushes it over.
* **did:web** when `method="web"`, or when did:ion cannot hold the requested keys/services and
  `web_host` is given (the host of the hub's public URL; the hub serves `static_document()` at
  `document_path`, normally `/.well-known/did.json`). No size limit; ids are absolute.
* **did:key** (`method="key"`, compat off): one Ed25519 key and its derived X25519 key.

The 2019 clients read only `publicKey[]` of a document (did-common-typescript `DidDocument`), so
`static_document()` in compat mode also carries a `publicKey` array mirroring `verificationMethod`
(absolute ids). That is what the hub serves for did:web, and what a test universal resolver
should return for the hub DID; the hub's own `DidResolver` folds it back into `verificationMethod`.

Rotation (`rotate`): new keys of the same layout; the old private keys stay usable through
`private_key(kid)` for the grace period (pick one longer than resolver caches, 300 s by default).

* did:web keeps its DID; fragments carry a generation number (`#rsa-2`), the document changes.
* did:key gets a new DID (the DID is the key).
* long-form did:ion gets a **new DID**: the keys are part of the initial state, so the suffix
  changes. (Keeping the DID would need an anchored Sidetree update through an ION node, which an
  offline hub cannot do; the update and recovery keys are kept in `keys/` for that.) The old DID
  is listed in `previous_dids` until its keys expire; clients must learn the new DID.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jwcrypto.jwk import JWK

from identity_hub.did.document import normalize_document
from identity_hub.did.encoding import json_copy
from identity_hub.did.errors import DidError
from identity_hub.did.keygen import derive_x25519, generate, private_dict, public_dict, raw_public
from identity_hub.did.methods import ion
from identity_hub.did.methods.key import multibase_of, resolve_did_key
from identity_hub.did.methods.web import did_web_from_host, web_document_path

logger = logging.getLogger(__name__)

IDENTITY_FILE = "identity.json"
KEYS_DIR = "keys"
FORMAT = "identity-hub/identity@1"
KEY_TYPES = ("Ed25519", "X25519", "RSA", "secp256k1", "P-256")
_SIGN = ["authentication", "assertionMethod"]
_AGREE = ["keyAgreement"]
_DID_V1 = "https://www.w3.org/ns/did/v1"
_JWS_2020 = "https://w3id.org/security/suites/jws-2020/v1"


class IdentityError(ValueError):
    """The hub identity cannot be created, loaded or used as asked."""


class IdentityNotFound(IdentityError):
    """No identity in the data directory."""


class IdentityExists(IdentityError):
    """`create` would overwrite an identity."""


def web_host_from_url(url: str) -> str:
    """`https://hub.example.com:8443/x` -> `hub.example.com:8443` (the did:web host part)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise IdentityError(f"not a URL with a host: {url!r}")
    return parts.hostname + (f":{parts.port}" if parts.port else "")


def _layout(key_types: tuple[str, ...], compat: bool, method: str) -> list[dict[str, Any]]:
    """The keys of a document: fragment stem, family, relationships, JWK use, method type."""
    unknown = set(key_types) - set(KEY_TYPES)
    if unknown:
        raise IdentityError(f"unknown key types {sorted(unknown)}; choose from {KEY_TYPES}")
    short = method == "ion"
    specs: list[dict[str, Any]] = []
    if compat:
        specs.append({"stem": "rsa", "family": "RSA", "rels": [*_AGREE, *_SIGN], "use": "enc",
                      "type": "RsaVerificationKey2018"})
    stems = {"Ed25519": ("ed", "ed25519"), "X25519": ("x", "x25519"), "RSA": ("rsa-sig", "rsa-sig"),
             "secp256k1": ("k1", "secp256k1"), "P-256": ("p256", "p256")}
    for family in dict.fromkeys(key_types):
        agree = family == "X25519"
        if family == "RSA":
            kind = "RsaVerificationKey2018" if compat else "JsonWebKey2020"
        elif family == "secp256k1":
            kind = "Secp256k1VerificationKey2018" if compat else "EcdsaSecp256k1VerificationKey2019"
        else:
            kind = "JsonWebKey2020"
        specs.append({"stem": stems[family][0 if short else 1], "family": family,
                      "rels": _AGREE if agree else _SIGN, "use": "enc" if agree else "sig",
                      "type": kind})
    if not any(set(s["rels"]) & set(_SIGN) for s in specs):
        raise IdentityError("the hub needs a signing key: add Ed25519, RSA, secp256k1 or P-256")
    return specs


def _service(endpoint: str | None) -> list[dict[str, Any]]:
    if not endpoint:
        return []
    return [{"id": "hub", "type": "IdentityHub", "serviceEndpoint": {
        "@context": "schema.identity.foundation/hub", "@type": "HostServiceEndpoint",
        "locations": [endpoint]}}]


def _write_private(keys_dir: Path, stem: str, key: JWK) -> str:
    name = f"{stem}.{secrets.token_hex(4)}.jwk"
    fd = os.open(keys_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(private_dict(key), fh)
        fh.flush()
        os.fsync(fh.fileno())
    return f"{KEYS_DIR}/{name}"


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(value, fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class HubIdentity:
    """The hub's DID, DID document (absolute ids) and private keys. See the module docstring."""

    def __init__(self, data_dir: Path, meta: dict[str, Any]) -> None:
        self.data_dir = Path(data_dir)
        self._meta = meta
        self._private: dict[str, JWK] = {}
        self._index()

    # --- public attributes ---------------------------------------------------------------

    @property
    def did(self) -> str:
        """The hub's DID."""
        return str(self._meta["did"])

    @property
    def method(self) -> str:
        """`ion` or `web`."""
        return str(self._meta["method"])

    @property
    def document(self) -> dict[str, Any]:
        """The DID document with absolute ids (a copy)."""
        return json_copy(self._meta["document"])  # type: ignore[no-any-return]

    @property
    def document_path(self) -> str | None:
        """For did:web, the path the hub must serve `static_document()` at; None for did:ion."""
        return web_document_path(self.did) if self.method == "web" else None

    @property
    def previous_dids(self) -> list[str]:
        """Earlier DIDs (did:ion rotation) whose keys are still in their grace period."""
        now = time.time()
        return [p["did"] for p in self._meta.get("previous_dids", []) if p["expires_at"] > now]

    # --- lifecycle -----------------------------------------------------------------------

    @staticmethod
    def exists(data_dir: Path) -> bool:
        """True if `data_dir` holds an identity."""
        return (Path(data_dir) / IDENTITY_FILE).is_file()

    @classmethod
    def create(
        cls,
        data_dir: Path,
        *,
        method: str = "ion",
        key_types: tuple[str, ...] = ("Ed25519", "X25519"),
        compat_2019: bool = True,
        web_host: str | None = None,
        service_endpoint: str | None = None,
    ) -> HubIdentity:
        """Create the hub identity in `data_dir` (see the module docstring for the layout).

        Args:
            method: `ion` (long form, offline) or `web`.
            key_types: any of Ed25519, X25519, RSA (2048, a separate signing key), secp256k1, P-256.
            compat_2019: add the RSA-2048 `use: enc` key first, for the 2019 JS clients.
            web_host: `host[:port][/path]` for did:web; also lets `ion` fall back to did:web when
                the keys do not fit a did:ion.
            service_endpoint: optional hub URL, published as an `IdentityHub` service.

        Raises:
            IdentityExists: an identity is already there.
            IdentityError: an impossible combination (e.g. did:web without `web_host`).
        """
        data_dir = Path(data_dir)
        if cls.exists(data_dir):
            raise IdentityExists(f"{data_dir} already holds a hub identity; refusing to "
                                 "overwrite it (use `identity-hub keys rotate` to change keys)")
        if method not in ("ion", "web", "key"):
            raise IdentityError("a hub identity uses did:ion, did:web or did:key")
        if method == "key" and (compat_2019 or set(key_types) - {"Ed25519", "X25519"}
                                or "Ed25519" not in key_types):
            raise IdentityError("a did:key hub holds one Ed25519 key (and its derived X25519 "
                                "key): no compat_2019 RSA key and no other key types; use "
                                "did:ion or did:web for those")
        if method == "web" and not web_host:
            raise IdentityError("did:web needs web_host (the host of the hub's public URL)")
        meta: dict[str, Any] = {
            "format": FORMAT, "method": method, "generation": 0, "compat_2019": compat_2019,
            "key_types": list(key_types), "web_host": web_host,
            "service_endpoint": service_endpoint, "created_at": time.time(), "keys": [],
            "previous_dids": [],
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        keys_dir = data_dir / KEYS_DIR
        keys_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(keys_dir, 0o700)
        identity = cls(data_dir, {**meta, "did": "", "document": {}})
        identity._new_generation()
        _write_json(data_dir / IDENTITY_FILE, identity._meta)
        logger.info("created hub identity %s (did:%s)", identity.did[:60], identity.method)
        return identity

    @classmethod
    def load(cls, data_dir: Path) -> HubIdentity:
        """Load the identity of `data_dir`.

        Raises:
            IdentityNotFound: none there (run `identity-hub init`).
            IdentityError: unreadable or inconsistent files.
        """
        data_dir = Path(data_dir)
        path = data_dir / IDENTITY_FILE
        if not path.is_file():
            raise IdentityNotFound(f"no hub identity in {data_dir}: run `identity-hub init` "
                                   "to create one")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IdentityError(f"cannot read {path}: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise IdentityError(f"{path} is not a hub identity file")
        identity = cls(data_dir, meta)
        keys_dir = data_dir / KEYS_DIR
        if keys_dir.is_dir() and stat.S_IMODE(keys_dir.stat().st_mode) & 0o077:
            logger.warning("%s is accessible by other users; chmod 700 it", keys_dir)
        for record in meta["keys"]:
            if record["status"] == "current" and not (data_dir / record["file"]).is_file():
                raise IdentityError(f"private key file {record['file']} is missing")
        return identity

    # --- keys ----------------------------------------------------------------------------

    def _index(self) -> None:
        self._by_kid: dict[str, dict[str, Any]] = {}
        for record in self._meta["keys"]:
            for kid in (record["kid"], *record.get("aliases", [])):
                self._by_kid[kid] = record

    def _usable(self, record: dict[str, Any], now: float) -> bool:
        return record["status"] == "current" or (record.get("expires_at") or 0) > now

    def _load_private(self, record: dict[str, Any]) -> JWK:
        key = self._private.get(record["kid"])
        if key is None:
            path = self.data_dir / record["file"]
            try:
                key = JWK(**{**json.loads(path.read_text(encoding="utf-8")), "kid": record["kid"]})
            except (OSError, ValueError, TypeError) as exc:
                raise IdentityError(f"cannot read private key {record['file']}") from exc
            self._private[record["kid"]] = key
        return key

    def private_key(self, kid: str) -> JWK | None:
        """The private key `kid` (a current key, or a rotated-out one still in its grace period;
        for did:ion also `<short form>#fragment`), or None."""
        record = self._by_kid.get(kid)
        if record is None or not self._usable(record, time.time()):
            return None
        return self._load_private(record)

    def _current(self, relationships: set[str]) -> list[dict[str, Any]]:
        return [r for r in self._meta["keys"]
                if r["status"] == "current" and relationships & set(r["relationships"])]

    def signing_key(self, family: str | None = None) -> tuple[str, JWK]:
        """(kid, private key) of a current signing key, in document order; `family` (`RSA`,
        `Ed25519`, ...) is preferred when present, and among keys of one family a dedicated
        signing key comes before the dual-use compat RSA key.

        Raises:
            IdentityError: no signing key (cannot happen for identities made by `create`).
        """
        candidates = [r for r in self._current(set(_SIGN)) if r["family"] != "X25519"]
        if family is not None:
            preferred = [r for r in candidates if r["family"] == family]
            preferred.sort(key=lambda r: r.get("use") == "enc")
            candidates = preferred or candidates
        if not candidates:
            raise IdentityError("the hub identity has no signing key")
        return candidates[0]["kid"], self._load_private(candidates[0])

    def encryption_keys(self) -> list[tuple[str, JWK]]:
        """(kid, private key) of the current keyAgreement keys, in document order."""
        return [(r["kid"], self._load_private(r)) for r in self._current(set(_AGREE))
                if r["family"] != "Ed25519"]

    # --- documents -----------------------------------------------------------------------

    def static_document(self) -> dict[str, Any]:
        """What a resolver should return for `self.did` (serve it for did:web; pass it to
        `DidResolver.add_static`). In compat mode it carries the 2019 `publicKey` array too."""
        doc = self.document
        if self._meta["compat_2019"] and "publicKey" not in doc:
            doc["publicKey"] = json_copy(doc.get("verificationMethod", []))
        return doc

    # --- generation and rotation ---------------------------------------------------------

    def rotate(self, grace_seconds: int = 86400) -> HubIdentity:
        """Replace every key; old private keys stay usable for `grace_seconds` (see the module
        docstring for what happens to the DID). Returns this identity, updated and saved.

        Raises:
            IdentityError: the new keys cannot be created.
        """
        now = time.time()
        old_did = self.did
        kept = []
        for record in self._meta["keys"]:
            if record["status"] == "current":
                record["status"], record["expires_at"] = "retired", now + grace_seconds
            if self._usable(record, now):
                kept.append(record)
            else:
                self._forget(record)
        self._meta["keys"] = kept
        self._new_generation()
        if self.did != old_did:
            self._meta["previous_dids"] = [
                p for p in self._meta.get("previous_dids", []) if p["expires_at"] > now
            ] + [{"did": old_did, "expires_at": now + grace_seconds}]
        self._meta["rotated_at"] = now
        _write_json(self.data_dir / IDENTITY_FILE, self._meta)
        logger.info("rotated hub keys (generation %s); old keys usable for %s s",
                    self._meta["generation"], grace_seconds)
        return self

    def _forget(self, record: dict[str, Any]) -> None:
        self._private.pop(record["kid"], None)
        try:
            (self.data_dir / record["file"]).unlink()
        except FileNotFoundError:
            pass

    def _new_generation(self) -> None:
        meta = self._meta
        meta["generation"] += 1
        method, compat = meta["method"], meta["compat_2019"]
        services = _service(meta.get("service_endpoint"))
        specs = _layout(tuple(meta["key_types"]), compat, method)
        keys = [(spec, generate(spec["family"])) for spec in specs]
        if method == "ion":
            try:
                did, document = self._ion_document(keys, services)
            except ValueError as exc:
                if not meta.get("web_host"):
                    raise IdentityError(f"{exc}: use did:web (pass web_host, the host of the "
                                        "hub's public URL) or fewer key types") from None
                logger.warning("did:ion cannot hold these keys (%s); using did:web", exc)
                meta["method"] = method = "web"
                specs = _layout(tuple(meta["key_types"]), compat, method)
                keys = [(spec, key) for spec, (_, key) in zip(specs, keys, strict=True)]
        if method == "web":
            did, document = self._web_document(keys, services)
        elif method == "key":
            did, document, keys = self._key_document(keys)
        keys_dir = self.data_dir / KEYS_DIR
        for spec, key in keys:
            fragment = spec["fragment"]
            kid = f"{did}#{fragment}"
            aliases = [f"{ion.short_form(did)}#{fragment}"] if method == "ion" else []
            stem = spec["family"].lower() if method == "key" else fragment
            meta["keys"].append({
                "kid": kid, "aliases": aliases, "family": spec["family"], "use": spec["use"],
                "relationships": spec["rels"], "status": "current", "expires_at": None,
                "generation": meta["generation"],
                "file": _write_private(keys_dir, stem, key),
            })
        meta["did"], meta["document"] = did, document
        self._private.clear()
        self._index()

    def _ion_document(self, keys: list[tuple[dict[str, Any], JWK]],
                      services: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        entries = []
        for spec, key in keys:
            spec["fragment"] = spec["stem"]
            jwk = public_dict(key)
            if spec["stem"] == "rsa":  # the 2019 compat key: `use` and a `kid` the id ends with
                jwk.update({"use": "enc", "kid": spec["fragment"]})
            entries.append({"id": spec["fragment"], "type": spec["type"], "publicKeyJwk": jwk,
                            "purposes": spec["rels"]})
        update, recovery = generate("secp256k1"), generate("secp256k1")
        did = ion.create_long_form(entries, services, public_dict(update), public_dict(recovery))
        keys_dir = self.data_dir / KEYS_DIR
        for old in (self._meta.get("ion_operation_keys") or {}).values():
            (self.data_dir / old).unlink(missing_ok=True)  # the old DID is abandoned
        self._meta["ion_operation_keys"] = {
            "update": _write_private(keys_dir, "ion-update", update),
            "recovery": _write_private(keys_dir, "ion-recovery", recovery),
        }
        try:
            document = normalize_document(ion.resolve_long_form(did)["didDocument"])
        except DidError as exc:  # our own DID must resolve; anything else is a bug
            raise IdentityError(f"created an unresolvable did:ion ({exc.reason})") from exc
        return did, document

    def _key_document(self, keys: list[tuple[dict[str, Any], JWK]]
                      ) -> tuple[str, dict[str, Any], list[tuple[dict[str, Any], JWK]]]:
        ed_spec, ed_key = next((s, k) for s, k in keys if s["family"] == "Ed25519")
        x_key = derive_x25519(ed_key)
        mb = multibase_of("Ed25519", raw_public("Ed25519", ed_key))
        x_mb = multibase_of("X25519", raw_public("X25519", x_key))
        did = f"did:key:{mb}"
        try:
            document = normalize_document(resolve_did_key(did)["didDocument"])
        except DidError as exc:
            raise IdentityError("created an unresolvable did:key") from exc
        x_spec = {"stem": x_mb, "fragment": x_mb, "family": "X25519", "rels": _AGREE,
                  "use": "enc", "type": "JsonWebKey2020"}
        ed_spec.update(stem=mb, fragment=mb)
        return did, document, [(ed_spec, ed_key), (x_spec, x_key)]

    def _web_document(self, keys: list[tuple[dict[str, Any], JWK]],
                      services: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
        try:
            did = did_web_from_host(str(self._meta["web_host"]))
        except DidError as exc:
            raise IdentityError(f"web_host {self._meta['web_host']!r} is not host[:port]") from exc
        generation = self._meta["generation"]
        doc: dict[str, Any] = {"@context": [_DID_V1, _JWS_2020], "id": did,
                               "verificationMethod": []}
        for spec, key in keys:
            spec["fragment"] = f"{spec['stem']}-{generation}"
            kid = f"{did}#{spec['fragment']}"
            doc["verificationMethod"].append({
                "id": kid, "type": spec["type"], "controller": did,
                "publicKeyJwk": {**public_dict(key), "use": spec["use"], "kid": kid},
            })
            for rel in spec["rels"]:
                doc.setdefault(rel, []).append(kid)
        if services:
            doc["service"] = [{**s, "id": f"{did}#{s['id']}"} for s in services]
        if self._meta["compat_2019"]:
            doc["publicKey"] = json_copy(doc["verificationMethod"])
        return did, doc
