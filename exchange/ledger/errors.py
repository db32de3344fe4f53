"""What the ledger refuses."""

from __future__ import annotations

from datetime import datetime

from exchange.errors import BadUserInput, ErrorCode, ExchangeError, NotFound


class UnbalancedTransaction(BadUserInput):
    """The legs of a transaction do not sum to zero in some unit, or are malformed."""


class AlreadyReversed(ExchangeError):
    def __init__(self, transaction_id: str, reversed_by: str) -> None:
        super().__init__(
            f"transaction {transaction_id!r} was already reversed by {reversed_by!r}",
            field="reverses",
            reversedBy=reversed_by,
        )


class UnknownTransaction(NotFound):
    def __init__(self, transaction_id: str, *, field: str = "id") -> None:
        super().__init__(f"no ledger transaction has id {transaction_id!r}", field=field)


class InvalidPeriod(BadUserInput):
    """Not the name of a settlement period of the coalition's calendar."""

    def __init__(self, message: str, *, field: str = "period") -> None:
        super().__init__(message, field=field)


class PeriodNotOver(BadUserInput):
    def __init__(self, period: str, ends_at: datetime) -> None:
        super().__init__(
            f"period {period} is not over: it ends at {ends_at.isoformat()}; close it after then",
            field="period",
            endsAt=ends_at.isoformat(),
        )


class NothingToClose(BadUserInput):
    """A period nothing was ever posted into, before one that closed: it counts as closed
    already (it has no statements, no positions, nothing to settle)."""

    def __init__(self, period: str, last_closed: str) -> None:
        super().__init__(
            f"period {period} counts as closed already: nothing was posted into it, and {last_closed}, after it, "
            "has closed; there is nothing to close or settle",
            field="period",
        )


class PeriodNotClosed(ExchangeError):
    """The operation needs a period closed first: this one, or an earlier one."""

    code = ErrorCode.PERIOD_NOT_CLOSED

    def __init__(self, message: str, *, period: str, field: str | None = "period") -> None:
        super().__init__(message, field=field, period=period)
