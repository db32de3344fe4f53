"""Money as GraphQL shows it: an exact decimal string and its currency."""

from __future__ import annotations

from decimal import Decimal

import strawberry

from exchange.api.permissions import PUBLIC, authorize_fields
from exchange.money import Currency


@authorize_fields(PUBLIC)  # a value: whoever may read the field holding it may read it
@strawberry.type(description='An exact amount of money, e.g. `{amount: "12.50", currency: "TWD"}`.')
class Money:
    amount: Decimal = strawberry.field(description="Exact decimal, in the currency's major unit.")
    currency: str = strawberry.field(description="ISO 4217 code.")

    @classmethod
    def of_minor(cls, minor: int, currency: Currency) -> Money:
        return cls(amount=currency.from_minor(minor), currency=currency.code)


def replaced_by_money(replacement: str) -> str:
    """The deprecation reason of a bare-decimal field kept one release next to its ``Money`` twin."""
    return f"Use `{replacement}`: the same amount as Money, with its currency."
