"""The rates and promotions in force, kept in each process and known to be current.

Every quote needs the pair's rate version and the target's promotions. They change only when
an operator loads declarations or a partner edits its rates, and every such change moves the
database's pricing revision (triggers on both tables move it, in the changing transaction).
A process keeps a :class:`PricingBook` — every version and promotion that is in force now or
later — under the revision it was read at; a quote reads the revision in the statement it
sends anyway, and a different one means the book is read again before pricing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ScalarSelect
from sqlmodel import col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db.database import Database
from exchange.db.grouping import grouped
from exchange.pricing.errors import NoRate
from exchange.pricing.models import PricingRevision, Promotion, RateVersion
from exchange.pricing.rules import AppliedPromotion


def revision() -> ScalarSelect[int]:
    """The pricing revision, as a column to read beside anything else."""
    return select(PricingRevision.revision).where(PricingRevision.id == 1).scalar_subquery()


@dataclass(frozen=True, slots=True)
class PricingBook:
    """Rate versions and promotions that end after ``since``, as of pricing ``revision``."""

    revision: int
    since: datetime
    versions: Mapping[tuple[str, str], tuple[RateVersion, ...]]
    """By (source, target), newest version first."""
    promotions: Mapping[str, tuple[Promotion, ...]]
    """By target program, by id."""

    def version_at(self, source: str, target: str, at: datetime) -> RateVersion:
        """The version that prices ``source`` → ``target`` at ``at`` (not before ``since``)."""
        for version in self.versions.get((source, target), ()):
            if version.effective_from <= at and (version.effective_to is None or version.effective_to > at):
                return version
        raise NoRate(f"no rate converts {source} into {target}", field="toProgram")

    def promotions_at(self, source: str, target: str, at: datetime) -> tuple[AppliedPromotion, ...]:
        """The promotions of ``target`` that apply to a conversion from ``source`` at ``at``."""
        return tuple(
            AppliedPromotion(promotion.id, promotion.bonus_percent)
            for promotion in self.promotions.get(target, ())
            if promotion.starts_at <= at < promotion.ends_at
            and (promotion.sources is None or source in promotion.sources)
        )

    @classmethod
    async def read(cls, session: AsyncSession, now: datetime) -> PricingBook:
        """The book as the database has it now. The revision is read first: what follows is at
        least that recent, so a change committed meanwhile only makes the next check reload."""
        current = (await session.exec(select(revision()))).one()
        versions = grouped(
            await session.exec(
                select(RateVersion)
                .where(or_(col(RateVersion.effective_to).is_(None), col(RateVersion.effective_to) > now))
                .order_by(col(RateVersion.version).desc())
            ),
            lambda version: (version.from_program, version.to_program),
        )
        promotions = grouped(
            await session.exec(select(Promotion).where(col(Promotion.ends_at) > now).order_by(col(Promotion.id))),
            lambda promotion: promotion.program_id,
        )
        # The book outlives this unit of work: its rows must not expire if it rolls back.
        for row in (
            *(v for rows in versions.values() for v in rows),
            *(p for rows in promotions.values() for p in rows),
        ):
            session.expunge(row)
        return cls(
            revision=current,
            since=now,
            versions={pair: tuple(rows) for pair, rows in versions.items()},
            promotions={program: tuple(rows) for program, rows in promotions.items()},
        )


class PricingBooks:
    """This process's book: read once, read again when the revision moved (or the clock went
    back before the book's ``since``)."""

    def __init__(self) -> None:
        self._book: PricingBook | None = None
        self._lock = asyncio.Lock()

    async def at(self, db: Database, now: datetime, *, revision: int | None = None) -> PricingBook:
        """A book good for ``now``; read again (in a unit of work of its own) unless it is of
        ``revision`` (when given)."""
        book = self._book
        if book is not None and book.since <= now and (revision is None or book.revision == revision):
            return book
        async with self._lock:
            book = self._book
            if book is None or book.since > now or (revision is not None and book.revision != revision):
                async with db.autocommit() as session:
                    book = self._book = await PricingBook.read(session, now)
        return book
