"""Programs: loading validated declarations into the database, and reading them back."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.grouping import grouped
from exchange.errors import NotFound
from exchange.programs.declarations import (
    PartnersDirectory,
    PointDeclaration,
    ProgramDeclaration,
    plural_point_name,
)
from exchange.programs.models import (
    CoalitionLevel,
    CoalitionSettings,
    Program,
    ProgramKind,
    ProgramTier,
)
from exchange.text import chosen_id_problem

#: The most program ids a refusal of an unknown one lists.
KNOWN_IDS_SHOWN = 12
#: What a refusal says of a program id given that is not written as an id is (not repeated).
NOT_AN_ID = "the id given: it is not written as an id is"


class ProgramNotFound(NotFound):
    """No program has the id; the message lists the ``known`` ids (the first few), so that a
    mistyped one can be put right without a second look-up (they are public: ``programs``).

    The id given is repeated only if it is written as an id is (:data:`~exchange.text.CHOSEN_ID_RULE`):
    a page shows the message, and a link whose query holds a sentence ("your account is
    locked: call …") must not have the exchange's page say it."""

    def __init__(self, program_id: str, *, field: str = "id", known: Iterable[str] = ()) -> None:
        super().__init__(no_program_has(program_id, known), field=field)


def no_program_has(program_id: str, known: Iterable[str]) -> str:
    """The refusal of an unknown program id, listing the ``known`` ones (the first few)."""
    ids = sorted(known)
    shown = ", ".join(ids[:KNOWN_IDS_SHOWN]) + (
        f" and {len(ids) - KNOWN_IDS_SHOWN} more" if len(ids) > KNOWN_IDS_SHOWN else ""
    )
    given = f"id {program_id!r}" if chosen_id_problem(program_id) is None else NOT_AN_ID
    return f"no program has {given}" + (f"; the programs are {shown}" if ids else "")


@dataclass
class LoadReport:
    """What loading a partners directory changed, by program id."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _program_columns(declaration: ProgramDeclaration) -> dict[str, Any]:
    limits = declaration.limits
    return {
        "kind": ProgramKind.PARTNER.value,
        "name": declaration.name,
        "category": declaration.category,
        "point_name": declaration.point_name,
        "point_name_plural": plural_point_name(declaration.point_name, declaration.point_name_plural),
        "point_value": declaration.point_value,
        "minimum_points": limits.minimum_points,
        "increment": limits.increment,
        "member_daily_cap": limits.member_daily_cap,
        "member_monthly_cap": limits.member_monthly_cap,
        "member_yearly_cap": limits.member_yearly_cap,
        "monthly_issue_budget": limits.monthly_issue_budget,
        "budget_monthly_issue": declaration.budget.monthly_issue if declaration.budget else None,
        "connector": declaration.connector.model_dump(mode="json"),
        "status_match": declaration.status_match.model_dump(mode="json", exclude_none=True)
        if declaration.status_match.grants
        else None,
        "risk": declaration.risk.model_dump(mode="json", exclude_none=True) if declaration.risk else None,
    }


#: The coalition point's connector settings: no partner to call, the exchange keeps it.
INTERNAL_CONNECTOR: dict[str, Any] = {"kind": "internal"}


def _point_columns(point: PointDeclaration) -> dict[str, Any]:
    """The coalition point as a program row: any amount, no caps, the exchange's own connector."""
    return {
        "kind": ProgramKind.COALITION.value,
        "name": point.name,
        "category": "coalition",
        "point_name": point.point_name,
        "point_name_plural": plural_point_name(point.point_name, point.point_name_plural),
        "point_value": point.point_value,
        "minimum_points": 1,
        "increment": 1,
        "member_daily_cap": None,
        "member_monthly_cap": None,
        "member_yearly_cap": None,
        "monthly_issue_budget": None,
        "budget_monthly_issue": None,
        "connector": INTERNAL_CONNECTOR,
        "status_match": None,
    }


def _tier_rows(declaration: ProgramDeclaration) -> list[tuple[str, int]]:
    return [(tier.name, tier.level) for tier in declaration.tiers]


def _declared_rows(directory: PartnersDirectory) -> list[tuple[str, dict[str, Any], list[tuple[str, int]]]]:
    """Every program to load: (id, columns, tiers). The coalition point has one tier, the
    ladder's entry level: it grants no status."""
    rows = [
        (declaration.id, _program_columns(declaration), _tier_rows(declaration)) for declaration in directory.programs
    ]
    point = directory.coalition.point
    if point is not None:
        entry = directory.coalition.ladder[0]
        rows.append((point.id, _point_columns(point), [(entry.name, entry.level)]))
    return rows


async def _load_coalition(session: AsyncSession, directory: PartnersDirectory) -> None:
    coalition = directory.coalition
    point = coalition.point
    await session.merge(
        CoalitionSettings(
            id=1,
            settlement_currency=coalition.settlement_currency,
            currency_minor_units=coalition.currency_minor_units,
            fee_percent=coalition.pricing.fee_percent,
            fee_fixed=coalition.pricing.fee_fixed,
            tier_bonus_percent=[str(percent) for percent in coalition.pricing.tier_bonus_percent],
            point_program_id=point.id if point else None,
            point_expiry=point.expiry.value if point else None,
            point_timezone=point.timezone if point else None,
            point_breakage=point.breakage.value if point else None,
        )
    )
    for entry in coalition.ladder:
        await session.merge(CoalitionLevel(level=entry.level, name=entry.name))
    await session.flush()


async def load_partners(session: AsyncSession, directory: PartnersDirectory, now: datetime) -> LoadReport:
    """Create or update the coalition and every declared program; one unit of work.

    Programs absent from the directory are left as they are: a program that has moved
    points cannot simply vanish, and retiring one is a deliberate act.
    """
    await _load_coalition(session, directory)
    report = LoadReport()
    existing = {p.id: p for p in (await session.exec(select(Program)))}
    tiers = await tiers_by_program(session, existing)

    for program_id, columns, tier_rows in _declared_rows(directory):
        program = existing.get(program_id)
        if program is None:
            session.add(Program(id=program_id, created_at=now, updated_at=now, **columns))
            report.created.append(program_id)
        elif columns == {key: getattr(program, key) for key in columns} and tier_rows == [
            (tier.name, tier.level) for tier in tiers.get(program_id, [])
        ]:
            report.unchanged.append(program_id)
            continue
        else:
            for key, value in columns.items():
                setattr(program, key, value)
            program.updated_at = now
            report.updated.append(program_id)
        await session.flush()
        await session.exec(delete(ProgramTier).where(col(ProgramTier.program_id) == program_id))
        session.add_all(
            ProgramTier(program_id=program_id, rank=rank, name=name, level=level)
            for rank, (name, level) in enumerate(tier_rows)
        )
    await session.flush()
    top = directory.coalition.top_level
    await session.exec(delete(CoalitionLevel).where(col(CoalitionLevel.level) > top))
    return report


async def list_programs(session: AsyncSession) -> Sequence[Program]:
    return (await session.exec(select(Program).order_by(Program.id))).all()


async def get_program(session: AsyncSession, program_id: str, *, field: str = "id", lock: bool = False) -> Program:
    """The program, else :class:`ProgramNotFound` naming ``field``; ``lock``: its row locked
    until the unit of work ends (to serialize changes counted per program).

    The lock is ``FOR NO KEY UPDATE``: it serializes the lockers, and lets a row that refers to
    the program be written meanwhile (its foreign key check takes ``FOR KEY SHARE``). A full
    ``FOR UPDATE`` would hold such a write back (a saga's, which writes rows that refer to
    programs), and a locker that then waited on that writer would deadlock with it."""
    program = await session.get(Program, program_id, with_for_update={"key_share": True} if lock else None)
    if program is None:
        raise ProgramNotFound(program_id, field=field, known=await program_ids(session))
    return program


async def program_ids(session: AsyncSession) -> Sequence[str]:
    """Every program's id."""
    return (await session.exec(select(Program.id))).all()


async def programs_by_id(session: AsyncSession, program_ids: Iterable[str]) -> dict[str, Program]:
    """The programs with these ids (those that exist), by id, in one query."""
    rows = await session.exec(select(Program).where(col(Program.id).in_(list(program_ids))))
    return {program.id: program for program in rows}


async def tiers_by_program(session: AsyncSession, program_ids: Iterable[str]) -> dict[str, list[ProgramTier]]:
    """Each program's tiers, lowest rank first, in one query."""
    rows = await session.exec(
        select(ProgramTier)
        .where(col(ProgramTier.program_id).in_(list(program_ids)))
        .order_by(col(ProgramTier.program_id), col(ProgramTier.rank))
    )
    return grouped(rows, lambda tier: tier.program_id)


@dataclass(frozen=True)
class CoalitionView:
    settings: CoalitionSettings
    ladder: Sequence[CoalitionLevel]


async def get_coalition(session: AsyncSession) -> CoalitionView:
    """The loaded coalition; ``NOT_FOUND`` until ``exchange partners load`` has run."""
    settings = await session.get(CoalitionSettings, 1)
    if settings is None:
        raise NotFound("no partners are loaded yet: run `exchange partners load`")
    levels = (await session.exec(select(CoalitionLevel).order_by(col(CoalitionLevel.level)))).all()
    return CoalitionView(settings=settings, ladder=levels)
