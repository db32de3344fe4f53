"""Every HTTP request gets an id: the caller's ``X-Request-ID`` when it is a well-formed one
(a proxy in front, or a partner tracing its own call), a new one otherwise. The answer echoes it
in ``X-Request-ID`` and every log line written while serving the request carries it, so that a
caller's report and the gateway's logs can be matched."""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.observability.logs import log_context

HEADER = "x-request-id"
#: What a caller's id may look like: a UUID, a ULID, a proxy's hex; nothing a log could trip on.
WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def request_id_from(value: str | None) -> str:
    """The caller's id if it is well-formed, else a new random one."""
    if value is not None and WELL_FORMED.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestId:
    """ASGI middleware: the request's id in the log context and in the answer's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value for name, value in scope["headers"] if name == HEADER.encode()), None)
        request_id = request_id_from(given.decode("latin-1") if given is not None else None)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        with log_context(request_id=request_id):
            await self.app(scope, receive, send_with_id)
