"""Typed DID-resolution errors.

Every failure of the DID layer is a `DidError` whose `.error` is a DID Resolution error name
(https://www.w3.org/TR/did-resolution/): `invalidDid`, `notFound`, `methodNotSupported`,
`invalidPublicKey`, `invalidPublicKeyLength`, `unsupportedPublicKeyType`, `invalidDidDocument`,
`internalError`. Library exceptions (aiohttp, cryptography, json, rfc8785) never escape the
package; they are translated where the library is called.

`reason` optionally carries a finer, machine-readable cause, e.g. the Sidetree error code
`did_unique_suffix_from_initial_state_mismatch` for a long-form did:ion.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


class DidError(Exception):
    """Base class: a DID could not be resolved, or a key could not be used."""

    error: str = "internalError"

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        self.message = message or self.error
        self.reason = reason
        super().__init__(self.message)

    def clone(self) -> DidError:
        """A fresh exception equal to this one (cached negative results are re-raised as clones)."""
        return type(self)(self.message, reason=self.reason)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.message!r}, error={self.error!r}, reason={self.reason!r})"


class InvalidDid(DidError):
    """The DID (or key id) is syntactically or cryptographically invalid."""

    error = "invalidDid"


class InvalidPublicKey(InvalidDid):
    """A public key is malformed: not on its curve, private members present, too small."""

    error = "invalidPublicKey"


class InvalidPublicKeyLength(InvalidDid):
    """A raw public key has the wrong number of bytes for its type."""

    error = "invalidPublicKeyLength"


class UnsupportedPublicKeyType(InvalidDid):
    """A key type the hub does not accept (`oct`, an unknown curve, an unknown format)."""

    error = "unsupportedPublicKeyType"


class MethodNotSupported(DidError):
    """No resolver for this DID method (or network resolution is not configured)."""

    error = "methodNotSupported"


class DidNotFound(DidError):
    """The DID does not exist, is deactivated, or its host answered with a non-200 status."""

    error = "notFound"


class KeyNotFound(DidNotFound):
    """The DID resolved, but its document has no verification method with that id."""


class KeyNotAuthorized(DidNotFound):
    """The key exists but is not authorized for the requested purpose (relationship or type)."""


class InvalidDocument(DidError):
    """A fetched document is not acceptable: not JSON, wrong id, malformed structure."""

    error = "invalidDidDocument"


class ResponseTooLarge(InvalidDocument):
    """A response body exceeded the configured size cap (reading was aborted)."""


class NetworkRefused(DidError):
    """An outbound request was refused by policy: private/loopback address, plain http, IP literal,
    a redirect to such an address, or too many redirects."""

    error = "internalError"


class NetworkError(DidError):
    """An outbound request failed: connection error, TLS failure, server error."""

    error = "internalError"


class ResolutionTimeout(NetworkError):
    """An outbound request did not finish within the configured timeout."""
