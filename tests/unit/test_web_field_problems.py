"""A form field's error, read back into the rule the exchange wrote it from, so that a page
says it with the form's label in its reader's language (exchange.web.field_rules)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from exchange.errors import BadUserInput, ExchangeError
from exchange.money import Currency
from exchange.pricing.promotions import PromotionTerms
from exchange.pricing.rates import RateTerms
from exchange.text import CHOSEN_ID_LENGTH
from exchange.web.field_rules import FieldProblem
from exchange.web.partner.forms import FormValues


def chosen_id_refused(value: str) -> None:
    """A promotion whose id is ``value``, checked."""
    now = datetime(2027, 1, 1, tzinfo=UTC)
    PromotionTerms(value, "fresh-mart", Decimal(10), now, now + timedelta(days=1)).check()


def problem_of(check: Callable[[], object]) -> FieldProblem:
    with pytest.raises(ExchangeError) as refused:
        check()
    return FieldProblem.of(refused.value)


@pytest.mark.parametrize(
    ("check", "rule", "values"),
    [
        (lambda: FormValues({"stock": "x"}).integer("stock"), "WHOLE_NUMBER", {"least": -(2**31), "most": 2**31 - 1}),
        (lambda: FormValues({}).required("title"), "REQUIRED", {}),
        (lambda: FormValues({"price": "5e1"}).decimal("price"), "DECIMAL", None),
        (lambda: FormValues({"a": "0001-01-01T00:00"}).moment("a", ZoneInfo("UTC")), "YEARS", None),
        (lambda: RateTerms(ratio="3:1", bonus_every=10, bonus_points=0).override(), "POSITIVE", {"got": "0"}),
        (lambda: RateTerms(ratio="three").override(), "RATIO", None),
        (lambda: RateTerms(ratio="0:1").override(), "RATIO_SIDES", None),
        (lambda: RateTerms(ratio="3:1", bonus_every=10).override(), "BONUS_PAIR", None),
        (lambda: chosen_id_refused("a b"), "CHOSEN_ID", {"least": 1, "most": CHOSEN_ID_LENGTH}),
        (lambda: chosen_id_refused("r" * 65), "CHOSEN_ID", {"least": 1, "most": CHOSEN_ID_LENGTH}),
    ],
)
def test_a_services_error_on_a_field_is_read_back_into_its_rule(
    check: Callable[[], object], rule: str, values: dict[str, object] | None
) -> None:
    problem = problem_of(check)
    assert problem.rule == rule, problem.text
    if values is not None:
        assert {name: problem.values[name] for name in values} == values


def test_a_money_amount_finer_than_the_currency_is_read_as_its_rule() -> None:
    with pytest.raises(ValueError) as refused:
        Currency("TWD", 0).to_minor(Decimal("1.5"))
    assert FieldProblem.of(BadUserInput(str(refused.value), field="price")).rule == "MINOR_UNIT"


def test_a_text_no_rule_wrote_keeps_its_field_and_words() -> None:
    problem = FieldProblem.of(BadUserInput("member tokens cannot hold partner:write", field="memberScopes"))
    assert (problem.field, problem.rule, problem.text) == (
        "memberScopes",
        None,
        "member tokens cannot hold partner:write",
    )


def test_a_rule_naming_another_field_is_not_read_as_this_ones() -> None:
    assert FieldProblem.of(BadUserInput("units is required", field="stock")).rule is None
