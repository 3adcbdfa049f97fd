"""Key files written by `identity-hub did create`:
`{"did": ..., "keys": [{"kid": <absolute key id>, "privateJwk": {...}}], ...}` (mode 0600)."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto.common import JWException

from identity_hub.did.encoding import parse_did
from identity_hub.did.errors import InvalidDid
from identity_hub.did.keys import PRIVATE_MEMBERS

logger = logging.getLogger(__name__)

FORMAT = "identity-hub/did-keys@1"


class KeyFileError(ValueError):
    """A key file is missing, unreadable or malformed."""


def write_key_file(
    path: Path, did: str, keys: list[tuple[str, jwcrypto_jwk.JWK]], **extra: Any
) -> None:
    """Write a key file with mode 0600, refusing to overwrite an existing file.

    Raises:
        FileExistsError: `path` exists.
    """
    body = {
        "format": FORMAT,
        "did": did,
        "keys": [{"kid": kid, "privateJwk": _private(key)} for kid, key in keys],
        **extra,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh, indent=2)
        fh.write("\n")


def _private(key: jwcrypto_jwk.JWK) -> dict[str, Any]:
    exported = dict(key.export_private(as_dict=True))
    exported.pop("kid", None)
    return exported


def load_key_file(path: str | Path) -> tuple[str, list[tuple[str, jwcrypto_jwk.JWK]]]:
    """Read a key file.

    Returns:
        (DID, [(absolute kid, private jwcrypto JWK with that kid)])

    Raises:
        KeyFileError: unreadable, not JSON, or a key that is not a private key of the DID.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("key file %s is readable by other users; chmod 600 it", path)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"key file {path} is not JSON") from exc
    if not isinstance(body, dict) or not isinstance(body.get("did"), str):
        raise KeyFileError(f"key file {path} has no 'did'")
    did = body["did"]
    try:
        parse_did(did)
    except InvalidDid as exc:
        raise KeyFileError(f"key file {path}: 'did' is not a DID") from exc
    entries = body.get("keys")
    if not isinstance(entries, list) or not entries:
        raise KeyFileError(f"key file {path} has no 'keys'")
    keys = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise KeyFileError(f"key file {path}: a key entry is not an object")
        kid, private = entry.get("kid"), entry.get("privateJwk")
        if not isinstance(kid, str) or not kid.startswith(did + "#"):
            raise KeyFileError(f"key file {path}: kid must be '{did}#<fragment>'")
        if not isinstance(private, dict) or not PRIVATE_MEMBERS.intersection(private):
            raise KeyFileError(f"key file {path}: {kid} has no private JWK")
        try:
            key = jwcrypto_jwk.JWK(**{**private, "kid": kid})
        except (JWException, ValueError, TypeError) as exc:
            raise KeyFileError(f"key file {path}: {kid} is not a valid JWK") from exc
        keys.append((kid, key))
    return did, keys
