"""The demo's last month: built through the real services with sandbox partners, the same on
every run, never twice; it closes with non-trivial netting, its partner file breaks in every
class, and it can be resolved and signed off — what README's walk-through does."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange import demo
from exchange.clock import SetClock
from exchange.conversions.models import ConversionStatus
from exchange.demo_month import FILE_PARTNER, MonthReport, build_previous_month, create_sign_ins, partner_records
from exchange.ledger.periods import PeriodStatus, SettlementCalendar
from exchange.programs.declarations import PartnersDirectory
from exchange.rewards.models import RedemptionStatus
from exchange.services.container import Services, load_partners_directory, open_services
from exchange.settings import Settings
from exchange.settlement.break_kinds import BreakKind
from exchange.testing.databases import SqliteDatabases
from exchange.testing.processes import declarations_pointing_at
from exchange.testing.sandboxes import SandboxFleet
from tests.integration.settlement.test_cross_footing import cross_foot
from tests.integration.test_cli import run_here

#: The partner timeout the month is played with. The product's 2 s suits a partner on a quiet
#: network; the month's few hundred partner calls on a loaded test machine may take longer
#: without anything being wrong, and a timeout there is an unknown outcome, not the figures
#: this test asserts.
PARTNER_TIMEOUT_SECONDS = "30"


async def month_on(settings: Settings, fleet: SandboxFleet, now: datetime, declarations: Path) -> MonthReport:
    """What ``make demo`` does: load the programs as of the previous month's start (copied to
    ``declarations`` with :data:`PARTNER_TIMEOUT_SECONDS`), then build it."""
    calendar = SettlementCalendar(settings.timezone)
    await fleet.start()
    patient = settings.model_copy(
        update={
            "partners_dir": declarations_pointing_at(
                fleet.base_urls,
                settings.partners_dir,
                declarations,
                timeout_seconds=PARTNER_TIMEOUT_SECONDS,
            )
        }
    )
    await load_partners_directory(patient, clock=SetClock(calendar.starts_at(calendar.latest_over(now))))
    return await build_previous_month(
        settings, now=now, sandbox_urls=fleet.base_urls, partner_base_urls=fleet.base_urls
    )


def figures(report: MonthReport) -> list[tuple[object, ...]]:
    conversions = [(c.idempotency_key, c.points_in, c.points_out, c.fee_minor, c.status) for c in report.conversions]
    redemptions = [(r.reward_id, r.paying_program, r.points, r.status) for r in report.redemptions]
    return sorted(conversions) + sorted(redemptions)


async def test_last_month_is_realistic_built_once_closes_reconciles_and_signs_off(
    database_url: str, sample_partners: PartnersDirectory, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    settings = Settings(database_url=database_url)
    fleet = SandboxFleet(sample_partners, tmp_path / "sandboxes")
    try:
        report = await month_on(settings, fleet, now, tmp_path / "partners")
        assert report.built
        statuses = Counter(c.status for c in report.conversions)
        # README's count, which the `demo: built` line prints: thirty drawn at random, the
        # coalition point's six moves and three that go wrong on purpose.
        assert len(report.conversions) == 39
        assert statuses[ConversionStatus.COMPLETED] >= 25
        assert statuses[ConversionStatus.FAILED] == 2, "short of points, and a debit the partner failed"
        assert statuses[ConversionStatus.REVERSED] == 1, "a credit the partner failed, given back"
        assert Counter(r.status for r in report.redemptions) == {
            RedemptionStatus.DELIVERED: 8,
            RedemptionStatus.REVERSED: 2,
        }
        assert report.matches == 4

        async with open_services(settings) as services:
            lines = len(await services.settlement.ledger_lines(FILE_PARTNER, report.period))
            # Members hold coalition points earned in the month, and the lots agree with the ledger.
            standing = await services.coalition.standing()
            assert standing is not None and standing.check.problem is None
            assert standing.check.outstanding > 0
        again = await build_previous_month(
            settings, now=now, sandbox_urls=fleet.base_urls, partner_base_urls=fleet.base_urls
        )
        assert not again.built
        async with open_services(settings, clock=SetClock(now)) as services:
            assert len(await services.settlement.ledger_lines(FILE_PARTNER, report.period)) == lines
            await settle_it(services, database_url, report.period, tmp_path / "records.csv")
            await cross_foot(services.settlement, services.books, report.period, {})
    finally:
        await fleet.stop()


async def settle_it(services: Services, database_url: str, period: str, file: Path) -> None:
    """README's walk-through with the command line: close, reconcile the planted file, list and
    resolve every break (the mismatch by adjustment), sign off."""
    env = {"EXCHANGE_DATABASE_URL": database_url}
    file.write_text(await partner_records(services, period))
    closed = run_here("settle", "close", period, env=env)
    assert closed.returncode == 0, closed.stderr
    assert "net positions sum to 0.00 TWD" in closed.stdout
    report = await services.settlement.period(period)
    assert report.status is PeriodStatus.CLOSED
    assert len(report.positions) == 8, "six partners, the coalition point and the exchange"
    saving = report.saving
    assert saving is not None and saving.multilateral.count < saving.gross.count
    assert saving.multilateral.total < saving.gross.total

    reconciled = run_here("settle", "reconcile", "--partner", FILE_PARTNER, period, str(file), env=env)
    assert reconciled.returncode == 0, reconciled.stderr
    for kind in BreakKind:
        count = re.search(rf"^\s+{kind}\s+(\d+)$", reconciled.stdout, re.MULTILINE)
        assert count is not None and int(count[1]) >= 1, (kind, reconciled.stdout)
    listed = run_here("settle", "breaks", "--partner", FILE_PARTNER, "--unresolved", period, env=env)
    assert listed.returncode == 0, listed.stderr
    breaks = re.findall(r"^\s+(\d+) ([A-Z_]+) ", listed.stdout, re.MULTILINE)
    assert {kind for _, kind in breaks} == {kind for kind in BreakKind if kind is not BreakKind.MATCHED}
    resolve = ("settle", "resolve", "--partner", FILE_PARTNER)
    adjusted = run_here(
        *resolve, "--resolution", "ADJUST", "--kind", "AMOUNT_MISMATCH", "--reason", "theirs", period, env=env
    )
    assert adjusted.returncode == 0, adjusted.stderr
    accepted = run_here(*resolve, "--resolution", "ACCEPT_LEDGER", "--all", "--reason", "the ledger's", period, env=env)
    assert accepted.stdout.startswith("resolved 3 breaks"), accepted.stderr
    listed = run_here("settle", "breaks", "--partner", FILE_PARTNER, period, env=env)
    assert re.search(r" AMOUNT_MISMATCH .* ADJUST ", listed.stdout), listed.stdout
    assert listed.stdout.count("ACCEPT_LEDGER") == 3
    signed = run_here("settle", "sign-off", "--partner", FILE_PARTNER, period, "--note", "all agreed", env=env)
    assert signed.returncode == 0, signed.stderr
    position = next(p for p in (await services.settlement.period(period)).positions if p.participant == FILE_PARTNER)
    assert position.signed_off_at is not None


async def test_the_same_sandboxes_give_the_same_month(
    sample_partners: PartnersDirectory, sqlite_databases: SqliteDatabases, tmp_path: Path
) -> None:
    """Whatever the machine's speed: the first month is played with a catalog cache that has
    expired at every read (as on a machine slow enough that five seconds pass between two), the
    second with one that never expires. (A quote read the catalog again inside its unit of work
    once the cache expired, which on SQLite waited 60 s for the connection it held, and was
    refused: the month's random draws then went another way.)"""
    now = datetime.now(UTC)
    months = []
    for sandboxes, catalog_cache_seconds in (("first", 1e-6), ("second", 1e6)):
        settings = Settings(database_url=sqlite_databases.create(), catalog_cache_seconds=catalog_cache_seconds)
        fleet = SandboxFleet(sample_partners, tmp_path / sandboxes)
        try:
            months.append(await month_on(settings, fleet, now, tmp_path / f"{sandboxes}-partners"))
            async with open_services(settings) as services:
                months.append(
                    [
                        (line.kind, line.counterparty, line.amount)
                        for line in await services.settlement.ledger_lines(FILE_PARTNER, months[-1].period)
                    ]
                )
        finally:
            await fleet.stop()
    first, first_lines, second, second_lines = months
    assert figures(first) == figures(second)
    assert first_lines == second_lines


async def test_the_demo_sign_ins_are_created_once(database_url: str) -> None:
    settings = Settings(database_url=database_url)
    await load_partners_directory(settings)
    async with open_services(settings) as services:
        people = await create_sign_ins(services, ["formosa-air", "wallet-pay"])
        assert await create_sign_ins(services, ["formosa-air", "wallet-pay"]) == people
        for person in people:
            assert await services.people.person(person.username) is not None


async def test_a_month_that_began_before_the_programs_were_loaded_is_left_alone(database_url: str) -> None:
    """A data directory from before the demo built months: its programs (rates, rewards) start
    today, so last month cannot be played; the demo says so and serves on."""
    settings = Settings(database_url=database_url)
    await load_partners_directory(settings)
    report = await build_previous_month(settings, now=datetime.now(UTC), sandbox_urls={})
    assert not report.built
    assert report.unplayable == "its programs were loaded after it began"


async def test_a_build_stopped_half_way_is_not_played_again_and_the_demo_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Played again on top of its first half, the month ran into the members' caps and every
    restart stopped on 'member_daily_cap of 80000 would be exceeded'."""

    async def interrupted(*args: object, **kwargs: object) -> MonthReport:
        raise asyncio.CancelledError  # what Ctrl-C raises in the demo's event loop

    monkeypatch.setattr(demo, "build_previous_month", interrupted)
    with pytest.raises(asyncio.CancelledError):
        await demo.prepare_last_month(Settings(), tmp_path, [])
    assert f"stopped half-way and cannot be resumed: remove {tmp_path} to start afresh" in capsys.readouterr().out

    async def played_again(*args: object, **kwargs: object) -> MonthReport:
        raise AssertionError("a half-built month was played again")

    monkeypatch.setattr(demo, "build_previous_month", played_again)
    assert await demo.prepare_last_month(Settings(), tmp_path, []) is None
    assert f"did not finish and cannot be resumed; serving without it: remove {tmp_path}" in capsys.readouterr().out


async def test_a_month_that_cannot_be_played_names_the_data_directory_to_remove(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It said "`make clean` starts afresh", which also removes the virtualenv, and not the
    directory a `--data-dir` demo keeps its state in."""

    async def unplayable(*args: object, **kwargs: object) -> MonthReport:
        return MonthReport("2026-11", built=False, unplayable="its programs were loaded after it began")

    monkeypatch.setattr(demo, "build_previous_month", unplayable)
    assert await demo.prepare_last_month(Settings(), tmp_path, []) is None
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"2026-11 cannot be played on {tmp_path}: its programs were loaded after it began; "
        f"remove {tmp_path} to start afresh"
    )
