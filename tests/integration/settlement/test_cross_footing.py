"""A partner's finance team cross-foots a month: every participant's signed statement as issued
at the closing (JSON and CSV, the same at every download, and what the ledger gives), its
position as settlement reports it, and its books agree figure for figure; an item at the last
instant of the month and one at the first instant of the next fall in the periods the settlement
time zone says; a late item and a reversal in the next month say so on its statement."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from exchange.books.figures import LedgerFigures
from exchange.rewards.clearing import REVERSAL_KIND
from exchange.services.books import BooksService
from exchange.services.settlement import SettlementService
from exchange.settlement.participants import EXCHANGE
from exchange.settlement.statements import NOT_FEES, StatementLine, encode_statement
from exchange.testing.clock import FrozenClock
from tests.integration.settlement.conftest import TAIPEI, close, conversion, points_redemption, post, served
from tests.integration.settlement.test_statements import (
    assert_adds_up,
    document_of_csv,
    document_without_signature_data,
)

LAST_INSTANT = datetime(2026, 11, 30, 23, 59, 59, 999_000, tzinfo=TAIPEI)
FIRST_INSTANT = datetime(2026, 12, 1, tzinfo=TAIPEI)
PERIODS = ("2026-11", "2026-12")


@pytest.fixture
async def two_months(settlement: SettlementService, clock: FrozenClock) -> SettlementService:
    """November and December closed: amounts that are not round, a conversion at November's last
    instant and one at December's first (Taipei time), a redemption on 30 November cancelled on
    1 December, and a conversion of 30 November posted after November closed."""
    await post(
        settlement,
        [
            conversion("c1", "wallet-pay", "formosa-air", 160_001, 3_201, points=(1_600, 4_000)),
            conversion("c2", "formosa-air", "fresh-mart", 1_233, 25, points=(3_083, 12_080)),
            points_redemption(
                "r1", "formosa-air", "fresh-mart", 1_501, 60_047, 601, at=LAST_INSTANT - timedelta(hours=1)
            ),
            conversion("last", "wallet-pay", "formosa-air", 1_001, 21, points=(1_001, 2_450), at=LAST_INSTANT),
            conversion("first", "wallet-pay", "formosa-air", 2_003, 43, points=(2_003, 4_900), at=FIRST_INSTANT),
        ],
    )
    clock.current = FIRST_INSTANT + timedelta(hours=10)
    async with settlement.db.transaction() as session:
        await settlement.ledger.reverse(
            session, "t-r1", transaction_id="t-r1-back", effective_at=clock.now(), kind=REVERSAL_KIND
        )
    await close(settlement, clock, "2026-11")
    await post(
        settlement,
        [conversion("late", "tune-stream", "formosa-air", 5_007, 101, points=(10_014, 12_265), at=LAST_INSTANT)],
    )
    await close(settlement, clock, "2026-12")
    return settlement


async def cross_foot(
    settlement: SettlementService, books: BooksService, period: str, carried: dict[str, Decimal]
) -> dict[str, tuple[list[StatementLine], LedgerFigures]]:
    """Cross-foot the closed ``period`` for every participant, as a finance team would: its
    statement's JSON and CSV hold the same figures and add up; settlement's position (what its
    console and GraphQL show) is the statement's; its opening is the closing ``carried`` from
    the period before (updated here); a program's books net to its statement, and their money
    figures' rest is exactly the statement's adjustment and breakage lines. The lines and the
    books' figures of every program."""
    found = {}
    report = await settlement.period(period)
    assert sum(position.net for position in report.positions) == 0
    assert list(report.not_issued) == [], "closing issued every participant's statement"
    for position in report.positions:
        who = position.participant
        statement = await served(settlement, who, period)
        # The statement as issued at the closing: downloaded again, the same bytes and signature;
        # and the document the ledger gives now, figure for figure (a late item went elsewhere).
        again = await served(settlement, who, period)
        assert (again.json(), again.csv(), again.jws) == (statement.json(), statement.csv(), statement.jws)
        async with settlement.db.transaction() as session:
            rebuilt = await encode_statement(
                session,
                issuer=settlement.issuer,
                calendar=settlement.calendar,
                currency=statement.currency,
                participant=who,
                period=period,
            )
        assert rebuilt == statement.json().encode(), (who, period)
        document = document_without_signature_data(statement.json())
        assert document_of_csv(statement.csv()) == document, (who, period)
        assert_adds_up(document)
        money = statement.currency.from_minor
        assert (document["openingPosition"], document["totals"], document["closingPosition"]) == (
            str(money(position.opening)),
            {
                "payable": str(money(position.payable)),
                "receivable": str(money(position.receivable)),
                "net": str(money(position.net)),
            },
            str(money(position.opening + position.net)),
        ), (who, period)
        # Every amount is a whole number of cents: the totals are the lines' exact sums, so no
        # statement ever needs a line for a rounding difference.
        assert all(len(line["amount"].rpartition(".")[2]) == 2 for line in document["lines"])
        assert Decimal(document["openingPosition"]) == carried.get(who, Decimal("0.00")), (who, period)
        carried[who] = Decimal(document["closingPosition"])
        if who == EXCHANGE:
            continue
        figures = (await books.partner_books(who, period)).figures
        lines = list(statement.lines)
        assert figures.money_net == statement.net == sum(line.amount for line in lines), (who, period)
        other = sum(line.amount for line in lines if line.kind in NOT_FEES)
        assert figures.money_other == other, (who, period)
        found[who] = (lines, figures)
    return found


async def test_every_participants_statement_position_and_books_agree(
    two_months: SettlementService, books: BooksService
) -> None:
    carried: dict[str, Decimal] = {}
    for period in PERIODS:
        for who, (lines, figures) in (await cross_foot(two_months, books, period, carried)).items():
            # The books' money figures foot to the net: nothing here is an adjustment or breakage.
            named = figures.money_for_issued + figures.money_for_redeemed + figures.money_for_rewards
            assert (named, figures.money_other) == (figures.money_net, 0), (who, period)
            paid = {line.transaction_id for line in lines if line.category == "fee"}  # the payer pays the fee
            rewards = sum(
                line.amount
                for line in lines
                if line.reference.startswith("redemption:") and line.transaction_id not in paid
            )
            assert figures.money_for_rewards == rewards, (who, period)


async def test_the_last_and_the_first_instant_of_a_month_fall_in_their_own_periods_everywhere(
    two_months: SettlementService, books: BooksService
) -> None:
    november = await served(two_months, "formosa-air", "2026-11")
    december = await served(two_months, "formosa-air", "2026-12")
    assert {"t-last", "t-c1", "t-c2", "t-r1"} == {line.transaction_id for line in november.lines}
    assert {"t-first", "t-r1-back", "t-late"} == {line.transaction_id for line in december.lines}
    assert (await books.partner_books("formosa-air", "2026-11")).figures.issued == 4_000 + 2_450
    assert (await books.partner_books("formosa-air", "2026-12")).figures.issued == 4_900 + 12_265
    last = next(line for line in november.document()["lines"] if line["transaction"] == "t-last")
    assert last["effectiveAt"] == "2026-11-30T15:59:59.999000Z" < november.document()["period"]["end"]


async def test_a_late_item_and_a_reversal_of_last_month_say_so_on_this_months_statement(
    two_months: SettlementService,
) -> None:
    december = await served(two_months, "formosa-air", "2026-12")
    lines = {(line["transaction"], line["category"]): line for line in december.document()["lines"]}
    late = lines[("t-late", "conversion")]
    assert late["effectivePeriod"] == "2026-11" and late["reverses"] is None, "late: it happened in November"
    back = lines[("t-r1-back", "redemption-reversal")]
    assert back["effectivePeriod"] == "2026-12"
    assert back["reverses"] == {"transaction": "t-r1", "period": "2026-11"}, "what it reverses, and where that is"
    assert lines[("t-first", "conversion")]["effectivePeriod"] == "2026-12"
    november = await served(two_months, "formosa-air", "2026-11")
    assert {line["effectivePeriod"] for line in november.document()["lines"]} == {"2026-11"}
    rows = december.csv().splitlines()
    header = rows[0].split(",")
    late_row = next(row.split(",") for row in rows if row.split(",")[header.index("transaction")] == "t-late")
    assert late_row[header.index("effective_period")] == "2026-11" and late_row[header.index("reverses")] == ""
    back_row = next(row.split(",") for row in rows if ",t-r1-back," in row and ",redemption-reversal," in row)
    assert (back_row[header.index("reverses")], back_row[header.index("reverses_period")]) == ("t-r1", "2026-11")


async def test_a_partners_file_of_november_matches_its_last_instant_and_points_the_first_of_december_there(
    two_months: SettlementService,
) -> None:
    """The partner's records cut by the same calendar: the conversion at November's last instant
    matches in November; the one at December's first is missing there, in December says the
    break report."""
    records = "reference,amount,counterparty\nconversion:last,9.80,wallet-pay\nconversion:first,19.60,wallet-pay\n"
    view = await two_months.import_records("formosa-air", "2026-11", io.BytesIO(records.encode()), by="formosa-air")
    report = "".join([text async for text in two_months.break_report(view.reconciliation)])
    rows = list(csv.DictReader(io.StringIO(report.removeprefix("\ufeff"))))
    found = {row["reference"]: (row["kind"], row["ledger_periods"], row["currency"]) for row in rows}
    assert "conversion:last" not in found, "matched in November"
    assert found["conversion:first"] == ("MISSING_IN_LEDGER", "2026-12", "TWD")
