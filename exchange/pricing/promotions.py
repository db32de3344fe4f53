"""Promotions: time-limited bonus percentages on conversions into a program.

The target partner funds its promotions: the bonus points are issued on top of the base
points, and the clearing amount does not change. A quote records the promotions it
applied, so ending or changing one never alters a quote already given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import literal, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import dialects
from exchange.db.grouping import pages_by_parent
from exchange.db.types import UTCDateTime
from exchange.errors import BadUserInput, IdempotencyConflict, NotFound
from exchange.money import canonical, decimal_places
from exchange.pricing.models import PERCENT_SCALE, Promotion
from exchange.pricing.rates import OPERATOR, Origin
from exchange.pricing.rules import AppliedPromotion
from exchange.programs.declarations import PartnersDirectory
from exchange.text import chosen_id_problem

MAX_BONUS_PERCENT = Decimal(1000)


@dataclass(frozen=True, slots=True)
class PromotionTerms:
    id: str
    program_id: str
    bonus_percent: Decimal
    starts_at: datetime
    ends_at: datetime
    sources: tuple[str, ...] | None = None

    def check(self) -> None:
        if problem := chosen_id_problem(self.id):
            raise BadUserInput(f"id {problem}", field="id")
        if not Decimal(0) < self.bonus_percent <= MAX_BONUS_PERCENT:
            raise BadUserInput(
                f"bonusPercent must be more than 0 and at most {MAX_BONUS_PERCENT}", field="bonusPercent"
            )
        if decimal_places(canonical(self.bonus_percent)) > PERCENT_SCALE:
            raise BadUserInput(f"bonusPercent has at most {PERCENT_SCALE} decimals", field="bonusPercent")
        if self.ends_at <= self.starts_at:
            raise BadUserInput("endsAt must be after startsAt", field="endsAt")
        if self.sources is not None:
            self._check_sources(self.sources)

    def _check_sources(self, sources: tuple[str, ...]) -> None:
        """Each a program that can convert into this one, once: a promotion that could never
        apply is a mistake, and each name costs a look-up."""
        if not sources:
            raise BadUserInput("name at least one program in fromPrograms, or null for all", field="fromPrograms")
        if len(set(sources)) != len(sources):
            raise BadUserInput("fromPrograms names a program more than once", field="fromPrograms")
        if self.program_id in sources:
            raise BadUserInput(f"{self.program_id} does not convert into itself", field="fromPrograms")

    def same_as(self, promotion: Promotion) -> bool:
        """Whether ``promotion`` was made with these terms: ended early since, it is still."""
        return (
            promotion.program_id == self.program_id
            and promotion.bonus_percent == self.bonus_percent
            and promotion.starts_at == self.starts_at
            and (promotion.planned_ends_at or promotion.ends_at) == self.ends_at
            and (tuple(promotion.sources) if promotion.sources is not None else None) == self.sources
        )


def _row(terms: PromotionTerms, origin: str, actor: str, now: datetime) -> Promotion:
    return Promotion(
        id=terms.id,
        program_id=terms.program_id,
        sources=list(terms.sources) if terms.sources is not None else None,
        bonus_percent=terms.bonus_percent,
        starts_at=terms.starts_at,
        ends_at=terms.ends_at,
        origin=origin,
        created_by=actor,
        created_at=now,
    )


async def sync_declared_promotions(session: AsyncSession, directory: PartnersDirectory, now: datetime) -> None:
    """Create or update the promotions declared in program files."""
    for program in directory.programs:
        for declared in program.promotions:
            terms = PromotionTerms(
                id=declared.id,
                program_id=program.id,
                bonus_percent=declared.bonus_percent,
                starts_at=declared.starts_at,
                ends_at=declared.ends_at,
                sources=tuple(declared.sources) if declared.sources is not None else None,
            )
            existing = await session.get(Promotion, (terms.id, terms.program_id))
            if existing is None:
                session.add(_row(terms, Origin.DECLARED, OPERATOR, now))
            elif not terms.same_as(existing):
                for key, value in (
                    _row(terms, Origin.DECLARED, OPERATOR, now).model_dump(exclude={"created_at"}).items()
                ):
                    setattr(existing, key, value)
                session.add(existing)
    await session.flush()


async def create_promotion(session: AsyncSession, terms: PromotionTerms, *, actor: str, now: datetime) -> Promotion:
    """Create a partner's promotion; repeating the same id and terms returns the first one as it
    is now, though it has ended since (by ``endPromotion`` or by its time)."""
    terms.check()
    promotion = _row(terms, Origin.PARTNER, actor, now)
    if terms.ends_at > now and await dialects.insert_once(session, promotion):
        return promotion
    existing = await session.get(Promotion, (terms.id, terms.program_id))
    if existing is not None and terms.same_as(existing):
        return existing
    if terms.ends_at <= now:
        raise BadUserInput("endsAt must be in the future", field="endsAt")
    raise IdempotencyConflict(f"promotion id {terms.id!r} is taken by other terms", field="id")


async def end_promotion(session: AsyncSession, *, program_id: str, promotion_id: str, now: datetime) -> Promotion:
    """End a program's promotion now (a promotion that has ended stays ended)."""
    promotion = await session.get(Promotion, (promotion_id, program_id), with_for_update=True)
    if promotion is None:
        raise NotFound(f"{program_id} has no promotion {promotion_id!r}", field="id")
    if promotion.ends_at > now:
        if promotion.planned_ends_at is None:  # ended again before it started: still as made
            promotion.planned_ends_at = promotion.ends_at
        promotion.ends_at = max(now, promotion.starts_at)
        session.add(promotion)
        await session.flush()
    return promotion


async def latest_promotions(
    session: AsyncSession, program_id: str, *, first: int, after: str | None
) -> Sequence[Promotion]:
    """The program's promotions, the latest start first (then by id, descending): ``first`` of
    them after its promotion ``after``, read by ``ix_promotion_program_start``. ``NotFound``
    naming ``after`` when the program has no promotion by that id (another program's is none:
    ids name promotions within their program)."""
    statement = select(Promotion).where(Promotion.program_id == program_id)
    if after is not None:
        mark = await session.get(Promotion, (after, program_id))
        if mark is None:
            raise NotFound(f"{program_id} has no promotion {after!r} to list the ones after", field="after")
        # A row value, which the index's range takes (an OR of the two it would only filter by).
        statement = statement.where(
            tuple_(col(Promotion.starts_at), col(Promotion.id))
            < tuple_(literal(mark.starts_at, UTCDateTime()), literal(mark.id))
        )
    rows = await session.exec(
        statement.order_by(col(Promotion.starts_at).desc(), col(Promotion.id).desc()).limit(first)
    )
    return rows.all()


async def promotion_pages(
    session: AsyncSession, program_ids: Sequence[str], *, first: int, after: str | None
) -> dict[str, list[Promotion]]:
    """Each program's promotions by id, ``first`` of them after the id ``after``, in one query."""
    return await pages_by_parent(
        session, Promotion, col(Promotion.program_id), col(Promotion.id), program_ids, first=first, after=after
    )


async def active_promotions(
    session: AsyncSession, *, source: str, target: str, at: datetime
) -> tuple[AppliedPromotion, ...]:
    """The promotions of ``target`` that apply to a conversion from ``source`` at ``at``."""
    rows = await session.exec(
        select(Promotion)
        .where(
            Promotion.program_id == target,
            col(Promotion.starts_at) <= at,
            col(Promotion.ends_at) > at,
        )
        .order_by(col(Promotion.id))
    )
    return tuple(
        AppliedPromotion(row.id, row.bonus_percent) for row in rows if row.sources is None or source in row.sources
    )
