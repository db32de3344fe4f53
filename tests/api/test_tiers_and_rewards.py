"""Status matches and rewards over HTTP with real tokens, against a gateway whose partners are
real sandbox partners: what each member and partner may see and do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from exchange.app import create_app
from exchange.members.models import LinkedAccount
from exchange.programs.declarations import read_partners_directory
from exchange.programs.models import Program
from exchange.sandbox.faults import FaultKind
from exchange.services.container import load_partners_directory
from exchange.serving import serving
from exchange.settings import Settings
from exchange.testing.sandboxes import SandboxFleet
from tests.api.conftest import ExchangeKit
from tests.conftest import SAMPLE_PARTNERS

PREVIEW = """query($from: ID!, $to: ID!) { statusMatchPreview(fromProgram: $from, toProgram: $to) {
  sourceTier { name level } currentTier { name } outcome granted reason tier { name level } expiresAt
  challenge { points extendDays } nextMatchPossibleAt } }"""
REQUEST = """mutation($from: ID!, $to: ID!) { requestStatusMatch(fromProgram: $from, toProgram: $to) {
  id status tier { name } expiresAt } }"""
PUBLISH = """mutation($program: ID!, $input: PublishRewardInput!) { publishReward(programId: $program, input: $input) {
  id title price stock kind } }"""
REDEEM = """mutation($reward: ID!, $pay: ID!, $key: String!) {
  redeemReward(rewardId: $reward, payWith: $pay, idempotencyKey: $key) { id status points price fee payingProgram } }"""


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[SandboxFleet]:
    sandboxes = SandboxFleet(read_partners_directory(SAMPLE_PARTNERS), tmp_path / "sandboxes")
    await sandboxes.start("harbor-bank", "formosa-air", "wallet-pay")
    try:
        yield sandboxes
    finally:
        await sandboxes.stop()


@pytest.fixture
async def gateway(gateway_settings: Settings, fleet: SandboxFleet) -> AsyncIterator[str]:
    """The gateway of tests.api.conftest, its connectors pointed at the sandbox partners."""
    settings = gateway_settings.model_copy(update={"partner_retry_attempts": 1})
    await load_partners_directory(settings)
    async with serving(create_app(settings, partner_base_urls=fleet.base_urls), port=settings.port) as server:
        yield server.url


def codes(body: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    return {tuple(error["path"]): error["extensions"]["code"] for error in body.get("errors", [])}


@pytest.fixture
async def members(kit: ExchangeKit) -> dict[str, str]:
    """bob (harbor-bank, Platinum Card) also linked as carol at formosa-air (Base); alice at wallet-pay."""
    bob = await kit.member_token("harbor-bank", "bob")
    alice = await kit.member_token("wallet-pay", "alice")
    bob_id = (await kit.data("{ me { id } }", bob))["me"]["id"]
    async with kit.db.transaction() as session:
        session.add(
            LinkedAccount(
                member_id=bob_id,
                program_id="formosa-air",
                member_ref="carol",
                linked_at=datetime.now(UTC),
                established_by="assertion",
            )
        )
    return {"bob": bob, "alice": alice}


async def test_a_member_previews_and_requests_a_status_match(kit: ExchangeKit, members: dict[str, str]) -> None:
    preview = (await kit.data(PREVIEW, members["bob"], **{"from": "harbor-bank", "to": "formosa-air"}))[
        "statusMatchPreview"
    ]
    assert preview["sourceTier"] == {"name": "Platinum Card", "level": 2}
    assert (preview["outcome"], preview["granted"], preview["tier"]) == ("GRANTED", True, {"name": "Gold", "level": 2})
    assert preview["challenge"] == {"points": 5000, "extendDays": 365}

    match = (await kit.data(REQUEST, members["bob"], **{"from": "harbor-bank", "to": "formosa-air"}))[
        "requestStatusMatch"
    ]
    assert (match["status"], match["tier"]) == ("ACTIVE", {"name": "Gold"})
    again = (await kit.graphql(REQUEST, members["bob"], **{"from": "harbor-bank", "to": "formosa-air"})).json()
    assert codes(again) == {("requestStatusMatch",): "MATCH_TOO_SOON"}
    assert again["errors"][0]["extensions"]["possibleAt"].startswith(str(datetime.now(UTC).year + 1))

    mine = await kit.data("{ statusMatches { id tier { name } } }", members["bob"])
    assert [row["id"] for row in mine["statusMatches"]] == [match["id"]]
    assert (await kit.data("{ statusMatches { id } }", members["alice"]))["statusMatches"] == []

    refused = (await kit.graphql(REQUEST, members["alice"], **{"from": "wallet-pay", "to": "formosa-air"})).json()
    assert codes(refused) == {("requestStatusMatch",): "BAD_USER_INPUT"}, "alice has no formosa-air account"
    assert refused["errors"][0]["message"] == "link your formosa-air account first (linkAccount)", "as a quote says"
    assert refused["errors"][0]["extensions"]["field"] == "toProgram"
    activity = """mutation($id: ID!) { recordStatusMatchActivity(matchId: $id, points: 100) { pointsEarned } }"""
    foreign = (await kit.graphql(activity, await kit.partner_token("wallet-pay"), id=match["id"])).json()
    assert codes(foreign) == {("recordStatusMatchActivity",): "NOT_FOUND"}
    own = await kit.data(activity, await kit.partner_token("formosa-air"), id=match["id"])
    assert own["recordStatusMatchActivity"] == {"pointsEarned": 100}


KEYED_REQUEST = """mutation($from: ID!, $to: ID!, $claimed: String, $key: String) {
  requestStatusMatch(fromProgram: $from, toProgram: $to, claimedTier: $claimed, idempotencyKey: $key) {
  id status tier { name } } }"""


async def test_a_status_match_sent_again_with_its_key_returns_the_first_match_asking_no_partner(
    kit: ExchangeKit, members: dict[str, str], fleet: SandboxFleet
) -> None:
    pair = {"from": "harbor-bank", "to": "formosa-air", "claimed": "Platinum Card"}
    match = (await kit.data(KEYED_REQUEST, members["bob"], **pair, key="match-1"))["requestStatusMatch"]
    assert (match["status"], match["tier"]) == ("ACTIVE", {"name": "Gold"})
    # Harbor Bank cannot answer now: a repeat that asked it (or applied the yearly rule) would fail.
    await fleet["harbor-bank"].admin.set_faults(percent={FaultKind.ERROR: 100})
    try:
        again = (await kit.data(KEYED_REQUEST, members["bob"], **pair, key="match-1"))["requestStatusMatch"]
    finally:
        await fleet["harbor-bank"].admin.set_faults()
    assert again == match
    mine = await kit.data("{ statusMatches { id } }", members["bob"])
    assert [row["id"] for row in mine["statusMatches"]] == [match["id"]]


@pytest.mark.parametrize(
    "changed", [{"claimed": None}, {"claimed": "Classic"}, {"from": "formosa-air", "to": "harbor-bank"}]
)
async def test_a_status_match_key_sent_with_another_request_is_refused_naming_the_key(
    kit: ExchangeKit, members: dict[str, str], changed: dict[str, str | None]
) -> None:
    pair = {"from": "harbor-bank", "to": "formosa-air", "claimed": "Platinum Card"}
    match = (await kit.data(KEYED_REQUEST, members["bob"], **pair, key="match-1"))["requestStatusMatch"]
    refused = (await kit.graphql(KEYED_REQUEST, members["bob"], **{**pair, **changed}, key="match-1")).json()
    assert codes(refused) == {("requestStatusMatch",): "IDEMPOTENCY_CONFLICT"}
    assert refused["errors"][0]["extensions"]["field"] == "idempotencyKey"
    mine = await kit.data("{ statusMatches { id } }", members["bob"])
    assert [row["id"] for row in mine["statusMatches"]] == [match["id"]]


async def test_a_status_match_key_is_held_to_the_key_rule_and_is_the_members_own(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    spaced = (
        await kit.graphql(KEYED_REQUEST, members["bob"], **{"from": "harbor-bank", "to": "formosa-air"}, key="k1 ")
    ).json()
    assert codes(spaced) == {("requestStatusMatch",): "BAD_USER_INPUT"}
    assert spaced["errors"][0]["extensions"]["field"] == "idempotencyKey"
    # Another member's key is theirs alone: alice's request under bob's key is hers, and refused on its own terms.
    await kit.data(KEYED_REQUEST, members["bob"], **{"from": "harbor-bank", "to": "formosa-air"}, key="shared")
    hers = (
        await kit.graphql(KEYED_REQUEST, members["alice"], **{"from": "wallet-pay", "to": "formosa-air"}, key="shared")
    ).json()
    assert codes(hers) == {("requestStatusMatch",): "BAD_USER_INPUT"}, "alice has no formosa-air account"


async def test_status_match_requests_sent_together_with_one_key_make_one_match(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    pair = {"from": "harbor-bank", "to": "formosa-air"}
    answers = await asyncio.gather(*(kit.data(KEYED_REQUEST, members["bob"], **pair, key="twice") for _ in range(3)))
    assert len({answer["requestStatusMatch"]["id"] for answer in answers}) == 1
    mine = await kit.data("{ statusMatches { id } }", members["bob"])
    assert len(mine["statusMatches"]) == 1


async def test_challenge_progress_stops_at_its_counters_limit_instead_of_overflowing(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    match = (await kit.data(REQUEST, members["bob"], **{"from": "harbor-bank", "to": "formosa-air"}))[
        "requestStatusMatch"
    ]
    activity = """mutation($id: ID!, $points: Int!) {
      recordStatusMatchActivity(matchId: $id, points: $points, activities: $points) { pointsEarned activitiesDone } }"""
    partner = await kit.partner_token("formosa-air")
    for _ in range(2):
        reported = await kit.data(activity, partner, id=match["id"], points=2**31 - 1)
    assert reported["recordStatusMatchActivity"] == {"pointsEarned": 2**31 - 1, "activitiesDone": 2**31 - 1}


KEYED_ACTIVITY = """mutation($id: ID!, $points: Int!, $key: String) {
  recordStatusMatchActivity(matchId: $id, points: $points, idempotencyKey: $key) { pointsEarned } }"""


async def test_a_progress_report_sent_again_with_its_key_is_counted_once(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    match = (await kit.data(REQUEST, members["bob"], **{"from": "harbor-bank", "to": "formosa-air"}))[
        "requestStatusMatch"
    ]
    partner = await kit.partner_token("formosa-air")
    for _ in range(2):  # a retry after a lost answer
        reported = await kit.data(KEYED_ACTIVITY, partner, id=match["id"], points=100, key="week-1")
        assert reported["recordStatusMatchActivity"] == {"pointsEarned": 100}
    other = (await kit.graphql(KEYED_ACTIVITY, partner, id=match["id"], points=50, key="week-1")).json()
    assert [(e["extensions"]["code"], e["extensions"]["field"]) for e in other["errors"]] == [
        ("IDEMPOTENCY_CONFLICT", "idempotencyKey")
    ]
    later = await kit.data(KEYED_ACTIVITY, partner, id=match["id"], points=50, key="week-2")
    unkeyed = await kit.data(KEYED_ACTIVITY, partner, id=match["id"], points=1, key=None)
    assert (later["recordStatusMatchActivity"], unkeyed["recordStatusMatchActivity"]) == (
        {"pointsEarned": 150},
        {"pointsEarned": 151},
    )


async def test_a_published_reward_is_redeemed_cancelled_and_seen_only_by_its_parties(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    airline = await kit.partner_token("formosa-air")
    reward = (
        await kit.data(
            PUBLISH,
            airline,
            program="formosa-air",
            input={"title": "Lounge pass", "price": "100", "stock": 5, "perMemberLimit": 3},
        )
    )["publishReward"]
    assert (reward["price"], reward["stock"], reward["kind"]) == ("100.00", 5, "DIRECT")
    planted = (
        await kit.graphql(
            PUBLISH,
            await kit.partner_token("wallet-pay"),
            program="formosa-air",
            input={"title": "Fake", "price": "1", "stock": 1},
        )
    ).json()
    assert codes(planted) == {("publishReward",): "FORBIDDEN"}
    catalog = (await kit.graphql("{ rewards { id title stock } }")).json()["data"]["rewards"]
    assert {"id": reward["id"], "title": "Lounge pass", "stock": 5} in catalog, "the catalog is public"
    assert {"id": "fresh-mart-coupon-100", "title": "TWD 100 grocery coupon", "stock": 200} in catalog, "declared"

    quote = await kit.data(
        'query($r: ID!) { redemptionQuote(rewardId: $r, payWith: "harbor-bank") { price fee total points } }',
        members["bob"],
        r=reward["id"],
    )
    assert quote["redemptionQuote"] == {"price": "100.00", "fee": "2.00", "total": "102.00", "points": 2040}
    redeemed = (await kit.data(REDEEM, members["bob"], reward=reward["id"], pay="harbor-bank", key="k1"))[
        "redeemReward"
    ]
    assert (redeemed["status"], redeemed["points"], redeemed["payingProgram"]) == ("COMPLETED", 2040, "harbor-bank")
    repeat = (await kit.data(REDEEM, members["bob"], reward=reward["id"], pay="harbor-bank", key="k1"))["redeemReward"]
    assert repeat["id"] == redeemed["id"]

    listed = "query($r: ID!) { rewardRedemptions(rewardId: $r) { id memberId status } }"
    assert [row["id"] for row in (await kit.data(listed, airline, r=reward["id"]))["rewardRedemptions"]] == [
        redeemed["id"]
    ]
    other_partner = (await kit.graphql(listed, await kit.partner_token("harbor-bank"), r=reward["id"])).json()
    assert codes(other_partner) == {("rewardRedemptions",): "FORBIDDEN"}
    assert (await kit.data("{ redemptions { id } }", members["alice"]))["redemptions"] == []

    cancel = "mutation($id: ID!) { cancelRedemption(redemptionId: $id) { status cancelledBy } }"
    foreign = (await kit.graphql(cancel, members["alice"], id=redeemed["id"])).json()
    assert codes(foreign) == {("cancelRedemption",): "NOT_FOUND"}
    cancelled = (await kit.data(cancel, members["bob"], id=redeemed["id"]))["cancelRedemption"]
    assert cancelled == {"status": "REVERSED", "cancelledBy": "MEMBER"}
    assert (await kit.data(cancel, members["bob"], id=redeemed["id"]))["cancelRedemption"] == cancelled  # a repeat

    second = (await kit.data(REDEEM, members["bob"], reward=reward["id"], pay="harbor-bank", key="k2"))["redeemReward"]
    confirm = "mutation($id: ID!) { confirmRedemptionDelivery(redemptionId: $id) { status } }"
    assert codes((await kit.graphql(confirm, await kit.partner_token("harbor-bank"), id=second["id"])).json()) == {
        ("confirmRedemptionDelivery",): "NOT_FOUND"
    }
    assert (await kit.data(confirm, airline, id=second["id"]))["confirmRedemptionDelivery"] == {"status": "DELIVERED"}
    again = await kit.data(confirm, airline, id=second["id"])  # a retry after a lost answer
    assert again["confirmRedemptionDelivery"] == {"status": "DELIVERED"}
    reversed_ = (await kit.graphql(confirm, airline, id=redeemed["id"])).json()
    assert codes(reversed_) == {("confirmRedemptionDelivery",): "BAD_USER_INPUT"}
    late = (await kit.graphql(cancel, members["bob"], id=second["id"])).json()
    assert codes(late) == {("cancelRedemption",): "BAD_USER_INPUT"}
    mine = await kit.data("{ redemptions { id status } }", members["bob"])
    assert mine["redemptions"] == [
        {"id": second["id"], "status": "DELIVERED"},
        {"id": redeemed["id"], "status": "REVERSED"},
    ]


def twd(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "TWD"}


async def test_prices_are_money_and_the_deprecated_decimals_say_the_same(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    airline = await kit.partner_token("formosa-air")
    published = await kit.data(
        'mutation($input: PublishRewardInput!) { publishReward(programId: "formosa-air", input: $input) {'
        " id price currency settlementPrice { amount currency } } }",
        airline,
        input={"title": "Lounge pass", "price": "100", "stock": 5},
    )
    reward = published["publishReward"]
    assert (reward["price"], reward["currency"], reward["settlementPrice"]) == ("100.00", "TWD", twd("100.00"))
    quote = await kit.data(
        'query($r: ID!) { redemptionQuote(rewardId: $r, payWith: "harbor-bank") { price fee total'
        " settlementPrice { amount currency } exchangeFee { amount currency } totalOwed { amount currency } } }",
        members["bob"],
        r=reward["id"],
    )
    assert quote["redemptionQuote"] == {
        "price": "100.00",
        "fee": "2.00",
        "total": "102.00",
        "settlementPrice": twd("100.00"),
        "exchangeFee": twd("2.00"),
        "totalOwed": twd("102.00"),
    }
    redeemed = await kit.data(
        'mutation($r: ID!) { redeemReward(rewardId: $r, payWith: "harbor-bank", idempotencyKey: "m") {'
        " price fee settlementPrice { amount currency } exchangeFee { amount currency } } }",
        members["bob"],
        r=reward["id"],
    )
    assert redeemed["redeemReward"] == {
        "price": "100.00",
        "fee": "2.00",
        "settlementPrice": twd("100.00"),
        "exchangeFee": twd("2.00"),
    }


async def test_a_reward_out_of_stock_is_refused_with_its_code(kit: ExchangeKit, members: dict[str, str]) -> None:
    airline = await kit.partner_token("formosa-air")
    reward = await kit.data(
        PUBLISH, airline, program="formosa-air", input={"title": "Last seat", "price": "10", "stock": 1}
    )
    reward_id = reward["publishReward"]["id"]
    await kit.data(REDEEM, members["bob"], reward=reward_id, pay="harbor-bank", key="a")
    refused = (await kit.graphql(REDEEM, members["alice"], reward=reward_id, pay="wallet-pay", key="a")).json()
    assert codes(refused) == {("redeemReward",): "OUT_OF_STOCK"}
    assert refused["errors"][0]["extensions"]["field"] == "rewardId"


async def test_a_redemption_expecting_the_points_quoted_is_refused_once_the_point_value_changed(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    """An operator's `partners load` halves a Harbor Bank point's value between the member's
    quote and their redeem: `expectedPoints` at the quoted figure is PRICE_CHANGED naming both,
    nothing recorded or debited; at the new figure it goes through."""
    airline = await kit.partner_token("formosa-air")
    reward = await kit.data(
        PUBLISH, airline, program="formosa-air", input={"title": "Bag tag", "price": "100", "stock": 3}
    )
    reward_id = reward["publishReward"]["id"]
    quoted = await kit.data(
        'query($r: ID!) { redemptionQuote(rewardId: $r, payWith: "harbor-bank") { points } }',
        members["bob"],
        r=reward_id,
    )
    shown = quoted["redemptionQuote"]["points"]
    assert shown == 2040, "102 TWD at 0.05 TWD a point"
    async with kit.db.transaction() as session:
        program = await session.get(Program, "harbor-bank")
        assert program is not None
        program.point_value /= 2
        session.add(program)
    redeem = """mutation($r: ID!, $expected: Int) { redeemReward(rewardId: $r, payWith: "harbor-bank",
      idempotencyKey: "price", expectedPoints: $expected) { status points } }"""
    refused = (await kit.graphql(redeem, members["bob"], r=reward_id, expected=shown)).json()
    assert codes(refused) == {("redeemReward",): "PRICE_CHANGED"}
    extensions = refused["errors"][0]["extensions"]
    assert (extensions["field"], extensions["expectedPoints"], extensions["points"]) == (
        "expectedPoints",
        shown,
        shown * 2,
    )
    assert (await kit.data("{ redemptions { id } }", members["bob"]))["redemptions"] == []
    nonsense = (await kit.graphql(redeem, members["bob"], r=reward_id, expected=0)).json()
    assert codes(nonsense) == {("redeemReward",): "BAD_USER_INPUT"}
    assert nonsense["errors"][0]["extensions"]["field"] == "expectedPoints"
    redeemed = await kit.data(redeem, members["bob"], r=reward_id, expected=shown * 2)
    assert redeemed["redeemReward"] == {"status": "COMPLETED", "points": shown * 2}
