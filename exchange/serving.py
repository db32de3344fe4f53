"""Running an ASGI app under uvicorn inside the current event loop.

The demo runs the gateway (and, later, sandbox partners) this way, and tests run real HTTP
servers on loopback with it: port 0 picks a free port, and :attr:`RunningServer.url` tells
which one was bound. Every server, ``exchange serve``'s included, speaks HTTP/1.1 through
:class:`BoundedHeadProtocol`, which bounds what a client may make the server hold: a request
head of at most :data:`MAX_REQUEST_HEAD_BYTES` (else 431), arriving whole within
:data:`HEAD_TIMEOUT_SECONDS` of when the server waits for it (else 408, or a plain close if
nothing came), and a body the application waits for never silent for :data:`BODY_IDLE_SECONDS`
(else the connection is closed). The gateway serves through a subclass whose own answers carry
its security headers (:func:`exchange.web.security.gateway_protocol`).
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import signal
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import uvicorn
from starlette.types import ASGIApp
from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable, Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from exchange.access_log import uvicorn_log_config
from exchange.errors import ConfigurationError

#: What a refusal to bind says to do, unless the caller knows better (which option picks the port).
CHOOSE_ANOTHER_PORT = "stop what listens there or choose another port"
#: The most bytes a request's head (request line and headers) may take: nginx's default is
#: 32 KiB, and the exchange's own cookies and tokens take a few.
MAX_REQUEST_HEAD_BYTES = 64 * 1024
#: How long the whole head of a request may take to arrive, counted from when the server begins
#: to wait for it. nginx's client_header_timeout is 60 s; a head is a few KiB, which the slowest
#: mobile link a partner or a member uses sends in well under a second, so we have no reason to
#: hold a connection (and its file descriptor) for a client that dribbles one as long as that.
HEAD_TIMEOUT_SECONDS = 20.0
#: How long the application may wait for the next bytes of a request body it is reading before
#: the request is abandoned: between reads, not for the whole body, so a slow but steady upload
#: is never cut. nginx's client_body_timeout (60 s between reads) halved, as for the head.
BODY_IDLE_SECONDS = 30.0
#: How long a connection refused for its head is read from (and dropped) before it is closed.
REFUSED_LINGER_SECONDS = 2.0
_UPGRADE_WITH_BODY = (
    b"a request asking to upgrade the connection (Connection: upgrade) may carry no body here, and no "
    b"upgrade is served: send the request without the Upgrade header"
)
_HEAD_TOO_LARGE = f"request head (request line and headers) larger than {MAX_REQUEST_HEAD_BYTES} bytes".encode()


class AnswerWrites(asyncio.Transport):
    """A response's view of its connection: the answer's head (its first write) is held until
    the first bytes of its body, and goes out with them in one write.

    uvicorn writes a head and its body apart, and the connection sends each write at once
    (``TCP_NODELAY``): a small answer went out as two segments, each a system call here and a
    wake-up of the client's reader there. A head that no body follows within the event loop's
    turn (a stream whose first bytes take time) goes out alone at the turn's end; closing
    sends what is held first."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._written = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            data, self._held = self._held + data, None
        elif not self._written:
            self._held = bytes(data)
            self._written = True
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Send the head held, if any, unless the connection is closing (the client has gone:
        uvicorn writes nothing more then, and uvloop refuses a write to a closed connection)."""
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol over httptools, bounding what a client may make the server
    hold: the bytes of a request's head, and the time its head and its body take to arrive.

    *Bytes.* A request whose head outgrows :data:`MAX_REQUEST_HEAD_BYTES` is refused with a 431
    and the connection closed. httptools (llhttp) sets no limit of its own, and uvicorn's h11
    protocol, which has one, is pure Python: a client could send a header of a gigabyte, or a
    million headers, and the worker held it all in memory and answered. Only the bytes of reads
    that fall wholly inside one head are counted, so a head at most the limit is never refused
    (a body or the next request in the same read counts for nothing), and a longer one is
    refused within one read (256 KiB) of the limit.

    *Time.* uvicorn arms no timer when a connection opens, and every read cancels its keep-alive
    timer, so a client sending nothing, or a head or a body a byte every few seconds, held a
    connection forever; a few thousand such clients exhausted the worker.

    - The head: from when the server waits for one (the connection opened, or the previous
      response completed on a kept-alive connection with no request read ahead), the whole head
      must arrive within :data:`HEAD_TIMEOUT_SECONDS`. A head begun but not finished by then is
      answered 408 and the connection closed; a connection on which nothing of a request has
      arrived is closed without an answer, as uvicorn closes an idle kept-alive connection: no
      request is there to answer, and a client that sends one just as the server closes takes
      the close for what it is and retries, where a 408 crossing its request on the wire could
      be read as that request's answer. The deadline never runs while the application handles
      a request: a slow partner behind it is not the client's fault.
    - The body: while the application waits for more of the request body, a client that sends
      no byte of it for :data:`BODY_IDLE_SECONDS` (the bytes of chunked framing alone end no
      wait) has its connection closed, and the application's ``receive`` answers
      ``http.disconnect``. The limit is on each wait, not on the whole body.

    Each cut is logged as one warning line. A connection has at most one timer armed at a time
    (the head deadline, the body's idle check, or the linger of a refusal): one per request
    head, and one per idle limit that the application spends waiting for a body. It is
    cancelled when the connection is lost.

    The answers the protocol writes itself, outside the application (those refusals, and
    uvicorn's 400 for bytes that are no HTTP request), carry :attr:`answer_headers` besides
    their own.

    *WebSocket.* No server of the exchange speaks it: a request to upgrade is served as the plain
    HTTP request it also is, by the application. Handed to uvicorn's WebSocket protocol (the
    ``websockets`` package is installed), it escaped every bound above and was refused by that
    library's own answer, bare of the application's headers. The parser still takes such a
    request (``Upgrade`` named in ``Connection``) to end with its head, whatever body it declares,
    and whatever follows for another protocol's: so the connection ends with its answer, and
    nothing after it is read as HTTP. A request that declares a body besides is refused (400):
    its body would reach the application empty, and, read as the next request on the connection,
    was a request smuggled past any proxy in front that passes ``Upgrade`` on.
    """

    #: Header lines (each ending CRLF) of every answer the protocol writes itself.
    answer_headers: ClassVar[bytes] = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._reading_head = True
        self._heads_read = 0
        self._head_bytes = 0
        self._refused = False
        # Whether a request asked to upgrade the connection: nothing after its head is HTTP.
        self._upgrade_asked = False
        # Whether the parser holds the start of a head it has not finished (llhttp begins a
        # message at its first byte).
        self._head_begun = False
        # Whether the application waits in ``receive`` for more of the body, and since when
        # (each wait ends with the next bytes of the body, so a wait is a silence of the client).
        self._awaiting_body = False
        self._waiting_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._arm(HEAD_TIMEOUT_SECONDS, self._head_deadline_passed)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        self._head_begun = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_begun = False
        self._heads_read += 1
        self._head_bytes = 0
        self._disarm()
        if self.parser.should_upgrade():
            self._upgrade_asked = True
            if _declares_body(self.headers):
                self.logger.warning("Request to upgrade with a body refused.")
                self._refuse(b"400 Bad Request", _UPGRADE_WITH_BODY)
                return
        super().on_headers_complete()
        self.cycle.transport = AnswerWrites(self.transport, self.loop)
        if self._upgrade_asked:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        if self._refused:
            return  # refused at its head: no application reads it
        self._reading_head = True
        super().on_message_complete()

    def on_response_complete(self) -> None:
        next_request_read = bool(self.pipeline)  # then its application starts now, not a wait
        super().on_response_complete()
        if not next_request_read and not self.transport.is_closing():
            self._arm(HEAD_TIMEOUT_SECONDS, self._head_deadline_passed)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        """Start ``app`` on ``cycle`` with a ``receive`` that bounds its waits for the body.

        A ``receive`` that finds body bytes already read, the body complete, or the request
        over does not wait for the client, and arms nothing."""

        async def receive() -> ASGIReceiveEvent:
            if cycle.body or not cycle.more_body or cycle.disconnected or cycle.response_complete:
                return await cycle.receive()
            self._awaiting_body = True
            self._waiting_since = self.loop.time()
            if self._timer is None:  # else the check of an earlier wait, which still holds
                self._arm(BODY_IDLE_SECONDS, self._body_idle_check)
            try:
                return await cycle.receive()
            finally:
                self._awaiting_body = False

        async def bounded(scope: Scope, _: ASGIReceiveCallable, send: ASGISendCallable) -> None:
            await app(scope, receive, send)

        super()._start_asgi_task(cycle, bounded)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused request, read only so that the client gets the answer
        if self._upgrade_asked:
            return  # meant for another protocol: the connection closes once the request is answered
        reading_head, heads_read = self._reading_head, self._heads_read
        super().data_received(data)
        if not (reading_head and self._reading_head and self._heads_read == heads_read):
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_REQUEST_HEAD_BYTES and not self.transport.is_closing():
            self.logger.warning("Request head too large.")
            self._refuse(b"431 Request Header Fields Too Large", _HEAD_TOO_LARGE)

    def _should_upgrade_to_ws(self) -> bool:
        return False

    def _unsupported_upgrade_warning(self) -> None:
        """Nothing to warn of: the request is served as plain HTTP (uvicorn would log two lines
        for each, one telling the operator to install a WebSocket library)."""

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are no HTTP request (which it has logged), written as
        a refused head's: with :attr:`answer_headers`, and the rest of the request read to its
        end, where uvicorn's closed at once and could reset the connection under its answer."""
        self._refuse(b"400 Bad Request", msg.encode())

    def _head_deadline_passed(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self._head_begun:
            self.logger.warning("No request within %g s; connection closed.", HEAD_TIMEOUT_SECONDS)
            self.transport.close()
            return
        self.logger.warning("Request head not complete within %g s.", HEAD_TIMEOUT_SECONDS)
        reason = f"request head (request line and headers) not complete within {HEAD_TIMEOUT_SECONDS:g} seconds"
        self._refuse(b"408 Request Timeout", reason.encode())

    def _body_idle_check(self) -> None:
        """Close the connection if the application's wait for the body has lasted
        :data:`BODY_IDLE_SECONDS`; else look again when it would have. Checked lazily, so that
        a body arriving in many reads costs one timer per idle limit, not one per read."""
        self._timer = None
        if not self._awaiting_body or self.transport.is_closing():
            return  # the next wait arms a check of its own
        silent = self.loop.time() - self._waiting_since
        if silent < BODY_IDLE_SECONDS:
            self._arm(BODY_IDLE_SECONDS - silent, self._body_idle_check)
            return
        self.logger.warning("No byte of the request body within %g s; connection closed.", BODY_IDLE_SECONDS)
        self.transport.close()  # connection_lost tells the waiting application: http.disconnect

    def _refuse(self, status: bytes, reason: bytes) -> None:
        """Answer ``status`` (code and phrase) with ``reason`` as plain text, and close. Closed
        at once with the client's bytes unread, the connection would be reset, and the client
        would lose the answer with it: the answer ends the sending side, and the rest the client
        sends is read and dropped until it closes its side, or for :data:`REFUSED_LINGER_SECONDS`."""
        self._refused = True
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:  # an answer being written
            self.transport.close()
            return
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n%s\r\n%s" % (status, len(reason), self.answer_headers, reason)
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm(REFUSED_LINGER_SECONDS, self.transport.close)

    def _arm(self, delay: float, callback: Callable[[], object]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's head (names in lower case) says a body follows."""
    return any(
        name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0") for name, value in headers
    )


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


def ensure_data_dir(directory: Path, *, name: str, remedy: str) -> None:
    """Create a server's data directory (if need be), refusing in one line, as
    :func:`listening_socket` refuses an address, one it cannot create or write to."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"{name} cannot create its data directory {directory}: {exc.strerror}; {remedy}"
        ) from None
    if not os.access(directory, os.W_OK):
        raise ConfigurationError(f"{name} cannot write to its data directory {directory}; {remedy}")


#: Where :func:`free_port` chooses by default (below the kernel's ephemeral range, wherever that
#: starts).
CHOSEN_PORTS = range(10_000, 20_000)
#: Where ``free_port(KEPT_PORTS)`` chooses: for a server that stops and must start again on the
#: same port (a demo restarted on the declarations that name its sandboxes' ports). ``free_port()``
#: never chooses from here, so the many servers started meanwhile cannot take such a port
#: between its two starts.
KEPT_PORTS = range(20_000, 32_768)
_port_choice = random.Random()  # its own: a test's seeding of the module's generator does not reach it


def free_port(ports: range = CHOSEN_PORTS) -> int:
    """A TCP port on 127.0.0.1 among ``ports`` that is free now (for a server whose URL must be
    known first).

    Chosen at random below the kernel's ephemeral range, not by binding port 0: a port from that
    range can become the source port of any connection this machine opens before the server
    binds it (two halves of the test suite open many), and one outside it can only be taken by
    another server choosing the same one.
    """
    above = min(ports.stop, _first_ephemeral_port())
    if above - ports.start < 1_000:
        raise ConfigurationError(
            f"too few ports on 127.0.0.1 from {ports.start} up to the ephemeral range, which starts at {above}"
        )
    for _ in range(100):
        port = _port_choice.randrange(ports.start, above)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise ConfigurationError(f"no free port on 127.0.0.1 from {ports.start} to {above}")


def _first_ephemeral_port() -> int:
    """The lowest port the kernel gives out as a connection's source port (Linux's default
    32768 where it does not say)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


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
    max_connections: int | None = None,
    protocol: type[BoundedHeadProtocol] = BoundedHeadProtocol,
) -> RunningServer:
    """Start serving ``app``; returns once the socket listens (or raises if start-up failed).

    ``listener``: a socket :func:`listening_socket` bound beforehand (``host`` and ``port`` are
    then ignored); otherwise one is bound here, ``name`` naming the server in its error.
    With ``handle_signals=False`` the server ignores Ctrl-C: the caller stops it.
    ``max_connections``: connections held, and requests served, at once; a request beyond
    either is answered 503 (uvicorn's ``limit_concurrency``; ``None``: no limit).
    ``protocol``: HTTP/1.1 as :class:`BoundedHeadProtocol` or a subclass (the gateway's).
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
        http=protocol,
        limit_concurrency=max_connections,
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
