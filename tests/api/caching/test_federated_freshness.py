"""The federated view never shows a partner's answer from before the member's own activity.

The gateway keeps partners' answers for a while (here for minutes, so that only the activity
marker can refresh them). Each test reads `me.accounts` (which fills the cache), does
something through the exchange that changes the member's points or tier at a partner, and
reads again at once: the view shows what the partner holds now. Each runs on SQLite and on
PostgreSQL (the marker is moved by the database itself, in each dialect its own way).
"""

from __future__ import annotations

import aiosqlite
import pytest

from exchange.sandbox.faults import FaultKind
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import RunningSandbox, SandboxFleet

ACCOUNTS = "{ me { accounts { program { id } balance tier } } }"


async def accounts(kit: ExchangeKit, token: str) -> dict[str, tuple[int, str]]:
    """Balance and tier by program, as the federated view shows them."""
    rows = (await kit.data(ACCOUNTS, token))["me"]["accounts"]
    return {row["program"]["id"]: (row["balance"], row["tier"]) for row in rows}


async def test_a_redemption_shows_in_the_balance_at_once(kit: ExchangeKit, bob: str) -> None:
    assert (await accounts(kit, bob))["harbor-bank"] == (25_000, "Platinum Card")
    reward = (
        await kit.data(
            'mutation { publishReward(programId: "formosa-air", input: {title: "Lounge pass", price: "100", stock: 5})'
            " { id } }",
            await kit.partner_token("formosa-air"),
        )
    )["publishReward"]
    redeem = """mutation($reward: ID!) {
      redeemReward(rewardId: $reward, payWith: "harbor-bank", idempotencyKey: "k1") { status points } }"""
    redeemed = (await kit.data(redeem, bob, reward=reward["id"]))["redeemReward"]
    assert redeemed == {"status": "COMPLETED", "points": 2040}
    assert (await accounts(kit, bob))["harbor-bank"] == (25_000 - 2040, "Platinum Card")


async def test_a_status_match_shows_in_the_tier_at_once(kit: ExchangeKit, bob: str) -> None:
    assert (await accounts(kit, bob))["formosa-air"] == (3_000, "Base")
    match = """mutation { requestStatusMatch(fromProgram: "harbor-bank", toProgram: "formosa-air") { status } }"""
    assert (await kit.data(match, bob))["requestStatusMatch"] == {"status": "ACTIVE"}
    assert (await accounts(kit, bob))["formosa-air"] == (3_000, "Gold")


async def partner_sets_tier(sandbox: RunningSandbox, member_ref: str, tier: str) -> None:
    """The partner changes a member's tier in its own records, without the exchange."""
    async with aiosqlite.connect(sandbox.server.data_file) as db:
        await db.execute("UPDATE member SET tier = ? WHERE member_ref = ?", (tier, member_ref))
        await db.commit()


async def test_a_status_match_shows_in_the_next_quotes_tier_bonus(
    kit: ExchangeKit, bob: str, fleet: SandboxFleet
) -> None:
    """A status match reads bob's tier live (Harbor Bank raised him to Infinite meanwhile); the
    quote right after it prices the tier bonus on that tier, not on the one cached before."""
    quote = """mutation { createQuote(input: {fromProgram: "harbor-bank", toProgram: "formosa-air", points: 10000})
      { breakdown { memberLevel tierBonusPercent } } }"""
    assert (await kit.data(quote, bob))["createQuote"]["breakdown"] == {"memberLevel": 2, "tierBonusPercent": "2"}
    await partner_sets_tier(fleet["harbor-bank"], "bob", "Infinite")
    match = """mutation { requestStatusMatch(fromProgram: "harbor-bank", toProgram: "formosa-air")
      { status sourceTier { name } } }"""
    assert (await kit.data(match, bob))["requestStatusMatch"] == {
        "status": "ACTIVE",
        "sourceTier": {"name": "Infinite"},
    }
    assert (await kit.data(quote, bob))["createQuote"]["breakdown"] == {"memberLevel": 3, "tierBonusPercent": "3"}


async def test_a_conversion_shows_in_both_balances_at_once(kit: ExchangeKit, bob: str) -> None:
    before = await accounts(kit, bob)
    quote = """mutation { createQuote(input: {fromProgram: "harbor-bank", toProgram: "formosa-air", points: 10000})
      { id pointsOut } }"""
    quoted = (await kit.data(quote, bob))["createQuote"]
    execute = """mutation($quote: ID!) { executeConversion(quoteId: $quote, idempotencyKey: "k1") { status } }"""
    assert (await kit.data(execute, bob, quote=quoted["id"]))["executeConversion"] == {"status": "COMPLETED"}
    after = await accounts(kit, bob)
    assert after["harbor-bank"][0] == before["harbor-bank"][0] - 10_000
    assert after["formosa-air"][0] == before["formosa-air"][0] + quoted["pointsOut"]


@pytest.mark.parametrize(
    ("partner", "fault"),
    [("harbor-bank", FaultKind.APPLY_THEN_DROP), ("formosa-air", FaultKind.ERROR)],
    ids=["debit-applied-unanswered", "credit-unanswered"],
)
async def test_a_conversion_left_in_progress_after_its_debit_shows_the_debit_at_once(
    kit: ExchangeKit, bob: str, fleet: SandboxFleet, partner: str, fault: FaultKind
) -> None:
    """Harbor Bank applied the debit but its answer was lost (in doubt at the debit), or the
    debit was answered and Formosa Air answered the credit 500 (waiting at the credit): the
    conversion is in progress, and the view showed the 25,000 points from before the debit
    until the cache's lifetime passed (the marker moved only when a conversion finished)."""
    quote = """mutation { createQuote(input: {fromProgram: "harbor-bank", toProgram: "formosa-air", points: 10000})
      { id } }"""
    quoted = (await kit.data(quote, bob))["createQuote"]
    assert (await accounts(kit, bob)) == {
        "coalition": (0, "Member"),
        "harbor-bank": (25_000, "Platinum Card"),
        "formosa-air": (3_000, "Base"),
    }
    await fleet[partner].admin.set_faults(script=[fault])
    execute = """mutation($quote: ID!) { executeConversion(quoteId: $quote, idempotencyKey: "k1") { status } }"""
    assert (await kit.data(execute, bob, quote=quoted["id"]))["executeConversion"] == {"status": "PENDING"}
    after = await accounts(kit, bob)
    assert after["harbor-bank"] == (15_000, "Platinum Card")
    assert after["formosa-air"] == (3_000, "Base")


async def test_a_conversion_keeps_the_tiers_the_next_quote_prices_on(
    kit: ExchangeKit, bob: str, fleet: SandboxFleet
) -> None:
    """A conversion moves balances, not tiers: the quote after it prices the tier bonus on the
    tiers cached before it, asking no partner (Harbor Bank's own change to Infinite meanwhile
    shows only once the tier cache's lifetime has passed, or after a status match)."""
    quote = """mutation { createQuote(input: {fromProgram: "harbor-bank", toProgram: "formosa-air", points: 10000})
      { id breakdown { memberLevel } } }"""
    quoted = (await kit.data(quote, bob))["createQuote"]
    assert quoted["breakdown"] == {"memberLevel": 2}
    execute = """mutation($quote: ID!) { executeConversion(quoteId: $quote, idempotencyKey: "k1") { status } }"""
    assert (await kit.data(execute, bob, quote=quoted["id"]))["executeConversion"] == {"status": "COMPLETED"}
    await partner_sets_tier(fleet["harbor-bank"], "bob", "Infinite")
    assert (await kit.data(quote, bob))["createQuote"]["breakdown"] == {"memberLevel": 2}
    assert (await accounts(kit, bob))["harbor-bank"][1] == "Infinite"  # balances are asked again


async def test_a_document_repeating_the_federated_view_under_aliases_asks_each_partner_once(
    kit: ExchangeKit, bob: str, fleet: SandboxFleet
) -> None:
    aliases = " ".join(f"v{n}: me {{ accounts {{ balance }} }}" for n in range(12))
    before = len(await fleet["harbor-bank"].admin.trace_headers())
    views = await kit.data(f"{{ {aliases} }}", bob)
    assert len({str(view) for view in views.values()}) == 1
    asked = (await fleet["harbor-bank"].admin.trace_headers())[before:]
    assert [request for request in asked if "/members/" in request["path"]] == [
        {"method": "GET", "path": "/members/bob", "traceparent": None}
    ]
