"""Webhook errors: each an ``ExchangeError`` with its code and the field it is about."""

from __future__ import annotations

from exchange.errors import BadUserInput, ErrorCode, ExchangeError, NotFound


class BadWebhookURL(BadUserInput):
    """A subscription URL that breaks a rule; ``rule`` names which (see ``urls``)."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message, field="url", rule=rule)


class SubscriptionNotFound(NotFound):
    def __init__(self, subscription_id: str, field: str = "id") -> None:
        super().__init__(f"no webhook subscription has id {subscription_id!r}", field=field)


class DeliveryNotFound(NotFound):
    def __init__(self, delivery_id: int) -> None:
        super().__init__(
            f"this subscription has no delivered or dead-lettered delivery with id {delivery_id}", field="deliveryIds"
        )


class TooManySubscriptions(ExchangeError):
    """A subscription past the most one owner may hold: every event is delivered once per
    subscription, so without a bound one partner could multiply the exchange's deliveries (to
    any public URL) and crowd out every other partner's."""

    code = ErrorCode.LIMIT_EXCEEDED

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"at most {limit} live webhook subscriptions: delete one first", field="input", limit="subscriptions"
        )
