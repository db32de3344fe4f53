"""The exchange's domain errors and the closed list of codes clients may see.

Domain packages raise subclasses of :class:`ExchangeError`; the API maps them to GraphQL
errors in one place (``exchange.api.errors``). Anything that is not an ``ExchangeError`` is
unexpected: it is logged with its trace and reaches the client as an opaque error.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Every value of ``extensions.code`` a client can receive."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    QUOTE_EXPIRED = "QUOTE_EXPIRED"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    INSUFFICIENT_POINTS = "INSUFFICIENT_POINTS"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    AUTHORITY_REQUIRED = "AUTHORITY_REQUIRED"
    PARTNER_UNAVAILABLE = "PARTNER_UNAVAILABLE"
    PARTNER_REFUSED = "PARTNER_REFUSED"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    PERIOD_CLOSED = "PERIOD_CLOSED"
    MATCH_NOT_GRANTED = "MATCH_NOT_GRANTED"
    MATCH_TOO_SOON = "MATCH_TOO_SOON"
    TIER_NOT_VERIFIED = "TIER_NOT_VERIFIED"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    REWARD_UNAVAILABLE = "REWARD_UNAVAILABLE"
    TIER_TOO_LOW = "TIER_TOO_LOW"
    PERIOD_NOT_CLOSED = "PERIOD_NOT_CLOSED"
    UNRESOLVED_BREAKS = "UNRESOLVED_BREAKS"
    #: Membership validation at linking (``exchange.members.validation``).
    NAME_MISMATCH = "NAME_MISMATCH"
    ACCOUNT_INACTIVE = "ACCOUNT_INACTIVE"
    ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"
    ACCOUNT_NOT_ACTIVATED = "ACCOUNT_NOT_ACTIVATED"
    TIER_NOT_ALLOWED = "TIER_NOT_ALLOWED"
    #: Risk gates of a conversion or a redemption (``exchange.risk``).
    VELOCITY_EXCEEDED = "VELOCITY_EXCEEDED"
    COOLING_PERIOD = "COOLING_PERIOD"
    NOT_HELD = "NOT_HELD"
    PRICE_CHANGED = "PRICE_CHANGED"
    #: Unlinking an account one of its rules keeps linked (``exchange.unlinking``).
    UNLINK_REFUSED = "UNLINK_REFUSED"
    #: A partner's word on a write the exchange has not yet heard it answer (``exchange.sagas``).
    NOT_WAITING_YET = "NOT_WAITING_YET"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    #: The transport refused the request before GraphQL ran (see ``exchange.api.refusals``).
    BAD_REQUEST = "BAD_REQUEST"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


#: The HTTP status of a refusal answered outside GraphQL (file routes, web pages) when it is
#: not 400: GraphQL answers 200 with ``extensions.code``, plain HTTP needs a status too.
_HTTP_STATUSES = {
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.PERIOD_CLOSED: 409,
    ErrorCode.PERIOD_NOT_CLOSED: 409,
    ErrorCode.UNRESOLVED_BREAKS: 409,
    ErrorCode.IDEMPOTENCY_CONFLICT: 409,
    ErrorCode.NOT_HELD: 409,
    ErrorCode.NOT_WAITING_YET: 409,
    ErrorCode.UNLINK_REFUSED: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
}


def http_status(code: ErrorCode) -> int:
    """The HTTP status a refusal with ``code`` answers with over plain HTTP."""
    return _HTTP_STATUSES.get(code, 400)


class ExchangeError(Exception):
    """An expected failure with a client-facing code, message and (optionally) field.

    ``field`` names the input the error is about by its request's own name for it, in the
    public API's spelling (``points``, ``toProgram``, ``adjustment.amount``); the GraphQL layer
    turns it into the path of the argument as the client wrote it (``input.points``).
    ``details`` carries extra machine-readable facts (such as the room left under a limit)
    that become ``extensions`` entries.
    """

    code: ErrorCode = ErrorCode.BAD_USER_INPUT

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def extensions(self) -> dict[str, Any]:
        """The GraphQL ``extensions`` object for this error."""
        extensions: dict[str, Any] = {"code": self.code.value}
        if self.field is not None:
            extensions["field"] = self.field
        extensions.update(self.details)
        return extensions


class BadUserInput(ExchangeError):
    """The request is malformed or breaks a rule about its own values."""

    code = ErrorCode.BAD_USER_INPUT


class NotFound(ExchangeError):
    """The named object does not exist (or is not visible to the caller)."""

    code = ErrorCode.NOT_FOUND


class IdempotencyConflict(ExchangeError):
    """A client-chosen id was used before for a different request."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT


class Unauthenticated(ExchangeError):
    """The caller presented no valid access token where one is needed."""

    code = ErrorCode.UNAUTHENTICATED


class Forbidden(ExchangeError):
    """The caller's token lacks the scope, or the data belongs to another tenant."""

    code = ErrorCode.FORBIDDEN


#: What a command stopped by Ctrl-C says on standard error, whenever it came (while the command
#: was still importing its modules, or later), and its exit status: 130, as a shell reports a
#: command SIGINT ended.
INTERRUPTED = "interrupted (Ctrl-C) before the command finished"
INTERRUPTED_STATUS = 130


class ConfigurationError(Exception):
    """The exchange is set up wrong (settings, database, files); an operator must act.

    Never shown to API clients: it stops a command or the server from starting.
    """
