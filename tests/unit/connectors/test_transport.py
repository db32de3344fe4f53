"""Partner answers over a real connection on loopback: what reading them costs in memory.

respx reads (and inflates) a mocked answer whole before the code under test sees it, so a
memory bound can only be shown against a real server: a partner on 127.0.0.1 that sends a
small gzip bomb, read through the exchange's own transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from exchange.connectors import batch_files
from exchange.connectors.client import CallInfo, Reply
from exchange.connectors.errors import PartnerError, PartnerProtocolError
from exchange.connectors.transport import MAX_ANSWER_BYTES, AiohttpTransport, AnswerTooLarge, read_answer

#: A JSON object of 64 MiB of spaces, gzipped: about 64 KiB on the wire.
GZIP_BOMB = gzip.compress(b"{" + b" " * (64 * MAX_ANSWER_BYTES) + b"}", compresslevel=9)

#: Far below the bomb's 64 MiB inflated, a little above what reading up to the limit holds.
NEAR_THE_LIMIT = 4 * MAX_ANSWER_BYTES


class Partner:
    """A partner on loopback that answers every request with ``body``, gzipped as it is."""

    def __init__(self) -> None:
        self.body = b""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = f"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: {len(self.body)}\r\n"
        writer.write(head.encode() + b"connection: close\r\n\r\n" + self.body)
        await writer.drain()
        writer.close()


@pytest.fixture
async def partner() -> AsyncIterator[tuple[Partner, str]]:
    partner = Partner()
    server = await asyncio.start_server(partner.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield partner, f"http://127.0.0.1:{port}/"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport()) as client:
        yield client


async def peak_bytes(call: Callable[[], Awaitable[object]]) -> int:
    """The most memory Python held, above what it held before, while ``call()`` ran to its end
    or to a refusal (tracemalloc: what reading the answer allocated)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with contextlib.suppress(AnswerTooLarge, PartnerError):
            await call()
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


async def test_a_gzip_bomb_is_refused_with_memory_near_the_limit(
    partner: tuple[Partner, str], http: httpx.AsyncClient
) -> None:
    """64 MiB in a 64 KiB gzip is refused as too large, inflated no further than the limit."""
    server, url = partner
    server.body = GZIP_BOMB
    assert len(server.body) < MAX_ANSWER_BYTES / 8
    with pytest.raises(AnswerTooLarge):
        await answer(http, url)
    assert await peak_bytes(lambda: answer(http, url)) < NEAR_THE_LIMIT


async def answer(http: httpx.AsyncClient, url: str) -> httpx.Response:
    return await read_answer(await http.send(http.build_request("GET", url), stream=True))


async def test_an_answer_under_the_limit_is_read_decoded(partner: tuple[Partner, str], http: httpx.AsyncClient) -> None:
    server, url = partner
    server.body = gzip.compress(b'{"points": 100}')
    read = await answer(http, url)
    assert (read.json(), "content-encoding" in read.headers) == ({"points": 100}, False)


async def test_a_streamed_file_that_is_a_gzip_bomb_is_refused_at_the_line_limit(
    partner: tuple[Partner, str], http: httpx.AsyncClient
) -> None:
    """A streamed file (a batch's results) is inflated in bounded pieces too: its endless line
    is refused at the line limit, with memory far below the bomb's."""
    server, url = partner
    server.body = gzip.compress(b"operation_id,status\n" + b"x" * (64 * MAX_ANSWER_BYTES), compresslevel=9)

    async def read_lines() -> None:
        response = await http.send(http.build_request("GET", url), stream=True)
        reply = Reply(response=response, program_id="wallet-pay", call=CallInfo("credit_results", write=False))
        try:
            async for _ in reply.lines(batch_files.MAX_LINE_CHARS):
                pass
        finally:
            await response.aclose()

    with pytest.raises(PartnerProtocolError, match=f"line 2: longer than {batch_files.MAX_LINE_CHARS} characters"):
        await read_lines()
    assert await peak_bytes(read_lines) < NEAR_THE_LIMIT


def test_an_answer_naming_a_key_twice_is_a_protocol_error_not_its_last_value() -> None:
    """A partner answering ``{"status": "failed", "status": "completed"}`` said nothing certain."""
    response = httpx.Response(200, content=b'{"status": "failed", "status": "completed"}')
    reply = Reply(response=response, program_id="wallet-pay", call=CallInfo("operation_status", write=False))
    with pytest.raises(PartnerProtocolError, match=r"operation_status: answer \(200\) is not JSON"):
        reply.json_object()
