"""The encrypted envelope: JWE(JWS(request)) in, JWE(JWS(response)) out (protocol doc §b).

Order of checks on a request, cheapest and least revealing first:
1. parse the compact JWE (size and header rules), find the hub key its `kid` names, decrypt;
2. parse the inner compact JWS, check the `iat` of its header if it has one (below), resolve the
   requester key its `kid` names (authentication or assertionMethod), verify the signature —
   *before* any token is issued (the reference issued tokens to unverified requests);
3. refuse a replayed `did-requester-nonce`; verify the `did-access-token`, or issue one.
Every failure is the same `AuthenticationFailed` from outside; the reason goes to the log only.

Freshness (`iat`): the 2019 clients put no `iat` in a request JWS (protocol doc §b.3), so none is
required; one that is present must lie within `clock_skew_seconds` of the hub's clock, in both
directions, and be a time (a NumericDate, a string of seconds as did-auth-jose writes it, or
ISO-8601). An access token (the hub's own) must carry an `iat` not later than now + skew and is
honoured at most `token_lifetime_seconds` + skew after it, whatever its `exp` says.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import secrets
import time
from typing import Any

from identity_hub import crypto
from identity_hub.crypto import JoseError, Limits, ParsedJws
from identity_hub.did import DidError, DidResolver, VerificationKey
from identity_hub.errors import AuthenticationFailed
from identity_hub.identity import HubIdentity
from identity_hub.logs import quote
from identity_hub.protocol.commit import format_time, parse_time
from identity_hub.settings import Settings

logger = logging.getLogger(__name__)

MAX_NONCE_LENGTH = 256
# The settings' defaults, for callers without settings (bench/); the pipeline passes its own.
DEFAULT_SKEW_SECONDS = Settings.clock_skew_seconds
DEFAULT_TOKEN_LIFETIME_SECONDS = Settings.token_lifetime_seconds

# Which hub signing key answers which requester key family, best first. The 2019 clients verify
# only RS256 and ES256K, so RSA comes before Ed25519 for them.
RESPONSE_SIGNER = {
    "RSA": ("RSA", "Ed25519"),
    "secp256k1": ("secp256k1", "RSA", "Ed25519"),
    "P-256": ("Ed25519", "P-256"),
    "P-384": ("Ed25519",),
    "Ed25519": ("Ed25519",),
}


TOKEN_CACHE_SIZE = 4096


class KeyRing:
    """The hub's private keys as `cryptography` objects, converted once and cached by kid; and
    the access tokens they verified (a client presents one token with many requests)."""

    def __init__(self, identity: HubIdentity) -> None:
        self.identity = identity
        self._cache: dict[str, tuple[str, Any]] = {}
        self._public: dict[str, Any] = {}
        # token -> (sub, aud, exp in µs) of tokens whose signature verified, oldest first
        self._tokens: dict[str, tuple[Any, Any, int]] = {}
        self._hub_digest: tuple[str, str] | None = None

    def public(self, kid: str) -> tuple[str, Any] | None:
        """(family, public key) of a hub key (deriving an Ed25519 public key costs a scalar
        multiplication: done once)."""
        pair = self.private(kid)
        if pair is None:
            return None
        public = self._public.get(kid)
        if public is None:
            public = self._public[kid] = pair[1].public_key()
        return pair[0], public

    def hub_digest(self, hub_did: str) -> str:
        """`did_digest(hub_did)`, computed once."""
        if self._hub_digest is None or self._hub_digest[0] != hub_did:
            self._hub_digest = (hub_did, did_digest(hub_did))
        return self._hub_digest[1]

    def verified_token(self, token: str) -> tuple[Any, Any, int] | None:
        """(sub, aud, exp) of a token this ring verified before."""
        return self._tokens.get(token)

    def remember_token(self, token: str, sub: Any, aud: Any, expires_us: int) -> None:
        if len(self._tokens) >= TOKEN_CACHE_SIZE:
            del self._tokens[next(iter(self._tokens))]
        self._tokens[token] = (sub, aud, expires_us)

    def private(self, kid: str) -> tuple[str, Any] | None:
        hit = self._cache.get(kid)
        if hit is not None:
            return hit
        jwk = self.identity.private_key(kid)
        if jwk is None:
            return None
        try:
            pair = crypto.private_key_from_jwk(jwk)
        except JoseError:
            logger.error("hub key %s cannot be loaded", kid)
            return None
        self._cache[kid] = pair
        return pair

    def signer(self, families: tuple[str, ...]) -> tuple[str, str, Any]:
        """(kid, family, private key) of the first hub signing key of the given families."""
        for family in families:
            try:
                kid, _jwk = self.identity.signing_key(family)
            except (KeyError, LookupError, ValueError):
                continue
            pair = self.private(kid)
            if pair is not None and pair[0] == family:
                return kid, pair[0], pair[1]
        kid, _jwk = self.identity.signing_key(None)
        pair = self.private(kid)
        assert pair is not None
        return kid, pair[0], pair[1]


@dataclasses.dataclass(frozen=True)
class OpenedRequest:
    """A decrypted, verified request."""

    requester: str            # the DID whose key signed the request
    requester_key: VerificationKey
    nonce: str
    token: str | None         # the did-access-token presented, if any
    payload: bytes            # the request JSON text (empty on a handshake)
    hub_kid: str              # the hub key that decrypted it
    der_signature: bool       # ES256K signed in DER (a 2019 client): answer in DER too


def _fail(reason: str) -> AuthenticationFailed:
    # The access line names the failure's fixed category; the library text after it may quote
    # the request or name a DID, so it is logged only at debug level, quoted.
    logger.debug("authentication failed: %s", quote(reason, 240))
    return AuthenticationFailed(reason)


def time_claim_us(value: Any) -> int:
    """An `iat`/`exp` claim as microseconds since the epoch: a JSON number of seconds
    (NumericDate), a string of seconds (did-auth-jose's header `iat`), or an ISO-8601 string (the
    2019 access tokens).

    Raises:
        ValueError: anything else (a boolean, a non-finite or absurd number, another string).
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, str) and value.isascii() and value.replace(".", "", 1).isdigit():
        value = float(value)
    if isinstance(value, int | float):
        if not -1e11 < value < 1e11:  # NaN and ±inf fail too; 1e11 s is year ~5138
            raise ValueError("not a plausible NumericDate")
        return round(value * 1_000_000)
    return parse_time(value)


def check_iat(value: Any, now_us: int, skew_us: int, what: str) -> int:
    """The `iat` as microseconds, if within `skew_us` of `now_us` in both directions.

    Raises:
        AuthenticationFailed: malformed, or outside the window.
    """
    try:
        iat = time_claim_us(value)
    except (ValueError, TypeError, OverflowError):
        raise _fail(f"{what} iat is not a time") from None
    if abs(iat - now_us) > skew_us:
        raise _fail(f"{what} iat outside the clock skew window")
    return iat


async def open_request(body: bytes, keys: KeyRing, resolver: DidResolver, limits: Limits, *,
                       skew_seconds: int = DEFAULT_SKEW_SECONDS) -> OpenedRequest:
    """Decrypt and verify a request body; an `iat` in the JWS header must lie within
    `skew_seconds` of now (none is needed: the 2019 clients send none).

    Raises:
        AuthenticationFailed: for any reason (logged, never told to the client).
    """
    try:
        jwe = crypto.parse_compact_jwe(body, limits)
    except JoseError as exc:
        raise _fail(f"JWE parse: {exc}") from None
    kid = crypto.jwe_kid(jwe)
    hub_key = keys.private(kid) if kid else None
    if hub_key is None:
        raise _fail("JWE kid is not a hub key")
    try:
        plaintext = crypto.decrypt_jwe(jwe, hub_key[0], hub_key[1], limits)
        jws = crypto.parse_compact_jws(plaintext, limits)
    except JoseError as exc:
        raise _fail(f"decrypt: {exc}") from None
    header = jws.header
    requester_kid = header.get("kid")
    nonce = header.get("did-requester-nonce")
    token = header.get("did-access-token")
    if not isinstance(requester_kid, str) or "#" not in requester_kid:
        raise _fail("JWS kid missing or not a DID URL")
    if not isinstance(nonce, str) or not 0 < len(nonce) <= MAX_NONCE_LENGTH:
        raise _fail("did-requester-nonce missing")
    if token is not None and not isinstance(token, str):
        raise _fail("did-access-token not a string")
    if "iat" in header:
        check_iat(header["iat"], time.time_ns() // 1000, skew_seconds * 1_000_000, "request")
    try:
        key = await resolver.key(requester_kid, "sign")
        crypto.verify_jws(jws, key.key_family, key.crypto_key)
    except (DidError, JoseError) as exc:
        raise _fail(f"request signature: {type(exc).__name__}: {exc}") from None
    return OpenedRequest(
        requester=requester_kid.split("#", 1)[0],
        requester_key=key,
        nonce=nonce,
        token=token,
        payload=jws.payload,
        hub_kid=kid or "",
        der_signature=key.key_family == "secp256k1" and len(jws.signature) != 64,
    )


def nonce_digest(requester: str, nonce: str) -> str:
    return hashlib.sha256(f"{requester}\n{nonce}".encode()).hexdigest()


# --- access tokens ------------------------------------------------------------------------------

def did_digest(did: str) -> str:
    """How a token names the hub's DID: base64url SHA-256 (a long-form did:ion is ~1.4 KB; the
    token travels in every request's header)."""
    return crypto.b64url_encode(hashlib.sha256(did.encode()).digest())


def issue_token(keys: KeyRing, opened: OpenedRequest, hub_did: str, lifetime: int) -> str:
    """A did-access-token: a JWS by a hub key over {sub, aud, iat, exp, jti}.

    Bound to the requester DID (`sub`, as the reference hub's tokens carry it) and to this hub
    (`aud`, as its `did_digest`); the header's `kid` is the hub key's fragment (`#...`, relative
    to the hub DID), so that the token stays small with a long-form did:ion hub. Times are
    ISO-8601 strings, as the 2019 clients' tokens carry them; the clients treat the token as
    opaque.
    """
    now = time.time_ns() // 1000
    claims = {"sub": opened.requester, "aud": did_digest(hub_did),
              "iat": format_time(now), "exp": format_time(now + lifetime * 1_000_000),
              "jti": secrets.token_urlsafe(12)}
    families = ("RSA", "Ed25519") if opened.requester_key.key_family == "RSA" else ("Ed25519",)
    kid, family, key = keys.signer(families)
    fragment = kid[len(hub_did):] if kid.startswith(hub_did + "#") else kid
    return crypto.sign_compact_jws(json.dumps(claims, separators=(",", ":")).encode(),
                                   {"kid": fragment}, family, key)


def verify_token(token: str, keys: KeyRing, requester: str, hub_did: str, *,
                 skew_seconds: int = DEFAULT_SKEW_SECONDS,
                 lifetime_seconds: int = DEFAULT_TOKEN_LIFETIME_SECONDS) -> None:
    """Check a did-access-token: the hub's signature, `sub`, `aud`, and that it is fresh: its
    `iat` at most `skew_seconds` ahead of now, and now before both `exp` and `iat` +
    `lifetime_seconds` + `skew_seconds`.

    Raises:
        AuthenticationFailed: bad signature, not a hub key, another requester or hub, expired,
            `iat` missing, malformed, in the future or too old.
    """
    known = keys.verified_token(token)
    if known is None:
        known = _verify_token_signature(token, keys, hub_did, skew_seconds * 1_000_000,
                                        lifetime_seconds * 1_000_000)
        keys.remember_token(token, *known)
    sub, aud, expires = known
    if sub != requester or aud != keys.hub_digest(hub_did):
        raise _fail("token for another requester or hub")
    if time.time_ns() // 1000 > expires:
        raise _fail("token expired (its exp, or iat + lifetime + skew, has passed)")


def _verify_token_signature(token: str, keys: KeyRing, hub_did: str, skew_us: int,
                            lifetime_us: int) -> tuple[Any, Any, int]:
    """(sub, aud, the time until which the token is honoured) of a token signed by a hub key."""
    try:
        parsed: ParsedJws = crypto.parse_compact_jws(token)
        kid = parsed.header.get("kid")
        if isinstance(kid, str) and kid.startswith("#"):
            kid = hub_did + kid
        pair = keys.public(kid) if isinstance(kid, str) else None
        if pair is None:
            raise _fail("token kid is not a hub key")
        crypto.verify_jws(parsed, pair[0], pair[1])
        claims = crypto.strict_json_loads(parsed.payload, "token")
    except JoseError as exc:
        raise _fail(f"token: {exc}") from None
    if not isinstance(claims, dict):
        raise _fail("token claims")
    try:
        expires = parse_time(claims.get("exp"))  # type: ignore[arg-type]
        issued = time_claim_us(claims.get("iat"))
    except (ValueError, TypeError, OverflowError):
        raise _fail("token exp or iat") from None
    if issued > time.time_ns() // 1000 + skew_us:
        raise _fail("token iat in the future")
    return claims.get("sub"), claims.get("aud"), min(expires, issued + lifetime_us + skew_us)


# --- responses -----------------------------------------------------------------------------------

async def response_recipient(resolver: DidResolver, opened: OpenedRequest
                             ) -> VerificationKey:
    """The requester key a response is encrypted to (protocol doc §b.6 interop rule).

    The first key with JWK `use: "enc"`, else the first keyAgreement key, else the signing key
    itself when it is RSA (what a 2019 client with a single RSA key expects).
    """
    try:
        candidates = await resolver.keys(opened.requester, "encrypt")
    except DidError as exc:
        raise _fail(f"requester encryption keys: {exc}") from None
    for key in candidates:
        if key.use == "enc" and key.can_encrypt():
            return key
    for key in candidates:
        if key.can_encrypt():
            return key
    if opened.requester_key.key_family == "RSA":
        return opened.requester_key
    raise _fail("the requester has no key to encrypt a response to")


async def seal_response(payload: bytes, opened: OpenedRequest, keys: KeyRing,
                        resolver: DidResolver, compat_2019: bool) -> bytes:
    """Sign the response with a hub key the requester can verify, encrypt it to the requester.

    Raises:
        AuthenticationFailed: the requester has no usable encryption key.
    """
    families = RESPONSE_SIGNER.get(opened.requester_key.key_family, ("Ed25519",))
    kid, family, key = keys.signer(families)
    header = {"did-requester-nonce": opened.nonce, "kid": kid}
    jws = crypto.sign_compact_jws(payload, header, family, key,
                                  der_es256k=opened.der_signature)
    recipient = await response_recipient(resolver, opened)
    try:
        jwe = crypto.encrypt_jwe(jws.encode("ascii"), recipient.key_family,
                                 recipient.crypto_key, recipient.id,
                                 compat_2019=compat_2019 and recipient.key_family == "RSA")
    except JoseError as exc:
        raise _fail(f"response encryption: {exc}") from None
    return jwe.encode("ascii")
