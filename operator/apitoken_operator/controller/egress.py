"""Where a connection URL may lead: https only, and never into the cluster's inside from a namespace.

A namespace connection Secret is written by a namespace user, and the operator sends a request with the
Secret's token to the Secret's URL from inside the cluster: without checks that is a request forgery
(SSRF) into the pod network, the node, the cloud metadata endpoint. So:

- the scheme is https unless the administrator allows plain http (`--allow-insecure-http`);
- a namespace connection may not reach loopback, link-local, private (RFC 1918, ULA), shared (CGNAT),
  multicast, unspecified, reserved or other non-global addresses, unless inside a network the
  administrator allows (`--allow-connection-cidr`). IPv6 forms that carry an IPv4 address (mapped,
  NAT64, 6to4) are judged by that address as well;
- a host name is judged by every address it resolves to, once when the connection is first used (for a
  clear condition) and again at every TCP connect (`GuardedTransport`), which then connects to the very
  address it checked: a DNS answer that changes between check and use (rebinding) cannot redirect it.

The default connection is the administrator's own and is not address-checked (a Managed cluster may
well be internal); the scheme rule applies to it too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from apitoken_operator.dynatrace.transport import env_proxy

__all__ = [
    "AddressRefused",
    "GuardedTransport",
    "address_problem",
    "check_addresses",
    "scheme_problem",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_HOW_TO_ALLOW = (
    "namespace connections may not reach internal addresses; the operator's administrators can allow "
    "a network with --allow-connection-cidr"
)


class AddressRefused(httpx.UnsupportedProtocol):
    """A connect the guard refused. An `httpx.RequestError` that the client does not retry and counts as
    not sent (as `UnsupportedProtocol`), so nothing reaches the refused address."""


def scheme_problem(url: str, *, allow_insecure_http: bool) -> str | None:
    """Why the URL's scheme is refused, or None. http:// sends the API token in clear text."""
    scheme = urlsplit(url.strip()).scheme.lower()
    if scheme == "http" and not allow_insecure_http:
        return (
            "the URL uses http://, which would send the API token unencrypted; use https:// "
            "(the operator's administrators can allow http with --allow-insecure-http)"
        )
    return None


def address_problem(address: IPAddress, *, allowed: Iterable[IPNetwork] = ()) -> str | None:
    """What kind of internal address this is (e.g. "private"), or None when a connection may reach it."""
    if any(address in network for network in allowed if network.version == address.version):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            problem = address_problem(embedded, allowed=allowed)
            if problem is not None or address.ipv4_mapped or any(address in n for n in _NAT64):
                return problem  # mapped and NAT64 addresses are their IPv4 address
    return _kind(address)


def _kind(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return "shared (CGNAT)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "special-purpose"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def through_proxy(url: str) -> bool:
    """Whether the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY) sends `url` through a
    proxy. The proxy then resolves and connects, so only the check before the first use applies."""
    return env_proxy(url) is not None


def networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is itself); raises OSError when it does not."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def refusal(host: str, addresses: Iterable[IPAddress], *, allowed: Iterable[IPNetwork]) -> str | None:
    """The message for the first internal address among `addresses`, or None when all may be reached."""
    allowed = tuple(allowed)
    for address in addresses:
        kind = address_problem(address, allowed=allowed)
        if kind is not None:
            shown = host if host.strip("[]") == str(address) else f"{host} (resolves to {address})"
            return f"{shown} is an internal address ({kind}); {_HOW_TO_ALLOW}"
    return None


async def check_addresses(url: str, *, allowed: Iterable[IPNetwork]) -> str | None:
    """Why a namespace connection may not reach `url`'s host, or None. A name that does not resolve now
    passes here: the guard checks again at connect time, and the failure is then a transient one."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return None  # the client's URL check says what is wrong
    try:
        addresses = await resolve(host, port)
    except OSError:
        return None
    return refusal(host, addresses, allowed=allowed)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks every address, then connects to a checked one: no second DNS lookup to rebind."""

    def __init__(self, allowed: tuple[IPNetwork, ...]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allowed = allowed

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(resolve(host, port), timeout)
        except (OSError, TimeoutError) as error:
            raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from error
        problem = refusal(host, addresses, allowed=self._allowed)
        if problem is not None:
            raise AddressRefused(f"not connecting: {problem}")
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
        assert last is not None  # resolve() never returns an empty list without raising
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("not connecting: unix sockets are not connection targets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its error mapping included) over the guarded network backend. Environment
    proxies (HTTPS_PROXY) do not apply: the guard must see the address it connects to."""

    def __init__(self, *, allowed: tuple[IPNetwork, ...], limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allowed),
        )
