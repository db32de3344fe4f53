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


class QuoteTiersChanged(QuoteExpired):
    """The tiers that earned a quote's tier bonus changed after it was priced: the member
    unlinked an account (whose tier may have been the one that counted), or a status match
    ended. The quote is as good as expired; a new one prices the level the member holds now."""

    def __init__(self, quote_id: str, level: int, bonus_points: int) -> None:
        super().__init__(
            f"quote {quote_id} priced a tier bonus of {bonus_points:,} points on coalition level {level}, "
            "and the member's tiers have changed since (an account unlinked, or a status match ended); "
            "ask for a new one",
            field="quoteId",
            reason="TIERS_CHANGED",
        )


class QuoteNotFound(NotFound):
    def __init__(self, quote_id: str) -> None:
        super().__init__(f"no quote has id {quote_id!r}", field="quoteId")


class NoRate(BadUserInput):
    """No rate is in effect for the pair at the time asked."""


class ManagedByOperator(ExchangeError):
    """The pair's rate is declared in partners/*.toml; only the operator changes it."""

    code = ErrorCode.FORBIDDEN
