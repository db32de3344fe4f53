"""What trace context callers sent: the sandbox keeps the ``traceparent`` header (W3C Trace
Context) of the latest contract requests, so that a test can see that the exchange carries its
trace on to the partner. A real partner would continue the trace; the sandbox only remembers."""

from __future__ import annotations

from collections import deque
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

KEPT = 1000


class TraceHeaders:
    """The latest requests' method, path and ``traceparent`` (``None``: none was sent)."""

    def __init__(self) -> None:
        self.seen: deque[dict[str, Any]] = deque(maxlen=KEPT)

    def middleware(self, app: ASGIApp, *, ignored_prefix: str) -> ASGIApp:
        async def record(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and not scope["path"].startswith(ignored_prefix):
                headers = dict(scope["headers"])
                traceparent = headers.get(b"traceparent")
                self.seen.append(
                    {
                        "method": scope["method"],
                        "path": scope["path"],
                        "traceparent": traceparent.decode("latin-1") if traceparent is not None else None,
                    }
                )
            await app(scope, receive, send)

        return record
