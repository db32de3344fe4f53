"""Which leg of a money transaction is its hub, and which counterparty each leg records."""

from __future__ import annotations

from datetime import UTC, datetime

from exchange.conversions.clearing import conversion_transaction
from exchange.ledger.accounts import AccountRef, ChartOfAccounts
from exchange.ledger.posting import Leg, TransactionRequest
from exchange.ledger.stars import hub_positions

TWD = ChartOfAccounts("TWD")
USD = ChartOfAccounts("USD")
A, B, C = TWD.clearing("a"), TWD.clearing("b"), TWD.clearing("c")


def counterparties(legs: list[Leg]) -> list[AccountRef | None]:
    """Each leg's counterparty: its hub's account."""
    request = TransactionRequest("t", "adjustment", "x", datetime(2026, 11, 20, tzinfo=UTC), tuple(legs))
    return [None if hub is None else legs[hub].account for hub in hub_positions(request)]


def named(*legs: tuple[AccountRef, int]) -> list[AccountRef | None]:
    return counterparties([Leg(account, amount) for account, amount in legs])


def test_a_single_debtor_is_the_hub_of_every_creditor() -> None:
    assert named((B, 70), (A, -100), (C, 30)) == [A, None, A]


def test_a_single_creditor_is_the_hub_of_every_debtor() -> None:
    assert named((B, -70), (C, -30), (A, 100)) == [A, A, None]


def test_with_one_leg_on_each_side_the_negative_leg_is_the_hub() -> None:
    assert named((A, 50), (B, -50)) == [B, None]


def test_a_spoke_on_the_hubs_own_account_names_that_account() -> None:
    assert named((A, -100), (A, 30), (B, 70)) == [None, A, A]


def test_each_money_unit_has_its_own_hub_and_points_legs_have_none() -> None:
    conversion = conversion_transaction(
        chart=TWD,
        transaction_id="t",
        conversion_id="c",
        source="a",
        target="b",
        points_in=500,
        points_out=200,
        money_value_minor=1000,
        fee_minor=20,
        effective_at=datetime(2026, 11, 20, tzinfo=UTC),
    )
    legs = [*conversion.legs, Leg(USD.clearing("a"), 5), Leg(USD.clearing("c"), -5)]
    assert [leg.account.unit for leg in legs[:4]] == ["PTS:a", "PTS:a", "PTS:b", "PTS:b"]
    assert counterparties(legs) == [None, None, None, None, None, A, A, USD.clearing("c"), None]
