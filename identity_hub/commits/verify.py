"""Verify a commit's signature against the key its `kid` names in the signer's DID document."""

from __future__ import annotations

import logging

from identity_hub.crypto import JoseError, verify_jws
from identity_hub.did import DidError, DidResolver, NetworkError
from identity_hub.errors import BadRequest, TemporarilyUnavailable
from identity_hub.protocol.commit import Commit

logger = logging.getLogger(__name__)


async def verify_commit(commit: Commit, resolver: DidResolver) -> None:
    """Raises:
        BadRequest: target `commit`, "Signature could not be verified" (the reference's words),
            whether the DID did not resolve, the key is not a signing key, or the signature is bad.
        TemporarilyUnavailable: the signer's DID document could not be fetched right now (a
            network error or timeout): the commit may well be valid; try again later.
    """
    try:
        key = await resolver.key(commit.kid, "sign")
        verify_jws(commit.parsed, key.key_family, key.crypto_key)
    except NetworkError:
        logger.info("commit %s: signer's DID unreachable for now", commit.rev[:12])
        raise TemporarilyUnavailable("The signer's DID document could not be fetched now; "
                                     "try again later", target="commit") from None
    except (DidError, JoseError) as exc:
        logger.info("commit %s: signature not verified: %s", commit.rev[:12], type(exc).__name__)
        raise BadRequest("Signature could not be verified", target="commit") from None
