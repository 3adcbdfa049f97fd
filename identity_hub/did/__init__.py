"""DID resolution for the hub: offline did:key, did:jwk and long-form did:ion; did:web and a
universal resolver over one guarded HTTP client; typed errors; keys checked against the
verification relationships of their document. See README.md in this package for the policies.
"""

from identity_hub.did.config import ResolverConfig
from identity_hub.did.errors import (
    DidError,
    DidNotFound,
    InvalidDid,
    InvalidDocument,
    InvalidPublicKey,
    InvalidPublicKeyLength,
    KeyNotAuthorized,
    KeyNotFound,
    MethodNotSupported,
    NetworkError,
    NetworkRefused,
    ResolutionTimeout,
    ResponseTooLarge,
    UnsupportedPublicKeyType,
)
from identity_hub.did.keys import VerificationKey
from identity_hub.did.resolver import DidResolver, resolve

__all__ = [
    "DidError",
    "DidNotFound",
    "DidResolver",
    "InvalidDid",
    "InvalidDocument",
    "InvalidPublicKey",
    "InvalidPublicKeyLength",
    "KeyNotAuthorized",
    "KeyNotFound",
    "MethodNotSupported",
    "NetworkError",
    "NetworkRefused",
    "ResolutionTimeout",
    "ResolverConfig",
    "ResponseTooLarge",
    "UnsupportedPublicKeyType",
    "VerificationKey",
    "resolve",
]
