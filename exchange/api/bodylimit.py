"""A cap on the size of GraphQL request bodies, enforced before they are read whole.

A body whose ``Content-Length`` is over the cap is refused without reading a byte of it; a body
sent in chunks is counted as it arrives and refused once it passes the cap, so no request ever
holds more than the cap in memory. The answer is ``413`` with a GraphQL-shaped error
(``PAYLOAD_TOO_LARGE``). Larger partner files have a streamed route of their own
(:mod:`exchange.api.records`).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.api.refusals import refusal
from exchange.text import ascii_digits


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the body passed the cap."""


class BodyLimit:
    """ASGI middleware refusing bodies over ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = ascii_digits(headers.get("content-length") or "")
        if length is not None and length > self.max_bytes:
            await self._refuse(headers, scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except BodyTooLarge:
            await self._refuse(headers, scope, receive, send)

    async def _refuse(self, headers: Headers, scope: Scope, receive: Receive, send: Send) -> None:
        response = refusal(
            headers,
            413,
            f"the request body is over {self.max_bytes} bytes; send partner records that large to "
            "PUT /settlement/records/{partnerId}/{period}",
        )
        await response(scope, receive, send)
