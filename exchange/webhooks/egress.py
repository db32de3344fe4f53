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

import httpx

from exchange.trust_store import trust_store
from exchange.webhooks.urls import host_address, is_public


async def public_address(host: str, port: int) -> str:
    """The address to connect to for ``host``: its first, once every address it resolves to is
    public; else :class:`httpx.ConnectError` naming the address that is not."""
    literal = host_address(host.strip("[]"))
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as failed:  # UnicodeError: a label IDNA cannot encode (empty, over 63)
            raise httpx.ConnectError(f"{host} does not resolve: {failed}") from None
        addresses = [address for info in found if (address := host_address(str(info[4][0]))) is not None]
    if not addresses:
        raise httpx.ConnectError(f"{host} resolves to no address")
    for address in addresses:
        if not is_public(address):
            raise httpx.ConnectError(f"{host} resolves to {address}, which is not a public address")
    return str(addresses[0])


class PublicOnlyTransport(httpx.AsyncBaseTransport):
    """An httpx transport whose requests go to public addresses only.

    Each request is sent to the address :func:`public_address` checked, in place of the host
    name; the ``Host`` header keeps the name (httpx set it when the request was made), and so
    does TLS, through httpcore's ``sni_hostname`` request extension: the server is asked for,
    and its certificate verified against, the name in the subscription's URL. Passing a
    transport also keeps httpx from routing through a proxy named by the environment, which
    would resolve the name itself.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport(verify=trust_store())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        address = await public_address(url.host, url.port or (443 if url.scheme == "https" else 80))
        if address == url.host:
            return await self.inner.handle_async_request(request)
        extensions = {**request.extensions, "sni_hostname": url.host} if url.scheme == "https" else request.extensions
        to_address = httpx.Request(
            request.method,
            url.copy_with(host=address),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await self.inner.handle_async_request(to_address)

    async def aclose(self) -> None:
        await self.inner.aclose()
