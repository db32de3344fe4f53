"""Hostile values in GraphQL requests get a typed error naming the field, the same on SQLite and
PostgreSQL, and change nothing: never an internal error, never a store's own refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlmodel import select

from exchange.auth.scopes import Role
from exchange.conversions.queries import MEMBER_CONVERSIONS
from exchange.ledger.models import SettlementPeriod
from exchange.serving import free_port
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.conftest import SAMPLE_PARTNERS


@pytest.fixture
def gateway_settings(database_url: str) -> Settings:
    """Every test here runs once on SQLite and once on PostgreSQL."""
    return Settings(database_url=database_url, partners_dir=SAMPLE_PARTNERS, port=free_port())


def refusal(response: httpx.Response) -> dict[str, Any]:
    """The one error of a refused request; never an internal one."""
    body = response.json()
    assert response.status_code < 500 and "INTERNAL_SERVER_ERROR" not in response.text, body
    assert len(body["errors"]) == 1, body
    return dict(body["errors"][0])


def assert_bad_input(response: httpx.Response, field: str | None) -> None:
    error = refusal(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    if field is not None:
        assert error["extensions"]["field"] == field, error


PROMOTION = """mutation($input: PromotionInput!) { createPromotion(input: $input) { id bonusPercent startsAt } }"""
REWARD = (
    """mutation($input: PublishRewardInput!) { publishReward(programId: "fresh-mart", input: $input) { id price } }"""
)


def promotion(**overrides: Any) -> dict[str, Any]:
    return {
        "programId": "fresh-mart",
        "id": "winter",
        "bonusPercent": "10",
        "startsAt": "2031-01-01T00:00:00+08:00",
        "endsAt": "2031-02-01T00:00:00+08:00",
        **overrides,
    }


#: Python's Decimal reads each of these; none is plain ASCII decimal notation.
NOT_PLAIN_DECIMALS = [
    "NaN",
    "sNaN",
    "Infinity",
    "-Infinity",
    "1e999999",
    "1e-999999",
    "1e18",
    "1e1",
    "\u0661\u0660",  # Arabic-Indic 10
    "\uff11\uff10",  # fullwidth 10
]


async def test_a_decimal_not_in_plain_ascii_notation_is_refused_naming_the_field(kit: ExchangeKit) -> None:
    token = await kit.partner_token("fresh-mart")
    staff = await kit.staff_token(Role.SETTLEMENT)
    adjust = 'mutation($amount: Decimal) { resolveBreak(breakId: "1", resolution: ADJUST, reason: "r", adjustment: {amount: $amount}) { id } }'
    for value in NOT_PLAIN_DECIMALS:
        assert_bad_input(await kit.graphql(PROMOTION, token, input=promotion(bonusPercent=value)), "input.bonusPercent")
        inline = f'mutation {{ createPromotion(input: {{programId: "fresh-mart", id: "p", bonusPercent: "{value}", startsAt: "2031-01-01T00:00:00Z", endsAt: "2031-02-01T00:00:00Z"}}) {{ id }} }}'
        assert_bad_input(await kit.graphql(inline, token), "input.bonusPercent")
        assert_bad_input(await kit.graphql(adjust, staff, amount=value), "amount")


async def test_values_too_large_or_too_precise_for_their_column_are_refused(kit: ExchangeKit) -> None:
    token = await kit.partner_token("fresh-mart")
    reward = {"title": "Voucher", "price": "100000000000000000", "stock": 5}
    assert_bad_input(await kit.graphql(REWARD, token, input=reward), "input.price")
    assert_bad_input(await kit.graphql(REWARD, token, input={**reward, "price": "1.001"}), "input.price")
    assert_bad_input(await kit.graphql(PROMOTION, token, input=promotion(bonusPercent="1.00001")), "input.bonusPercent")
    created = await kit.data(PROMOTION, token, input=promotion(bonusPercent="12.5000"))
    assert Decimal(created["createPromotion"]["bonusPercent"]) == Decimal("12.5")


async def test_a_reward_costing_more_points_than_a_redemption_may_spend_is_refused(kit: ExchangeKit) -> None:
    """A price the column holds can still come to more points than any answer may carry (an
    Int) or any redemption may spend: a typed limit, not a result GraphQL cannot represent."""
    token = await kit.partner_token("fresh-mart")
    dear = {"title": "Yacht", "price": "99999999999999.99", "stock": 1, "id": "yacht"}
    await kit.data(REWARD, token, input=dear)
    member = await kit.member_token("wallet-pay", "alice")
    quote = '{ redemptionQuote(rewardId: "yacht", payWith: "wallet-pay") { points } }'
    redeem = 'mutation { redeemReward(rewardId: "yacht", payWith: "wallet-pay", idempotencyKey: "k") { id } }'
    for operation in (quote, redeem):
        error = refusal(await kit.graphql(operation, member))
        assert error["extensions"]["code"] == "LIMIT_EXCEEDED", error
        assert (error["extensions"]["field"], error["extensions"]["limit"]) == ("payWith", "max_points")
    assert (await kit.data("{ redemptions { id } }", member))["redemptions"] == []


WITHOUT_OFFSET_OR_OFF_CALENDAR = [
    "2031-01-01T00:00:00",
    "2031-01-01",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-10:00",
    "soon",
]


async def test_a_datetime_without_offset_or_off_the_calendar_is_refused(kit: ExchangeKit) -> None:
    token = await kit.partner_token("fresh-mart")
    for value in WITHOUT_OFFSET_OR_OFF_CALENDAR:
        assert_bad_input(await kit.graphql(PROMOTION, token, input=promotion(startsAt=value)), "input.startsAt")
        reward = {"title": "Voucher", "price": "10", "stock": 5, "availableUntil": value}
        assert_bad_input(await kit.graphql(REWARD, token, input=reward), "input.availableUntil")


async def test_datetimes_are_read_with_their_offset_and_answered_in_utc(kit: ExchangeKit) -> None:
    token = await kit.partner_token("fresh-mart")
    created = await kit.data(PROMOTION, token, input=promotion())
    assert created["createPromotion"]["startsAt"] == "2030-12-31T16:00:00+00:00"


HOSTILE_TEXT = {"NUL": "key\x00", "surrogate": "key\ud800", "too long": "k" * 101}


async def test_hostile_idempotency_keys_are_refused_by_one_rule(kit: ExchangeKit) -> None:
    member = await kit.member_token("wallet-pay", "alice")
    for key in [*HOSTILE_TEXT.values(), "tab\tkey", "", "   ", " key", "key ", "cl\u00e9", "\u3000"]:
        await _refused_as_idempotency_key(kit, member, key)


async def _refused_as_idempotency_key(kit: ExchangeKit, member: str, key: str) -> None:
    convert = 'mutation($key: String!) { executeConversion(quoteId: "q", idempotencyKey: $key) { id } }'
    redeem = (
        'mutation($key: String!) { redeemReward(rewardId: "r", payWith: "wallet-pay", idempotencyKey: $key) { id } }'
    )
    assert_bad_input(await kit.graphql(convert, member, key=key), "idempotencyKey")
    assert_bad_input(await kit.graphql(redeem, member, key=key), "idempotencyKey")


HOSTILE_STRINGS: list[tuple[str, dict[str, Any], str]] = [
    (REWARD, {"input": {"title": "t" * 121, "price": "1", "stock": 1}}, "input.title"),
    (REWARD, {"input": {"title": "T", "description": "d" * 1001, "price": "1", "stock": 1}}, "input.description"),
    (REWARD, {"input": {"title": "T\x00", "price": "1", "stock": 1}}, "input.title"),
    (REWARD, {"input": {"title": "T", "price": "1", "stock": 1, "id": "r" * 65}}, "input.id"),
    (REWARD, {"input": {"title": "T", "price": "1", "stock": 1, "id": "a?b"}}, "input.id"),
    (PROMOTION, {"input": promotion(id="p\ud800")}, "input.id"),
    (PROMOTION, {"input": promotion(id="a/b")}, "input.id"),
    (PROMOTION, {"input": promotion(fromPrograms=["wallet-pay", "x" * 65])}, "input.fromPrograms[1]"),
    (
        'mutation($kid: String!) { removeAssertionKey(programId: "fresh-mart", kid: $kid) { kid } }',
        {"kid": "k\x00"},
        "kid",
    ),
    (
        'mutation($kid: String!) { removeAssertionKey(programId: "fresh-mart", kid: $kid) { kid } }',
        {"kid": "k" * 129},
        "kid",
    ),
    ("query($id: ID!) { program(id: $id) { id } }", {"id": "\ud800"}, "id"),
    (
        'query($after: String) { program(id: "fresh-mart") { linkedAccounts(after: $after) { memberRef } } }',
        {"after": "\x00"},
        "after",
    ),
]


async def test_hostile_strings_are_refused_naming_the_field(kit: ExchangeKit) -> None:
    token = await kit.partner_token("fresh-mart")
    for operation, variables, field in HOSTILE_STRINGS:
        assert_bad_input(await kit.graphql(operation, token, **variables), field)


WEBHOOK = """mutation($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) { subscription { id description } }
}"""
#: Text members and staff are shown as a partner wrote it: no control character, no direction
#: control (which shows the text around it as other text), a title that shows something.
SHOWN_TEXT: list[tuple[str, dict[str, Any], str, str]] = [
    (REWARD, {"title": "\u200b\ufeff", "price": "1", "stock": 1}, "input.title", "title shows nothing"),
    (REWARD, {"title": "Tea for 1\u202e00.01", "price": "1", "stock": 1}, "input.title", "U+202E, at character 10"),
    (REWARD, {"title": "Tea\x1b[2J", "price": "1", "stock": 1}, "input.title", "a control character, U+001B"),
    (REWARD, {"title": "Tea\nfor two", "price": "1", "stock": 1}, "input.title", "a control character, U+000A"),
    (REWARD, {"title": "Tea", "description": "\u2067x", "price": "1", "stock": 1}, "input.description", "U+2067"),
    (REWARD, {"title": "Tea", "description": "a\x07", "price": "1", "stock": 1}, "input.description", "U+0007"),
    (
        WEBHOOK,
        {"url": "https://partner.example/hook", "eventTypes": ["PERIOD_CLOSED"], "description": "\u202eorp"},
        "input.description",
        "a direction control, U+202E",
    ),
]


async def test_text_shown_as_written_holding_controls_or_showing_nothing_is_refused_naming_the_character(
    kit: ExchangeKit,
) -> None:
    token = await kit.partner_token("fresh-mart")
    listed = '{ rewards(programId: "fresh-mart") { id } webhookSubscriptions(programId: "fresh-mart") { id } }'
    before = await kit.data(listed, token)
    for operation, values, field, reason in SHOWN_TEXT:
        own = {"programId": "fresh-mart"} if operation is WEBHOOK else {}
        response = await kit.graphql(operation, token, input={**values, **own})
        assert_bad_input(response, field)
        assert reason in refusal(response)["message"], refusal(response)
    assert await kit.data(listed, token) == before
    lines = {"title": "Tea for two", "description": "Earl Grey\r\n\tor jasmine", "price": "1", "stock": 1}
    assert (await kit.data(REWARD, token, input=lines))["publishReward"]["id"]


async def test_hostile_strings_from_members_and_staff_are_refused(kit: ExchangeKit, last_month: str) -> None:
    member = await kit.member_token("wallet-pay", "alice")
    link = 'mutation($ref: String!) { linkAccount(programId: "fresh-mart", memberRef: $ref, verification: "1") { memberRef } }'
    assert_bad_input(await kit.graphql(link, member, ref="alice\x00"), "memberRef")
    assert_bad_input(await kit.graphql(link, member, ref="a" * 129), "memberRef")
    staff = await kit.staff_token(Role.SETTLEMENT)
    resolve = (
        'mutation($reason: String!) { resolveBreak(breakId: "1", resolution: ACCEPT_LEDGER, reason: $reason) { id } }'
    )
    assert_bad_input(await kit.graphql(resolve, staff, reason="r" * 501), "reason")
    sign_off = (
        'mutation($note: String) { signOffPeriod(partnerId: "fresh-mart", period: "2026-01", note: $note) { status } }'
    )
    assert_bad_input(await kit.graphql(sign_off, staff, note="\ud800"), "note")
    records = 'mutation($csv: String!, $p: String!) { importPartnerRecords(partnerId: "fresh-mart", period: $p, csv: $csv) { id } }'
    assert_bad_input(await kit.graphql(records, staff, p=last_month, csv="reference,amount\nx\ud800,1\n"), "csv")


async def test_integers_out_of_range_are_refused_not_overflowed(kit: ExchangeKit) -> None:
    staff = await kit.staff_token(Role.SETTLEMENT)
    resolve = 'mutation($id: ID!) { resolveBreak(breakId: $id, resolution: ACCEPT_LEDGER, reason: "r") { id } }'
    assert_bad_input(await kit.graphql(resolve, staff, id="99999999999999999999999"), "breakId")
    assert_bad_input(await kit.graphql(resolve, staff, id="١٢"), "breakId")  # digits, but not 0-9
    assert refusal(await kit.graphql(resolve, staff, id="9223372036854775807"))["extensions"]["code"] == "NOT_FOUND"
    member = await kit.member_token("wallet-pay", "alice")
    assert_bad_input(await kit.graphql("{ conversions(first: 2147483647) { nextCursor } }", member), "first")
    page = "query($first: Int!) { conversions(first: $first) { nextCursor } }"
    assert_bad_input(await kit.graphql(page, member, first=2**31), "first")


async def test_a_forged_cursor_whose_time_leaves_the_calendar_in_utc_is_refused_naming_after(kit: ExchangeKit) -> None:
    """A cursor holds a time and an id, and a check anyone can compute; one forged with a time the
    calendar holds only before its offset is applied is no cursor, not an internal error."""
    member = await kit.member_token("wallet-pay", "alice")
    member_id = (await kit.data("{ viewer { memberId } }", member))["viewer"]["memberId"]
    page = "query($after: String) { conversions(after: $after) { nextCursor } }"

    def forged(moment: datetime) -> str:
        return MEMBER_CONVERSIONS.cursor(SimpleNamespace(created_at=moment, id="c"), member_id)

    for moment in (
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-14))),
    ):
        assert_bad_input(await kit.graphql(page, member, after=forged(moment)), "after")
    earliest = forged(datetime(1, 1, 1, tzinfo=UTC))
    assert (await kit.data(page, member, after=earliest))["conversions"] == {"nextCursor": None}


async def test_periods_off_the_calendar_are_refused_and_nothing_is_closed(kit: ExchangeKit) -> None:
    staff = await kit.staff_token(Role.SETTLEMENT)
    close = "mutation($p: String!) { closePeriod(period: $p) { period status startsAt } }"
    read = "query($p: String!) { settlementPeriod(period: $p) { status } }"
    for period in ["0000-01", "9999-12", "0001-01", "2026-13", "2026-1", "2026-01x", "２０２６-01"]:
        assert_bad_input(await kit.graphql(close, staff, p=period), "period")
        assert_bad_input(await kit.graphql(read, staff, p=period), "period")
    async with kit.db.transaction() as session:
        assert (await session.exec(select(SettlementPeriod))).all() == []


async def test_partner_records_naming_an_unknown_counterparty_are_refused_at_import(
    kit: ExchangeKit, last_month: str
) -> None:
    staff = await kit.staff_token(Role.SETTLEMENT)
    await kit.data("mutation($p: String!) { closePeriod(period: $p) { status } }", staff, p=last_month)
    records = 'mutation($csv: String!, $p: String!) { importPartnerRecords(partnerId: "fresh-mart", period: $p, csv: $csv) { id } }'
    csv = "reference,amount,counterparty\nconversion:c1,98.00,wallet-pay\nconversion:c9,1.00,no-such-partner\n"
    error = refusal(await kit.graphql(records, staff, p=last_month, csv=csv))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["line"] == 3 and "no-such-partner" in error["extensions"]["reason"]
    read = 'query($p: String!) { reconciliation(partnerId: "fresh-mart", period: $p) { id } }'
    assert refusal(await kit.graphql(read, staff, p=last_month))["extensions"]["code"] == "NOT_FOUND"
