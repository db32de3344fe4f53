"""The partner transport against a raw HTTP server on loopback: what each failure says about
whether the call reached the partner, and what the transport must never keep or follow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from exchange.connectors.client import CookielessClient
from exchange.connectors.transport import AiohttpTransport
from exchange.serving import free_port

Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The request's head and body (Content-Length or chunked), as received."""
    head = await reader.readuntil(b"\r\n\r\n")
    headers = head.lower()
    if b"transfer-encoding: chunked" in headers:
        body = b""
        while (size := int((await reader.readline()).strip(), 16)) > 0:
            body += await reader.readexactly(size)
            await reader.readline()
        await reader.readline()
        return head + body
    length = next(
        (int(line.split(b":")[1]) for line in headers.split(b"\r\n") if line.startswith(b"content-length:")), 0
    )
    return head + await reader.readexactly(length)


def answer(status: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.fixture
async def partner() -> AsyncIterator[tuple[str, list[bytes], dict[str, Handler]]]:
    """A server whose answer to each path is a handler; every request it read is kept."""
    seen: list[bytes] = []
    handlers: dict[str, Handler] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await read_request(reader)
                seen.append(request)
                path = request.split(b" ")[1].decode()
                await handlers[path](request, reader, writer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen, handlers
    finally:
        server.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """As a partner connector's: keeping no cookies at the client, nor at its transport."""
    async with CookielessClient(transport=AiohttpTransport(), timeout=httpx.Timeout(1.0)) as http:
        yield http


async def test_a_port_nobody_listens_on_is_a_call_never_made(client: httpx.AsyncClient) -> None:
    with pytest.raises(httpx.ConnectError):
        await client.post(f"http://127.0.0.1:{free_port()}/debits", json={"points": 1})


async def test_a_connection_closed_after_the_request_is_an_unknown_outcome_not_a_call_never_made(
    partner: tuple[str, list[bytes], dict[str, Handler]], client: httpx.AsyncClient
) -> None:
    base, seen, handlers = partner

    async def hang_up(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()  # applied, perhaps: the answer never leaves

    handlers["/debits"] = hang_up
    with pytest.raises(httpx.TransportError) as raised:
        await client.post(f"{base}/debits", json={"points": 1})
    assert not isinstance(raised.value, httpx.ConnectError | httpx.ConnectTimeout)
    assert len(seen) == 1 and seen[0].endswith(b'{"points":1}')


async def test_an_answer_that_never_comes_is_a_read_timeout(
    partner: tuple[str, list[bytes], dict[str, Handler]], client: httpx.AsyncClient
) -> None:
    base, _, handlers = partner

    async def silent(*_: object) -> None:
        await asyncio.sleep(5)

    handlers["/credits"] = silent
    with pytest.raises(httpx.ReadTimeout):
        await client.post(f"{base}/credits", json={"points": 1})


async def test_cookies_are_not_kept_redirects_not_followed_and_streamed_bodies_arrive_whole(
    partner: tuple[str, list[bytes], dict[str, Handler]], client: httpx.AsyncClient
) -> None:
    base, seen, handlers = partner

    async def sets_a_cookie(_: bytes, __: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer("302 Found", b"", "set-cookie: member=alice; Path=/", "location: /elsewhere"))

    async def echo(request: bytes, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(answer("200 OK", request.split(b"\r\n\r\n", 1)[1], "content-type: text/plain"))

    handlers["/members/alice"] = sets_a_cookie
    handlers["/files"] = echo
    base = base.replace("127.0.0.1", "localhost")  # a cookie jar may take no cookie from an IP address
    redirected = await client.get(f"{base}/members/alice")
    assert redirected.status_code == 302 and redirected.headers["location"] == "/elsewhere"

    async def lines() -> AsyncIterator[bytes]:
        for number in range(3):
            yield f"line {number}\n".encode()

    streamed = await client.post(f"{base}/files", content=lines())
    assert streamed.text == "line 0\nline 1\nline 2\n"
    assert b"cookie" not in seen[1].lower(), "a cookie from one member's call rode on the next"
    assert len(seen) == 2, "the redirect was not followed"
