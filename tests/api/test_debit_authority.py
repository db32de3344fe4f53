"""Whose authority spends which points, over HTTP against a gateway whose partners are sandboxes.

Alice arrives through wallet-pay and has linked her happy-card account. A token wallet-pay
asserted reads everything of hers, but spends happy-card's points only with a consent she gave
through happy-card (a token happy-card asserted); refusals change nothing anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import select

from exchange.app import create_app
from exchange.members.models import DebitConsent
from exchange.pricing.models import LimitUsage
from exchange.programs.declarations import read_partners_directory
from exchange.services.container import load_partners_directory
from exchange.serving import serving
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet
from tests.api.conftest import ON_SQLITE_TOO
from tests.clocks import MovableClock
from tests.conftest import SAMPLE_PARTNERS

LINK = """mutation($program: ID!, $ref: String!, $verification: String!) {
  linkAccount(programId: $program, memberRef: $ref, verification: $verification) { memberRef } }"""
QUOTE = """mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) { id pointsIn } }"""
EXECUTE = """mutation($quote: ID!, $key: String!, $consent: String) {
  executeConversion(quoteId: $quote, idempotencyKey: $key, consent: $consent) { id status pointsIn } }"""
AUTHORIZE = """mutation($program: ID!, $points: Int!) {
  authorizeDebit(programId: $program, points: $points) { id program { id } points expiresAt } }"""
PUBLISH = """mutation($input: PublishRewardInput!) { publishReward(programId: "formosa-air", input: $input) { id } }"""
PRICE = """query($reward: ID!, $pay: ID!) { redemptionQuote(rewardId: $reward, payWith: $pay) { points } }"""
REDEEM = """mutation($reward: ID!, $pay: ID!, $key: String!, $consent: String) {
  redeemReward(rewardId: $reward, payWith: $pay, idempotencyKey: $key, consent: $consent) { id status points } }"""
STOCK = """query($reward: ID!) { reward(id: $reward) { stock } }"""
HAPPY_CARD_OPENING = 120_000  # alice's seeded balance at every sandbox


@pytest.fixture
async def loaded(gateway_settings: Settings) -> Settings:
    await load_partners_directory(gateway_settings)
    return gateway_settings


@pytest.fixture
def clock(loaded: Settings) -> MovableClock:
    """The gateway's clock; it starts once the programs and their rates are in force."""
    return MovableClock(datetime.now(UTC))


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[SandboxFleet]:
    sandboxes = SandboxFleet(read_partners_directory(SAMPLE_PARTNERS), tmp_path / "sandboxes")
    await sandboxes.start("wallet-pay", "happy-card")
    try:
        yield sandboxes
    finally:
        await sandboxes.stop()


@pytest.fixture
def gateway_settings(store_settings: Settings) -> Settings:
    return store_settings


@pytest.fixture
async def gateway(loaded: Settings, fleet: SandboxFleet, clock: MovableClock) -> AsyncIterator[str]:
    """The gateway of tests.api.conftest, on a clock the tests move, its partners sandboxes."""
    app = create_app(loaded, clock=clock, partner_base_urls=fleet.base_urls)
    async with serving(app, port=loaded.port) as server:
        yield server.url


@pytest.fixture
async def alice(kit: ExchangeKit) -> dict[str, str]:
    """Alice's tokens by the program that asserted them: wallet-pay vouched for her first."""
    return await kit.linked_member("alice", ["wallet-pay", "happy-card"], verification="1111")


def refusal(response: Any) -> dict[str, Any]:
    """The extensions of the one error a refused mutation answers with (its result is null)."""
    body = response.json()
    assert len(body.get("errors", [])) == 1 and set(body["data"].values()) == {None}, body
    return dict(body["errors"][0]["extensions"])


async def quote(kit: ExchangeKit, token: str, points: int = 1000) -> str:
    created = await kit.data(QUOTE, token, **{"from": "happy-card", "to": "wallet-pay", "points": points})
    return str(created["createQuote"]["id"])


async def nothing_recorded(kit: ExchangeKit, alice: dict[str, str], fleet: SandboxFleet) -> None:
    """No conversion or redemption, no limit reserved, happy-card's balance untouched."""
    mine = await kit.data("{ conversions { items { id } } redemptions { id } }", alice["happy-card"])
    assert mine == {"conversions": {"items": []}, "redemptions": []}
    async with kit.db.transaction() as session:
        reserved = (await session.exec(select(func.coalesce(func.sum(LimitUsage.used), 0)))).one()
    assert reserved == 0
    assert await fleet["happy-card"].admin.balance("alice") == HAPPY_CARD_OPENING
    assert await fleet["happy-card"].admin.operations() == []


@ON_SQLITE_TOO
async def test_another_partners_token_cannot_convert_out_of_a_program_but_its_own_can(
    kit: ExchangeKit, alice: dict[str, str], fleet: SandboxFleet
) -> None:
    quote_id = await quote(kit, alice["wallet-pay"])  # pricing is reading: any linked partner's token
    response = await kit.graphql(EXECUTE, alice["wallet-pay"], quote=quote_id, key="k1")
    assert refusal(response) == {
        "code": "AUTHORITY_REQUIRED",
        "field": "quoteId",
        "program": "happy-card",
        "reason": "NOT_ASSERTED",
    }
    await nothing_recorded(kit, alice, fleet)

    done = (await kit.data(EXECUTE, alice["happy-card"], quote=quote_id, key="k1"))["executeConversion"]
    assert (done["status"], done["pointsIn"]) == ("COMPLETED", 1000)
    assert await fleet["happy-card"].admin.balance("alice") == HAPPY_CARD_OPENING - 1000


async def test_another_partners_token_cannot_redeem_paying_with_a_program_but_its_own_can(
    kit: ExchangeKit, alice: dict[str, str], fleet: SandboxFleet
) -> None:
    airline = await kit.partner_token("formosa-air")
    reward = (await kit.data(PUBLISH, airline, input={"title": "Lounge pass", "price": "100", "stock": 5}))[
        "publishReward"
    ]["id"]
    price = (await kit.data(PRICE, alice["wallet-pay"], reward=reward, pay="happy-card"))["redemptionQuote"]
    assert price == {"points": 408}  # (100 + 2% fee) / 0.25, read under wallet-pay's token

    response = await kit.graphql(REDEEM, alice["wallet-pay"], reward=reward, pay="happy-card", key="r1")
    assert refusal(response) == {
        "code": "AUTHORITY_REQUIRED",
        "field": "payWith",
        "program": "happy-card",
        "reason": "NOT_ASSERTED",
    }
    assert (await kit.data(STOCK, reward=reward))["reward"] == {"stock": 5}
    await nothing_recorded(kit, alice, fleet)

    paid = (await kit.data(REDEEM, alice["happy-card"], reward=reward, pay="happy-card", key="r1"))["redeemReward"]
    assert (paid["status"], paid["points"]) == ("COMPLETED", 408)
    own = (await kit.data(REDEEM, alice["wallet-pay"], reward=reward, pay="wallet-pay", key="r2"))["redeemReward"]
    assert own["status"] == "COMPLETED", "wallet-pay's token pays with wallet-pay's points"
    assert (await kit.data(STOCK, reward=reward))["reward"] == {"stock": 3}


async def test_reading_works_through_any_linked_partner(kit: ExchangeKit, alice: dict[str, str]) -> None:
    for token in alice.values():
        me = (await kit.data("{ me { accounts { program { id } balance } } }", token))["me"]
        assert {account["program"]["id"]: account["balance"] for account in me["accounts"]} == {
            "happy-card": HAPPY_CARD_OPENING,
            "wallet-pay": HAPPY_CARD_OPENING,
            "coalition": 0,
        }


@ON_SQLITE_TOO
async def test_a_consent_asked_again_under_its_key_answers_the_first_consent(
    kit: ExchangeKit, alice: dict[str, str]
) -> None:
    keyed = """mutation($points: Int!, $key: String) {
      authorizeDebit(programId: "happy-card", points: $points, idempotencyKey: $key) { id points expiresAt } }"""
    first = (await kit.data(keyed, alice["happy-card"], points=1000, key="consent-1"))["authorizeDebit"]
    assert (await kit.data(keyed, alice["happy-card"], points=1000, key="consent-1"))["authorizeDebit"] == first
    async with kit.db.transaction() as session:
        assert len((await session.exec(select(DebitConsent))).all()) == 1, "no second consent"
    other = (await kit.graphql(keyed, alice["happy-card"], points=2000, key="consent-1")).json()
    assert other["errors"][0]["extensions"] == {"code": "IDEMPOTENCY_CONFLICT", "field": "idempotencyKey"}
    assert (await kit.data(keyed, alice["happy-card"], points=1000, key="consent-2"))["authorizeDebit"] != first


@ON_SQLITE_TOO
async def test_a_consent_lets_another_partners_token_convert_exactly_that_amount_once(
    kit: ExchangeKit, alice: dict[str, str], fleet: SandboxFleet, clock: MovableClock
) -> None:
    granted = (await kit.data(AUTHORIZE, alice["happy-card"], program="happy-card", points=1000))["authorizeDebit"]
    assert (granted["program"], granted["points"]) == ({"id": "happy-card"}, 1000)
    assert datetime.fromisoformat(granted["expiresAt"]) == clock.now() + timedelta(seconds=300)
    consent = granted["id"]
    assert len(consent) >= 43, "256 random bits"
    async with kit.db.transaction() as session:
        stored = (await session.exec(select(DebitConsent))).one()
    assert stored.secret_hash != consent and consent not in stored.secret_hash, "stored hashed only"

    other_amount = refusal(
        await kit.graphql(
            EXECUTE, alice["wallet-pay"], quote=await quote(kit, alice["wallet-pay"], 2000), key="k0", consent=consent
        )
    )
    assert (other_amount["code"], other_amount["field"], other_amount["program"], other_amount["reason"]) == (
        "AUTHORITY_REQUIRED",
        "consent",
        "happy-card",
        "CONSENT_OTHER_POINTS",
    )
    await nothing_recorded(kit, alice, fleet)  # and the consent is still unused

    first = await quote(kit, alice["wallet-pay"])
    done = (await kit.data(EXECUTE, alice["wallet-pay"], quote=first, key="k1", consent=consent))["executeConversion"]
    assert (done["status"], done["pointsIn"]) == ("COMPLETED", 1000)
    again = (await kit.data(EXECUTE, alice["wallet-pay"], quote=first, key="k1", consent=consent))["executeConversion"]
    assert again["id"] == done["id"], "a retry of the key is the same conversion, and uses nothing"

    second = await quote(kit, alice["wallet-pay"])
    used = refusal(await kit.graphql(EXECUTE, alice["wallet-pay"], quote=second, key="k2", consent=consent))
    assert (used["field"], used["reason"]) == ("consent", "CONSENT_USED")
    unknown = refusal(await kit.graphql(EXECUTE, alice["wallet-pay"], quote=second, key="k2", consent="guess"))
    assert unknown["reason"] == "CONSENT_UNKNOWN"
    assert await fleet["happy-card"].admin.balance("alice") == HAPPY_CARD_OPENING - 1000
    async with kit.db.transaction() as session:
        stored = (await session.exec(select(DebitConsent))).one()
    assert stored.used_for == f"conversion:{done['id']}"


async def test_a_retry_under_the_tokens_own_authority_uses_no_consent(kit: ExchangeKit, alice: dict[str, str]) -> None:
    quote_id = await quote(kit, alice["happy-card"])
    done = (await kit.data(EXECUTE, alice["happy-card"], quote=quote_id, key="k1"))["executeConversion"]
    consent = await kit.debit_consent(alice["happy-card"], "happy-card", 1000)
    again = await kit.data(EXECUTE, alice["happy-card"], quote=quote_id, key="k1", consent=consent)
    assert again["executeConversion"]["id"] == done["id"]
    later = await kit.data(
        EXECUTE, alice["wallet-pay"], quote=await quote(kit, alice["wallet-pay"]), key="k2", consent=consent
    )
    assert later["executeConversion"]["status"] == "COMPLETED", "the retry left the consent unused"


async def test_consents_for_another_member_or_program_or_past_their_time_are_refused(
    kit: ExchangeKit, alice: dict[str, str], fleet: SandboxFleet, clock: MovableClock
) -> None:
    bobs = await kit.debit_consent(await kit.member_token("happy-card", "bob"), "happy-card", 1000)
    wallets = await kit.debit_consent(alice["wallet-pay"], "wallet-pay", 1000)
    expiring = await kit.debit_consent(alice["happy-card"], "happy-card", 1000)
    clock.advance(timedelta(seconds=301))
    quote_id = await quote(kit, alice["wallet-pay"])
    reasons = [
        refusal(await kit.graphql(EXECUTE, alice["wallet-pay"], quote=quote_id, key="k", consent=consent))["reason"]
        for consent in (bobs, wallets, expiring)
    ]
    assert reasons == ["CONSENT_OTHER_MEMBER", "CONSENT_OTHER_PROGRAM", "CONSENT_EXPIRED"]
    await nothing_recorded(kit, alice, fleet)


async def test_the_program_to_debit_is_named_programId_as_everywhere_and_program_still_names_it(
    kit: ExchangeKit, alice: dict[str, str]
) -> None:
    """`program` was the only argument naming a program by another name than `programId`: a
    client using it keeps working for a release, its refusals naming what it wrote."""
    old = "mutation($p: ID, $q: ID) { authorizeDebit(program: $p, programId: $q, points: 1000) { points } }"
    token = alice["happy-card"]
    assert (await kit.data(old, token, p="happy-card"))["authorizeDebit"] == {"points": 1000}
    refused = refusal(await kit.graphql(old, alice["wallet-pay"], p="happy-card"))
    assert (refused["code"], refused["field"]) == ("AUTHORITY_REQUIRED", "program")
    for both_or_neither in ({"p": "happy-card", "q": "happy-card"}, {}):
        assert refusal(await kit.graphql(old, token, **both_or_neither)) == {
            "code": "BAD_USER_INPUT",
            "field": "programId",
        }


async def test_only_the_programs_own_token_gives_a_consent_to_debit_it(kit: ExchangeKit, alice: dict[str, str]) -> None:
    refused = refusal(await kit.graphql(AUTHORIZE, alice["wallet-pay"], program="happy-card", points=1000))
    assert refused == {
        "code": "AUTHORITY_REQUIRED",
        "field": "programId",
        "program": "happy-card",
        "reason": "NOT_ASSERTED",
    }
    for points in (0, -5, 1_000_000_001):
        bad = refusal(await kit.graphql(AUTHORIZE, alice["happy-card"], program="happy-card", points=points))
        assert bad == {"code": "BAD_USER_INPUT", "field": "points"}
    coalition = await kit.graphql(AUTHORIZE, alice["wallet-pay"], program="coalition", points=1000)
    assert refusal(coalition) == {"code": "BAD_USER_INPUT", "field": "programId"}
    assert "need no consent" in coalition.json()["errors"][0]["message"], "the exchange holds them: nobody asserts"
    partner = refusal(
        await kit.graphql(AUTHORIZE, await kit.partner_token("happy-card"), program="happy-card", points=1)
    )
    assert partner["code"] == "FORBIDDEN", "a partner's token is no member's"
    async with kit.db.transaction() as session:
        assert (await session.exec(select(DebitConsent))).all() == []


@ON_SQLITE_TOO
async def test_two_concurrent_uses_of_one_consent_make_one_conversion(
    kit: ExchangeKit, alice: dict[str, str], fleet: SandboxFleet
) -> None:
    consent = await kit.debit_consent(alice["happy-card"], "happy-card", 1000)
    quotes = [await quote(kit, alice["wallet-pay"]) for _ in range(2)]
    answers = await asyncio.gather(
        *(
            kit.graphql(EXECUTE, alice["wallet-pay"], quote=quote_id, key=f"k{n}", consent=consent)
            for n, quote_id in enumerate(quotes)
        )
    )
    bodies = [answer.json() for answer in answers]
    completed = [body for body in bodies if "errors" not in body]
    refused = [body["errors"][0]["extensions"] for body in bodies if "errors" in body]
    assert len(completed) == 1 and completed[0]["data"]["executeConversion"]["status"] == "COMPLETED"
    assert [(error["code"], error["reason"]) for error in refused] == [("AUTHORITY_REQUIRED", "CONSENT_USED")]
    listed = await kit.data("{ conversions { items { id } } }", alice["wallet-pay"])
    assert len(listed["conversions"]["items"]) == 1
    assert await fleet["happy-card"].admin.balance("alice") == HAPPY_CARD_OPENING - 1000


async def test_a_consent_pays_for_one_redemption(kit: ExchangeKit, alice: dict[str, str], fleet: SandboxFleet) -> None:
    airline = await kit.partner_token("formosa-air")
    reward = (await kit.data(PUBLISH, airline, input={"title": "Lounge pass", "price": "100", "stock": 5}))[
        "publishReward"
    ]["id"]
    points = (await kit.data(PRICE, alice["wallet-pay"], reward=reward, pay="happy-card"))["redemptionQuote"]["points"]
    consent = await kit.debit_consent(alice["happy-card"], "happy-card", points)
    paid = await kit.data(REDEEM, alice["wallet-pay"], reward=reward, pay="happy-card", key="r1", consent=consent)
    assert paid["redeemReward"]["status"] == "COMPLETED"
    again = await kit.data(REDEEM, alice["wallet-pay"], reward=reward, pay="happy-card", key="r1", consent=consent)
    assert again["redeemReward"]["id"] == paid["redeemReward"]["id"]
    used = refusal(
        await kit.graphql(REDEEM, alice["wallet-pay"], reward=reward, pay="happy-card", key="r2", consent=consent)
    )
    assert (used["field"], used["reason"]) == ("consent", "CONSENT_USED")
    assert (await kit.data(STOCK, reward=reward))["reward"] == {"stock": 4}
    assert await fleet["happy-card"].admin.balance("alice") == HAPPY_CARD_OPENING - points
