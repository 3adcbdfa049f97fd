"""`HubClient`: an async Python client of the Identity Hub protocol.

It does what the 2019 JavaScript clients do, with modern crypto by default: sign the request with
the user's DID key, encrypt it to the hub's key, keep the access token (renewing it after a 401),
check that the response is signed by the hub and echoes the request nonce.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp

from identity_hub import crypto
from identity_hub.crypto import JoseError
from identity_hub.did import DidError, DidResolver, ResolverConfig, VerificationKey
from identity_hub.errors import PROTOCOL_CONTEXT
from identity_hub.protocol.jsonutil import StrictJsonError, parse_strict

logger = logging.getLogger(__name__)

SIGNING_FAMILIES = ("Ed25519", "secp256k1", "P-256", "P-384", "RSA")


class HubClientError(Exception):
    """The hub could not be reached, refused to authenticate us, or answered something invalid."""


class ResponseTooLarge(HubClientError):
    """The hub's answer is over the client's `max_response_bytes` (reading stopped there)."""


class HubErrorResponse(HubClientError):
    """The hub answered with a protocol ErrorResponse."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        self.error_code = response.get("error_code")
        self.target = response.get("target")
        super().__init__(f"{self.error_code}: {response.get('developer_message', '')}"
                         + (f" (target {self.target})" if self.target else ""))


class HubRateLimited(HubErrorResponse):
    """The hub answered HTTP 429: a rate limit; `retry_after` is its Retry-After (seconds)."""

    def __init__(self, response: dict[str, Any], retry_after: str | None) -> None:
        super().__init__(response)
        try:
            self.retry_after: int | None = int(retry_after) if retry_after else None
        except ValueError:
            self.retry_after = None


def _error_body(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body[:4096])
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        return {k: parsed[k] for k in ("error_code", "developer_message", "target")
                if isinstance(parsed.get(k), str)}
    return {"error_code": "too_many_requests"}


def now_iso() -> str:
    us = time.time_ns() // 1000
    from identity_hub.protocol.commit import format_time

    return format_time(us)


class HubClient:
    """A session with one hub for one DID."""

    def __init__(
        self,
        endpoint: str,
        did: str,
        keys: Sequence[tuple[str, Any]],
        *,
        hub_did: str | None = None,
        resolver: DidResolver | None = None,
        session: aiohttp.ClientSession | None = None,
        compat_2019: bool = False,
        timeout: float = 30.0,
        max_response_bytes: int = 16 * 1024 * 1024,
        response_limit_name: str = "max_response_bytes",
        max_json_depth: int = 128,
    ) -> None:
        self.endpoint = endpoint
        self.did = did
        self.hub_did = hub_did
        self.compat_2019 = compat_2019
        self._keys: dict[str, tuple[str, Any]] = {}
        for kid, jwk in keys:
            self._keys[kid] = crypto.private_key_from_jwk(jwk)
        signers = [(kid, fam, key) for kid, (fam, key) in self._keys.items()
                   if fam in SIGNING_FAMILIES]
        if not signers:
            raise HubClientError("the key file has no signing key")
        self.sign_kid, self.sign_family, self.sign_key = signers[0]
        self.resolver = resolver or DidResolver(ResolverConfig())
        self._own_resolver = resolver is None
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # What a hub answers is a stranger's input too (a peer hub during sync): bounded.
        self.max_response_bytes = max_response_bytes
        self.response_limit_name = response_limit_name  # the setting an oversized answer names
        self.max_json_depth = max_json_depth
        self._limits = crypto.Limits(max_token_bytes=max_response_bytes,
                                     max_plaintext=max_response_bytes)
        self._token: str | None = None
        self._hub_key: VerificationKey | None = None

    @classmethod
    def from_key_file(cls, endpoint: str, path: str, **kwargs: Any) -> HubClient:
        from identity_hub.did.keyfile import load_key_file

        did, keys = load_key_file(path)
        return cls(endpoint, did, keys, **kwargs)

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        if self._own_resolver:
            await self.resolver.aclose()

    # --- transport ----------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _discover(self) -> VerificationKey:
        if self._hub_key is not None:
            return self._hub_key
        base = self.endpoint.rstrip("/").rsplit("/", 1)[0] if self.endpoint.endswith(
            ".identity") else self.endpoint.rstrip("/")
        if self.hub_did is None:
            try:
                async with self._http().get(base + "/.well-known/identity-hub") as resp:
                    info = await resp.json(content_type=None)
            except (aiohttp.ClientError, ValueError) as exc:
                raise HubClientError(f"cannot learn the hub's DID from {base}: {exc}") from None
            self.hub_did = info["did"]
            try:
                await self.resolver.resolve(self.hub_did)
            except DidError:
                if info.get("didDocument", {}).get("id") == self.hub_did:
                    self.resolver.add_static(info["didDocument"])
        assert self.hub_did is not None
        try:
            candidates = await self.resolver.keys(self.hub_did, "encrypt")
        except DidError as exc:
            raise HubClientError(f"cannot resolve the hub DID: {exc}") from None
        usable = [k for k in candidates if k.can_encrypt()]
        if self.compat_2019:
            usable = [k for k in usable if k.key_family == "RSA"] or usable
        else:
            usable = [k for k in usable if k.key_family != "RSA"] or usable
        if not usable:
            raise HubClientError("the hub's DID document has no encryption key")
        self._hub_key = usable[0]
        return self._hub_key

    async def _roundtrip(self, payload: bytes, with_token: bool) -> bytes | None:
        """One request; the response payload, or None on a 401."""
        hub_key = await self._discover()
        nonce = str(uuid.uuid4())
        header: dict[str, Any] = {"did-requester-nonce": nonce}
        if with_token and self._token:
            header["did-access-token"] = self._token
        header["kid"] = self.sign_kid
        jws = crypto.sign_compact_jws(payload, header, self.sign_family, self.sign_key,
                                      der_es256k=self.compat_2019)
        jwe = crypto.encrypt_jwe(jws.encode("ascii"), hub_key.key_family, hub_key.crypto_key,
                                 hub_key.id)
        try:
            async with self._http().post(self.endpoint, data=jwe.encode("ascii"),
                                         headers={"Content-Type": "application/jwt"}) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
                body = await self._read_capped(resp)
        except aiohttp.ClientError as exc:
            raise HubClientError(f"cannot reach {self.endpoint}: {exc}") from None
        if status == 401:
            return None
        if status == 429:
            raise HubRateLimited(_error_body(body), retry_after)
        if status != 200:
            raise HubClientError(f"hub answered HTTP {status}: {body[:200]!r}")
        return await self._open_response(body, nonce)

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        """The response body, read in chunks and given up on at `max_response_bytes`.

        Raises:
            ResponseTooLarge: the answer (announced or as read) is over the limit.
        """
        too_large = ResponseTooLarge(f"the hub's answer is over {self.max_response_bytes} bytes "
                                     f"({self.response_limit_name})")
        if resp.content_length is not None and resp.content_length > self.max_response_bytes:
            raise too_large
        body = bytearray()
        async for chunk in resp.content.iter_chunked(65536):
            if len(body) + len(chunk) > self.max_response_bytes:
                raise too_large
            body += chunk
        return bytes(body)

    async def _open_response(self, body: bytes, nonce: str) -> bytes:
        try:
            jwe = crypto.parse_compact_jwe(body, self._limits)
            kid = crypto.jwe_kid(jwe)
            if kid not in self._keys:
                raise HubClientError("the response is encrypted to a key we do not hold")
            family, key = self._keys[kid]
            jws = crypto.parse_compact_jws(crypto.decrypt_jwe(jwe, family, key, self._limits),
                                           self._limits)
            signer = jws.header.get("kid")
            if not isinstance(signer, str) or signer.split("#", 1)[0] != self.hub_did:
                raise HubClientError("the response is not signed by the hub")
            hub_signing = await self.resolver.key(signer, "sign")
            crypto.verify_jws(jws, hub_signing.key_family, hub_signing.crypto_key)
        except (JoseError, DidError) as exc:
            raise HubClientError(f"invalid response: {exc}") from None
        if jws.header.get("did-requester-nonce") != nonce:
            raise HubClientError("the response does not echo our nonce")
        return jws.payload

    async def _ensure_token(self) -> None:
        if self._token is None:
            token = await self._roundtrip(b"", with_token=False)
            if token is None:
                raise HubClientError("the hub refused to authenticate us (HTTP 401)")
            self._token = token.decode("ascii")

    async def send(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one protocol request; returns the response, raising HubErrorResponse on errors."""
        payload = json.dumps(request, separators=(",", ":")).encode()
        for attempt in range(2):
            await self._ensure_token()
            answer = await self._roundtrip(payload, with_token=True)
            if answer is not None:
                try:  # a hub's answer is untrusted input too (a peer hub during sync)
                    response = parse_strict(answer, max_depth=self.max_json_depth)
                except StrictJsonError as exc:
                    raise HubClientError(f"invalid response: {exc}") from None
                if not isinstance(response, dict):
                    raise HubClientError("invalid response: not a JSON object")
                if response.get("@type") == "ErrorResponse":
                    raise HubErrorResponse(response)
                return response
            self._token = None  # expired or revoked: renew once, like the 2019 clients
            if attempt:
                break
        raise HubClientError("the hub refused to authenticate us (HTTP 401)")

    # --- protocol helpers ----------------------------------------------------------------------

    def request(self, type_: str, sub: str | None = None, **members: Any) -> dict[str, Any]:
        body = {"@context": PROTOCOL_CONTEXT, "@type": type_, "iss": self.did,
                "aud": self.hub_did, "sub": sub or self.did}
        body.update(members)
        return body

    def make_commit(
        self,
        *,
        operation: str,
        context: str,
        type_: str,
        payload: Any,
        sub: str | None = None,
        interface: str = "Collections",
        object_id: str | None = None,
        strategy: str = "basic",
        meta: Any = None,
    ) -> dict[str, Any]:
        protected: dict[str, Any] = {
            "interface": interface, "context": context, "type": type_, "operation": operation,
            "committed_at": now_iso(), "commit_strategy": strategy, "sub": sub or self.did,
            "kid": self.sign_kid, "iss": self.did,
        }
        if object_id is not None:
            protected["object_id"] = object_id
        if meta is not None:
            protected["meta"] = meta
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return crypto.sign_flattened_jws(raw, protected, self.sign_family, self.sign_key,
                                         der_es256k=self.compat_2019)

    async def write(self, commit: dict[str, Any], sub: str | None = None) -> list[str]:
        """Send a commit; returns the object's known revisions."""
        await self._discover()
        response = await self.send(self.request("WriteRequest", sub, commit=commit))
        return list(response["revisions"])

    async def create(self, payload: dict[str, Any], *, sub: str | None = None,
                     interface: str = "Collections", strategy: str = "basic",
                     meta: Any = None) -> str:
        """Create an object from a JSON-LD payload; returns its object_id."""
        await self._discover()
        commit = self.make_commit(operation="create", context=_context_of(payload),
                                  type_=_type_of(payload), payload=payload, sub=sub,
                                  interface=interface, strategy=strategy, meta=meta)
        return (await self.write(commit, sub))[0]

    async def update(self, object_id: str, payload: dict[str, Any], *, sub: str | None = None,
                     interface: str = "Collections", strategy: str = "basic") -> list[str]:
        await self._discover()
        commit = self.make_commit(operation="update", context=_context_of(payload),
                                  type_=_type_of(payload), payload=payload, sub=sub,
                                  interface=interface, object_id=object_id, strategy=strategy)
        return await self.write(commit, sub)

    async def delete(self, object_id: str, *, context: str, type_: str, sub: str | None = None,
                     interface: str = "Collections", strategy: str = "basic") -> list[str]:
        await self._discover()
        commit = self.make_commit(operation="delete", context=context, type_=type_, payload={},
                                  sub=sub, interface=interface, object_id=object_id,
                                  strategy=strategy)
        return await self.write(commit, sub)

    async def query_objects(self, *, sub: str | None = None, interface: str = "Collections",
                            context: str | None = None, type_: str | None = None,
                            object_ids: Sequence[str] | None = None, include_data: bool = False,
                            all_pages: bool = True, where: Any = None,
                            sort: str | Sequence[str] | None = None, limit: int | None = None
                            ) -> list[dict[str, Any]]:
        """Objects of `interface` (all pages, or the first with `all_pages=False`). `where`,
        `sort` and `limit` are the rich-query members (docs/queries.md), sent as given."""
        await self._discover()
        query: dict[str, Any] = {"interface": interface}
        if context is not None:
            query["context"], query["type"] = context, type_
        if object_ids is not None:
            query["object_id"] = list(object_ids)
        if include_data:
            query["include_data"] = True
        if where is not None:
            query["where"] = where
        if sort is not None:
            query["sort"] = sort if isinstance(sort, str) else list(sort)
        if limit is not None:
            query["limit"] = limit
        return await self._pages("ObjectQueryRequest", "objects", query, sub, all_pages)

    async def query_commits(self, *, sub: str | None = None,
                            object_ids: Sequence[str] | None = None,
                            revisions: Sequence[str] | None = None,
                            all_pages: bool = True) -> list[dict[str, Any]]:
        await self._discover()
        query: dict[str, Any] = {}
        if object_ids is not None:
            query["object_id"] = list(object_ids)
        if revisions is not None:
            query["revision"] = list(revisions)
        return await self._pages("CommitQueryRequest", "commits", query, sub, all_pages)

    # --- permissions (docs/permissions.md) -----------------------------------------------------

    async def grant(
        self,
        grantee: str,
        *,
        context: str,
        type_: str,
        allow: str,
        object_ids: Sequence[str] | None = None,
        created_by: str | None = None,
        not_before: str | None = None,
        expires: str | None = None,
        unrevocable_until: str | None = None,
    ) -> str:
        """As the owner, grant `grantee` the `allow` rights ("CRUD" mask, e.g. "-R--") on the
        objects of `context`/`type_`; times are ISO-8601. Returns the grant's object_id."""
        payload = grant_payload(self.did, grantee, context=context, type_=type_, allow=allow,
                                object_ids=object_ids, created_by=created_by,
                                not_before=not_before, expires=expires,
                                unrevocable_until=unrevocable_until)
        return await self.create(payload, interface="Permissions")

    async def update_grant(self, grant_id: str, payload: dict[str, Any]) -> list[str]:
        """Replace a grant's terms (same grantee, context and type) with `payload`."""
        return await self.update(grant_id, payload, interface="Permissions")

    async def revoke(self, grant_id: str) -> list[str]:
        """Delete a grant: from the next request on it covers no read, and no commit dated
        after the revocation."""
        from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE

        return await self.delete(grant_id, context=GRANT_CONTEXT, type_=GRANT_TYPE,
                                 interface="Permissions")

    async def grants(self, *, sub: str | None = None) -> list[dict[str, Any]]:
        """The live grants: all of them for the owner; for a grantee (`sub` = the owner), those
        naming it. Each is the grant payload plus `id`."""
        objects = await self.query_objects(sub=sub, interface="Permissions", include_data=True)
        return [{"id": o["id"], **(o.get("data") or {})} for o in objects]

    async def audit(self, *, grantee: str | None = None, since: str | None = None,
                    all_pages: bool = True) -> list[dict[str, Any]]:
        """The owner's audit log (AuditQueryRequest), oldest entry first."""
        await self._discover()
        query: dict[str, Any] = {}
        if grantee is not None:
            query["grantee"] = grantee
        if since is not None:
            query["since"] = since
        return await self._pages("AuditQueryRequest", "entries", query, None, all_pages)

    async def _pages(self, type_: str, member: str, query: dict[str, Any], sub: str | None,
                     all_pages: bool) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            response = await self.send(self.request(type_, sub, query=dict(query)))
            items += response[member]
            token = response.get("skip_token")
            if not token or not all_pages:
                return items
            query["skip_token"] = token


def grant_payload(owner: str, grantee: str, *, context: str, type_: str, allow: str,
                  object_ids: Sequence[str] | None = None, created_by: str | None = None,
                  not_before: str | None = None, expires: str | None = None,
                  unrevocable_until: str | None = None) -> dict[str, Any]:
    """A PermissionGrant payload (docs/permissions.md); optional members only when given."""
    from identity_hub.permissions.grant import GRANT_CONTEXT, GRANT_TYPE

    payload: dict[str, Any] = {"@context": GRANT_CONTEXT, "@type": GRANT_TYPE, "owner": owner,
                               "grantee": grantee, "context": context, "type": type_,
                               "allow": allow}
    optional = {"object_ids": list(object_ids) if object_ids else None,
                "created_by": created_by, "not_before": not_before, "expires": expires,
                "unrevocable_until": unrevocable_until}
    payload.update({k: v for k, v in optional.items() if v is not None})
    return payload


def _context_of(payload: dict[str, Any]) -> str:
    ctx = payload.get("@context")
    if isinstance(ctx, list):
        ctx = next((c for c in ctx if isinstance(c, str)), None)
    if not isinstance(ctx, str):
        raise ValueError("the payload needs a string @context")
    return ctx


def _type_of(payload: dict[str, Any]) -> str:
    type_ = payload.get("@type")
    if isinstance(type_, list):
        type_ = type_[0] if type_ else None
    if not isinstance(type_, str):
        raise ValueError("the payload needs a string @type")
    return type_
