"""One partner's wire: its HTTP client, token, circuit breaker and retries.

Both connector flavours (REST and GraphQL) send through a :class:`PartnerClient`; they only
say what to send and how to read the answer. Everything about failure lives here, once:
classifying what went wrong into the three kinds of :mod:`exchange.connectors.errors`,
refetching the token once after a 401, the per-attempt deadline, the breaker, and retries.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import httpx
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ValidationError

from exchange.connectors.breaker import BreakerState, CircuitBreaker
from exchange.connectors.errors import (
    REFUSED,
    CircuitOpen,
    OperationConflict,
    OutcomeUnknown,
    PartnerAuthenticationFailed,
    PartnerConnectionLost,
    PartnerConnectTimeout,
    PartnerError,
    PartnerProtocolError,
    PartnerRefusal,
    PartnerServerError,
    PartnerTimeout,
    PartnerUnavailable,
    PartnerUnreachable,
    transport_failure,
)
from exchange.connectors.retry import RetryPolicy, worth_retrying
from exchange.connectors.tokens import TokenCache
from exchange.connectors.transport import AnswerTooLarge, decoded_body, read_answer
from exchange.observability.metrics import observe_partner_call, set_breaker_open
from exchange.observability.tracing import inject_trace_context, span
from exchange.text import json_value

logger = logging.getLogger("exchange.connectors")

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing it is sent."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


@lru_cache(maxsize=1024)
def _parsed_url(url: str) -> httpx.URL:
    """``url`` parsed, kept for the 1,024 URLs called last: parsing is half of what making an
    ``httpx.Request`` costs, and a URL is immutable, so requests may share one. A GraphQL
    partner's calls share one URL; a REST partner's name the member in theirs, so a member's
    next call finds it while it is among the recent ones."""
    return httpx.URL(url)


class CookielessClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that neither keeps nor sends cookies.

    One client serves every member's calls to a partner, so a cookie set in the answer to one
    member's call must never ride along on the next member's. (It also spares the jar's
    bookkeeping on every answer, about a fifth of httpx's time per call.)
    """

    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()  # empty, and a new one each time: nothing set on it can stay

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("a partner client keeps no cookies")


@dataclass(frozen=True)
class HttpRequest:
    """``content``: instead of ``json``, a body made afresh for every attempt (a file, streamed),
    of ``media_type``; ``timeout``: the whole exchange's limit, if not the connector's."""

    method: str
    url: str
    json: Any = None
    content: Callable[[], AsyncIterator[bytes]] | None = None
    media_type: str | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class CallInfo:
    """What is being called, for errors, logs and the retry rule."""

    name: str
    write: bool
    operation_id: str | None = None


@dataclass(frozen=True)
class Reply:
    """A partner's HTTP answer, with helpers that turn a bad one into the right error."""

    response: httpx.Response
    program_id: str
    call: CallInfo

    def error(self, kind: type[PartnerError], detail: str) -> PartnerError:
        return kind(
            f"partner {self.program_id}: {self.call.name}: {detail}",
            program_id=self.program_id,
            call=self.call.name,
            operation_id=self.call.operation_id,
        )

    def refusal(self, kind: type[PartnerRefusal], detail: str, facts: dict[str, Any]) -> PartnerRefusal:
        return kind(
            REFUSED.format(program=self.program_id, call=self.call.name, detail=detail),
            program_id=self.program_id,
            call=self.call.name,
            operation_id=self.call.operation_id,
            facts=facts,
        )

    async def lines(self, longest: int) -> AsyncIterator[str]:
        """The body's lines as they arrive (a streamed reply), without their ``\n`` or ``\r\n``.
        A line longer than ``longest`` characters is a protocol error as soon as it is (a
        partner's endless line is not read whole); a broken stream is the connection lost."""
        number = 0
        pending = ""
        text_of = codecs.getincrementaldecoder(self.response.encoding or "utf-8")(errors="replace")
        try:
            async for piece in decoded_body(self.response):
                text = text_of.decode(piece)
                *complete, pending = (pending + text).split("\n")
                for line in complete:
                    number += 1
                    self._within(line, number, longest)
                    yield line.removesuffix("\r")
                self._within(pending, number + 1, longest)
        except httpx.TransportError as exc:
            raise transport_failure(
                PartnerConnectionLost,
                f"partner {self.program_id}: {self.call.name}: the connection broke",
                exc,
                program_id=self.program_id,
                call=self.call.name,
                operation_id=self.call.operation_id,
            ) from exc
        pending += text_of.decode(b"", final=True)
        if pending:
            yield pending.removesuffix("\r")

    def _within(self, line: str, number: int, longest: int) -> None:
        if len(line) > longest:
            raise self.error(PartnerProtocolError, f"line {number}: longer than {longest} characters")

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or a protocol error (JSON nested too deeply included)."""
        try:
            body = json_value(self.response.content)
        except ValueError:
            raise self.error(PartnerProtocolError, f"answer ({self.response.status_code}) is not JSON") from None
        if not isinstance(body, dict):
            raise self.error(PartnerProtocolError, "answer is not a JSON object")
        return body

    def parse(self, model: type[M], data: Any) -> M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise self.error(PartnerProtocolError, f"malformed {model.__name__}: {where}: {first['msg']}") from None


class PartnerClient:
    def __init__(
        self,
        *,
        program_id: str,
        http: httpx.AsyncClient,
        tokens: TokenCache,
        breaker: CircuitBreaker,
        retry: RetryPolicy,
        timeout: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.program_id = program_id
        self.breaker = breaker
        self._http = http
        self._tokens = tokens
        self._retry = retry
        self._timeout = timeout
        self._sleep = sleep
        # What every request carries, worked out once (see _prepared).
        self._headers = [(name, value) for name, value in http.headers.multi_items() if name != "accept"]
        self._headers.append(("accept", "application/json"))
        self._extensions = {"timeout": http.timeout.as_dict()}

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(self, info: CallInfo, request: HttpRequest, decode: Callable[[Reply], T]) -> T:
        """Send ``request`` (retrying as :mod:`~exchange.connectors.retry` says); decode the answer."""
        uncertain: OutcomeUnknown | None = None
        for attempt in range(1, self._retry.attempts + 1):
            try:
                return await self._attempt(info, request, decode)
            except PartnerError as error:
                if info.write and isinstance(error, OutcomeUnknown):
                    uncertain = error
                if attempt == self._retry.attempts or not worth_retrying(error):
                    if uncertain is not None and isinstance(error, PartnerUnavailable | OperationConflict):
                        # An earlier attempt may have been applied: that knowledge wins. A
                        # conflict says so outright: the partner holds another request under
                        # the exchange's own id, which the earlier attempt, applied otherwise
                        # than sent, may be; only the partner's record can tell.
                        raise type(uncertain)(
                            f"{uncertain.message}; then: {error.message}",
                            program_id=self.program_id,
                            call=info.name,
                            operation_id=info.operation_id,
                        ) from error
                    raise
                delay = self._retry.delay(attempt)
                logger.warning(
                    "partner %s: %s %s: attempt %d failed (%s); retrying in %.3fs",
                    self.program_id,
                    info.name,
                    info.operation_id or "",
                    attempt,
                    error.message,
                    delay,
                )
                await self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _attempt(self, info: CallInfo, request: HttpRequest, decode: Callable[[Reply], T]) -> T:
        if not self.breaker.allow():
            raise CircuitOpen(
                f"partner {self.program_id} is failing; calls are held back until it recovers",
                program_id=self.program_id,
                call=info.name,
                operation_id=info.operation_id,
            )
        started = time.perf_counter()
        attempt = span(
            f"partner {self.program_id} {info.name}",
            kind=SpanKind.CLIENT,
            attributes={"exchange.program": self.program_id, "exchange.partner.call": info.name},
        )
        try:
            with attempt:
                result = await self._exchange(info, request, decode)
        except PartnerRefusal:
            self.breaker.record_success()  # a clear "no" is a healthy partner
            self._observe(info, "refused", started)
            raise
        except PartnerError as error:
            self.breaker.record_failure()
            self._observe(info, "unknown" if isinstance(error, OutcomeUnknown) else "unavailable", started)
            raise
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.record_success()
        self._observe(info, "ok", started)
        return result

    def _observe(self, info: CallInfo, outcome: str, started: float) -> None:
        """The attempt's latency and outcome, and the breaker's state after it, as metrics."""
        observe_partner_call(self.program_id, info.name, outcome, started)
        set_breaker_open(self.program_id, self.breaker.state is not BreakerState.CLOSED)

    async def _exchange(self, info: CallInfo, request: HttpRequest, decode: Callable[[Reply], T]) -> T:
        token = await self._tokens.get()
        response = await self._send(info, request, token)
        if response.status_code == 401:
            # Expired early or revoked (the partner restarted, say): one fresh token, one resend.
            # Safe for writes: a 401 means the partner did nothing with the request.
            self._tokens.invalidate(token)
            token = await self._tokens.get()
            response = await self._send(info, request, token)
        reply = Reply(response=response, program_id=self.program_id, call=info)
        if response.status_code in (401, 403):
            raise reply.error(PartnerAuthenticationFailed, f"the partner refused the token ({response.status_code})")
        if response.status_code >= 500:
            raise reply.error(PartnerServerError, f"the partner answered {response.status_code}")
        return decode(reply)

    def _prepared(self, request: HttpRequest, token: str) -> httpx.Request:
        """``request`` as httpx sends it, built directly: a partner call needs none of the
        client's merging per request (base URL, parameters, cookies), about a fifth of its time
        in httpx — only the client's default headers, the token, a JSON body, and the client's
        timeouts (which tell a connection that never came from an answer that never came)."""
        headers = [*self._headers, ("authorization", f"Bearer {token}")]
        trace: dict[str, str] = {}
        inject_trace_context(trace)  # the partner may continue the trace
        headers.extend(trace.items())
        content: bytes | AsyncIterator[bytes] | None = None
        if request.json is not None:
            content = json.dumps(request.json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            headers.append(("content-type", "application/json"))
        elif request.content is not None:
            content = request.content()
            headers.append(("content-type", request.media_type or "application/octet-stream"))
        return httpx.Request(
            request.method, _parsed_url(request.url), headers=headers, content=content, extensions=self._extensions
        )

    @asynccontextmanager
    async def streamed(self, info: CallInfo, request: HttpRequest) -> AsyncIterator[Reply]:
        """Send ``request`` once and yield its reply with the body unread, to be read as it
        arrives (``reply.lines()``): a file. No retry — a download is asked for again at the
        next pass — but a fresh token after a 401, as for every call."""
        token = await self._tokens.get()
        response = await self._send(info, request, token, stream=True)
        try:
            if response.status_code == 401:
                await response.aclose()
                self._tokens.invalidate(token)
                token = await self._tokens.get()
                response = await self._send(info, request, token, stream=True)
            reply = Reply(response=response, program_id=self.program_id, call=info)
            if response.status_code in (401, 403):
                raise reply.error(
                    PartnerAuthenticationFailed, f"the partner refused the token ({response.status_code})"
                )
            if response.status_code >= 500:
                raise reply.error(PartnerServerError, f"the partner answered {response.status_code}")
            yield reply
        finally:
            await response.aclose()

    async def _send(self, info: CallInfo, request: HttpRequest, token: str, *, stream: bool = False) -> httpx.Response:
        def error(kind: type[PartnerError], detail: str, cause: BaseException) -> PartnerError:
            return transport_failure(
                kind,
                f"partner {self.program_id}: {info.name}: {detail}",
                cause,
                program_id=self.program_id,
                call=info.name,
                operation_id=info.operation_id,
            )

        try:
            # The deadline covers the whole answer, so a body that trickles in cannot stall us.
            async with asyncio.timeout(request.timeout or self._timeout):
                response = await self._http.send(self._prepared(request, token), stream=True)
                return response if stream else await self._read(info, response)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise error(PartnerConnectTimeout, "no connection in time", exc) from exc
        except httpx.ConnectError as exc:
            raise error(PartnerUnreachable, "cannot connect", exc) from exc
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise error(PartnerTimeout, f"no answer within {self._timeout}s", exc) from exc
        except httpx.TransportError as exc:
            raise error(PartnerConnectionLost, "the connection broke", exc) from exc
        except httpx.DecodingError as exc:  # no transport error: the answer came, undecodable
            raise error(PartnerProtocolError, "answer cannot be decoded as its content-encoding says", exc) from exc

    async def _read(self, info: CallInfo, response: httpx.Response) -> httpx.Response:
        """``response`` read whole (:func:`read_answer`); one too large is a protocol error."""
        try:
            return await read_answer(response)
        except AnswerTooLarge as exc:
            raise Reply(response=response, program_id=self.program_id, call=info).error(
                PartnerProtocolError, str(exc)
            ) from exc
