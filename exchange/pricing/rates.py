"""Rate versions: which rule prices a pair at a given time, and how rules change.

Each ordered pair of programs (A → B) has a chain of versions. A version's rule is never
edited; a change ends the current version and starts the next one at the same instant.
A pair's override (ratio or bands, step bonus, pair limits) has one owner at a time: the
operator when ``partners/<B>.toml`` declares it, otherwise partner B through the API.
The fee always belongs to the exchange (coalition.toml, or the pair's declaration).
Point values are copied into every version, so a version prices exactly as it did the day
it was used, whatever the programs declare later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import exists
from sqlalchemy.orm import aliased
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.grouping import grouped
from exchange.errors import BadUserInput
from exchange.pricing.errors import ManagedByOperator, NoRate
from exchange.pricing.models import RateVersion
from exchange.pricing.rules import Band, RateRule, StepBonus
from exchange.programs.declarations import PartnersDirectory, RateDeclaration
from exchange.programs.models import Program
from exchange.ratio import Ratio

OPERATOR = "operator"


class Origin:
    DERIVED = "derived"
    DECLARED = "declared"
    PARTNER = "partner"


@dataclass(frozen=True, slots=True)
class PairLimits:
    """Limits of one pair, on top of the source program's own; ``None`` adds no limit."""

    minimum_points: int | None = None
    increment: int | None = None
    member_daily_cap: int | None = None
    member_monthly_cap: int | None = None
    member_yearly_cap: int | None = None


@dataclass(frozen=True, slots=True)
class PairOverride:
    """What a pair may set instead of the derived rate. Empty bands mean "derived"."""

    bands: tuple[Band, ...] = ()
    step_bonus: StepBonus | None = None
    limits: PairLimits = field(default_factory=PairLimits)

    @classmethod
    def fixed(cls, ratio: Ratio, **options: Any) -> PairOverride:
        return cls(bands=(Band(1, ratio),), **options)

    @classmethod
    def from_declaration(cls, declaration: RateDeclaration) -> PairOverride:
        if declaration.bands is not None:
            bands = tuple(Band(band.from_points, band.ratio) for band in declaration.bands)
        elif declaration.ratio is not None:
            bands = (Band(1, declaration.ratio),)
        else:
            bands = ()
        bonus = declaration.bonus
        return cls(
            bands=bands,
            step_bonus=StepBonus(bonus.every, bonus.points) if bonus else None,
            limits=PairLimits(
                minimum_points=declaration.minimum_points,
                increment=declaration.increment,
                member_daily_cap=declaration.member_daily_cap,
                member_monthly_cap=declaration.member_monthly_cap,
                member_yearly_cap=declaration.member_yearly_cap,
            ),
        )


#: Most volume bands a partner's rate may have. Every quote into the program walks them on the
#: event loop: tens of thousands (a request body holds them) made each quote take most of a
#: second, for every member of every program while it ran. Real tiered rates have a handful.
MAX_BANDS = 50


@dataclass(frozen=True, slots=True)
class RateTerms:
    """A partner's rate override as it arrives (a form, a GraphQL input): ratio text, or volume
    bands as (from points, ratio text), an optional step bonus and pair limits. Errors name
    the terms' own fields (``ratio``, ``bands[1].fromPoints``, ``bonusEvery``, ...)."""

    ratio: str | None = None
    bands: Sequence[tuple[int, str]] | None = None
    bonus_every: int | None = None
    bonus_points: int | None = None
    minimum_points: int | None = None
    increment: int | None = None
    member_daily_cap: int | None = None
    member_monthly_cap: int | None = None
    member_yearly_cap: int | None = None

    def override(self) -> PairOverride:
        """The override these terms set, once they make sense."""
        if (self.ratio is None) == (self.bands is None):
            raise BadUserInput("give either ratio or bands", field="ratio")
        if self.ratio is not None:
            bands: tuple[Band, ...] = (Band(1, _ratio(self.ratio, "ratio")),)
        else:
            assert self.bands is not None
            if len(self.bands) > MAX_BANDS:
                raise BadUserInput(f"at most {MAX_BANDS} bands, got {len(self.bands)}", field="bands")
            bands = tuple(
                Band(_positive(start, f"bands[{i}].fromPoints"), _ratio(ratio, f"bands[{i}].ratio"))
                for i, (start, ratio) in enumerate(self.bands)
            )
            starts = [band.from_points for band in bands]
            if not starts or starts != sorted(set(starts)):
                raise BadUserInput("bands must rise by fromPoints", field="bands")
        if (self.bonus_every is None) != (self.bonus_points is None):
            raise BadUserInput("give both bonusEvery and bonusPoints, or neither", field="bonusEvery")
        bonus = (
            StepBonus(_positive(self.bonus_every, "bonusEvery"), _positive(self.bonus_points, "bonusPoints"))
            if self.bonus_every is not None and self.bonus_points is not None
            else None
        )
        return PairOverride(
            bands=bands,
            step_bonus=bonus,
            limits=PairLimits(
                minimum_points=_optional_positive(self.minimum_points, "minimumPoints"),
                increment=_optional_positive(self.increment, "increment"),
                member_daily_cap=_optional_positive(self.member_daily_cap, "memberDailyCap"),
                member_monthly_cap=_optional_positive(self.member_monthly_cap, "memberMonthlyCap"),
                member_yearly_cap=_optional_positive(self.member_yearly_cap, "memberYearlyCap"),
            ),
        )


def _positive(value: int, field: str) -> int:
    if value <= 0:
        raise BadUserInput(f"must be positive, got {value}", field=field)
    return value


def _optional_positive(value: int | None, field: str) -> int | None:
    return None if value is None else _positive(value, field)


def _ratio(text: str, field: str) -> Ratio:
    try:
        return Ratio.parse(text)
    except ValueError as exc:
        raise BadUserInput(str(exc), field=field) from None


@dataclass(frozen=True, slots=True)
class RateContent:
    """Everything a version holds besides its identity and validity window."""

    source_point_value: Decimal
    target_point_value: Decimal
    fee_percent: Decimal
    fee_fixed: Decimal
    override: PairOverride

    def rule(self) -> RateRule:
        return RateRule(
            source_point_value=self.source_point_value,
            target_point_value=self.target_point_value,
            fee_percent=self.fee_percent,
            fee_fixed=self.fee_fixed,
            bands=self.override.bands,
            step_bonus=self.override.step_bonus,
        )

    def columns(self) -> dict[str, Any]:
        override, limits = self.override, self.override.limits
        return {
            "source_point_value": self.source_point_value,
            "target_point_value": self.target_point_value,
            "fee_percent": self.fee_percent,
            "fee_fixed": self.fee_fixed,
            "bands": [[band.from_points, band.ratio.points_in, band.ratio.points_out] for band in override.bands],
            "bonus_every": override.step_bonus.every if override.step_bonus else None,
            "bonus_points": override.step_bonus.points if override.step_bonus else None,
            "minimum_points": limits.minimum_points,
            "increment": limits.increment,
            "member_daily_cap": limits.member_daily_cap,
            "member_monthly_cap": limits.member_monthly_cap,
            "member_yearly_cap": limits.member_yearly_cap,
        }

    @classmethod
    def of(cls, version: RateVersion) -> RateContent:
        bonus = (
            StepBonus(version.bonus_every, version.bonus_points)
            if version.bonus_every is not None and version.bonus_points is not None
            else None
        )
        return cls(
            source_point_value=version.source_point_value,
            target_point_value=version.target_point_value,
            fee_percent=version.fee_percent,
            fee_fixed=version.fee_fixed,
            override=PairOverride(
                bands=tuple(
                    Band(start, Ratio(points_in, points_out)) for start, points_in, points_out in version.bands
                ),
                step_bonus=bonus,
                limits=PairLimits(
                    minimum_points=version.minimum_points,
                    increment=version.increment,
                    member_daily_cap=version.member_daily_cap,
                    member_monthly_cap=version.member_monthly_cap,
                    member_yearly_cap=version.member_yearly_cap,
                ),
            ),
        )


async def version_at(session: AsyncSession, source: str, target: str, at: datetime) -> RateVersion:
    """The version that prices ``source`` → ``target`` at ``at``."""
    version = (
        await session.exec(
            select(RateVersion)
            .where(
                RateVersion.from_program == source,
                RateVersion.to_program == target,
                col(RateVersion.effective_from) <= at,
                or_(col(RateVersion.effective_to).is_(None), col(RateVersion.effective_to) > at),
            )
            .order_by(col(RateVersion.version).desc())
        )
    ).first()
    if version is None:
        raise NoRate(f"no rate converts {source} into {target}", field="toProgram")
    return version


async def versions_by_id(session: AsyncSession, version_ids: Sequence[int]) -> dict[int, RateVersion]:
    rows = await session.exec(select(RateVersion).where(col(RateVersion.id).in_(list(version_ids))))
    return {row.id: row for row in rows if row.id is not None}


async def current_versions_into(
    session: AsyncSession, targets: Sequence[str], at: datetime
) -> dict[str, list[RateVersion]]:
    """For each of ``targets``, the version pricing each pair into it at ``at``, by source
    program; in one query."""
    rows = await session.exec(
        select(RateVersion)
        .where(
            col(RateVersion.to_program).in_(list(targets)),
            col(RateVersion.effective_from) <= at,
            or_(col(RateVersion.effective_to).is_(None), col(RateVersion.effective_to) > at),
        )
        .order_by(col(RateVersion.to_program), col(RateVersion.from_program))
    )
    return grouped(rows, lambda version: version.to_program)


async def history(session: AsyncSession, source: str, target: str) -> Sequence[RateVersion]:
    """Every version of a pair, newest first."""
    return (
        await session.exec(
            select(RateVersion)
            .where(RateVersion.from_program == source, RateVersion.to_program == target)
            .order_by(col(RateVersion.version).desc())
        )
    ).all()


async def _latest(session: AsyncSession, source: str, target: str) -> RateVersion | None:
    return (await _latest_between(session, [source, target])).get((source, target))


async def _latest_between(session: AsyncSession, program_ids: Sequence[str]) -> dict[tuple[str, str], RateVersion]:
    """The newest version of every pair among ``program_ids`` that has one, by (source, target);
    in one query."""
    newer = aliased(RateVersion)
    rows = await session.exec(
        select(RateVersion).where(
            col(RateVersion.from_program).in_(list(program_ids)),
            col(RateVersion.to_program).in_(list(program_ids)),
            ~exists().where(
                col(newer.from_program) == col(RateVersion.from_program),
                col(newer.to_program) == col(RateVersion.to_program),
                col(newer.version) > col(RateVersion.version),
            ),
        )
    )
    return {(row.from_program, row.to_program): row for row in rows}


async def _lock_programs(session: AsyncSession, program_ids: Sequence[str]) -> dict[str, Program]:
    """Lock program rows in id order: rate changes into a program queue behind each other."""
    rows = await session.exec(
        select(Program).where(col(Program.id).in_(sorted(program_ids))).order_by(col(Program.id)).with_for_update()
    )
    return {program.id: program for program in rows}


def _superseding(
    latest: RateVersion | None,
    *,
    source: str,
    target: str,
    content: RateContent,
    origin: str,
    actor: str,
    at: datetime,
) -> RateVersion:
    """The version that follows ``latest``, the pair's newest (``None``: it has none), from
    ``at`` with ``content``; ``latest`` is ended at ``at`` in place. The caller holds the lock
    and adds the new version to its session."""
    if latest is not None and (latest.effective_to is None or latest.effective_to > at):
        latest.effective_to = at
    return RateVersion(
        from_program=source,
        to_program=target,
        version=latest.version + 1 if latest else 1,
        effective_from=at,
        origin=origin,
        created_by=actor,
        created_at=at,
        **content.columns(),
    )


async def sync_declared_rates(session: AsyncSession, directory: PartnersDirectory, now: datetime) -> int:
    """Bring every pair of the directory's programs (the coalition point's too, both ways) up to
    date; returns versions started.

    A pair gets a new version when its point values, its fee or its declared override
    changed. A partner's own override is kept (with the new point values) unless the
    directory now declares the pair.
    """
    priced = directory.priced
    programs = await _lock_programs(session, [program.id for program in priced])
    latest_of = await _latest_between(session, list(programs))
    pricing = directory.coalition.pricing
    started = 0
    for target in priced:
        declared = {rate.source: rate for rate in target.rates}
        for source in priced:
            if source.id == target.id:
                continue
            latest = latest_of.get((source.id, target.id))
            declaration = declared.get(source.id)
            if declaration is not None:
                override, origin = PairOverride.from_declaration(declaration), Origin.DECLARED
            elif latest is not None and latest.origin == Origin.PARTNER:
                override, origin = RateContent.of(latest).override, Origin.PARTNER
            else:
                override, origin = PairOverride(), Origin.DERIVED
            fee_percent = declaration.fee_percent if declaration and declaration.fee_percent is not None else None
            fee_fixed = declaration.fee_fixed if declaration and declaration.fee_fixed is not None else None
            content = RateContent(
                source_point_value=programs[source.id].point_value,
                target_point_value=programs[target.id].point_value,
                fee_percent=pricing.fee_percent if fee_percent is None else fee_percent,
                fee_fixed=pricing.fee_fixed if fee_fixed is None else fee_fixed,
                override=override,
            )
            if latest is None or latest.origin != origin or RateContent.of(latest) != content:
                superseding = _superseding(
                    latest,
                    source=source.id,
                    target=target.id,
                    content=content,
                    origin=origin,
                    actor=OPERATOR,
                    at=now,
                )
                session.add(superseding)
                started += 1
    return started


async def set_partner_override(
    session: AsyncSession,
    *,
    target: str,
    source: str,
    override: PairOverride,
    actor: str,
    now: datetime,
) -> RateVersion:
    """Partner ``target`` sets (or, with an empty override, clears) its rate from ``source``.
    The terms of the version in effect (a retry after a lost answer, or a clear of a rate
    derived already) answer that version: nothing changes, so no new version starts."""
    await _lock_programs(session, [target])
    current = await version_at(session, source, target, now)
    if current.origin == Origin.DECLARED:
        raise ManagedByOperator(
            f"the rate from {source} into {target} is declared in partners/{target}.toml; "
            "ask the exchange's operator to change it",
            field="fromProgram",
        )
    content = RateContent.of(current)
    origin = Origin.DERIVED if override == PairOverride() else Origin.PARTNER
    asked = RateContent(
        source_point_value=content.source_point_value,
        target_point_value=content.target_point_value,
        fee_percent=content.fee_percent,
        fee_fixed=content.fee_fixed,
        override=override,
    )
    if current.origin == origin and content == asked:
        return current
    version = _superseding(
        await _latest(session, source, target),
        source=source,
        target=target,
        content=asked,
        origin=origin,
        actor=actor,
        at=now,
    )
    session.add(version)
    await session.flush()
    return version
