"""Writes under an id the client chooses, sent several times at once (a client retrying
before its first answer came, or two of a partner's servers doing the same job): the database
decides which one writes, and every other gets the answer a later repeat gets, never an
unexpected error.

Each used to read whether the id was free and then insert, so two requests could both find it
free and the second failed on the primary key: ``INTERNAL_SERVER_ERROR``, for a promotion even
though the same id and terms again are meant to return the first one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from joserfc.jwk import ECKey

from exchange.testing.kit import ExchangeKit

PUBLISH = """mutation($input: PublishRewardInput!) {
  publishReward(programId: "formosa-air", input: $input) { id } }"""
PROMOTE = """mutation($input: PromotionInput!) { createPromotion(input: $input) { id } }"""
REGISTER_KEY = """mutation($key: String!) { registerAssertionKey(programId: "formosa-air", publicKey: $key) { kid } }"""
AT_ONCE = 8
#: Each race may go the harmless way by chance; a few make that unlikely.
RACES = 3


async def at_once(kit: ExchangeKit, query: str, token: str, **variables: Any) -> list[dict[str, Any]]:
    answers = await asyncio.gather(*(kit.graphql(query, token, **variables) for _ in range(AT_ONCE)))
    return [answer.json() for answer in answers]


def codes(bodies: list[dict[str, Any]]) -> list[str]:
    """The answers' error codes ("" for none), sorted."""
    return sorted(body["errors"][0]["extensions"]["code"] if "errors" in body else "" for body in bodies)


async def test_racing_writes_of_one_client_chosen_id_write_once_and_answer_as_a_repeat(kit: ExchangeKit) -> None:
    token = await kit.partner_token("formosa-air")
    for race in range(RACES):
        reward = {"id": f"racing-reward-{race}", "title": "Lounge pass", "price": "10", "stock": 1}
        published = await at_once(kit, PUBLISH, token, input=reward)
        assert codes(published) == [""] * AT_ONCE, published
        assert {body["data"]["publishReward"]["id"] for body in published} == {reward["id"]}

        promotion = {
            "programId": "formosa-air",
            "id": f"racing-promotion-{race}",
            "bonusPercent": "10",
            "startsAt": "2030-01-01T00:00:00Z",
            "endsAt": "2030-02-01T00:00:00Z",
        }
        promoted = await at_once(kit, PROMOTE, token, input=promotion)
        assert codes(promoted) == [""] * AT_ONCE, promoted
        assert {body["data"]["createPromotion"]["id"] for body in promoted} == {promotion["id"]}

        key = json.dumps(ECKey.generate_key("P-256", auto_kid=True).as_dict(private=False))
        registered = await at_once(kit, REGISTER_KEY, token, key=key)
        assert codes(registered) == [""] * AT_ONCE, registered

    program = await kit.data('{ program(id: "formosa-air") { assertionKeys { kid } promotions { id } } }', token)
    assert len(program["program"]["assertionKeys"]) == RACES
    assert sum(p["id"].startswith("racing-promotion-") for p in program["program"]["promotions"]) == RACES
