"""The HTTP edge bounds a request's head (request line and headers): one of a megabyte, or a
hundred thousand headers, is refused 431 and the connection closed, before any route, where
uvicorn over httptools held it all in memory and answered 200. A head within the bound is
answered, however much body or how many requests follow it in the same read.

The answers the server writes itself (431, uvicorn's 400 for bytes that are no request, 503
beyond the connection limit) carry the security headers every answer of the application does."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from exchange.app import create_app
from exchange.cli import main
from exchange.db import migrate
from exchange.serving import MAX_REQUEST_HEAD_BYTES, serving
from exchange.settings import Settings
from exchange.testing.threads import serving_in_thread
from exchange.web.security import GatewayProtocol, HttpsGatewayProtocol, page_headers

ROUTES = ["/healthz", "/graphql", "/portal/", "/console/sign-in", "/no-such-address"]


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    url = f"sqlite:///{Path(tmp_path_factory.mktemp('heads')) / 'exchange.db'}"
    migrate.upgrade(url)
    with serving_in_thread(create_app(Settings(database_url=url)), protocol=GatewayProtocol) as base:
        host, port = base.removeprefix("http://").split(":")
        yield host, int(port)


def exchange(address: tuple[str, int], request: bytes, *, half_close: bool = True) -> bytes:
    """Send ``request`` at once and read the answer until the server closes the connection
    (``half_close``: having closed the sending side; uvicorn then drops answers it has yet to
    write)."""
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(request)  # a refused request is read to its end all the same
        if half_close:
            connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer


def head(path: str, headers: bytes) -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" + headers + b"\r\n"


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def headers_of(answer: bytes) -> dict[str, str]:
    lines = answer.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]
    return {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}


def assert_security_headers(answer: bytes, *, secure: bool = False) -> None:
    headers = headers_of(answer)
    for name, value in page_headers(secure=secure).items():
        assert headers.get(name.lower()) == value, name


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("", b"X-Big: " + b"a" * 1_000_000 + b"\r\n"),
        ("", b"".join(b"X-%d: y\r\n" % n for n in range(100_000))),
        ("?q=" + "a" * 1_000_000, b""),
    ],
    ids=["one huge header", "100000 headers", "a huge request line"],
)
def test_a_head_above_the_bound_is_refused_431(address: tuple[str, int], path: str, query: str, headers: bytes) -> None:
    """Refused within one read (up to 256 KiB) past the bound: these are far past it."""
    answer = exchange(address, head(path + query, headers))
    assert status(answer) == 431
    assert answer.endswith(b"larger than 65536 bytes")
    assert_security_headers(answer)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NOT AN HTTP REQUEST\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Header: y\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX: a\x00b\r\n\r\n",
        b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Length: many\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ],
    ids=[
        "a request line of words",
        "a space in a header's name",
        "a NUL in a header",
        "a length not a number",
        "a TLS hello",
    ],
)
def test_bytes_that_are_no_request_are_answered_400_with_the_security_headers(
    address: tuple[str, int], request_bytes: bytes
) -> None:
    """uvicorn writes this 400 itself, outside the application and so outside its middleware."""
    answer = exchange(address, request_bytes, half_close=False)
    assert status(answer) == 400
    assert answer.endswith(b"\r\n\r\nInvalid HTTP request received.")
    assert_security_headers(answer)


@pytest.mark.parametrize("path", ["/graphql", "/healthz", "/console/sign-in"])
def test_a_request_to_upgrade_to_a_websocket_is_served_as_plain_http_with_the_security_headers(
    address: tuple[str, int], path: str
) -> None:
    """uvicorn handed it to the ``websockets`` library, which refused it 403 itself, without the
    application's headers and outside the bounds on a request's head."""
    upgrade = (
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n"
    )
    request = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n" + upgrade + b"\r\n"
    answer = exchange(address, request, half_close=False)
    assert status(answer) == status(exchange(address, head(path, b""))), answer[:200]  # as without the upgrade
    assert_security_headers(answer)


UPGRADE = b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
#: A request a client could hide after a request to upgrade, as its body or as what follows it.
HIDDEN = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


def answers_to(address: tuple[str, int], first: bytes, then: bytes) -> list[bytes]:
    """The status lines of what the server answers on one connection to ``first``, and to
    ``then`` sent once ``first`` has been answered whole (so in another read of the server's)."""
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(first)
        answer = b""
        while not _whole(answer) and (chunk := connection.recv(65536)):
            answer += chunk
        with contextlib.suppress(OSError):  # closed already: nothing more is read as a request
            connection.sendall(then)
            while chunk := connection.recv(65536):
                answer += chunk
    return re.findall(rb"HTTP/1\.1 \d+ [^\r]*", answer)


def _whole(answer: bytes) -> bool:
    """Whether ``answer`` holds a head and as much body as its ``content-length`` says."""
    head, separator, body = answer.partition(b"\r\n\r\n")
    return bool(separator) and len(body) >= int(headers_of(head + separator).get("content-length", "0"))


@pytest.mark.parametrize("kind", [b"websocket", b"h2c"])
def test_a_request_to_upgrade_with_a_body_is_refused_and_its_body_is_never_read_as_a_request(
    address: tuple[str, int], kind: bytes
) -> None:
    """The parser ends a request to upgrade with its head and, once that is answered, read the
    body it declared as the next request: one a proxy in front passed on as a body, smuggled."""
    request = (
        b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nUpgrade: " + kind + b"\r\nConnection: Upgrade\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(HIDDEN)
    )
    answer = exchange(address, request + HIDDEN)
    assert status(answer) == 400
    assert answer.endswith(b"no upgrade is served: send the request without the Upgrade header")
    assert_security_headers(answer)
    assert answers_to(address, request, HIDDEN) == [b"HTTP/1.1 400 Bad Request"]


def test_nothing_after_a_request_to_upgrade_is_read_as_a_request(address: tuple[str, int]) -> None:
    """It is answered as plain HTTP, and the connection closes with that answer: the parser
    takes what follows it for another protocol's bytes."""
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n" + UPGRADE + b"\r\n"
    assert answers_to(address, request, HIDDEN) == [b"HTTP/1.1 200 OK"]


async def test_a_refusal_behind_https_carries_strict_transport_security() -> None:
    async with serving(Starlette(), protocol=HttpsGatewayProtocol) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"NOT AN HTTP REQUEST\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    assert status(answer) == 400
    assert_security_headers(answer, secure=True)


async def test_a_request_beyond_the_connection_limit_is_answered_503_with_the_security_headers() -> None:
    """Beyond the limit uvicorn answers through an application of its own instead of the
    gateway's; with a limit of one connection, any request is beyond it."""
    async with serving(Starlette(), protocol=GatewayProtocol, max_connections=1) as server:
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(head("/", b""))
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    assert status(answer) == 503
    assert_security_headers(answer)


@pytest.mark.parametrize("path", ROUTES)
def test_a_head_at_the_bound_is_answered(address: tuple[str, int], path: str) -> None:
    without = head(path, b"X-Pad: \r\n")
    request = head(path, b"X-Pad: " + b"a" * (MAX_REQUEST_HEAD_BYTES - len(without)) + b"\r\n")
    assert len(request) == MAX_REQUEST_HEAD_BYTES
    assert status(exchange(address, request)) != 431


def test_a_large_body_and_pipelined_requests_are_not_counted_as_a_head(address: tuple[str, int]) -> None:
    """Sent in one write: a body of half a megabyte, then 200 requests of 1 KiB each."""
    body = b'{"query": "{ __typename }", "variables": {"pad": "' + b"a" * 500_000 + b'"}}'
    post = (
        b"POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    pipelined = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 1000 + b"\r\n\r\n"
    answer = exchange(address, post + pipelined * 200 + head("/healthz", b""), half_close=False)
    assert b" 431 " not in answer
    assert answer.count(b"HTTP/1.1 200 OK") == 202


def test_exchange_serve_on_port_0_chooses_a_free_port_that_its_issuer_names(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The workers read their settings from the environment: left at 0, every token and the
    OAuth metadata named http://127.0.0.1:0 as the issuer."""
    url = f"sqlite:///{tmp_path / 'exchange.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", url)
    monkeypatch.setenv("EXCHANGE_HOST", "127.0.0.1")  # serve hands both on to its workers there
    monkeypatch.setenv("EXCHANGE_PORT", "8000")
    with mock.patch("uvicorn.run") as run:
        result = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert result.exit_code == 0, result.output
    port = run.call_args.kwargs["port"]
    assert port != 0
    assert Settings().issuer_url == f"http://127.0.0.1:{port}"


def test_exchange_serve_speaks_through_the_bounded_protocol_within_its_connection_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'exchange.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", url)
    monkeypatch.setenv("EXCHANGE_HOST", "127.0.0.1")  # serve hands host and port on: undone after the test
    monkeypatch.setenv("EXCHANGE_PORT", "0")
    monkeypatch.setenv("EXCHANGE_MAX_CONNECTIONS", "250")
    with mock.patch("uvicorn.run") as run:
        result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 0, result.output
    assert run.call_args.kwargs["http"] is GatewayProtocol
    assert run.call_args.kwargs["limit_concurrency"] == 250


def test_exchange_serve_refuses_a_tracing_exporter_it_cannot_run_before_starting_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only the workers read OpenTelemetry's variables: with several, each failed on an unknown
    exporter with a trace, and uvicorn restarted it to fail again, while the port listened."""
    url = f"sqlite:///{tmp_path / 'exchange.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", url)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    monkeypatch.setenv("EXCHANGE_HOST", "127.0.0.1")  # serve hands both on to its workers there:
    monkeypatch.setenv("EXCHANGE_PORT", "0")  # set through monkeypatch, they are undone after the test
    with mock.patch("uvicorn.run") as run:
        result = CliRunner().invoke(main, ["serve", "--port", "0", "--workers", "2"])
    assert (result.exit_code, result.output) == (
        2,
        "Error: OTEL_TRACES_EXPORTER: 'jaeger' is not one of otlp, console, none\n",
    )
    run.assert_not_called()


def test_exchange_serve_refuses_a_key_encryption_secret_that_does_not_open_the_keys_before_starting_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Started with another secret than the signing keys were stored with, the gateway said it
    was ready and answered every request for a token (or a statement) with a 500."""
    url = f"sqlite:///{tmp_path / 'exchange.db'}"
    migrate.upgrade(url)
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", url)
    monkeypatch.setenv("EXCHANGE_KEY_ENCRYPTION_SECRET", "k" * 32)
    monkeypatch.setenv("EXCHANGE_HOST", "127.0.0.1")  # serve hands both on to its workers there:
    monkeypatch.setenv("EXCHANGE_PORT", "0")  # set through monkeypatch, they are undone after the test
    with mock.patch("uvicorn.run") as run:
        assert CliRunner().invoke(main, ["serve", "--port", "0", "--workers", "2"]).exit_code == 0  # keys made
        monkeypatch.setenv("EXCHANGE_KEY_ENCRYPTION_SECRET", "K" * 32)
        result = CliRunner().invoke(main, ["serve", "--port", "0", "--workers", "2"])
    assert result.exit_code == 2
    assert re.fullmatch(
        r"Error: '[\w-]+' cannot be decrypted: EXCHANGE_KEY_ENCRYPTION_SECRET is not the secret it was stored with\n",
        result.output,
    )
    assert run.call_count == 1
