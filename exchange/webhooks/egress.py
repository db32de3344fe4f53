"""Where the delivery worker may connect: in production, public addresses only.

A subscription's URL is checked when it is made (:mod:`exchange.webhooks.urls`), but a host
*name* there says nothing about where it leads: ``metadata.example`` may resolve to
169.254.169.254, and a name that resolved to a public address at subscription time may
resolve to 127.0.0.1 at delivery time (DNS rebinding). So the worker resolves every host it
connects to itself, refuses the connection if any address the name resolves to is not public
(:func:`~exchange.webhooks.urls.is_public`), and connects to the address it checked, never
resolving the name again. TLS still verifies the certificate against the URL's host name.

A refused connection is an ordinary failed attempt (``ConnectError``, naming the address),
retried and dead-lettered like any other: no request reaches the address.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable

import httpcore
import httpx

from exchange.webhooks.urls import host_address, is_public


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to public addresses of a host."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = await public_address(host, port)
        return await self.inner.connect_tcp(address, port, timeout, local_address, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are delivered over TCP to public addresses only")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


async def public_address(host: str, port: int) -> str:
    """The address to connect to for ``host``: its first, once every address it resolves to is
    public; else :class:`httpcore.ConnectError` naming the address that is not."""
    literal = host_address(host.strip("[]"))
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as failed:
            raise httpcore.ConnectError(f"{host} does not resolve: {failed}") from None
        addresses = [address for info in found if (address := host_address(str(info[4][0]))) is not None]
    if not addresses:
        raise httpcore.ConnectError(f"{host} resolves to no address")
    for address in addresses:
        if not is_public(address):
            raise httpcore.ConnectError(f"{host} resolves to {address}, which is not a public address")
    return str(addresses[0])


def public_only_transport() -> httpx.AsyncHTTPTransport:
    """An httpx transport whose connections go to public addresses only.

    httpx takes no network backend of its own, so its connection pool is replaced by one
    with httpx's default limits and TLS verification over :class:`PublicOnlyBackend`.
    Passing a transport also keeps httpx from routing through a proxy named by the
    environment, which would resolve the name itself.
    """
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx.AsyncClient's
    transport = httpx.AsyncHTTPTransport(limits=limits)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=PublicOnlyBackend(),
    )
    return transport
