"""The HTTP edge bounds the time a client may hold a connection (slowloris): a connection that
sends nothing is closed, a request head not complete within the head deadline is answered 408
and closed, and a body the application waits for that falls silent past the idle limit is
abandoned, the application told ``http.disconnect``; where uvicorn over httptools held each
of them open forever. A slow application, a kept-alive connection's next request and a slow
but steady upload are served as before.

The limits are made short here; the client's own pauses stay well inside them, and every read
has a guard of :data:`GUARD_SECONDS` so that a connection left open fails the test instead of
hanging it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from exchange import serving

HEAD_TIMEOUT = 0.5
BODY_IDLE = 0.5
GUARD_SECONDS = 30


@dataclass
class Server:
    host: str
    port: int
    uploads: asyncio.Queue[str]
    caplog: pytest.LogCaptureFixture
    connections: list[asyncio.StreamWriter] = field(default_factory=list)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.connections.append(writer)
        return reader, writer

    def warnings(self) -> list[str]:
        return [record.getMessage() for record in self.caplog.records if record.name == "uvicorn.error"]


def application(uploads: asyncio.Queue[str]) -> Starlette:
    """``/hello`` answers at once; ``/slow`` after three head deadlines; ``/upload`` reads its
    body and answers how many bytes it had, putting that (or ``disconnected``) in ``uploads``."""

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async def slow(request: Request) -> PlainTextResponse:
        await asyncio.sleep(3 * HEAD_TIMEOUT)
        return PlainTextResponse("slow")

    async def upload(request: Request) -> PlainTextResponse:
        try:
            body = await request.body()
        except ClientDisconnect:
            uploads.put_nowait("disconnected")
            return PlainTextResponse("")  # written nowhere: the client is gone
        uploads.put_nowait(f"{len(body)} bytes")
        return PlainTextResponse(f"{len(body)} bytes")

    return Starlette(routes=[Route("/hello", hello), Route("/slow", slow), Route("/upload", upload, methods=["POST"])])


#: The connections the ``server`` fixture holds at once, unless a test's marker says otherwise.
MAX_CONNECTIONS = 100


@pytest.fixture
async def server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> AsyncIterator[Server]:
    """The application served with short limits; ``@pytest.mark.max_connections(n)`` sets the
    connection limit."""
    monkeypatch.setattr(serving, "HEAD_TIMEOUT_SECONDS", HEAD_TIMEOUT)
    monkeypatch.setattr(serving, "BODY_IDLE_SECONDS", BODY_IDLE)
    marker = request.node.get_closest_marker("max_connections")
    limit = marker.args[0] if marker else MAX_CONNECTIONS
    uploads: asyncio.Queue[str] = asyncio.Queue()
    async with serving.serving(application(uploads), handle_signals=False, max_connections=limit) as running:
        started = Server(running.host, running.port, uploads, caplog)
        try:
            yield started
        finally:
            for writer in started.connections:
                writer.close()


def get(path: str) -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"


def post_head(length: int) -> bytes:
    return b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % length


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """What the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), GUARD_SECONDS)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One answer's status and body, leaving the connection open."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), GUARD_SECONDS)
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":")[1]) for line in lines if line.lower().startswith("content-length:"))
    return int(lines[0].split()[1]), await asyncio.wait_for(reader.readexactly(length), GUARD_SECONDS)


async def test_a_head_left_unfinished_is_answered_408_and_the_connection_closed(server: Server) -> None:
    reader, writer = await server.connect()
    writer.write(b"GET /hello HTTP/1.1\r\nHost: local")
    answer = await read_to_end(reader)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"\r\nconnection: close\r\n" in answer
    assert answer.endswith(b"\r\n\r\nrequest head (request line and headers) not complete within 0.5 seconds")
    assert server.warnings() == ["Request head not complete within 0.5 s."]


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Server) -> None:
    reader, _ = await server.connect()
    assert await read_to_end(reader) == b""
    assert server.warnings() == ["No request within 0.5 s; connection closed."]


async def test_a_head_sent_in_pieces_within_the_deadline_is_answered(server: Server) -> None:
    reader, writer = await server.connect()
    request = get("/hello")
    pieces = [request[start : start + 10] for start in range(0, len(request), 10)]
    for piece in pieces:
        writer.write(piece)
        await asyncio.sleep(HEAD_TIMEOUT / 2 / len(pieces))
    assert await read_answer(reader) == (200, b"hello")
    assert server.warnings() == []


async def test_an_application_slower_than_the_head_deadline_is_answered_not_cut(server: Server) -> None:
    reader, writer = await server.connect()
    writer.write(get("/slow"))
    assert await read_answer(reader) == (200, b"slow")
    assert server.warnings() == []


@pytest.mark.parametrize(
    ("then", "answer", "warning"),
    [
        (b"", b"", "No request within 0.5 s; connection closed."),
        (b"GET /hel", b"HTTP/1.1 408 Request Timeout\r\n", "Request head not complete within 0.5 s."),
    ],
    ids=["nothing", "part of a head"],
)
async def test_a_kept_alive_connection_answers_its_next_request_and_is_bounded_again_after_it(
    server: Server, then: bytes, answer: bytes, warning: str
) -> None:
    """The deadline starts again when an answer is complete: a connection that then sends
    nothing, or the start of a head only, is closed as a new one would be."""
    reader, writer = await server.connect()
    for path in ("/slow", "/hello"):
        writer.write(get(path))
        assert (await read_answer(reader))[0] == 200
    writer.write(then)
    assert (await read_to_end(reader)).startswith(answer)
    assert server.warnings() == [warning]


async def test_a_body_silent_past_the_idle_limit_is_abandoned_and_the_application_told(server: Server) -> None:
    reader, writer = await server.connect()
    writer.write(post_head(10) + b"abc")
    assert await read_to_end(reader) == b""
    assert await asyncio.wait_for(server.uploads.get(), GUARD_SECONDS) == "disconnected"
    assert server.warnings() == ["No byte of the request body within 0.5 s; connection closed."]


async def test_a_body_arriving_steadily_for_longer_than_the_idle_limit_is_answered(server: Server) -> None:
    """Twenty bytes, one each tenth of the idle limit: twice the limit in all."""
    reader, writer = await server.connect()
    writer.write(post_head(20))
    for _ in range(20):
        await asyncio.sleep(BODY_IDLE / 10)
        writer.write(b"x")
    assert await read_answer(reader) == (200, b"20 bytes")
    assert server.uploads.get_nowait() == "20 bytes"
    assert server.warnings() == []


@pytest.mark.max_connections(3)
async def test_a_request_beyond_the_connection_limit_is_answered_503_at_once(server: Server) -> None:
    """Three connections at most: with one request in progress and one connection idle, a
    request on a third is refused at once while the one in progress is answered; once the
    others are gone, a request is served again."""
    busy_reader, busy = await server.connect()
    busy.write(get("/slow"))
    _, idle = await server.connect()
    await asyncio.sleep(HEAD_TIMEOUT / 5)  # both accepted before the third
    reader, writer = await server.connect()
    writer.write(get("/hello"))
    assert await read_answer(reader) == (503, b"Service Unavailable")
    assert await read_answer(busy_reader) == (200, b"slow")
    assert server.warnings()[0] == "Exceeded concurrency limit."  # then the idle one's head deadline
    for gone in (busy, idle, writer):
        gone.close()
        await gone.wait_closed()
    await asyncio.sleep(HEAD_TIMEOUT / 5)  # the server sees them closed
    reader, writer = await server.connect()
    writer.write(get("/hello"))
    assert await read_answer(reader) == (200, b"hello")
