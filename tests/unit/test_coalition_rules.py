"""The coalition point's pure rules: what a lot's value is, and who is paid an expiry's breakage."""

from __future__ import annotations

from decimal import Decimal
from zoneinfo import ZoneInfo

from exchange.coalition.expiry import breakage_legs
from exchange.coalition.rules import PointRules
from exchange.ledger.accounts import ChartOfAccounts
from exchange.money import Currency
from exchange.programs.declarations import BreakageKeeper

CHART = ChartOfAccounts("TWD")


def rules(breakage: BreakageKeeper, value: str = "0.333") -> PointRules:
    return PointRules("coalition", Decimal(value), Currency("TWD", 2), ZoneInfo("Asia/Taipei"), breakage.value)


def test_a_lots_value_rounds_half_even_to_the_minor_unit() -> None:
    assert rules(BreakageKeeper.OPERATOR, "0.005").value_minor(1) == 0  # 0.005 → 0.00 (half to even)
    assert rules(BreakageKeeper.OPERATOR, "0.005").value_minor(3) == 2  # 0.015 → 0.02
    assert rules(BreakageKeeper.OPERATOR, "1").value_minor(12_345) == 1_234_500


def test_the_operator_keeps_all_breakage_when_it_is_declared_so() -> None:
    legs = breakage_legs(rules(BreakageKeeper.OPERATOR), CHART, {"fresh-mart": 100, None: 50, "wallet-pay": 1})
    assert [(leg.account.code, leg.amount) for leg in legs] == [
        ("partner-clearing:coalition", -5028),  # 151 × 0.333 = 50.283
        ("coalition-breakage", 5028),
    ]


def test_funding_partners_get_back_their_lots_value_and_the_operator_what_nobody_funded() -> None:
    legs = breakage_legs(rules(BreakageKeeper.FUNDING_PARTNERS), CHART, {"fresh-mart": 100, None: 50, "wallet-pay": 1})
    amounts = {leg.account.code: leg.amount for leg in legs}
    assert amounts == {
        "partner-clearing:coalition": -(3330 + 1665 + 33),
        "coalition-breakage": 1665,  # 50 × 0.333 = 16.65
        "partner-clearing:fresh-mart": 3330,
        "partner-clearing:wallet-pay": 33,  # 0.333 → 0.33
    }
    assert sum(amounts.values()) == 0
