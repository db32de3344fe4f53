from datetime import UTC, datetime

from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Leg, TransactionRequest, check_balanced


def test_a_formulas_zero_legs_are_left_out_so_the_ledger_takes_it() -> None:
    chart = ChartOfAccounts("TWD")
    request = TransactionRequest.of_formula(
        id="t",
        kind="redemption",
        reference="redemption:r",
        effective_at=datetime(2026, 11, 20, tzinfo=UTC),
        legs=[Leg(chart.clearing("a"), -100), Leg(chart.clearing("b"), 100), Leg(chart.fees(), 0)],
    )
    assert request.legs == (Leg(chart.clearing("a"), -100), Leg(chart.clearing("b"), 100))
    check_balanced(request)
