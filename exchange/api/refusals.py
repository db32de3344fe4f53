"""Refusals before GraphQL runs, in GraphQL's own shape.

A request the transport refuses (a body that is not a JSON object, an unsupported content type,
a method not allowed, a body too large, …) is still answered as GraphQL over HTTP answers:
``{"errors": [{"message": …, "extensions": {"code": …}}]}`` in the media type the client
accepts, with the HTTP status that says what went wrong. Clients read ``extensions.code``
whatever failed; nobody parses plain text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from exchange.api.media import response_media_type
from exchange.errors import ErrorCode

#: The code of each status the transport refuses with.
STATUS_CODES: Mapping[int, ErrorCode] = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
}


def refusal(
    request_headers: Headers,
    status: int,
    message: str,
    *,
    code: ErrorCode | None = None,
    headers: Mapping[str, str] | None = None,
    **details: Any,
) -> JSONResponse:
    """A GraphQL-shaped error body with ``extensions.code`` (by default, the status's)."""
    extensions = {"code": (code or STATUS_CODES.get(status, ErrorCode.BAD_REQUEST)).value, **details}
    return JSONResponse(
        {"errors": [{"message": message, "extensions": extensions}]},
        status_code=status,
        headers=dict(headers or {}),
        media_type=response_media_type(request_headers),
    )
