"""The one guarded HTTP client for DID resolution (did:web and the universal resolver).

Policy (security-notes.md, "Outbound requests"):

* `https` only; plain `http` only for hosts on `allow_hosts`.
* The host name is resolved by our own aiohttp resolver, which refuses the whole answer if any
  address is not global (private, loopback, link-local, shared, reserved, multicast,
  unspecified; IPv4-mapped IPv6 is checked as IPv4) unless the host is allow-listed. aiohttp
  then connects only to the addresses we checked, so the check is pinned to the connection.
* IP literals are never resolved by aiohttp (it skips the resolver), so they are checked here:
  they are refused unless allow-listed (did:web forbids them anyway).
* Redirects are followed by hand, at most `MAX_REDIRECTS`, each hop checked like the first.
* One timeout covers the whole exchange, redirects included; bodies are read in chunks and
  the read is aborted as soon as it passes `max_response_bytes`.
* No proxies from the environment, no cookies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
from typing import Any

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver, ResolveResult

from identity_hub.did.config import ResolverConfig
from identity_hub.did.encoding import strict_json_loads
from identity_hub.did.errors import (
    DidError,
    NetworkError,
    NetworkRefused,
    ResolutionTimeout,
    ResponseTooLarge,
)

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 3
USER_AGENT = "identity-hub-did-resolver/0.1"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class AddressRefused(OSError):
    """Raised by the guarded DNS resolver; aiohttp wraps it in `ClientConnectorDNSError`."""


def is_public_address(address: str) -> bool:
    """True if `address` is a globally routable unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            ip = mapped
    return bool(
        ip.is_global
        and not ip.is_multicast
        and not ip.is_reserved
        and not ip.is_unspecified
        and not ip.is_link_local
        and not ip.is_loopback
        and not ip.is_private
    )


def is_ip_literal(host: str) -> bool:
    """True if `host` is an IPv4 or IPv6 address rather than a name."""
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


class _GuardedResolver(AbstractResolver):
    """Resolves names with the thread-pool resolver and refuses non-global answers."""

    def __init__(self, config: ResolverConfig) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._config = config

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await self._inner.resolve(host, port, family)
        if self._config.host_allowed(host, port):
            return infos
        for info in infos:
            if not is_public_address(info["host"]):
                logger.warning("refused DID resolution request: %s resolves to a non-public "
                               "address", host)
                raise AddressRefused(f"{host} resolves to a non-public address")
        return infos

    async def close(self) -> None:
        await self._inner.close()


@dataclasses.dataclass(frozen=True)
class HttpResponse:
    """A completed, size-capped response."""

    url: str
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as strict JSON.

        Raises:
            InvalidDocument: not strict JSON.
        """
        return strict_json_loads(self.body)


class GuardedHttp:
    """Lazily creates one aiohttp `ClientSession` with the guarded resolver."""

    def __init__(self, config: ResolverConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned: set[str] = set()

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                resolver=_GuardedResolver(self._config),
                ssl=self._config.ssl_context if self._config.ssl_context is not None else True,
                limit=64,
                ttl_dns_cache=30,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                headers={"User-Agent": USER_AGENT},
            )
            self._loop = loop
        return self._session

    def check_url(self, url: yarl.URL) -> None:
        """Apply the scheme and host policy to one URL (each redirect hop too).

        Raises:
            NetworkRefused: the URL may not be fetched.
        """
        if url.scheme not in ("https", "http") or not url.host:
            raise NetworkRefused(f"refused URL scheme {url.scheme!r}")
        if url.user or url.password:
            raise NetworkRefused("refused URL with credentials")
        allowed = self._config.host_allowed(url.host, url.port)
        if url.scheme == "http" and not allowed:
            raise NetworkRefused(f"plain http to {url.host} is refused (not in allow_hosts)")
        if is_ip_literal(url.host) and not allowed:
            raise NetworkRefused(f"IP address {url.host} is refused (not in allow_hosts)")
        if allowed and url.host not in self._warned:
            self._warned.add(url.host)
            logger.warning("DID resolution reaches allow-listed host %s (plain http and private "
                           "addresses permitted; development only)", url.host)

    async def get(self, url: yarl.URL, *, accept: str) -> HttpResponse:
        """GET `url` under the policy, following up to `MAX_REDIRECTS` checked redirects.

        Raises:
            NetworkRefused: the policy refused a URL or an address.
            ResolutionTimeout: the whole exchange took longer than the configured timeout.
            ResponseTooLarge: the body passed `max_response_bytes`.
            NetworkError: connection, TLS or protocol failure.
        """
        try:
            async with asyncio.timeout(self._config.timeout):
                return await self._get(url, accept)
        except TimeoutError as exc:
            raise ResolutionTimeout(f"no answer within {self._config.timeout} s") from exc
        except DidError:
            raise
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, AddressRefused):
                raise NetworkRefused(str(exc.os_error)) from exc
            raise NetworkError("host name could not be resolved") from exc
        except aiohttp.ClientSSLError as exc:
            raise NetworkError("TLS handshake or certificate check failed") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise NetworkError(f"request failed: {type(exc).__name__}") from exc

    async def _get(self, url: yarl.URL, accept: str) -> HttpResponse:
        session = self._get_session()
        for _ in range(MAX_REDIRECTS + 1):
            self.check_url(url)
            async with session.get(url, headers={"Accept": accept}, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS:
                    location = resp.headers.get("Location")
                    if not location:
                        raise NetworkError("redirect without a Location")
                    url = url.join(yarl.URL(location))
                    continue
                body = await self._read_capped(resp)
                return HttpResponse(str(url), resp.status, dict(resp.headers), body)
        raise NetworkRefused(f"more than {MAX_REDIRECTS} redirects")

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        cap = self._config.max_response_bytes
        if resp.content_length is not None and resp.content_length > cap:
            raise ResponseTooLarge(f"response of {resp.content_length} bytes exceeds {cap}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(16384):
            size += len(chunk)
            if size > cap:
                raise ResponseTooLarge(f"response exceeds {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the session (if one was created on a still-running loop)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                await session.close()
            except RuntimeError:  # created on a loop that is gone
                logger.debug("resolver session belonged to a closed event loop")
