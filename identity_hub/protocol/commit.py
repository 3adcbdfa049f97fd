"""Commits: flattened JWS objects whose protected header says what they do to which object.

Parsing here checks shape only (protocol doc §d); the signature is verified in
`identity_hub.commits.verify`, against the key the `kid` names in the signer's DID document.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from identity_hub.crypto import JoseError, ParsedJws, parse_flattened_jws
from identity_hub.errors import BadRequest, MissingParameter, WrongType
from identity_hub.protocol.jsonutil import JsonError, loads_strict

OPERATIONS = ("create", "update", "delete")
INTERFACES = ("Collections", "Profile", "Permissions", "Actions")
STRATEGIES = ("basic", "lastWriterWins", "automerge")
REQUIRED_HEADERS = (
    "interface", "context", "type", "operation", "committed_at", "commit_strategy", "sub", "kid",
)
COMMIT_MEMBERS = frozenset({"protected", "header", "payload", "signature"})
# The client's unprotected header members the hub overwrites (protocol doc §d.3).
HUB_HEADER_MEMBERS = ("iss", "rev", "object_id")


def compute_rev(protected_b64: str, payload_b64: str) -> str:
    """The protocol's content hash: hex SHA-256 of the ASCII string `protected.payload`."""
    return hashlib.sha256(f"{protected_b64}.{payload_b64}".encode("ascii")).hexdigest()


def parse_time(value: str) -> int:
    """ISO-8601 to microseconds since the epoch (a naive time is taken as UTC).

    Raises:
        ValueError: not an ISO-8601 date-time.
    """
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise ValueError("not a date-time")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def format_time(us: int) -> str:
    """Microseconds since the epoch as ISO-8601 UTC with milliseconds, like JavaScript's Date."""
    dt = datetime.fromtimestamp(us / 1_000_000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    """A parsed, shape-checked commit. `signer` is the DID of `kid` (not yet verified)."""

    parsed: ParsedJws
    protected: str
    payload: str
    signature: str
    client_header: dict[str, Any]
    headers: dict[str, Any]
    rev: str
    object_id: str
    operation: str
    interface: str
    context: str
    type: str
    committed_at: str
    committed_at_us: int
    commit_strategy: str
    sub: str
    kid: str
    signer: str
    meta: Any

    @property
    def payload_bytes(self) -> bytes:
        return self.parsed.payload

    def wire_header(self) -> dict[str, Any]:
        """The unprotected header the hub returns: the client's members + iss, rev, object_id."""
        header = {k: v for k, v in self.client_header.items() if k not in HUB_HEADER_MEMBERS}
        header["iss"] = self.signer
        header["rev"] = self.rev
        if self.operation == "create":
            header["object_id"] = self.object_id
        return header

    def to_wire(self) -> dict[str, Any]:
        return {
            "protected": self.protected,
            "header": self.wire_header(),
            "payload": self.payload,
            "signature": self.signature,
        }

    def payload_json(self, max_depth: int = 64) -> Any:
        """The payload decoded as strict JSON, numbers by the payload policy (docs/protocol.md,
        "Numbers"): a negative zero or a number of 1e40 or more is refused.

        Raises:
            BadRequest: target commit.payload.
        """
        try:
            return loads_strict(self.parsed.payload, max_depth=max_depth, numbers="payload")
        except JsonError as exc:
            raise BadRequest(f"Commit payload is not valid JSON: {exc.message}",
                             target="commit.payload") from None


def _str_member(obj: dict[str, Any], name: str, target: str) -> str:
    if name not in obj:
        raise MissingParameter(target=target)
    value = obj[name]
    if not isinstance(value, str) or not value:
        raise WrongType(target=target)
    return value


_FLATTENED_PARTS = ("protected", "payload", "signature")
DEFAULT_MAX_COMMIT_BYTES = 65536


def _b64_len(text: str) -> int:
    """The decoded length of base64url text (padding, if any, not counted)."""
    return len(text.rstrip("=")) * 3 // 4


def commit_size(obj: dict[str, Any]) -> int:
    """A commit's size as the `max_commit_bytes` setting counts it: its protected header,
    payload and signature decoded from base64url, plus its unprotected header as JSON. Cheap:
    nothing is decoded (an object's JSON payload of N bytes counts N, not 4N/3)."""
    size = sum(_b64_len(obj[name]) for name in _FLATTENED_PARTS
               if isinstance(obj.get(name), str))
    header = obj.get("header")
    if header:
        size += len(json.dumps(header, separators=(",", ":"), ensure_ascii=False))
    return size


def parse_commit(obj: Any, *, target: str = "commit",
                 max_bytes: int = DEFAULT_MAX_COMMIT_BYTES) -> Commit:
    """Check a commit's shape, size (`commit_size` at most `max_bytes`) and headers (protocol
    doc §d.1–d.3).

    Raises:
        BadRequest: with the JSON path of the offending member as target; a commit over
            `max_bytes` with target `target` and a message naming `max_commit_bytes`.
    """
    if not isinstance(obj, dict):
        raise WrongType(target=target)
    if not COMMIT_MEMBERS.issuperset(obj):
        extra = set(obj) - COMMIT_MEMBERS
        raise BadRequest(f"Unexpected commit member: {sorted(extra)[0][:40]}", target=target)
    for name in _FLATTENED_PARTS:
        if name not in obj:
            raise MissingParameter(target=f"{target}.{name}")
        if not isinstance(obj[name], str):
            raise WrongType(target=f"{target}.{name}")
    client_header = obj.get("header") or {}
    if not isinstance(client_header, dict):
        raise WrongType(target=f"{target}.header")
    try:
        size = commit_size(obj)
    except (TypeError, ValueError, RecursionError):  # a header JSON cannot represent
        raise WrongType(target=f"{target}.header") from None
    if size > max_bytes:
        raise BadRequest(f"Commit is {size} bytes, over the max_commit_bytes limit of "
                         f"{max_bytes} bytes", target=target)
    protected, payload = obj["protected"], obj["payload"]
    try:
        # The client's unprotected header is kept apart (the hub overwrites some of its
        # members), so the JWS is parsed from the three signed parts only.
        parsed = parse_flattened_jws(
            {"protected": protected, "payload": payload, "signature": obj["signature"]}
        )
    except JoseError:
        raise BadRequest("Commit is not a valid flattened JWS", target=target) from None
    headers = parsed.header
    ptarget = f"{target}.protected"
    for name in REQUIRED_HEADERS:
        value = headers.get(name)
        if not isinstance(value, str) or not value:
            _str_member(headers, name, f"{ptarget}.{name}")  # raises with the right error
    if "rev" in headers:
        raise BadRequest("rev must not be in the protected header", target=f"{ptarget}.rev")
    operation: str = headers["operation"]
    interface: str = headers["interface"]
    strategy: str = headers["commit_strategy"]
    committed_at: str = headers["committed_at"]
    if operation not in OPERATIONS:
        raise BadRequest(f"Unknown operation: {operation[:40]}", target=f"{ptarget}.operation")
    if interface not in INTERFACES:
        raise BadRequest(f"Unknown interface: {interface[:40]}", target=f"{ptarget}.interface")
    if strategy not in STRATEGIES:
        raise BadRequest(f"Unknown commit_strategy: {strategy[:40]}",
                         target=f"{ptarget}.commit_strategy")
    try:
        committed_at_us = parse_time(committed_at)
    except (ValueError, OverflowError):
        raise BadRequest("committed_at is not an ISO-8601 date-time",
                         target=f"{ptarget}.committed_at") from None
    kid: str = headers["kid"]
    if "#" not in kid or not kid.startswith("did:"):
        raise BadRequest("kid must be a DID URL with a fragment", target=f"{ptarget}.kid")
    signer = kid.split("#", 1)[0]
    if "iss" in headers and headers["iss"] != signer:
        raise BadRequest("iss must be the DID of kid", target=f"{ptarget}.iss")
    rev = compute_rev(protected, payload)
    if operation == "create":
        if "object_id" in headers:
            raise BadRequest("A create must not name an object_id",
                             target=f"{ptarget}.object_id")
        object_id = rev
    else:
        object_id = _str_member(headers, "object_id", f"{ptarget}.object_id")
        if len(object_id) > 128:
            raise BadRequest("object_id too long", target=f"{ptarget}.object_id")
    for name in ("context", "type", "sub", "interface"):
        if len(headers[name]) > 512:
            raise BadRequest(f"{name} too long", target=f"{ptarget}.{name}")
    return Commit(
        parsed=parsed,
        protected=protected,
        payload=payload,
        signature=obj["signature"],
        client_header=client_header,
        headers=headers,
        rev=rev,
        object_id=object_id,
        operation=operation,
        interface=interface,
        context=headers["context"],
        type=headers["type"],
        committed_at=committed_at,
        committed_at_us=committed_at_us,
        commit_strategy=strategy,
        sub=headers["sub"],
        kid=kid,
        signer=signer,
        meta=headers.get("meta"),
    )
