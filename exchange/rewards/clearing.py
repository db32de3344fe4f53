"""The clearing transaction a paid redemption posts to the ledger.

Points: the paying program's members lose the points (the program redeemed them). Money:
the paying program owes the price and the fee; the publishing partner is owed the price;
the exchange earns the fee. A cancelled or undelivered redemption posts the exact negation
(``Ledger.reverse``).
"""

from __future__ import annotations

from datetime import datetime

from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Leg, TransactionRequest

KIND = "redemption"
REVERSAL_KIND = "redemption-reversal"


def redemption_transaction(
    *,
    chart: ChartOfAccounts,
    transaction_id: str,
    redemption_id: str,
    paying: str,
    publisher: str,
    points: int,
    price_minor: int,
    fee_minor: int,
    effective_at: datetime,
) -> TransactionRequest:
    legs = [
        Leg(chart.member_points(paying), -points),
        Leg(chart.redeemed(paying), points),
        Leg(chart.clearing(paying), -(price_minor + fee_minor)),
        Leg(chart.clearing(publisher), price_minor),
        Leg(chart.fees(), fee_minor),
    ]
    return TransactionRequest.of_formula(
        id=transaction_id, kind=KIND, reference=f"redemption:{redemption_id}", effective_at=effective_at, legs=legs
    )
