"""The client's default transport (httpx over aiohttp) against real sockets: what was sent or not, proxies,
compressed answers. The emulator tests cover the API itself through the same transport."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from apitoken_emulator.tokens import mint_secret
from apitoken_operator.dynatrace import errors
from apitoken_operator.dynatrace.client import DynatraceClient
from apitoken_operator.dynatrace.models import ApiTokenCreate
from apitoken_operator.dynatrace.secrets import TokenSecret
from apitoken_operator.dynatrace.transport import AiohttpTransport, UnsupportedProxy, env_proxy
from apitoken_operator.settings import DynatraceSettings, RetrySettings

TOKEN = TokenSecret(mint_secret())  # made at run time: a secret in output is always a leak
ONCE = RetrySettings(max_attempts=1, initial_backoff=0.01, max_backoff=0.01, deadline=10.0)
CREATE = ApiTokenCreate(name="t", scopes=["metrics.read"])
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    return head + (await reader.readexactly(length) if length else b"")


@pytest.fixture
async def server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """A raw TCP server on 127.0.0.1 running the handler given; yields its http:// URL."""
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        made = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(made)
        return f"http://127.0.0.1:{made.sockets[0].getsockname()[1]}"

    yield start
    for made in servers:
        made.close()
        await made.wait_closed()


def client(url: str, *, read_timeout: float = 5.0) -> DynatraceClient:
    return DynatraceClient(
        url, token=TOKEN, settings=DynatraceSettings(read_timeout=read_timeout, retry=ONCE)
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_refused_connection_is_a_create_that_was_not_sent() -> None:
    async with client(f"http://127.0.0.1:{_free_port()}") as dynatrace:
        with pytest.raises(errors.DynatraceTransportError) as caught:
            await dynatrace.create(CREATE)
    assert caught.value.request_sent is False
    assert "ConnectError" in str(caught.value)


async def test_a_connection_closed_after_the_request_is_a_create_that_may_have_been_sent(server) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.close()

    async with client(await server(hang_up)) as dynatrace:
        with pytest.raises(errors.CreateOutcomeUnknown):
            await dynatrace.create(CREATE)


async def test_no_answer_in_time_is_a_read_timeout_after_sending(server) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async with client(await server(silent), read_timeout=0.3) as dynatrace:
        with pytest.raises(errors.DynatraceTransportError) as caught:
            await dynatrace.get("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX")
    assert caught.value.request_sent is True and caught.value.timeout is True


@pytest.mark.parametrize("httpx_transport", [False, True], ids=["aiohttp", "httpx"])
async def test_a_gzip_answer_is_decoded_once_and_headers_arrive_as_sent(
    server, httpx_transport: bool
) -> None:
    """Dynatrace may compress what it sends (the client accepts gzip): the answer is decoded exactly once,
    through either transport (both decoded it twice and failed before)."""
    seen: list[bytes] = []
    body = gzip.compress(json.dumps({"id": "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX", "name": "t"}).encode())

    async def gzipped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await _read_request(reader))
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    url = await server(gzipped)
    transport = httpx.AsyncHTTPTransport() if httpx_transport else None
    settings = DynatraceSettings(retry=ONCE)
    async with DynatraceClient(url, token=TOKEN, settings=settings, transport=transport) as dynatrace:
        token = await dynatrace.get("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX")
    assert token.name == "t"
    request = seen[0].decode("latin-1").lower()
    assert "authorization: api-token dt0c01." in request
    assert "user-agent: dynatrace-apitoken-operator/" in request
    assert request.count("user-agent:") == 1 and request.count("host:") == 1


async def test_the_environments_proxy_carries_the_requests(server, monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines.append((await _read_request(reader)).split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    monkeypatch.setenv("HTTP_PROXY", await server(proxy))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with client("http://dynatrace.invalid") as dynatrace:
        await dynatrace.delete("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX")
    assert lines == [
        b"DELETE http://dynatrace.invalid/api/v2/apiTokens/dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX HTTP/1.1"
    ]


@pytest.mark.parametrize(
    ("environment", "url", "proxy"),
    [
        ({"HTTPS_PROXY": "http://p:3128"}, "https://abc.live.dynatrace.com/api", "http://p:3128"),
        ({"HTTPS_PROXY": "http://p:3128"}, "http://abc.internal/api", None),
        ({"ALL_PROXY": "http://p:3128"}, "http://abc.internal/api", "http://p:3128"),
        (
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": ".dynatrace.com"},
            "https://abc.live.dynatrace.com",
            None,
        ),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "*"}, "https://abc.live.dynatrace.com", None),
        ({}, "https://abc.live.dynatrace.com", None),
    ],
)
def test_the_proxy_is_read_from_the_environment_as_httpx_reads_it(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], url: str, proxy: str | None
) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert env_proxy(url) == proxy


async def test_a_proxy_aiohttp_cannot_use_leaves_the_request_to_httpxs_own_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(UnsupportedProxy):
        AiohttpTransport(limits=httpx.Limits(), proxy="https://p:3128")
    monkeypatch.setenv("HTTPS_PROXY", "https://p:3128")
    async with DynatraceClient("https://abc.live.dynatrace.com", token=TOKEN) as dynatrace:
        assert not isinstance(dynatrace._http._transport, AiohttpTransport)
