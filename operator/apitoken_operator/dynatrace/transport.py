"""An httpx transport over aiohttp: the client keeps httpx's API, aiohttp carries the bytes.

httpx's own transport (httpcore over anyio) cost ~2 ms of CPU per Tokens API call here, aiohttp ~0.15 ms
(`docs/performance.md`); aiohttp is loaded anyway (kopf and the Kubernetes client run on it). Everything
above the transport stays httpx's: auth, headers, decoding (aiohttp's own decompression is off, so the
body arrives as sent and httpx decodes it), redirects (none are followed), cookies (none are kept).

What the client relies on is kept exact: an error before any byte of the request left is one of httpx's
"not sent" classes (`ConnectError`, `ConnectTimeout`, `UnsupportedProtocol`, `ProxyError`), anything
after is a read, write or protocol error, so a create that may have reached Dynatrace is never taken for
one that did not. Environment proxies (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY) are read once,
when the transport is made, as httpx reads them; a proxy aiohttp cannot use (not http://) is refused
when the transport is made, so the caller can keep httpx's own.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import httpx
from multidict import CIMultiDict

__all__ = ["AiohttpTransport", "UnsupportedProxy", "env_proxy"]

#: read size for a response body; the client stops reading past its own limit
_CHUNK = 64 * 1024


class UnsupportedProxy(ValueError):
    """The environment's proxy for this URL is not one aiohttp can use (only http:// proxies)."""


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (as httpx reads HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and
    NO_PROXY), or None."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme.lower()) or proxies.get("all")
    if not proxy:
        return None
    host = (parts.hostname or "").lower()
    for entry in proxies.get("no", "").lower().split(","):
        suffix = entry.strip().lstrip(".")
        if suffix == "*" or (suffix and (host == suffix or host.endswith("." + suffix))):
            return None
    return proxy


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session (made on first use, inside the running loop), its pool bounded by `limits`.

    `resolver`: an aiohttp resolver (e.g. one that refuses internal addresses); the connector connects to
    the addresses it returns, with no second lookup. `proxy`: the proxy for every request (see
    `env_proxy`). `verify`: the TLS context (default: httpx's, with SSL_CERT_FILE / SSL_CERT_DIR honoured).
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        proxy: str | None = None,
        resolver: aiohttp.abc.AbstractResolver | None = None,
        verify: ssl.SSLContext | None = None,
    ) -> None:
        if proxy is not None and urlsplit(proxy).scheme.lower() != "http":
            raise UnsupportedProxy(f"proxy {urlsplit(proxy).scheme}:// is not supported by this transport")
        self._limits = limits
        self._proxy = proxy
        self._resolver = resolver
        self._ssl = verify or httpx.create_ssl_context()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                limit_per_host=0,
                keepalive_timeout=self._limits.keepalive_expiry or 5.0,
                ssl=self._ssl,
                resolver=self._resolver,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=False,  # proxies are given (read once), never looked up per request
                timeout=aiohttp.ClientTimeout(total=None),
            )
            # aiohttp silently repeats a PUT, DELETE or GET once when a kept-alive connection turns out
            # closed; the client decides every retry itself (its attempts are counted and budgeted, and
            # tests/dynatrace/test_client_emulator.py counts them). No public switch: the attribute.
            self._session._retry_connection = False
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeouts.get("pool"),  # aiohttp's connect: waiting for the pool, then connecting
            sock_connect=timeouts.get("connect"),
            sock_read=timeouts.get("read"),
        )
        headers = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw
        )
        body = await request.aread()
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=timeout,
                proxy=self._proxy,
            )
        except Exception as error:
            raise _translated(error, request) from error
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except Exception as error:
            raise _translated(error, self._request, reading=True) from error

    async def aclose(self) -> None:
        self._response.release()


def _translated(error: Exception, request: httpx.Request, *, reading: bool = False) -> Exception:
    """aiohttp's failure as the httpx error of the same meaning; "sent or not" above all."""
    message = str(error) or type(error).__name__
    kind: type[httpx.RequestError]
    if isinstance(error, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        kind = httpx.ProxyError
    elif isinstance(error, aiohttp.ConnectionTimeoutError):
        kind = httpx.ConnectTimeout  # no connection was made (or none was free): nothing sent
    elif isinstance(error, aiohttp.ClientConnectorError):
        kind = httpx.ConnectError  # refused, unreachable, DNS, TLS handshake: nothing sent
    elif isinstance(error, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        kind = httpx.UnsupportedProtocol
    elif isinstance(error, aiohttp.SocketTimeoutError | asyncio.TimeoutError):
        kind = httpx.ReadTimeout
    elif isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        kind = httpx.RemoteProtocolError
    elif isinstance(error, aiohttp.ClientResponseError):
        kind = httpx.RemoteProtocolError  # an answer that is not HTTP aiohttp can read
    elif isinstance(error, aiohttp.ClientError | OSError):
        kind = httpx.ReadError if reading else httpx.WriteError
    else:
        return error  # not a transport failure (or already an httpx one): as it is
    return kind(message, request=request)
