"""Loading programs into the database, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.db.database import Database
from exchange.programs import service
from exchange.programs.declarations import read_partners_directory
from exchange.programs.service import ProgramNotFound
from tests.conftest import SAMPLE_PARTNERS

NOW = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


async def load(db: Database, directory: Path, now: datetime = NOW) -> service.LoadReport:
    async with db.transaction() as session:
        return await service.load_partners(session, read_partners_directory(directory), now)


async def test_loading_creates_every_program_with_its_tiers(db: Database) -> None:
    report = await load(db, SAMPLE_PARTNERS)
    assert sorted(report.created) == [
        "coalition",
        "formosa-air",
        "fresh-mart",
        "happy-card",
        "harbor-bank",
        "tune-stream",
        "wallet-pay",
    ]
    async with db.transaction() as session:
        programs = await service.list_programs(session)
        tiers = await service.tiers_by_program(session, [p.id for p in programs])
        coalition = await service.get_coalition(session)
    by_id = {program.id: program for program in programs}
    assert by_id["happy-card"].point_value == Decimal("0.25")
    assert str(by_id["formosa-air"].point_value) == "0.4"
    assert by_id["formosa-air"].created_at == NOW
    assert [(t.name, t.level) for t in tiers["formosa-air"]] == [
        ("Base", 0),
        ("Silver", 1),
        ("Gold", 2),
        ("Diamond", 4),
    ]
    assert by_id["formosa-air"].connector["timeout_seconds"] == "3"
    assert coalition.settings.settlement_currency == "TWD"
    assert [level.name for level in coalition.ladder] == ["Member", "Silver", "Gold", "Platinum", "Diamond"]
    assert {program.id: program.kind for program in programs if program.kind != "PARTNER"} == {"coalition": "COALITION"}
    assert by_id["coalition"].point_value == Decimal("1")
    assert [(t.name, t.level) for t in tiers["coalition"]] == [("Member", 0)]
    assert (coalition.settings.point_program_id, coalition.settings.point_timezone) == ("coalition", "Asia/Taipei")
    assert coalition.settings.point_breakage == "operator"


async def test_loading_again_changes_nothing(db: Database) -> None:
    await load(db, SAMPLE_PARTNERS)
    report = await load(db, SAMPLE_PARTNERS, NOW + timedelta(days=1))
    assert (report.created, report.updated, len(report.unchanged)) == ([], [], 7)
    async with db.transaction() as session:
        assert (await service.get_program(session, "wallet-pay")).updated_at == NOW


async def test_changed_declarations_update_programs_and_replace_tiers(db: Database, tmp_path: Path) -> None:
    await load(db, SAMPLE_PARTNERS)
    directory = tmp_path / "partners"
    shutil.copytree(SAMPLE_PARTNERS, directory)
    path = directory / "fresh-mart.toml"
    path.write_text(
        path.read_text()
        .replace('point_value = "0.1"', 'point_value = "0.123456"')
        .replace('name = "Gold Shopper"', 'name = "Platinum Shopper"')
    )
    later = NOW + timedelta(hours=1)
    report = await load(db, directory, later)
    assert report.updated == ["fresh-mart"]
    async with db.transaction() as session:
        program = await service.get_program(session, "fresh-mart")
        tiers = await service.tiers_by_program(session, ["fresh-mart"])
    assert program.point_value == Decimal("0.123456")
    assert (program.created_at, program.updated_at) == (NOW, later)
    assert [t.name for t in tiers["fresh-mart"]] == ["Shopper", "Platinum Shopper"]


async def test_large_and_fine_point_values_survive_exactly(db: Database, tmp_path: Path) -> None:
    directory = tmp_path / "partners"
    shutil.copytree(SAMPLE_PARTNERS, directory)
    path = directory / "harbor-bank.toml"
    path.write_text(path.read_text().replace('point_value = "0.05"', 'point_value = "123456789012.000001"'))
    await load(db, directory)
    async with db.transaction() as session:
        program = await service.get_program(session, "harbor-bank")
    assert program.point_value == Decimal("123456789012.000001")


async def test_unknown_program_is_not_found(db: Database) -> None:
    await load(db, SAMPLE_PARTNERS)
    async with db.transaction() as session:
        with pytest.raises(ProgramNotFound) as caught:
            await service.get_program(session, "no-such-program")
    assert caught.value.extensions() == {"code": "NOT_FOUND", "field": "id"}


async def test_coalition_is_not_found_before_loading(db: Database) -> None:
    async with db.transaction() as session:
        with pytest.raises(service.NotFound, match="exchange partners load"):
            await service.get_coalition(session)
