"""The clearing transaction a completed conversion posts to the ledger.

Points: the source program's members lose ``points_in`` (the program redeemed them); the
target program issues ``points_out`` to its member. Money: the source owes the money value;
the target is owed that value less the fee; the exchange earns the fee. Each unit sums to
zero, so nothing is created or lost in the ledger's own arithmetic.

A conversion through the coalition point posts one such transaction per leg (A → coalition,
then coalition → B), each with its own money value and fee: the coalition point issues the
points the first leg pays out and redeems them in the second, so the member holds none after
it, and its clearing account keeps what the first leg brought in less what the second paid.
"""

from __future__ import annotations

from datetime import datetime

from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Leg, TransactionRequest

KIND = "conversion"


def conversion_transaction(
    *,
    chart: ChartOfAccounts,
    transaction_id: str,
    conversion_id: str,
    source: str,
    target: str,
    points_in: int,
    points_out: int,
    money_value_minor: int,
    fee_minor: int,
    effective_at: datetime,
) -> TransactionRequest:
    legs = [
        Leg(chart.member_points(source), -points_in),
        Leg(chart.redeemed(source), points_in),
        Leg(chart.issued(target), -points_out),
        Leg(chart.member_points(target), points_out),
        Leg(chart.clearing(source), -money_value_minor),
        Leg(chart.clearing(target), money_value_minor - fee_minor),
        Leg(chart.fees(), fee_minor),
    ]
    return TransactionRequest.of_formula(
        id=transaction_id, kind=KIND, reference=f"conversion:{conversion_id}", effective_at=effective_at, legs=legs
    )
