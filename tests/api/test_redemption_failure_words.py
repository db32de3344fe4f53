"""Why a redemption failed, as each party may read it: a debit the paying partner refused is
that partner's business, told in its own words (the member's id there, their balance there),
and those words reach the member and staff, never the reward's publisher — neither through
the API nor through a webhook, whose body goes to both partners.

Dave, at wallet-pay, has no happy-card points; he redeems wallet-pay's reward paying with
happy-card. Before, wallet-pay read ``failureMessage: "partner happy-card refused debit: member
dave has 0 points, 41 asked"`` through ``rewardRedemptions``, and the ``redemption.failed``
event's ``reason`` carried the same words to wallet-pay's subscriptions.
"""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet
from exchange.webhooks.models import WebhookEvent

LINK = """mutation { linkAccount(programId: "happy-card", memberRef: "dave", verification: "4444") { memberRef } }"""
PUBLISH = (
    """mutation { publishReward(programId: "wallet-pay", input: {title: "Pass", price: "10", stock: 5}) { id } }"""
)
REDEEM = """mutation($reward: ID!) {
  redeemReward(rewardId: $reward, payWith: "happy-card", idempotencyKey: "k") { id status failureCode } }"""
THE_PARTNERS_WORDS = "member dave has 0 points"


@pytest.fixture
async def partner_base_urls(sandboxes: SandboxFleet) -> dict[str, str]:
    await sandboxes.start("wallet-pay", "happy-card")
    return sandboxes.base_urls


@pytest.fixture
async def failed(kit: ExchangeKit) -> dict[str, str]:
    """Dave's redemption of wallet-pay's reward, refused by happy-card, and the tokens."""
    await kit.data(LINK, await kit.member_token("wallet-pay", "dave"))
    publisher = await kit.partner_token("wallet-pay")
    reward = (await kit.data(PUBLISH, publisher))["publishReward"]["id"]
    dave = await kit.member_token("happy-card", "dave")
    redeemed = (await kit.data(REDEEM, dave, reward=reward))["redeemReward"]
    assert (redeemed["status"], redeemed["failureCode"]) == ("FAILED", "INSUFFICIENT_POINTS")
    return {"reward": reward, "publisher": publisher, "dave": dave}


async def test_the_publisher_reads_how_a_redemption_failed_not_the_paying_partners_words(
    kit: ExchangeKit, failed: dict[str, str]
) -> None:
    query = "query($r: ID!) { rewardRedemptions(rewardId: $r) { status failureCode failureMessage } }"
    body = (await kit.graphql(query, failed["publisher"], r=failed["reward"])).json()
    assert body["data"]["rewardRedemptions"] == [
        {"status": "FAILED", "failureCode": "INSUFFICIENT_POINTS", "failureMessage": None}
    ]
    assert [(error["path"][-1], error["extensions"]["code"]) for error in body["errors"]] == [
        ("failureMessage", "FORBIDDEN")
    ]
    assert THE_PARTNERS_WORDS not in json.dumps(body)

    (own,) = (await kit.data("{ redemptions { failureMessage } }", failed["dave"]))["redemptions"]
    assert THE_PARTNERS_WORDS in own["failureMessage"], "the member reads why, in the partner's words"


async def test_the_failed_event_both_partners_receive_carries_no_partners_words(
    kit: ExchangeKit, failed: dict[str, str]
) -> None:
    async with kit.db.transaction() as session:
        (event,) = (await session.exec(select(WebhookEvent).where(WebhookEvent.type == "redemption.failed"))).all()
    assert event.programs == ["happy-card", "wallet-pay"]
    data = json.loads(event.body)["data"]
    assert data["failureCode"] == "INSUFFICIENT_POINTS"
    assert data["reason"] == "happy-card did not debit the points (INSUFFICIENT_POINTS)"
    assert "dave" not in event.body
