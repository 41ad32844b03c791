"""The gateway's HTTP client to the models: one keep-alive pool per upstream.

Plain-http models (the usual in-cluster Service) get wire.WirePool: bytes out as they are, httptools
parsing the answer, the least CPU per call. https:// models get aiohttp (TLS): rather than httpx, whose
pool scans (and polls) every idle connection on each request, which at 32 in flight cost the gateway
about 3/4 of its CPU (py-spy; benchmarks/results/gateway.md). aiohttp writes header text as UTF-8, so
there the rare request carrying a value that is not UTF-8 takes an httpx client instead, which sends
bytes as they are. Every pool is shared by every user: none stores cookies, none follows redirects.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

from mlrollouts.gateway.headers import RawHeaders
from mlrollouts.gateway.wire import WireError, WirePool

log = logging.getLogger(__name__)
# What a query may carry as it is; anything else (non-ASCII, spaces) goes out percent-encoded.
QUERY_SAFE = "!$&'()*+,;=:@/?-._~%"


class UpstreamError(Exception):
    """The model could not be reached or did not answer in HTTP (timeouts raise TimeoutError)."""


class RefuseAllCookies(http.cookiejar.DefaultCookiePolicy):
    """A pool shared by every user: a cookie a model sets for one must never ride on another's request."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


@dataclass(slots=True)  # not frozen: built per call, and a frozen __init__ costs 3x
class UpstreamResponse:
    """A model's answer, read in full: status, raw header pairs, body."""

    status_code: int
    raw_headers: RawHeaders
    content: bytes

    def header(self, name: bytes) -> str:
        """The values of header `name` (lower case), repeats joined by ", " (RFC 9110 §5.3); "" if absent."""
        return self.headers_of(name, b"")[0]

    def headers_of(self, first: bytes, second: bytes) -> tuple[str, str]:
        """header(first) and header(second) in one pass (both are read per prediction)."""
        found: tuple[list[bytes], list[bytes]] = ([], [])
        for key, value in self.raw_headers:
            key = key.lower()
            if key == first:
                found[0].append(value)
            elif key == second:
                found[1].append(value)
        return b", ".join(found[0]).decode("latin-1"), b", ".join(found[1]).decode("latin-1")


def text_headers(headers: RawHeaders) -> CIMultiDict[str] | None:
    """Raw header pairs as aiohttp's str headers, repeated names kept; None if one is not UTF-8."""
    converted: CIMultiDict[str] = CIMultiDict()
    try:
        for name, value in headers:
            converted.add(name.decode("ascii"), value.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    return converted


def request_target(path: str, query: bytes) -> str:
    """`path` (already normalised and encoded) with the client's query, percent-encoded where it must be."""
    return path + ("?" + quote(query, safe=QUERY_SAFE) if query else "")


class Upstream:
    """One model's pools. `request` sends `target` (path and query) as it is, within `timeout_seconds`."""

    def __init__(self, base_url: str, max_connections: int) -> None:
        self.base = base_url.rstrip("/")
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._bytes_client: httpx.AsyncClient | None = None
        self._wire: WirePool | None = None
        url = URL(self.base)
        if url.scheme == "http" and url.host is not None:
            authority = url.raw_authority.encode("ascii")
            host = url.raw_host.strip("[]") if url.raw_host else url.host
            self._wire = WirePool(host, url.port or 80, authority, url.raw_path.rstrip("/"), max_connections)

    def _aiohttp(self) -> aiohttp.ClientSession:
        if self._session is None:  # created on first use: a ClientSession belongs to the running loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0),
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("Content-Type",),  # sent only when the client sent one
            )
        return self._session

    def _httpx(self) -> httpx.AsyncClient:
        if self._bytes_client is None:
            limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=4)
            jar = http.cookiejar.CookieJar(policy=RefuseAllCookies())
            self._bytes_client = httpx.AsyncClient(base_url=self.base, limits=limits, cookies=jar)
        return self._bytes_client

    async def request(
        self, method: str, target: str, headers: RawHeaders, body: bytes, timeout_seconds: float
    ) -> UpstreamResponse:
        """The model's answer within `timeout_seconds` in total (TimeoutError), or UpstreamError.
        The wire pool keeps the deadline itself (cheaper per call); the other clients run under
        asyncio.timeout."""
        if self._wire is None:
            async with asyncio.timeout(timeout_seconds):
                return await self._request_tls(method, target, headers, body, timeout_seconds)
        try:
            status, raw, content = await self._wire.request(method, target, headers, body, timeout_seconds)
        except WireError as error:
            raise UpstreamError(str(error)) from error
        return UpstreamResponse(status, raw, content)

    async def _request_tls(
        self, method: str, target: str, headers: RawHeaders, body: bytes, timeout_seconds: float
    ) -> UpstreamResponse:
        text = text_headers(headers)
        if text is None:
            return await self._request_bytes(method, target, headers, body, timeout_seconds)
        url = URL(self.base + target, encoded=True)
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        try:
            async with self._aiohttp().request(
                method, url, headers=text, data=body or None, timeout=timeout, allow_redirects=False
            ) as response:
                content = await response.read()
        except aiohttp.ClientError as error:
            if isinstance(error, TimeoutError):
                raise
            raise UpstreamError(repr(error)) from error
        return UpstreamResponse(response.status, list(response.raw_headers), content)

    async def _request_bytes(
        self, method: str, target: str, headers: RawHeaders, body: bytes, timeout_seconds: float
    ) -> UpstreamResponse:
        try:
            response = await self._httpx().request(
                method, target, headers=headers, content=body, timeout=timeout_seconds
            )
        except httpx.TimeoutException as error:
            raise TimeoutError(str(error)) from error
        except httpx.HTTPError as error:
            raise UpstreamError(repr(error)) from error
        return UpstreamResponse(response.status_code, response.headers.raw, response.content)

    async def aclose(self) -> None:
        if self._wire is not None:
            self._wire.close()
        if self._session is not None:
            await self._session.close()
        if self._bytes_client is not None:
            await self._bytes_client.aclose()


def make_upstreams(upstreams: Mapping[str, str], max_connections: int) -> dict[str, Upstream]:
    """One pool per upstream, created once (a client per request costs a TCP handshake each)."""
    return {name: Upstream(url, max_connections) for name, url in upstreams.items()}
