"""The partners' books over HTTP with real tokens: a partner reads its own and no one else's,
staff read anyone's, and the CSV export shows exactly what GraphQL shows."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from exchange.auth.scopes import Role
from exchange.conversions.clearing import conversion_transaction
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger
from exchange.testing.clock import FrozenClock
from tests.api.conftest import ExchangeKit

FIGURE = "{ points value { amount currency } }"
BOOKS = f"""query($partner: ID!, $period: String!) {{ partnerBooks(partnerId: $partner, period: $period) {{
  partnerId period periodStatus pointValue pointValuesFixedAt costPerPoint
  issued {FIGURE} convertedOut {FIGURE} redeemedForRewards {FIGURE} redeemed {FIGURE}
  reversed {FIGURE} otherPoints {FIGURE} outstanding {FIGURE}
  moneyReceivedForIssued {{ amount }} moneyPaidForRedeemed {{ amount }} moneyReceivedForRewards {{ amount }}
  moneyOther {{ amount }} moneyNet {{ amount }}
  budget {{ budget {{ amount }} spend {{ amount }} percentUsed level }}
  coalition {{ pointId pointValue breakageKeptBy expiryRate funded {FIGURE} spentAt {FIGURE} outstanding {FIGURE}
    breakage {FIGURE} breakageToDate {FIGURE} maturing {FIGURE} estimatedBreakage {FIGURE} }}
}} }}"""


def errors_at(body: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    return {tuple(error["path"]): error["extensions"]["code"] for error in body.get("errors", [])}


def from_csv(text: str) -> dict[str, tuple[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    return {row["figure"]: (row["points"], row["amount"]) for row in rows}


async def test_a_partner_reads_its_own_books_and_csv_shows_the_same_figures(kit: ExchangeKit, last_month: str) -> None:
    token = await kit.partner_token("fresh-mart")
    books = (await kit.data(BOOKS, token, partner="fresh-mart", period=last_month))["partnerBooks"]
    assert books["issued"] == {"points": 10_000, "value": {"amount": "1000.00", "currency": "TWD"}}
    assert books["moneyReceivedForIssued"] == {"amount": "98.00"} and books["costPerPoint"] is None
    assert (books["periodStatus"], books["pointValuesFixedAt"]) == ("OPEN", None), "not closed yet"
    assert books["budget"] == {
        "budget": {"amount": "500000.00"},
        "spend": {"amount": "1000.00"},
        "percentUsed": "0.20",
        "level": "NONE",
    }
    response = await kit.http.get(
        f"/settlement/books/fresh-mart/{last_month}.csv", headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    exported = from_csv(response.text)
    for figure, field in (
        ("issued", "issued"),
        ("converted_out", "convertedOut"),
        ("redeemed_for_rewards", "redeemedForRewards"),
        ("redeemed", "redeemed"),
        ("reversed", "reversed"),
        ("other", "otherPoints"),
        ("outstanding", "outstanding"),
    ):
        assert exported[figure] == (str(books[field]["points"]), books[field]["value"]["amount"]), figure
    for figure, field in (
        ("money_received_for_issued", "moneyReceivedForIssued"),
        ("money_paid_for_redeemed", "moneyPaidForRedeemed"),
        ("money_received_for_rewards", "moneyReceivedForRewards"),
        ("money_other", "moneyOther"),
        ("money_net", "moneyNet"),
    ):
        assert exported[figure] == ("", books[field]["amount"]), figure
    assert exported["budget"] == ("", books["budget"]["budget"]["amount"])
    assert exported["budget_spend"] == ("", books["budget"]["spend"]["amount"])
    assert exported["budget_percent_used"] == ("", books["budget"]["percentUsed"])
    assert exported["budget_level"] == ("", books["budget"]["level"])
    assert exported["point_value"] == ("", books["pointValue"])
    assert exported["period_status"] == ("", books["periodStatus"])
    coalition = books["coalition"]
    assert coalition["pointId"] == "coalition" and coalition["breakageKeptBy"] == "operator"
    for figure, field in (
        ("coalition_funded", "funded"),
        ("coalition_spent_at", "spentAt"),
        ("coalition_outstanding", "outstanding"),
        ("coalition_breakage", "breakage"),
        ("coalition_breakage_to_date", "breakageToDate"),
        ("coalition_maturing", "maturing"),
    ):
        assert exported[figure] == (str(coalition[field]["points"]), coalition[field]["value"]["amount"]), figure
    assert coalition["estimatedBreakage"] is None and exported["coalition_estimated_breakage"] == ("", "")
    assert coalition["expiryRate"] is None and exported["coalition_expiry_rate"] == ("", "")
    assert exported["coalition_point_value"] == ("", coalition["pointValue"])


async def test_staff_read_any_partners_books_with_the_cost_per_point(kit: ExchangeKit, last_month: str) -> None:
    staff = await kit.staff_token(Role.SETTLEMENT, "settlement:read")
    books = (await kit.data(BOOKS, staff, partner="wallet-pay", period=last_month))["partnerBooks"]
    assert books["convertedOut"]["points"] == 10_000 and books["issued"]["points"] == 3_000
    assert books["moneyPaidForRedeemed"] == {"amount": "100.00"} and books["costPerPoint"] == "0.010000"
    assert books["budget"] is None, "wallet-pay declares no budget"
    response = await kit.http.get(
        f"/settlement/books/wallet-pay/{last_month}.csv", headers={"authorization": f"Bearer {staff}"}
    )
    assert from_csv(response.text)["cost_per_point"] == ("", "0.010000")


async def test_no_partner_reads_another_partners_books_by_any_path(kit: ExchangeKit, last_month: str) -> None:
    token = await kit.partner_token("formosa-air")
    query = """query($period: String!, $other: ID!) {
      direct: partnerBooks(partnerId: "wallet-pay", period: $period) { issued { points } }
      variable: partnerBooks(partnerId: $other, period: $period) { budget { level } }
      own: partnerBooks(partnerId: "formosa-air", period: $period) { convertedOut { points } }
    }"""
    body = (await kit.graphql(query, token, period=last_month, other="wallet-pay")).json()
    assert body["data"] == {"direct": None, "variable": None, "own": {"convertedOut": {"points": 3_000}}}
    assert errors_at(body) == {("direct",): "FORBIDDEN", ("variable",): "FORBIDDEN"}
    member = await kit.member_token("wallet-pay", "alice")
    refused = (await kit.graphql(BOOKS, member, partner="wallet-pay", period=last_month)).json()
    assert errors_at(refused) == {("partnerBooks",): "FORBIDDEN"}
    path = f"/settlement/books/wallet-pay/{last_month}.csv"
    foreign = await kit.http.get(path, headers={"authorization": f"Bearer {token}"})
    assert foreign.status_code == 403
    assert foreign.json()["errors"][0]["message"].endswith(
        "a partner's token reaches its own program's data only (this one's is formosa-air)"
    ), "the refusal says what to do next, as GraphQL's do"
    anonymous = await kit.http.get(path)
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["www-authenticate"]


async def test_a_bad_period_or_unknown_program_is_a_typed_refusal(kit: ExchangeKit) -> None:
    staff = await kit.staff_token(Role.SETTLEMENT, "settlement:read")
    body = (await kit.graphql(BOOKS, staff, partner="wallet-pay", period="2026-13")).json()
    assert [(e["extensions"]["code"], e["extensions"].get("field")) for e in body["errors"]] == [
        ("BAD_USER_INPUT", "period")
    ]
    missing = await kit.http.get("/settlement/books/no-such/2026-11.csv", headers={"authorization": f"Bearer {staff}"})
    assert missing.status_code == 404 and missing.json()["errors"][0]["extensions"]["field"] == "partnerId"


async def test_totals_beyond_a_32_bit_int_are_served_whole(kit: ExchangeKit) -> None:
    ledger = Ledger.for_settings(kit.settings, FrozenClock(datetime.now(UTC)))
    async with kit.db.transaction() as session:
        await ledger.post(
            session,
            conversion_transaction(
                chart=ChartOfAccounts("TWD"),
                transaction_id="t-huge",
                conversion_id="huge",
                source="harbor-bank",
                target="fresh-mart",
                points_in=3_000_000_000,
                points_out=3_000_000_000,
                money_value_minor=30_000_000_000,
                fee_minor=0,
                effective_at=datetime.now(UTC),
            ),
        )
    staff = await kit.staff_token(Role.SETTLEMENT, "settlement:read")
    period = ledger.calendar.period_of(datetime.now(UTC))
    books = (await kit.data(BOOKS, staff, partner="fresh-mart", period=period))["partnerBooks"]
    assert books["issued"] == {"points": 3_000_000_000, "value": {"amount": "300000000.00", "currency": "TWD"}}
    assert books["budget"]["level"] == "EXHAUSTED"
