"""Every setting in one table: name, type, default, help.

Precedence, highest first: command-line flag, environment variable `IDENTITY_HUB_<NAME>`, the
config file `<data dir>/config.toml`, the default. `docs/configuration.md` is checked against this
table by a test, so a setting cannot go undocumented.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import platformdirs

ENV_PREFIX = "IDENTITY_HUB_"


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def _default_data_dir() -> str:
    return str(platformdirs.user_data_path("identity-hub", appauthor=False))


SETTINGS: tuple[Setting, ...] = (
    Setting("data_dir", str, None, "The hub's home: keys, SQLite database, config.toml "
            "(default: a per-user data directory)."),
    Setting("database_url", str, None, "SQLAlchemy URL of the store, e.g. "
            "postgresql+asyncpg://user:pass@host/db (default: SQLite hub.db in the data dir)."),
    Setting("host", str, "127.0.0.1", "Address `serve` listens on."),
    Setting("port", int, 8080, "Port `serve` listens on."),
    Setting("public_url", str, None, "The URL clients reach this hub at (default: http://HOST:PORT)."),
    Setting("endpoint_paths", str, "/,/.identity", "Comma-separated paths the one POST endpoint "
            "answers on."),
    Setting("open_tenancy", bool, False, "Serve any owner DID that authenticates, not only the "
            "registered tenants (development and public hubs)."),
    Setting("clock_skew_seconds", int, 300, "How far a commit's committed_at, or the iat of a "
            "request JWS or access token, may lie from the hub's clock."),
    Setting("page_size", int, 100, "Most objects or commits in one query page."),
    Setting("sync_interval_seconds", float, 60.0, "Anti-entropy: how often each replication "
            "peer is pulled even without a hint (docs/replication.md)."),
    Setting("sync_request_timeout_seconds", float, 30.0, "Longest one request to a replication "
            "peer (a hint or a page of a pull) may take."),
    Setting("sync_backoff_base_seconds", float, 1.0, "First retry delay after a peer failed a "
            "hint or a pull; doubles with each further failure (jittered to 50-100 %)."),
    Setting("sync_backoff_max_seconds", float, 600.0, "Cap of a failing peer's retry delay."),
    Setting("sync_page_commits", int, 200, "Most commits asked for in one sync page (1-1000); a "
            "peer's page with more is refused whole."),
    Setting("sync_max_page_bytes", int, 8388608, "Largest answer to one sync pull read from a "
            "peer (as received, encrypted); reading stops there and the pull fails."),
    Setting("universal_resolver", str, None, "Base URL of a DID universal resolver "
            "(GET {base}/1.0/identifiers/{did}); off when unset."),
    Setting("did_web", bool, False, "Resolve did:web DIDs over HTTPS (off: nothing leaves the "
            "hub unless configured)."),
    Setting("allow_hosts", str, "", "Comma-separated HOST[:PORT] that may be reached over plain "
            "HTTP or on a private/loopback address (development only)."),
    Setting("resolver_timeout_seconds", float, 5.0, "Timeout of one outbound DID resolution."),
    Setting("resolver_max_bytes", int, 262144, "Largest DID document response accepted."),
    Setting("resolver_cache_ttl_seconds", int, 300, "How long a resolved DID document is cached."),
    Setting("max_body_bytes", int, 1048576, "Largest request body, checked before it is read."),
    Setting("max_plaintext_bytes", int, 1048576, "Largest decrypted request."),
    Setting("max_commit_bytes", int, 65536, "Largest commit (protected header, payload and "
            "signature decoded, plus the unprotected header), from a client or a peer."),
    Setting("max_json_depth", int, 64, "Deepest JSON nesting accepted in a request or payload."),
    Setting("max_concurrent_per_requester", int, 16, "Concurrent requests one requester DID may "
            "have in flight."),
    Setting("rate_limit_handshake", str, "20/500", "RATE/BURST (tokens per second / bucket "
            "size) of handshakes, and of envelopes failing to authenticate, per requester DID "
            "and per source address; an address out of them is refused before any crypto "
            "(docs/rate-limits.md)."),
    Setting("rate_limit_trusted_handshake", str, "50/1000", "RATE/BURST of handshakes of "
            "the hub's tenants and configured peer hubs (per DID)."),
    Setting("rate_limit_write", str, "20/200", "RATE/BURST of WriteRequests per requester "
            "DID and per source address."),
    Setting("rate_limit_trusted_write", str, "200/2000", "RATE/BURST of WriteRequests of the "
            "owner of the data and the owner's configured peer hubs (per DID)."),
    Setting("rate_limit_query", str, "50/500", "RATE/BURST of object, commit and audit "
            "queries per requester DID and per source address."),
    Setting("rate_limit_trusted_query", str, "500/5000", "RATE/BURST of queries of the owner "
            "and the owner's configured peer hubs (per DID)."),
    Setting("rate_limit_sync", str, "20/200", "RATE/BURST of SyncPullRequests and "
            "SyncHintRequests per requester DID and per source address."),
    Setting("rate_limit_trusted_sync", str, "200/2000", "RATE/BURST of sync requests of the "
            "owner and the owner's configured peer hubs (per DID)."),
    Setting("rate_limit_automerge", str, "0.5/10", "RATE/BURST of automerge worker seconds "
            "per requester DID and per source address (a commit is let in while any budget is "
            "left, and charged the seconds it took)."),
    Setting("rate_limit_trusted_automerge", str, "2/60", "RATE/BURST of automerge worker "
            "seconds of the owner and the owner's configured peer hubs (per DID)."),
    Setting("rate_limit_max_keys", int, 100000, "Most rate-limit buckets kept (least "
            "recently used evicted first): bounds memory under a flood of DIDs or addresses."),
    Setting("trusted_proxies", str, "", "Comma-separated addresses or CIDRs of reverse "
            "proxies whose X-Forwarded-For gives the client's address (default: none, the "
            "header is ignored)."),
    Setting("metrics_enabled", bool, False, "Serve Prometheus metrics at GET /metrics "
            "(off: 404)."),
    Setting("metrics_name_dids", bool, False, "Label metrics with DIDs instead of a short "
            "SHA-256 digest of them."),
    Setting("token_lifetime_seconds", int, 300, "Lifetime of a did-access-token."),
    Setting("compat_2019", bool, True, "Interoperate with the 2019 JavaScript clients "
            "(hub-sdk-js 0.1.2, did-auth-jose 0.1.14)."),
    Setting("automerge_timeout_seconds", float, 2.0, "Longest one automerge fold may run in its "
            "worker process before the commit is refused."),
    Setting("jsonld_unknown_contexts", str, "refuse", "A commit whose JSON-LD context is not "
            "shipped in schemas/contexts nor in <data dir>/contexts: refuse (bad_request) or "
            "opaque (context + '/' + type, no expansion). Contexts never load from the network."),
    Setting("log_level", str, "INFO", "Logging level (DEBUG, INFO, WARNING, ERROR)."),
    Setting("log_format", str, "text", "Log format: text or json (every line one JSON object, "
            "the start banner included)."),
    Setting("log_requester_dids", bool, False, "Name the requester's DID in access log lines "
            "(off: no log line names a DID or an object id)."),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def _coerce(setting: Setting, value: Any) -> Any:
    if value is None:
        return None
    if setting.type is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(f"{setting.env}: expected true or false, got {value!r}")
    try:
        return setting.type(value)
    except (TypeError, ValueError) as exc:
        expected = setting.type.__name__
        raise ValueError(f"{setting.name}: expected {expected}, got {value!r}") from exc


@dataclasses.dataclass(frozen=True)
class Settings:
    data_dir: str
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    endpoint_paths: str = "/,/.identity"
    open_tenancy: bool = False
    clock_skew_seconds: int = 300
    page_size: int = 100
    sync_interval_seconds: float = 60.0
    sync_request_timeout_seconds: float = 30.0
    sync_backoff_base_seconds: float = 1.0
    sync_backoff_max_seconds: float = 600.0
    sync_page_commits: int = 200
    sync_max_page_bytes: int = 8388608
    universal_resolver: str | None = None
    did_web: bool = False
    allow_hosts: str = ""
    resolver_timeout_seconds: float = 5.0
    resolver_max_bytes: int = 262144
    resolver_cache_ttl_seconds: int = 300
    max_body_bytes: int = 1048576
    max_plaintext_bytes: int = 1048576
    max_commit_bytes: int = 65536
    max_json_depth: int = 64
    max_concurrent_per_requester: int = 16
    rate_limit_handshake: str = "20/500"
    rate_limit_trusted_handshake: str = "50/1000"
    rate_limit_write: str = "20/200"
    rate_limit_trusted_write: str = "200/2000"
    rate_limit_query: str = "50/500"
    rate_limit_trusted_query: str = "500/5000"
    rate_limit_sync: str = "20/200"
    rate_limit_trusted_sync: str = "200/2000"
    rate_limit_automerge: str = "0.5/10"
    rate_limit_trusted_automerge: str = "2/60"
    rate_limit_max_keys: int = 100000
    trusted_proxies: str = ""
    metrics_enabled: bool = False
    metrics_name_dids: bool = False
    token_lifetime_seconds: int = 300
    compat_2019: bool = True
    automerge_timeout_seconds: float = 2.0
    jsonld_unknown_contexts: str = "refuse"
    log_level: str = "INFO"
    log_format: str = "text"
    log_requester_dids: bool = False

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def db_url(self) -> str:
        """The database URL in force: the configured one, or SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_path / 'hub.db'}"

    @property
    def allow_host_set(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.allow_hosts.split(",") if h.strip())

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.endpoint_paths.split(",") if p.strip())

    @property
    def endpoint(self) -> str:
        base = self.public_url or f"http://{self.host}:{self.port}"
        paths = self.paths
        path = ".identity" if "/.identity" in paths else (paths[0].lstrip("/") if paths else "")
        return base.rstrip("/") + "/" + path

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def load_settings(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from flags (None = not given), the environment and the config file.

    Raises:
        ValueError: a value of the wrong type, or an unknown key in config.toml.
    """
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    data_dir = flags.get("data_dir") or environ.get(_BY_NAME["data_dir"].env) or _default_data_dir()
    config_file = Path(data_dir) / "config.toml"
    if config_file.is_file():
        with config_file.open("rb") as fh:
            file_values = tomllib.load(fh)
        for key, value in file_values.items():
            if key not in _BY_NAME:
                raise ValueError(f"{config_file}: unknown setting {key!r}")
            values[key] = _coerce(_BY_NAME[key], value)
    for setting in SETTINGS:
        if setting.env in environ:
            values[setting.name] = _coerce(setting, environ[setting.env])
    for key, value in flags.items():
        if key in _BY_NAME:
            values[key] = _coerce(_BY_NAME[key], value)
    values["data_dir"] = str(data_dir)
    return Settings(**values)
