"""Verify a commit's signature against the key its `kid` names in the signer's DID document."""

from __future__ import annotations

import logging

from identity_hub.crypto import JoseError, verify_jws
from identity_hub.did import DidError, DidResolver
from identity_hub.errors import BadRequest
from identity_hub.protocol.commit import Commit

logger = logging.getLogger(__name__)


async def verify_commit(commit: Commit, resolver: DidResolver) -> None:
    """Raises:
        BadRequest: target `commit`, "Signature could not be verified" (the reference's words),
        whether the DID did not resolve, the key is not a signing key, or the signature is bad.
    """
    try:
        key = await resolver.key(commit.kid, "sign")
        verify_jws(commit.parsed, key.key_family, key.crypto_key)
    except (DidError, JoseError) as exc:
        logger.info("commit %s: signature not verified: %s", commit.rev[:12], type(exc).__name__)
        raise BadRequest("Signature could not be verified", target="commit") from None
