"""An answer's head goes out with the first bytes of its body, in one write (exchange.serving):
uvicorn writes them apart, and each write on a TCP_NODELAY connection is a segment of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from exchange.serving import AnswerWrites, BoundedHeadProtocol, start_server


class Recording(asyncio.Transport):
    """A transport that keeps what is written to it, and whether it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed_after: int | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed_after = len(self.writes)

    def is_closing(self) -> bool:
        return self.closed_after is not None


async def test_a_head_and_the_body_written_in_one_turn_go_out_in_one_write() -> None:
    sent = Recording()
    answer = AnswerWrites(sent, asyncio.get_running_loop())
    answer.write(b"HTTP/1.1 200 OK\r\n\r\n")
    answer.write(b"{}")
    answer.write(b"more")
    await asyncio.sleep(0)
    assert sent.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"more"]


async def test_a_head_no_body_follows_in_its_turn_goes_out_at_the_turn_s_end() -> None:
    sent = Recording()
    answer = AnswerWrites(sent, asyncio.get_running_loop())
    answer.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert sent.writes == []
    await asyncio.sleep(0)
    assert sent.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]
    answer.write(b"later")
    assert sent.writes == [b"HTTP/1.1 200 OK\r\n\r\n", b"later"]


async def test_closing_sends_the_head_held_first() -> None:
    sent = Recording()
    answer = AnswerWrites(sent, asyncio.get_running_loop())
    answer.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    answer.close()
    assert sent.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"]
    assert sent.closed_after == 1 and answer.is_closing()
    await asyncio.sleep(0)
    assert len(sent.writes) == 1  # the turn's end finds nothing held


async def test_a_head_held_when_the_client_goes_is_dropped() -> None:
    sent = Recording()
    answer = AnswerWrites(sent, asyncio.get_running_loop())
    answer.write(b"HTTP/1.1 200 OK\r\n\r\n")
    sent.close()  # the connection is lost before the turn ends
    await asyncio.sleep(0)
    assert sent.writes == []


class Passing:
    """A connection's transport, its writes kept as they pass."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def test_a_server_writes_a_small_answer_once_and_a_slow_stream_as_it_comes() -> None:
    writes: list[bytes] = []

    class Watched(BoundedHeadProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(Passing(transport, writes))  # type: ignore[arg-type]  # a transport's duck

    async def small(_: Request) -> Response:
        return JSONResponse({"ok": True})

    async def slow(_: Request) -> Response:
        async def pieces() -> AsyncIterator[bytes]:
            await asyncio.sleep(0.05)
            yield b"first"
            await asyncio.sleep(0.05)
            yield b"second"

        return StreamingResponse(pieces(), media_type="text/plain")

    app = Starlette(routes=[Route("/small", small), Route("/slow", slow)])
    server = await start_server(app, handle_signals=False, protocol=Watched)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            answer = await client.get("/small")
            assert answer.json() == {"ok": True}
            assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK") and writes[0].endswith(b'{"ok":true}')
            writes.clear()
            streamed = await client.get("/slow")
            assert streamed.text == "firstsecond"
            assert writes[0].startswith(b"HTTP/1.1 200 OK") and writes[0].endswith(b"\r\n\r\n")  # the head alone
            assert b"first" in writes[1] and b"second" in writes[2]
    finally:
        await server.stop()
