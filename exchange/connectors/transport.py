"""Partner calls over aiohttp's HTTP/1.1 client, behind httpx's interface.

The connectors speak httpx (requests, responses, timeouts; respx mocks them in unit tests);
this transport only changes the wire under them. httpx's own (httpcore over anyio, h11 in pure
Python) spends about 1.6 ms of CPU on a partner call where aiohttp's parser in C spends about
0.6 ms, and a member's federated view makes one call per linked partner.

What a failure means is the point of this module. The connectors must tell a call that never
reached the partner (safe to count as not made) from one whose outcome is unknown (the partner
may have applied it: ask it, or retry the same operation). aiohttp's exceptions are mapped to
httpx's with that line kept:

- no connection in time (the wait for a pooled one included): ``httpx.ConnectTimeout``;
- no connection at all (refused, unreachable, DNS, TLS handshake): ``httpx.ConnectError``;
- no answer in time once connected: ``httpx.ReadTimeout``;
- anything after the connection was made (reset, closed, a malformed answer, a body cut
  short): ``httpx.RemoteProtocolError`` or ``httpx.ReadError`` — outcome unknown.

The client session keeps no cookies (one session serves every member's calls to a partner),
follows no redirects and leaves the body as sent (:func:`decoded_body` decodes it, bounded).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator

import aiohttp
import httpx

from exchange.trust_store import trust_store

#: The most of a partner's answer read (decoded), beyond which it is a malformed answer: the
#: contract's answers (and a token endpoint's) are a few hundred bytes, and a partner answering
#: gigabytes (or a small gzip that inflates to them) must not fill the gateway's memory. Files
#: are streamed instead.
MAX_ANSWER_BYTES = 1 << 20

#: As httpx's defaults: at most 100 connections to a partner, idle ones kept 5 s.
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


def _httpx_error(error: aiohttp.ClientError, request: httpx.Request, *, reading: bool = False) -> httpx.TransportError:
    """``error`` as the httpx exception that says as much about whether the call was made."""
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(error, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(error, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if reading:
        return httpx.ReadError(message, request=request)
    return httpx.RemoteProtocolError(message, request=request)


class AnswerTooLarge(Exception):
    """An answer's body, as sent or decoded, is larger than :data:`MAX_ANSWER_BYTES`; no more of
    it was read nor inflated."""

    def __init__(self) -> None:
        super().__init__(f"answer larger than {MAX_ANSWER_BYTES} bytes")


#: The content-encodings a partner may answer in, offered as ``accept-encoding`` on every call:
#: the ones :func:`decoded_body` can inflate in bounded pieces. (httpx would offer ``br`` and
#: ``zstd`` too once their packages are installed, and its decoders inflate a chunk whole.)
ACCEPT_ENCODING = "gzip, deflate"

#: The most one step of inflating yields: a 64 KiB chunk of a gzip bomb is 64 MB inflated whole.
PIECE_BYTES = 1 << 16


class _Inflater:
    """One content-encoding (gzip or deflate) taken off a body, in pieces of at most
    :data:`PIECE_BYTES`: zlib stops there and keeps the rest of its input for the next piece."""

    def __init__(self, encoding: str) -> None:
        if encoding not in ("gzip", "deflate"):
            raise httpx.DecodingError(
                f"content-encoding {encoding!r} is not one the exchange accepts ({ACCEPT_ENCODING})"
            )
        self._encoding = encoding
        # deflate is zlib-wrapped as RFC 9110 says, or raw as some servers send it (as httpx reads it).
        self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS)
        self._started = False

    def pieces(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._zlib.eof:
                raise httpx.DecodingError(f"{self._encoding}: data after the end of the compressed body")
            try:
                piece = self._zlib.decompress(data, PIECE_BYTES)
            except zlib.error as error:
                if self._started or self._encoding != "deflate":
                    raise httpx.DecodingError(f"{self._encoding}: {error}") from error
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # not zlib-wrapped: raw, then
                self._started = True
                continue
            self._started = True
            if self._zlib.unused_data:
                raise httpx.DecodingError(f"{self._encoding}: data after the end of the compressed body")
            data = self._zlib.unconsumed_tail
            if piece:
                yield piece


def _through(inflater: _Inflater, pieces: Iterable[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from inflater.pieces(piece)


async def decoded_body(response: httpx.Response) -> AsyncIterator[bytes]:
    """``response``'s body (sent with ``stream=True``) as it arrives, its content-encodings taken
    off, in pieces of at most :data:`PIECE_BYTES` (or as the chunks arrive, unencoded).

    Read as sent and inflated here rather than by httpx's decoders, which inflate each chunk
    whole before anyone can count it. An encoding not in :data:`ACCEPT_ENCODING`, or a body
    that is not what its encoding says, raises ``httpx.DecodingError``."""
    encodings = [value.strip().lower() for value in response.headers.get("content-encoding", "").split(",")]
    # Applied in the order listed, so taken off from the last.
    inflaters = [_Inflater(encoding) for encoding in reversed(encodings) if encoding not in ("", "identity")]
    async for chunk in response.aiter_raw():
        pieces: Iterable[bytes] = [chunk]
        for inflater in inflaters:
            pieces = _through(inflater, pieces)
        for piece in pieces:
            yield piece


async def read_answer(response: httpx.Response) -> httpx.Response:
    """``response`` (sent with ``stream=True``) read whole and decoded (:func:`decoded_body`),
    then closed; or :class:`AnswerTooLarge` past :data:`MAX_ANSWER_BYTES` decoded, nothing more
    read nor inflated."""
    body = bytearray()
    try:
        async for piece in decoded_body(response):
            body += piece
            if len(body) > MAX_ANSWER_BYTES:
                raise AnswerTooLarge
    finally:
        await response.aclose()
    # Decoded already: the answer as read, without the encoding taken off nor its length.
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name not in ("content-encoding", "content-length")
    ]
    return httpx.Response(response.status_code, headers=headers, content=bytes(body), request=response.request)


class _Body(httpx.AsyncByteStream):
    """An answer's body as aiohttp receives it; its connection goes back to the pool once read."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except aiohttp.ClientError as error:
            raise _httpx_error(error, self._request, reading=True) from error

    async def aclose(self) -> None:
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One partner's connection pool, made in the event loop that first sends through it (a
    loop that ends takes its connections with it: a later loop gets a pool of its own)."""

    def __init__(self, *, limits: httpx.Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _session_for_this_loop(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=self._limits.max_connections or 0,
                keepalive_timeout=self._limits.keepalive_expiry,
                ssl=trust_store(),  # httpx's trust store, as its own transport uses
            )
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
            )
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        # aiohttp frames the body itself: a streamed one goes chunked, without httpx's header.
        headers = [(name, value) for name, value in request.headers.multi_items() if name != "transfer-encoding"]
        body: bytes | httpx.AsyncByteStream | None
        try:
            body = request.content or None
        except httpx.RequestNotRead:
            body = request.stream  # type: ignore[assignment]  # an async stream, read as sent
        try:
            response = await self._session_for_this_loop().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeouts.get("pool"),
                    sock_connect=timeouts.get("connect"),
                    sock_read=timeouts.get("read"),
                ),
            )
        except aiohttp.ClientError as error:
            raise _httpx_error(error, request) from error
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = None
