"""A promotion's id is its partner's own: named within its program, it neither blocks another
partner's id nor tells that partner it exists (promotions are readable by their program only)."""

from __future__ import annotations

import pytest

from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.api.conftest import ON_SQLITE_TOO

PROMOTE = """mutation($program: ID!, $percent: Decimal!) {
  createPromotion(input: {programId: $program, id: "spring", bonusPercent: $percent,
    startsAt: "2026-01-01T00:00:00Z", endsAt: "2099-01-01T00:00:00Z"}) { id programId bonusPercent } }"""
END = """mutation($program: ID!) { endPromotion(programId: $program, id: "spring") { programId endsAt } }"""
PROMOTIONS = """query($program: ID!) { program(id: $program) { promotions { id bonusPercent endsAt } } }"""


@pytest.fixture
def gateway_settings(store_settings: Settings) -> Settings:
    return store_settings


@ON_SQLITE_TOO
async def test_two_partners_each_have_a_promotion_of_the_same_id(kit: ExchangeKit) -> None:
    fresh_mart, wallet_pay = await kit.partner_token("fresh-mart"), await kit.partner_token("wallet-pay")
    await kit.data(PROMOTE, fresh_mart, program="fresh-mart", percent="10")

    # Another partner's "spring" is no conflict: keyed by the id alone, this was
    # IDEMPOTENCY_CONFLICT "promotion id 'spring' is taken by other terms".
    ours = await kit.data(PROMOTE, wallet_pay, program="wallet-pay", percent="5")
    assert ours["createPromotion"] == {"id": "spring", "programId": "wallet-pay", "bonusPercent": "5"}
    assert await kit.data(PROMOTE, wallet_pay, program="wallet-pay", percent="5") == ours  # a repeat: the same

    ended = (await kit.data(END, wallet_pay, program="wallet-pay"))["endPromotion"]
    assert ended["programId"] == "wallet-pay"
    (theirs,) = (await kit.data(PROMOTIONS, fresh_mart, program="fresh-mart"))["program"]["promotions"]
    assert theirs == {"id": "spring", "bonusPercent": "10", "endsAt": "2099-01-01T00:00:00+00:00"}
    (own,) = (await kit.data(PROMOTIONS, wallet_pay, program="wallet-pay"))["program"]["promotions"]
    assert own["endsAt"] == ended["endsAt"]


ENDED = """mutation($program: ID!, $percent: Decimal!, $endsAt: DateTime!) {
  createPromotion(input: {programId: $program, id: "spring", bonusPercent: $percent,
    startsAt: "2026-01-01T00:00:00Z", endsAt: $endsAt}) { id bonusPercent endsAt } }"""


@ON_SQLITE_TOO
async def test_the_request_that_made_a_promotion_ended_since_answers_it_ended_and_another_is_a_conflict(
    kit: ExchangeKit,
) -> None:
    token = await kit.partner_token("wallet-pay")
    made = {"program": "wallet-pay", "percent": "5", "endsAt": "2099-01-01T00:00:00Z"}
    await kit.data(ENDED, token, **made)
    ended = (await kit.data(END, token, program="wallet-pay"))["endPromotion"]["endsAt"]
    assert ended != "2099-01-01T00:00:00+00:00"

    again = (await kit.data(ENDED, token, **made))["createPromotion"]  # a retry after a lost answer
    assert again == {"id": "spring", "bonusPercent": "5", "endsAt": ended}
    for other in ({**made, "percent": "6"}, {**made, "endsAt": "2098-01-01T00:00:00Z"}):
        (error,) = (await kit.graphql(ENDED, token, **other)).json()["errors"]
        assert (error["extensions"]["code"], error["extensions"]["field"]) == ("IDEMPOTENCY_CONFLICT", "input.id")
