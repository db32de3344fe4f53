"""What pricing refuses."""

from __future__ import annotations

from exchange.errors import BadUserInput, ErrorCode, ExchangeError, NotFound


class LimitExceeded(ExchangeError):
    """A conversion would break a limit; says which one and how much room is left."""

    code = ErrorCode.LIMIT_EXCEEDED

    def __init__(self, message: str, *, limit: str, remaining: int, field: str = "points") -> None:
        super().__init__(message, field=field, limit=limit, remaining=remaining)
        self.limit = limit
        self.remaining = remaining


class QuoteExpired(ExchangeError):
    code = ErrorCode.QUOTE_EXPIRED


class QuoteNotFound(NotFound):
    def __init__(self, quote_id: str) -> None:
        super().__init__(f"no quote has id {quote_id!r}", field="quoteId")


class NoRate(BadUserInput):
    """No rate is in effect for the pair at the time asked."""


class ManagedByOperator(ExchangeError):
    """The pair's rate is declared in partners/*.toml; only the operator changes it."""

    code = ErrorCode.FORBIDDEN
