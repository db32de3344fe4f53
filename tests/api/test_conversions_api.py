"""Members link accounts, see them live, quote and convert; partners price their program —
over HTTP, with real tokens, against sandbox partners on loopback."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import update

from exchange.auth.scopes import Role
from exchange.pricing.models import RateVersion
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet

PARTNERS = ("wallet-pay", "happy-card", "fresh-mart")

ACCOUNTS = """
{ me { coalitionLevel accounts {
    program { id } memberRef balance tier level expiringPoints { points expiresOn } error { code }
} } }
"""
LINK = """
mutation($program: ID!, $ref: String!, $verification: String!) {
  linkAccount(programId: $program, memberRef: $ref, verification: $verification) { memberRef establishedBy }
}
"""
QUOTE = """
mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) {
    id pointsIn pointsOut fee { amount currency } moneyValue { amount currency } rateVersion expiresAt
    breakdown { basePoints promotionBonusPoints tierBonusPoints valueCapPoints memberLevel tierBonusPercent }
  }
}
"""
EXECUTE = """
mutation($quote: ID!, $key: String!) {
  executeConversion(quoteId: $quote, idempotencyKey: $key) {
    id status pointsIn pointsOut fromProgram { id } toProgram { id } failure { code message }
  }
}
"""


@pytest.fixture
async def partner_base_urls(sandboxes: SandboxFleet) -> dict[str, str]:
    await sandboxes.start(*PARTNERS)
    return sandboxes.base_urls


@pytest.fixture
async def alice(kit: ExchangeKit) -> str:
    """Alice's member token, vouched for by wallet-pay, with her happy-card account linked."""
    token = await kit.member_token("wallet-pay", "alice")
    await kit.data(LINK, token, program="happy-card", ref="alice", verification="1111")
    return token


@pytest.fixture
async def alice_at_happy_card(kit: ExchangeKit, alice: str) -> str:
    """Alice's token asserted by happy-card, whose points it may convert (wallet-pay's may not)."""
    return await kit.member_token("happy-card", "alice")


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert body.get("errors"), body
    return dict(body["errors"][0])


async def test_linking_needs_the_partners_confirmation(kit: ExchangeKit) -> None:
    token = await kit.member_token("wallet-pay", "bob")
    wrong = error_of(await kit.graphql(LINK, token, program="fresh-mart", ref="bob", verification="0000"))
    assert wrong["extensions"] == {"code": "BAD_USER_INPUT", "field": "verification"}
    unknown = error_of(await kit.graphql(LINK, token, program="fresh-mart", ref="nobody", verification="2222"))
    assert unknown["extensions"] == wrong["extensions"], "an unknown id is refused as a wrong one: none is told apart"
    assert unknown["message"] == wrong["message"]
    linked = await kit.data(LINK, token, program="fresh-mart", ref="bob", verification="2222")
    assert linked["linkAccount"] == {"memberRef": "bob", "establishedBy": "VERIFIED"}
    again = await kit.data(LINK, token, program="fresh-mart", ref="bob", verification="2222")
    assert again == linked
    other = await kit.member_token("wallet-pay", "carol")
    taken = error_of(await kit.graphql(LINK, other, program="fresh-mart", ref="bob", verification="2222"))
    assert taken["extensions"] == {"code": "BAD_USER_INPUT", "field": "memberRef"}


async def test_the_federated_view_shows_every_linked_account_live(kit: ExchangeKit, alice: str) -> None:
    me = (await kit.data(ACCOUNTS, alice))["me"]
    accounts = {account["program"]["id"]: account for account in me["accounts"]}
    assert set(accounts) == {"wallet-pay", "happy-card", "coalition"}
    assert accounts["coalition"]["balance"] == 0 and accounts["coalition"]["error"] is None
    assert accounts["happy-card"]["balance"] == 120_000
    assert accounts["happy-card"]["tier"] == "VIP" and accounts["happy-card"]["level"] == 2
    assert accounts["wallet-pay"]["expiringPoints"][0]["points"] == 5000
    assert me["coalitionLevel"] == 2  # the best of Premium (1) and VIP (2)


async def test_a_balance_past_a_32_bit_int_is_shown_whole(kit: ExchangeKit, sandboxes: SandboxFleet) -> None:
    """Partners report up to 2^53 - 1 points (their contract): a GraphQL Int would fail there."""
    await sandboxes["wallet-pay"].admin.add_member("whale", balance=2**53 - 1)
    me = (await kit.data(ACCOUNTS, await kit.member_token("wallet-pay", "whale")))["me"]
    accounts = {account["program"]["id"]: account for account in me["accounts"]}
    assert accounts["wallet-pay"]["balance"] == 2**53 - 1 and accounts["wallet-pay"]["error"] is None


async def test_a_partner_that_is_down_costs_only_its_own_account(
    kit: ExchangeKit, alice: str, sandboxes: SandboxFleet
) -> None:
    await sandboxes["happy-card"].stop()
    me = (await kit.data(ACCOUNTS, alice))["me"]
    accounts = {account["program"]["id"]: account for account in me["accounts"]}
    assert accounts["happy-card"]["error"] == {"code": "PARTNER_UNAVAILABLE"}
    assert accounts["happy-card"]["balance"] is None
    assert accounts["wallet-pay"]["balance"] == 120_000 and accounts["wallet-pay"]["error"] is None


async def test_quote_then_convert_then_read_it_back(kit: ExchangeKit, alice: str, alice_at_happy_card: str) -> None:
    quote = (await kit.data(QUOTE, alice, **{"from": "happy-card", "to": "wallet-pay", "points": 1000}))["createQuote"]
    # 250.00 TWD, 2% fee 5.00, 245 base points, 2% tier bonus at level 2 = 4 points
    assert quote["moneyValue"] == {"amount": "250.00", "currency": "TWD"}
    assert quote["fee"] == {"amount": "5.00", "currency": "TWD"}
    assert quote["breakdown"] == {
        "basePoints": 245,
        "promotionBonusPoints": 0,
        "tierBonusPoints": 4,
        "valueCapPoints": 0,  # 249 wallet points are worth less than the 250.00 in
        "memberLevel": 2,
        "tierBonusPercent": "2",
    }
    assert (quote["pointsIn"], quote["pointsOut"], quote["rateVersion"]) == (1000, 249, 1)

    done = (await kit.data(EXECUTE, alice_at_happy_card, quote=quote["id"], key="convert-1"))["executeConversion"]
    assert (done["status"], done["pointsOut"], done["failure"]) == ("COMPLETED", 249, None)
    assert (done["fromProgram"], done["toProgram"]) == ({"id": "happy-card"}, {"id": "wallet-pay"})
    again = (await kit.data(EXECUTE, alice_at_happy_card, quote=quote["id"], key="convert-1"))["executeConversion"]
    assert again["id"] == done["id"]

    accounts = {a["program"]["id"]: a["balance"] for a in (await kit.data(ACCOUNTS, alice))["me"]["accounts"]}
    assert accounts == {"happy-card": 119_000, "wallet-pay": 120_249, "coalition": 0}  # never a stale balance
    listed = await kit.data("{ conversions(first: 5) { items { id status } nextCursor } }", alice)
    assert listed["conversions"] == {"items": [{"id": done["id"], "status": "COMPLETED"}], "nextCursor": None}


async def test_refusals_name_their_field(kit: ExchangeKit, alice: str) -> None:
    unlinked = error_of(await kit.graphql(QUOTE, alice, **{"from": "happy-card", "to": "fresh-mart", "points": 1000}))
    assert unlinked["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.toProgram"}
    small = error_of(await kit.graphql(QUOTE, alice, **{"from": "happy-card", "to": "wallet-pay", "points": 40}))
    assert small["extensions"] == {
        "code": "LIMIT_EXCEEDED",
        "field": "input.points",
        "limit": "minimum_points",
        "remaining": 0,
    }
    zero = error_of(await kit.graphql(QUOTE, alice, **{"from": "happy-card", "to": "wallet-pay", "points": 0}))
    assert zero["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.points"}
    missing = error_of(await kit.graphql(EXECUTE, alice, quote="00000000-0000-0000-0000-000000000000", key="k"))
    assert missing["extensions"] == {"code": "NOT_FOUND", "field": "quoteId"}
    quote = (await kit.data(QUOTE, alice, **{"from": "happy-card", "to": "wallet-pay", "points": 1000}))["createQuote"]
    long_key = error_of(await kit.graphql(EXECUTE, alice, quote=quote["id"], key="k" * 101))
    assert long_key["extensions"] == {"code": "BAD_USER_INPUT", "field": "idempotencyKey"}


async def test_insufficient_points_fail_the_conversion_visibly(kit: ExchangeKit) -> None:
    dave = await kit.member_token("wallet-pay", "dave")  # dave has no points anywhere
    await kit.data(LINK, dave, program="happy-card", ref="dave", verification="4444")
    quote = (await kit.data(QUOTE, dave, **{"from": "wallet-pay", "to": "happy-card", "points": 100}))["createQuote"]
    failed = (await kit.data(EXECUTE, dave, quote=quote["id"], key="k"))["executeConversion"]
    assert failed["status"] == "FAILED"
    assert failed["failure"]["code"] == "INSUFFICIENT_POINTS"


async def test_members_see_only_their_own_conversions(kit: ExchangeKit, alice: str, alice_at_happy_card: str) -> None:
    quote = (await kit.data(QUOTE, alice, **{"from": "happy-card", "to": "wallet-pay", "points": 1000}))["createQuote"]
    done = (await kit.data(EXECUTE, alice_at_happy_card, quote=quote["id"], key="k"))["executeConversion"]
    bob = await kit.member_token("wallet-pay", "bob")
    hidden = error_of(await kit.graphql("query($id: ID!) { conversion(id: $id) { id } }", bob, id=done["id"]))
    assert hidden["extensions"]["code"] == "NOT_FOUND"
    stolen = error_of(await kit.graphql(EXECUTE, bob, quote=quote["id"], key="k"))
    assert stolen["extensions"] == {"code": "NOT_FOUND", "field": "quoteId"}
    assert (await kit.data("{ conversions { items { id } } }", bob))["conversions"]["items"] == []
    staff = await kit.staff_token(Role.SETTLEMENT)
    seen = await kit.data("query($id: ID!) { conversion(id: $id) { id status } }", staff, id=done["id"])
    assert seen["conversion"] == {"id": done["id"], "status": "COMPLETED"}


SET_RATE = """
mutation($from: ID!, $to: ID!, $ratio: String) {
  setConversionRate(input: {fromProgram: $from, toProgram: $to, ratio: $ratio}) {
    version origin createdBy bands { fromPoints pointsIn pointsOut }
  }
}
"""


async def test_partners_price_conversions_into_their_own_program_only(kit: ExchangeKit) -> None:
    fresh_mart = await kit.partner_token("fresh-mart")
    version = await kit.data(SET_RATE, fresh_mart, **{"from": "wallet-pay", "to": "fresh-mart", "ratio": "1:12"})
    assert version["setConversionRate"]["version"] == 2
    assert version["setConversionRate"]["origin"] == "PARTNER"
    assert version["setConversionRate"]["bands"] == [{"fromPoints": 1, "pointsIn": 1, "pointsOut": 12}]
    formosa = await kit.partner_token("formosa-air")
    foreign = error_of(
        await kit.graphql(SET_RATE, formosa, **{"from": "wallet-pay", "to": "fresh-mart", "ratio": "1:99"})
    )
    assert foreign["extensions"]["code"] == "FORBIDDEN"
    declared = error_of(
        await kit.graphql(SET_RATE, formosa, **{"from": "harbor-bank", "to": "formosa-air", "ratio": "1:1"})
    )
    assert declared["extensions"] == {"code": "FORBIDDEN", "field": "input.fromProgram"}
    bad = error_of(await kit.graphql(SET_RATE, fresh_mart, **{"from": "wallet-pay", "to": "fresh-mart", "ratio": "12"}))
    assert bad["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.ratio"}
    rates_query = '{ program(id: "fresh-mart") { incomingRates { fromProgramId version } } }'
    own = await kit.data(rates_query, fresh_mart)
    assert {"fromProgramId": "wallet-pay", "version": 2} in own["program"]["incomingRates"]
    others = await kit.graphql(rates_query, formosa)
    assert error_of(others)["extensions"]["code"] == "FORBIDDEN"


async def test_a_rates_fixed_fee_reads_as_money_in_the_settlement_currency(kit: ExchangeKit) -> None:
    """As every other amount of money: `feeFixed` said the amount alone."""
    async with kit.db.transaction() as session:
        await session.exec(
            update(RateVersion).where(RateVersion.to_program == "fresh-mart").values(fee_fixed=Decimal("1.25"))
        )
    query = '{ program(id: "fresh-mart") { incomingRates { feeFixed fixedFee { amount currency } } } }'
    rates = (await kit.data(query, await kit.partner_token("fresh-mart")))["program"]["incomingRates"]
    assert rates and {
        (rate["feeFixed"], rate["fixedFee"]["amount"], rate["fixedFee"]["currency"]) for rate in rates
    } == {("1.25", "1.25", "TWD")}


async def test_partners_run_their_promotions(kit: ExchangeKit) -> None:
    token = await kit.partner_token("fresh-mart")
    create = """
    mutation { createPromotion(input: {programId: "fresh-mart", id: "fm-weekend", bonusPercent: "20",
      startsAt: "2026-01-01T00:00:00Z", endsAt: "2099-01-01T00:00:00Z"}) { id bonusPercent origin } }
    """
    created = await kit.data(create, token)
    assert created["createPromotion"] == {"id": "fm-weekend", "bonusPercent": "20", "origin": "PARTNER"}
    assert await kit.data(create, token) == created  # the same terms again: the same promotion
    ended = await kit.data('mutation { endPromotion(programId: "fresh-mart", id: "fm-weekend") { id endsAt } }', token)
    assert ended["endPromotion"]["id"] == "fm-weekend"
    other = await kit.partner_token("wallet-pay")
    refused = error_of(
        await kit.graphql('mutation { endPromotion(programId: "fresh-mart", id: "fm-weekend") { id } }', other)
    )
    assert refused["extensions"]["code"] == "FORBIDDEN"


async def test_a_quote_names_the_points_the_value_cap_cut(kit: ExchangeKit, alice: str) -> None:
    """Wallet Pay's 10% promotion and alice's 2% tier bonus would pay 273 wallet points for
    250.00 TWD of card points; the quote pays the 250 they are worth and says what was cut."""
    promote = """
    mutation { createPromotion(input: {programId: "wallet-pay", id: "wp-ten", bonusPercent: "10",
      startsAt: "2026-01-01T00:00:00Z", endsAt: "2099-01-01T00:00:00Z"}) { id } }
    """
    await kit.data(promote, await kit.partner_token("wallet-pay"))
    quote = (await kit.data(QUOTE, alice, **{"from": "happy-card", "to": "wallet-pay", "points": 1000}))["createQuote"]
    uncapped = 245 + 24 + 4  # base, 10% and 2% of it, each rounded down
    breakdown = quote["breakdown"]
    assert quote["pointsOut"] == 250
    assert breakdown["valueCapPoints"] == uncapped - quote["pointsOut"] == 23
    # Cut from the tier bonus first (4), then the promotion's (19 of 24).
    assert (breakdown["basePoints"], breakdown["promotionBonusPoints"], breakdown["tierBonusPoints"]) == (245, 5, 0)
    assert breakdown["basePoints"] + breakdown["promotionBonusPoints"] + breakdown["tierBonusPoints"] == 250
    assert breakdown["tierBonusPercent"] == "2", "the percent the member's level earns, whatever the cut"


ROUTE = (
    "route { fromProgram { id } toProgram { id } pointsIn pointsOut rateVersion moneyValue { amount } fee { amount } }"
)
ROUTED_QUOTE = f"""
mutation($from: ID!, $to: ID!, $points: Int!) {{
  createQuote(input: {{fromProgram: $from, toProgram: $to, points: $points}}) {{
    id pointsIn pointsOut fee {{ amount }} moneyValue {{ amount }} {ROUTE}
  }}
}}
"""
ROUTED_EXECUTE = f"""
mutation($quote: ID!, $key: String!) {{
  executeConversion(quoteId: $quote, idempotencyKey: $key) {{ id status pointsOut {ROUTE} }}
}}
"""


def leg(source: str, target: str, points_in: int, points_out: int, money: str, fee: str) -> dict[str, Any]:
    return {
        "fromProgram": {"id": source},
        "toProgram": {"id": target},
        "pointsIn": points_in,
        "pointsOut": points_out,
        "rateVersion": 1,
        "moneyValue": {"amount": money},
        "fee": {"amount": fee},
    }


async def test_a_conversion_goes_through_the_coalition_point_when_that_pays_more(
    kit: ExchangeKit, alice: str, alice_at_happy_card: str
) -> None:
    await kit.data(LINK, alice, program="fresh-mart", ref="alice", verification="1111")
    direct = await kit.data(ROUTED_QUOTE, alice, **{"from": "happy-card", "to": "fresh-mart", "points": 1000})
    # Derived, the direct pair pays 2,450 + 2% tier bonus; two legs' fees make the route pay less.
    assert direct["createQuote"]["route"] == [leg("happy-card", "fresh-mart", 1000, 2499, "250.00", "5.00")]

    fresh_mart = await kit.partner_token("fresh-mart")
    await kit.data(SET_RATE, fresh_mart, **{"from": "happy-card", "to": "fresh-mart", "ratio": "1:2"})
    quote = await kit.data(ROUTED_QUOTE, alice, **{"from": "happy-card", "to": "fresh-mart", "points": 1000})
    quote = quote["createQuote"]
    # Directly 1:2 now pays 2,040. Through the coalition point: 250.00 less 5.00 is 245 coalition
    # points (+4 tier bonus), worth 249.00; less 4.98, 2,440 fresh-mart points (+48).
    route = [
        leg("happy-card", "coalition", 1000, 249, "250.00", "5.00"),
        leg("coalition", "fresh-mart", 249, 2488, "249.00", "4.98"),
    ]
    assert quote["route"] == route
    assert (quote["pointsIn"], quote["pointsOut"], quote["moneyValue"], quote["fee"]) == (
        1000,
        2488,
        {"amount": "250.00"},
        {"amount": "9.98"},
    )

    done = (await kit.data(ROUTED_EXECUTE, alice_at_happy_card, quote=quote["id"], key="routed"))["executeConversion"]
    assert (done["status"], done["pointsOut"], done["route"]) == ("COMPLETED", 2488, route)
    again = (await kit.data(ROUTED_EXECUTE, alice_at_happy_card, quote=quote["id"], key="routed"))["executeConversion"]
    assert again == done
    accounts = {a["program"]["id"]: a["balance"] for a in (await kit.data(ACCOUNTS, alice))["me"]["accounts"]}
    assert (accounts["happy-card"], accounts["fresh-mart"]) == (119_000, 122_488)
    assert accounts.get("coalition", 0) == 0, "the member holds no coalition point after it"


async def test_setting_or_clearing_a_rate_again_answers_the_version_in_effect(kit: ExchangeKit) -> None:
    """A retry after a lost answer (or a clear of a derived rate) changes nothing, so it starts
    no version: the version in effect is the answer, and the rate history holds no duplicate."""
    token = await kit.partner_token("fresh-mart")
    pair = {"from": "wallet-pay", "to": "fresh-mart"}
    first = (await kit.data(SET_RATE, token, **pair, ratio="1:12"))["setConversionRate"]
    assert (await kit.data(SET_RATE, token, **pair, ratio="1:12"))["setConversionRate"] == first
    changed = (await kit.data(SET_RATE, token, **pair, ratio="1:13"))["setConversionRate"]
    assert changed["version"] == first["version"] + 1
    clear = """mutation($from: ID!, $to: ID!) { clearConversionRate(fromProgram: $from, toProgram: $to) {
      version origin } }"""
    cleared = (await kit.data(clear, token, **pair))["clearConversionRate"]
    assert cleared == {"version": changed["version"] + 1, "origin": "DERIVED"}
    assert (await kit.data(clear, token, **pair))["clearConversionRate"] == cleared
