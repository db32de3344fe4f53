"""One rule for every create that takes an id its client chooses: the same request again
answers what the first made; another request under that id is IDEMPOTENCY_CONFLICT naming the
id, as for the idempotency keys of conversions, redemptions and status matches."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.api.conftest import ON_SQLITE_TOO

PUBLISH = """mutation($program: ID!, $input: PublishRewardInput!) {
  publishReward(programId: $program, input: $input) { id programId title stock settlementPrice { amount } } }"""
PROMOTE = """mutation($input: PromotionInput!) { createPromotion(input: $input) { id programId bonusPercent } }"""
MUG = {"id": "fm-mug", "title": "A mug", "price": "100", "stock": 5, "availableUntil": "2099-01-01T00:00:00Z"}
SPRING = {
    "programId": "fresh-mart",
    "id": "spring",
    "bonusPercent": "10",
    "startsAt": "2026-01-01T00:00:00Z",
    "endsAt": "2099-01-01T00:00:00Z",
}


@pytest.fixture
def gateway_settings(store_settings: Settings) -> Settings:
    return store_settings


def refusal(body: dict[str, Any]) -> tuple[str, str, str]:
    [error] = body["errors"]
    return error["path"][0], error["extensions"]["code"], error["extensions"]["field"]


@ON_SQLITE_TOO
async def test_publishing_a_reward_again_answers_it_and_other_terms_under_its_id_conflict(kit: ExchangeKit) -> None:
    token = await kit.partner_token("fresh-mart")
    first = (await kit.data(PUBLISH, token, program="fresh-mart", input=MUG))["publishReward"]
    assert first == {
        "id": "fm-mug",
        "programId": "fresh-mart",
        "title": "A mug",
        "stock": 5,
        "settlementPrice": {"amount": "100.00"},
    }
    # The same request after redemptions took some of its stock: the reward as it stands now, not a
    # conflict with the stock it was published with.
    async with kit.db.transaction() as session:
        await session.exec(text("UPDATE reward SET stock = 3 WHERE id = 'fm-mug'"))  # type: ignore[call-overload]
    again = (await kit.data(PUBLISH, token, program="fresh-mart", input={**MUG, "price": "100.00"}))["publishReward"]
    assert again == {**first, "stock": 3}

    for other in ({"stock": 6}, {"title": "A cup"}, {"availableUntil": None}, {"minLevel": 1}):
        body = (await kit.graphql(PUBLISH, token, program="fresh-mart", input={**MUG, **other})).json()
        assert refusal(body) == ("publishReward", "IDEMPOTENCY_CONFLICT", "input.id"), other
        assert body["errors"][0]["message"] == "reward id 'fm-mug' is taken by another reward"
    # Reward ids are the catalog's (public): another program's request under it conflicts too.
    theirs = await kit.graphql(PUBLISH, await kit.partner_token("wallet-pay"), program="wallet-pay", input=MUG)
    assert refusal(theirs.json()) == ("publishReward", "IDEMPOTENCY_CONFLICT", "input.id")
    listed = (await kit.data("{ rewards(availableOnly: false) { id programId stock } }"))["rewards"]
    assert [reward for reward in listed if reward["id"] == "fm-mug"] == [
        {"id": "fm-mug", "programId": "fresh-mart", "stock": 3}
    ]


async def test_creating_a_promotion_again_answers_it_and_other_terms_under_its_id_conflict(kit: ExchangeKit) -> None:
    token = await kit.partner_token("fresh-mart")
    first = (await kit.data(PROMOTE, token, input=SPRING))["createPromotion"]
    assert (await kit.data(PROMOTE, token, input=SPRING))["createPromotion"] == first
    body = (await kit.graphql(PROMOTE, token, input={**SPRING, "bonusPercent": "20"})).json()
    assert refusal(body) == ("createPromotion", "IDEMPOTENCY_CONFLICT", "input.id")
