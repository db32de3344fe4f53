"""What conversions refuse."""

from __future__ import annotations

from exchange.errors import BadUserInput, NotFound


class ConversionNotFound(NotFound):
    def __init__(self, conversion_id: str) -> None:
        super().__init__(f"no conversion has id {conversion_id!r}", field="id")


class QuoteAlreadyExecuted(BadUserInput):
    def __init__(self, quote_id: str, conversion_id: str) -> None:
        super().__init__(
            f"quote {quote_id} was already executed as conversion {conversion_id}; ask for a new quote",
            field="quoteId",
            conversionId=conversion_id,
        )
