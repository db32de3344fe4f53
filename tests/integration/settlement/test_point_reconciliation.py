"""The coalition point's records come from the exchange's own book of the point: a month of
earns, spends, conversions routed through the point, a reward paid with the point and an
expiry, played through the real services, reconciles with no break (`exchange settle
reconcile-point`), is signed off and, on PostgreSQL, archived once every partner has signed off
too; an operation of the book changed by hand shows as a break naming its reference (SQLite and
PostgreSQL)."""

from __future__ import annotations

import getpass
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from exchange.clock import SetClock
from exchange.coalition import lots
from exchange.coalition.expiry import expire_batch
from exchange.coalition.rules import point_rules
from exchange.conversions.models import ConversionStatus
from exchange.demo_month import COALITION_POINT
from exchange.members.models import Member
from exchange.programs.declarations import PartnersDirectory
from exchange.services.container import Services, open_services
from exchange.services.settlement import SettlementService
from exchange.settings import Settings
from exchange.settlement.break_kinds import BreakKind
from exchange.settlement.models import RecordsSource
from exchange.settlement.participants import EXCHANGE
from exchange.testing.clock import FrozenClock
from exchange.testing.sandboxes import SandboxFleet
from tests.integration.settlement.conftest import TAIPEI, close, conversion, post
from tests.integration.test_cli import run_here
from tests.integration.test_demo_month import month_on


def counts(output: str) -> dict[str, int]:
    return {kind: int(count) for kind, count in re.findall(r"^\s+([A-Z_]+)\s+(\d+)$", output, re.MULTILINE)}


async def sign_off_partners(services: Services, period: str, tmp_path: Path) -> None:
    """Every partner's records as the ledger has them (a file that agrees), imported and signed off."""
    report = await services.settlement.period(period)
    for position in report.positions:
        if position.participant in (EXCHANGE, COALITION_POINT):
            continue
        lines = await services.settlement.ledger_lines(position.participant, period)
        totals: dict[str, int] = {}
        for line in lines:
            totals[line.reference] = totals.get(line.reference, 0) + line.amount
        file = tmp_path / f"{position.participant}.csv"
        file.write_text(
            "reference,amount\n"
            + "".join(f"{ref},{report.currency.from_minor(amount)}\n" for ref, amount in totals.items() if amount)
        )
        with file.open("rb") as source:
            view = await services.settlement.import_records(position.participant, period, source, by="staff")
        assert view.unresolved == 0, position.participant
        await services.settlement.sign_off(position.participant, period, by="staff", note=None)


async def test_the_points_own_book_reconciles_signs_off_and_a_changed_operation_breaks(
    database_url: str, sample_partners: PartnersDirectory, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    settings = Settings(database_url=database_url)
    env = {"EXCHANGE_DATABASE_URL": database_url}
    fleet = SandboxFleet(sample_partners, tmp_path / "sandboxes")
    try:
        month = await month_on(settings, fleet, now, tmp_path / "partners")
        period = month.period
        async with open_services(settings, clock=SetClock(now)) as services:
            # One lot lapses inside the month (made due by hand): the expiry job posts its breakage.
            lapse = services.settlement.calendar.ends_at(period) - timedelta(hours=1)
            async with services.db.transaction() as session:
                await session.exec(  # type: ignore[call-overload]
                    text("UPDATE coalition_lot SET expires_at = :at WHERE id = (SELECT min(id) FROM coalition_lot)"),
                    params={"at": lapse - timedelta(hours=1)},
                )
            expired = await services.coalition.expire(now=lapse)
            assert expired.points > 0
            await services.settlement.close(period, by="staff")

            kept = tmp_path / "point.csv"
            reconciled = run_here("settle", "reconcile-point", "--keep", str(kept), period, env=env)
            assert reconciled.returncode == 0, reconciled.stderr
            assert reconciled.stdout.startswith(f"reconciled {COALITION_POINT} {period}: "), reconciled.stdout
            assert "  the file's total " in reconciled.stdout, "worded for staff, as `settle reconcile` is"
            # Routed conversions never touch the point's book: their lines come from their legs.
            routed = [c for c in month.conversions if c.route is not None and c.status == ConversionStatus.COMPLETED]
            assert routed, "the demo month routes conversions through the point"
            found = counts(reconciled.stdout)
            assert found["MATCHED"] >= 7 + len(routed), reconciled.stdout
            assert found == {
                **found,
                "AMOUNT_MISMATCH": 0,
                "MISSING_IN_LEDGER": 0,
                "MISSING_IN_PARTNER": 0,
                "DUPLICATE": 0,
            }, reconciled.stdout
            first = await services.settlement.reconciliation(COALITION_POINT, period)
            assert first.unresolved == 0
            records = kept.read_text()
            for conversion in routed:
                assert f"\nconversion:{conversion.id}," in records
            assert records.startswith("reference,amount,counterparty,partner,period,currency\n")
            for kind in ("conversion:", "redemption:", "coalition-expiry:"):
                assert f"\n{kind}" in records, (kind, records)
            # Whoever ran the command imported them; the book is where they came from.
            assert (first.reconciliation.imported_by, first.reconciliation.source) == (
                f"cli:{getpass.getuser()}",
                RecordsSource.COALITION_BOOK,
            )

            # The book says a spend out of the point was given back; the ledger posted it.
            spend = next(
                c
                for c in month.conversions
                if c.from_program == COALITION_POINT and c.route is None and c.status == ConversionStatus.COMPLETED
            )
            change = "UPDATE coalition_operation SET status = :status WHERE operation_id = :id"
            async with services.db.transaction() as session:
                await session.exec(text(change), params={"status": "reversed", "id": f"{spend.id}:debit"})  # type: ignore[call-overload]
            tampered = await services.settlement.import_point_records(period, by="staff")
            assert tampered.unresolved == 1
            [broken] = await services.settlement.breaks(tampered.reconciliation)
            assert (broken.row.kind, broken.row.reference) == (BreakKind.MISSING_IN_PARTNER, f"conversion:{spend.id}")
            assert broken.row.ledger_amount == -spend.money_value_minor

            async with services.db.transaction() as session:
                await session.exec(text(change), params={"status": "applied", "id": f"{spend.id}:debit"})  # type: ignore[call-overload]
            assert (await services.settlement.import_point_records(period, by="staff")).unresolved == 0
            signed = await services.settlement.sign_off(COALITION_POINT, period, by="staff", note=None)
            assert signed.position.signed_off_at is not None

            if database_url.startswith("postgresql"):
                await sign_off_partners(services, period, tmp_path)
                archived = await services.settlement.archive(period, export=None)
                assert archived.transactions > 0
    finally:
        await fleet.stop()


async def test_an_expiry_run_that_posts_after_its_month_closed_is_a_late_line_of_the_next_month(
    settlement: SettlementService, clock: FrozenClock
) -> None:
    # 100 points earned in November 2026, funded by FreshMart: they lapse on 1 January 2028.
    earned = clock.now()
    async with settlement.db.transaction() as session:
        session.add(Member(id="m-1", created_at=earned))
        await session.flush()
        await lots.credit(
            session,
            await point_rules(session),
            operation_id="earn:credit",
            member_ref="m-1",
            points=100,
            funded_by="fresh-mart",
            now=earned,
        )
    await post(settlement, [conversion("earn", "fresh-mart", COALITION_POINT, 10_000, points=(1_000, 100), at=earned)])
    await close(settlement, clock, "2026-11")
    # An expiry run that started at January's last instant is still going when January closes.
    await close(settlement, clock, "2028-01")
    async with settlement.db.transaction() as session:
        batch = await expire_batch(
            session,
            await point_rules(session),
            settlement.ledger,
            now=datetime(2028, 1, 31, 23, 59, 59, 999_000, tzinfo=TAIPEI),
            limit=10,
        )
    assert batch.points == 100
    # The ledger posted its breakage into February, as a late line; the book's records follow it.
    await close(settlement, clock, "2028-02")
    [line] = await settlement.ledger_lines(COALITION_POINT, "2028-02")
    assert (line.reference, line.amount) == ("coalition-expiry:1", -10_000)
    february = await settlement.import_point_records("2028-02", by="staff")
    assert (february.unresolved, february.totals.records, february.totals.ledger) == (0, -10_000, -10_000)
