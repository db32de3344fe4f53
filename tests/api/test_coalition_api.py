"""A member earns coalition points by converting in from a partner, sees them and when they
expire, spends them by converting out and on another partner's reward — over HTTP, with real
tokens, through the ordinary sagas; the ledger and the lots agree afterwards."""

from __future__ import annotations

import pytest

from exchange.coalition.rules import point_rules
from exchange.coalition.verify import check_point
from exchange.ledger.verify import verify_ledger
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet

PARTNERS = ("wallet-pay", "happy-card", "fresh-mart")

PROGRAMS = "{ programs { id kind } coalition { point { programId expiry timezone breakage } } }"
ME = """
{ me {
    accounts { program { id kind } memberRef balance error { code } }
    expiringPoints { points expiresAt }
} }
"""
LINK = """
mutation($program: ID!, $ref: String!, $verification: String!) {
  linkAccount(programId: $program, memberRef: $ref, verification: $verification) { memberRef }
}
"""
QUOTE = """
mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) { id pointsIn pointsOut }
}
"""
EXECUTE = """
mutation($quote: ID!, $key: String!) {
  executeConversion(quoteId: $quote, idempotencyKey: $key) { id status pointsIn pointsOut failure { code message } }
}
"""
REDEEM = """
mutation($reward: ID!, $pay: ID!, $key: String!) {
  redeemReward(rewardId: $reward, payWith: $pay, idempotencyKey: $key) { status points payingProgram }
}
"""


@pytest.fixture
async def partner_base_urls(sandboxes: SandboxFleet) -> dict[str, str]:
    await sandboxes.start(*PARTNERS)
    return sandboxes.base_urls


async def coalition_balance(kit: ExchangeKit, token: str) -> int:
    accounts = (await kit.data(ME, token))["me"]["accounts"]
    [point] = [account for account in accounts if account["program"]["kind"] == "COALITION"]
    return int(point["balance"])


async def test_the_catalog_shows_the_coalition_point_beside_the_partners(kit: ExchangeKit) -> None:
    data = await kit.data(PROGRAMS)
    kinds = {program["id"]: program["kind"] for program in data["programs"]}
    assert kinds.pop("coalition") == "COALITION"
    assert set(kinds.values()) == {"PARTNER"} and len(kinds) == 6
    assert data["coalition"]["point"] == {
        "programId": "coalition",
        "expiry": "end-of-next-year",
        "timezone": "Asia/Taipei",
        "breakage": "operator",
    }


async def test_a_member_earns_coalition_points_and_spends_them_on_conversions_and_rewards(kit: ExchangeKit) -> None:
    alice = await kit.member_token("wallet-pay", "alice")
    # Earn: 1,000 WalletPay points (1 TWD each) less the 2% fee are 980 coalition points (1 TWD each),
    # and her tier bonus.
    quote = (await kit.data(QUOTE, alice, **{"from": "wallet-pay", "to": "coalition", "points": 1000}))["createQuote"]
    earned = (await kit.data(EXECUTE, alice, quote=quote["id"], key="earn-1"))["executeConversion"]
    assert (earned["status"], earned["pointsIn"]) == ("COMPLETED", 1000)
    held = earned["pointsOut"]
    assert held >= 980 and await coalition_balance(kit, alice) == held
    [expiring] = (await kit.data(ME, alice))["me"]["expiringPoints"]
    assert expiring["points"] == held and expiring["expiresAt"].endswith("-12-31T16:00:00+00:00")

    # Spend, under a token another partner asserted: the exchange holds these points, no partner does.
    await kit.data(LINK, alice, program="happy-card", ref="alice", verification="1111")
    alice_at_happy_card = await kit.member_token("happy-card", "alice")
    out = (await kit.data(QUOTE, alice_at_happy_card, **{"from": "coalition", "to": "happy-card", "points": 400}))[
        "createQuote"
    ]
    spent = (await kit.data(EXECUTE, alice_at_happy_card, quote=out["id"], key="spend-1"))["executeConversion"]
    assert (spent["status"], spent["pointsIn"]) == ("COMPLETED", 400), spent
    again = (await kit.data(EXECUTE, alice_at_happy_card, quote=out["id"], key="spend-1"))["executeConversion"]
    assert again["id"] == spent["id"]
    assert await coalition_balance(kit, alice) == (held - 400)

    # Pay for FreshMart's TWD 95 coupon with coalition points.
    paid = (await kit.data(REDEEM, alice, reward="fresh-mart-coupon-100", pay="coalition", key="coupon-1"))[
        "redeemReward"
    ]
    assert (paid["status"], paid["payingProgram"]) == ("COMPLETED", "coalition")
    assert await coalition_balance(kit, alice) == (held - 400) - paid["points"]

    # More than she holds is refused, and changes nothing.
    too_much = (await kit.data(QUOTE, alice, **{"from": "coalition", "to": "happy-card", "points": 5000}))[
        "createQuote"
    ]
    refused = (await kit.data(EXECUTE, alice, quote=too_much["id"], key="spend-2"))["executeConversion"]
    assert (refused["status"], refused["failure"]["code"]) == ("FAILED", "INSUFFICIENT_POINTS")
    assert await coalition_balance(kit, alice) == (held - 400) - paid["points"]

    async with kit.db.transaction() as session:
        assert (await verify_ledger(session)).ok
        checked = await check_point(session, await point_rules(session))
    assert checked.problem is None
    assert (checked.outstanding, checked.in_flight) == ((held - 400) - paid["points"], 0)
    assert checked.liability_minor == checked.outstanding * 100  # 1 TWD a point


async def test_only_the_member_sees_their_expiring_coalition_points(kit: ExchangeKit) -> None:
    partner = await kit.partner_token("wallet-pay")
    body = (await kit.graphql("{ me { expiringPoints { points } } }", partner)).json()
    assert body["errors"][0]["extensions"]["code"] in {"FORBIDDEN", "UNAUTHENTICATED"}


async def test_a_token_without_the_coalition_scope_earns_coalition_points_but_cannot_spend_them(
    kit: ExchangeKit,
) -> None:
    assertion = await kit.assertion("wallet-pay", "carol")
    response = await kit.request_member_token(assertion, scope="member:read member:write")
    carol = str(response.json()["access_token"])
    quote = (await kit.data(QUOTE, carol, **{"from": "wallet-pay", "to": "coalition", "points": 1000}))["createQuote"]
    earned = (await kit.data(EXECUTE, carol, quote=quote["id"], key="earn"))["executeConversion"]
    assert earned["status"] == "COMPLETED"

    out = (await kit.data(QUOTE, carol, **{"from": "coalition", "to": "wallet-pay", "points": 100}))["createQuote"]
    refusals = [
        (await kit.graphql(EXECUTE, carol, quote=out["id"], key="spend")).json(),
        (await kit.graphql(REDEEM, carol, reward="fresh-mart-coupon-100", pay="coalition", key="pay")).json(),
    ]
    for body in refusals:
        [error] = body["errors"]
        assert error["extensions"]["code"] == "AUTHORITY_REQUIRED"
        assert (error["extensions"]["program"], error["extensions"]["reason"]) == ("coalition", "SCOPE_MISSING")
    assert await coalition_balance(kit, carol) == earned["pointsOut"]
