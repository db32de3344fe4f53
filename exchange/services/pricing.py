"""Rates and promotions: partners price conversions into their own programs, and everyone
allowed reads the rate versions and promotions in effect."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from exchange.clock import Clock
from exchange.db.database import Database
from exchange.pricing import limits, promotions, quotes, rates
from exchange.pricing.models import Promotion, RateVersion
from exchange.pricing.promotions import PromotionTerms
from exchange.pricing.rates import PairOverride, RateTerms
from exchange.programs import service as programs
from exchange.programs.models import Program
from exchange.services.requests import page_size

#: The most promotions one page of a program's ``promotions`` lists.
PROMOTIONS_PAGE_MAX = 500


@dataclass(frozen=True, slots=True)
class PairAmountRule:
    """A pair whose rate sets an amount rule other than its source program's own: ``rule``."""

    source: Program
    target: Program
    rule: limits.AmountRule


@dataclass
class PricingService:
    db: Database
    clock: Clock

    async def set_rate(self, source: str, target: str, terms: RateTerms, *, actor: str) -> RateVersion:
        """Set the rate of conversions from ``source`` into ``target`` (the target partner's
        own), as a new rate version from now. A pair the operator declared is refused."""
        return await self._supersede(source, target, terms.override(), actor)

    async def clear_rate(self, source: str, target: str, *, actor: str) -> RateVersion:
        """Go back to the rate derived from the two programs' point values."""
        return await self._supersede(source, target, PairOverride(), actor)

    async def _supersede(self, source: str, target: str, override: PairOverride, actor: str) -> RateVersion:
        async with self.db.transaction() as session:
            await programs.get_program(session, source, field="fromProgram")
            return await rates.set_partner_override(
                session, target=target, source=source, override=override, actor=actor, now=self.clock.now()
            )

    async def create_promotion(self, terms: PromotionTerms, *, actor: str) -> Promotion:
        """Start a promotion on conversions into ``terms.program_id``; the same id and terms
        again return the first one."""
        terms.check()  # before a look-up per source
        async with self.db.transaction() as session:
            for source in terms.sources or ():
                await programs.get_program(session, source, field="fromPrograms")
            return await promotions.create_promotion(session, terms, actor=actor, now=self.clock.now())

    async def end_promotion(self, program_id: str, promotion_id: str) -> Promotion:
        """End one of a program's promotions now."""
        async with self.db.transaction() as session:
            return await promotions.end_promotion(
                session, program_id=program_id, promotion_id=promotion_id, now=self.clock.now()
            )

    async def incoming_rates(self, program_ids: Sequence[str]) -> dict[str, list[RateVersion]]:
        """For each program, the versions in effect now for conversions into it, by source."""
        async with self.db.transaction() as session:
            return await rates.current_versions_into(session, program_ids, self.clock.now())

    async def pair_amount_rules(self, programs: Sequence[Program]) -> list[PairAmountRule]:
        """The pairs between ``programs`` (each into each other) whose rate in force now sets an
        amount rule other than its source's own, as a quote checks it (a stricter minimum, an
        increment of its own), by source then target: read in one query, no partner asked."""
        by_id = {program.id: program for program in programs}
        found: list[PairAmountRule] = []
        for target, versions in (await self.incoming_rates(list(by_id))).items():
            for version in versions:
                if (source := by_id.get(version.from_program)) is None:
                    continue
                rule = limits.AmountRule.of(source, version.minimum_points, version.increment)
                if rule != limits.AmountRule.of_source(source):
                    found.append(PairAmountRule(source, by_id[target], rule))
        return sorted(found, key=lambda pair: (pair.source.name, pair.target.name))

    async def latest_promotions(self, program_id: str, *, first: int, after: str | None) -> Sequence[Promotion]:
        """The program's promotions, past, present and future, the latest start first: a page of
        them, ``first`` after its promotion ``after``."""
        page = page_size(first, maximum=PROMOTIONS_PAGE_MAX)
        async with self.db.transaction() as session:
            return await promotions.latest_promotions(session, program_id, first=page, after=after)

    async def promotions_by_id(
        self, program_ids: Sequence[str], *, first: int, after: str | None
    ) -> dict[str, list[Promotion]]:
        """Each program's promotions by id, a page of them: ``first`` after the id ``after``."""
        page = page_size(first, maximum=PROMOTIONS_PAGE_MAX)
        async with self.db.transaction() as session:
            return await promotions.promotion_pages(session, program_ids, first=page, after=after)

    async def preview(self, source: str, target: str, points: int, *, member_level: int = 0) -> quotes.Priced:
        """What converting ``points`` of ``source`` into ``target`` gives now, for a member at
        coalition ``member_level``: the quote's own pricing, with no member's caps counted and
        no quote stored (the partner's console previews its rates with it)."""
        async with self.db.transaction() as session:
            return await quotes.price_conversion(
                session, source=source, target=target, points=points, member_level=member_level, now=self.clock.now()
            )

    async def rate_versions(self, version_ids: Sequence[int]) -> dict[int, RateVersion]:
        async with self.db.transaction() as session:
            return await rates.versions_by_id(session, version_ids)
