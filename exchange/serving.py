"""Running an ASGI app under uvicorn inside the current event loop.

The demo runs the gateway (and, later, sandbox partners) this way, and tests run real HTTP
servers on loopback with it: port 0 picks a free port, and :attr:`RunningServer.url` tells
which one was bound. Every server, ``exchange serve``'s included, speaks HTTP/1.1 through
:class:`BoundedHeadProtocol`.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from exchange.access_log import uvicorn_log_config
from exchange.errors import ConfigurationError

#: What a refusal to bind says to do, unless the caller knows better (which option picks the port).
CHOOSE_ANOTHER_PORT = "stop what listens there or choose another port"
#: The most bytes a request's head (request line and headers) may take: nginx's default is
#: 32 KiB, and the exchange's own cookies and tokens take a few.
MAX_REQUEST_HEAD_BYTES = 64 * 1024
#: How long a connection refused for its head is read from (and dropped) before it is closed.
REFUSED_LINGER_SECONDS = 2.0
_HEAD_TOO_LARGE = f"request head (request line and headers) larger than {MAX_REQUEST_HEAD_BYTES} bytes".encode()


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol over httptools, refusing a request whose head outgrows
    :data:`MAX_REQUEST_HEAD_BYTES` with a 431 and closing the connection.

    httptools (llhttp) sets no limit of its own, and uvicorn's h11 protocol, which has one, is
    pure Python: a client could send a header of a gigabyte, or a million headers, and the
    worker held it all in memory and answered. Only the bytes of reads that fall wholly inside
    one head are counted, so a head at most the limit is never refused (a body or the next
    request in the same read counts for nothing), and a longer one is refused within one read
    (256 KiB) of the limit.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading_head = True
        self._heads_read = 0
        self._head_bytes = 0
        self._refused = False

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._heads_read += 1
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_head = True
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused request, read only so that the client gets the 431
        reading_head, heads_read = self._reading_head, self._heads_read
        super().data_received(data)
        if not (reading_head and self._reading_head and self._heads_read == heads_read):
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_REQUEST_HEAD_BYTES and not self.transport.is_closing():
            self._refuse()

    def _refuse(self) -> None:
        """Answer 431 and close. Closed at once with the client's bytes unread, the connection
        would be reset, and the client would lose the answer with it: the answer ends the
        sending side, and the rest the client sends is read and dropped until it closes its
        side, or for :data:`REFUSED_LINGER_SECONDS`."""
        self.logger.warning("Request head too large.")
        self._refused = True
        if self.cycle is not None and not self.cycle.response_complete:  # an answer being written
            self.transport.close()
            return
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_HEAD_TOO_LARGE), _HEAD_TOO_LARGE)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(REFUSED_LINGER_SECONDS, self.transport.close)


def listening_socket(
    host: str, port: int, *, name: str = "the server", remedy: str = CHOOSE_ANOTHER_PORT
) -> socket.socket:
    """A socket bound to ``host:port`` (``port`` 0: a free one), ready for a server to listen on.

    A server is given its socket bound beforehand, so that an address it cannot have stops the
    start with one line naming it (a ``ConfigurationError``), and before anything else has
    begun: left to uvicorn, the application starts first, and then uvicorn logs a traceback
    and calls ``sys.exit`` inside the event loop.
    """
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no obstacle
    # Accepted connections inherit it: an answer's second write (its body after its head) is
    # sent at once, not 40 ms later when the client's delayed ACK of the first arrives (uvloop
    # sets it on the connections of a server it binds itself, not of one handed a socket).
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        if error.errno in (errno.EADDRINUSE, errno.EACCES):  # the port: taken, or privileged
            reason = "the address is already in use" if error.errno == errno.EADDRINUSE else error.strerror
            raise ConfigurationError(f"{name} cannot listen on {host}:{port}: {reason}; {remedy}") from None
        # The host: a name that does not resolve, or an address this machine does not have.
        raise ConfigurationError(
            f"{name} cannot listen on {host}:{port}: {error.strerror}; "
            "listen on an address of this machine (127.0.0.1, or 0.0.0.0 for all of them)"
        ) from None
    return listener


def ensure_free(host: str, port: int, *, name: str = "the server", remedy: str = CHOOSE_ANOTHER_PORT) -> None:
    """Raise the error of :func:`listening_socket` now if ``host:port`` cannot be had."""
    listening_socket(host, port, name=name, remedy=remedy).close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a server whose URL must be known first)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RunningServer:
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


class _SignalFreeServer(uvicorn.Server):
    """A server that leaves SIGINT and SIGTERM to its host process.

    uvicorn installs its own handlers for the lifetime of ``serve()`` and restores the previous
    ones after; several servers in one process (the demo's sandbox partners, a sandbox that
    restarts) would hand the signals around in whatever order they started and stopped.
    """

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def start_server(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    handle_signals: bool = True,
    name: str = "the server",
    listener: socket.socket | None = None,
) -> RunningServer:
    """Start serving ``app``; returns once the socket listens (or raises if start-up failed).

    ``listener``: a socket :func:`listening_socket` bound beforehand (``host`` and ``port`` are
    then ignored); otherwise one is bound here, ``name`` naming the server in its error.
    With ``handle_signals=False`` the server ignores Ctrl-C: the caller stops it.
    """
    if listener is None:
        listener = listening_socket(host, port, name=name)
    server_class = uvicorn.Server if handle_signals else _SignalFreeServer
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=uvicorn_log_config(),
        lifespan="on",
        http=BoundedHeadProtocol,
    )
    server = server_class(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            task.result()  # re-raises the start-up failure
            raise RuntimeError(f"the server on {host}:{port} stopped during start-up")
        await asyncio.sleep(0.01)
    return RunningServer(server=server, task=task, host=host)


@asynccontextmanager
async def serving(app: ASGIApp, **options: Any) -> AsyncIterator[RunningServer]:
    """:func:`start_server` with these ``options`` until the block ends."""
    running = await start_server(app, **options)
    try:
        yield running
    finally:
        await running.stop()


async def wait_for_stop_signal() -> None:
    """Return on the first SIGINT (Ctrl-C) or SIGTERM; for hosts of signal-free servers."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
