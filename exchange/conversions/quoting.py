"""Quoting a conversion as the gateway does: what a quote reads, in one statement.

A quote needs the member's links (both programs linked; the accounts whose tiers make the
member's coalition level, for the tier bonus), the terms of each way the pair may go (the pair
itself, and through the coalition point: :mod:`exchange.pricing.routes`), and how much of each
limit counter is used. Programs and the coalition's settings come from the catalog, rates and
promotions from this process's pricing book (:mod:`exchange.pricing.book`), tiers from the
federated view's tier cache (entries taken since the member's last status match, which
therefore counts at once). One statement reads the links, the member's activity markers, the pricing
revision (is the book current?) and the counters; a second stores the quote; each commits on its own, without
a transaction around them. Only what is missing from memory
costs more: a book read again after a rate change, partners asked for tiers not cached (then
outside any unit of work, and the quote is stored in a second one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, bindparam
from sqlmodel import col, select

from exchange.clock import Clock
from exchange.db.database import Database
from exchange.db.direct import loaded, width
from exchange.errors import ExchangeError
from exchange.federation.accounts import Federation
from exchange.members import service as members
from exchange.members.models import ActivityMarkers, LinkedAccount, Member
from exchange.pricing import limits, quotes, routes
from exchange.pricing.book import PricingBook, PricingBooks
from exchange.pricing.models import LimitUsage, PricingRevision, Quote, RateVersion
from exchange.programs.catalog import Catalog, CatalogCache
from exchange.settings import Settings


@dataclass(frozen=True, slots=True)
class PricedQuote:
    quote: Quote
    version: RateVersion
    """The rate version it used."""


@dataclass(frozen=True, slots=True)
class _Read:
    """What the one statement read: the member's links and activity markers, the pricing
    revision, the counters."""

    links: list[LinkedAccount]
    activity: ActivityMarkers
    revision: int
    used: dict[str, int]


@lru_cache(maxsize=16)
def _reading(count: int) -> Select[Any]:
    """The revision, member ``member_id``'s activity markers, links and counters ``key_0`` …
    ``key_<count - 1>`` (one row per link, at least one), built once per number of counters."""
    counters = [
        select(LimitUsage.used).where(LimitUsage.key == bindparam(f"key_{index}")).scalar_subquery()
        for index in range(count)
    ]
    return (
        select(PricingRevision.revision, LinkedAccount, Member.activity, Member.tier_activity, *counters)  # type: ignore[return-value]  # sqlmodel Select
        .select_from(PricingRevision)
        .outerjoin(LinkedAccount, col(LinkedAccount.member_id) == bindparam("member_id"))
        .outerjoin(Member, col(Member.id) == bindparam("member_id"))
        .where(PricingRevision.id == 1)
        .order_by(col(LinkedAccount.program_id))
    )


#: Where a row of ``_reading`` has the member's activity markers: after the revision and the link's columns.
_MARKERS = 1 + width(LinkedAccount)


async def _read(db: Database, member_id: str, keys: Sequence[str]) -> _Read:
    params = {"member_id": member_id} | {f"key_{index}": key for index, key in enumerate(keys)}
    rows = await db.read(_reading(len(keys)), params)
    first = rows[0]
    return _Read(
        links=[loaded(LinkedAccount, row[1:_MARKERS]) for row in rows if row[1] is not None],
        activity=ActivityMarkers(balances=first[_MARKERS] or 0, tiers=first[_MARKERS + 1] or 0),
        revision=first[0],
        used={key: used for key, used in zip(keys, first[_MARKERS + 2 :], strict=True) if used is not None},
    )


@dataclass
class Quoting:
    db: Database
    catalog: CatalogCache
    books: PricingBooks
    federation: Federation
    clock: Clock
    policy: quotes.QuotePolicy

    @classmethod
    def for_settings(
        cls, settings: Settings, *, db: Database, catalog: CatalogCache, federation: Federation, clock: Clock
    ) -> Quoting:
        return cls(
            db=db,
            catalog=catalog,
            books=PricingBooks(),
            federation=federation,
            clock=clock,
            policy=quotes.QuotePolicy(ttl=settings.quote_ttl, timezone=settings.timezone),
        )

    async def quote(self, member_id: str, source: str, target: str, points: int) -> PricedQuote:
        """Price converting ``points`` of ``source`` into ``target`` for the member, and fix
        the price until the quote expires."""
        catalog = await self.catalog.get()
        catalog.program(source, field="fromProgram")  # an unknown program is not found, before anything else
        catalog.program(target, field="toProgram")
        now = self.clock.now()
        book = await self.books.at(self.db, now)
        chains = _chains_or_none(catalog, book, source, target, now)
        keys = self._keys(chains, member_id, now)
        read = await _read(self.db, member_id, keys)
        members.refs_at(read.links, {source: "fromProgram", target: "toProgram"})
        quotes.check_request(points, source, target)
        used = read.used
        if read.revision != book.revision or not chains:
            # Rates or promotions changed since the book was read (the counters read may not be
            # the ones the new chains count against), or the pair has no route: priced again,
            # which says why there is none. No statement needs another's snapshot or locks.
            if read.revision != book.revision:
                book = await self.books.at(self.db, now, revision=read.revision)
            chains = _chains(catalog, book, source, target, now)
            missing = [key for key in self._keys(chains, member_id, now) if key not in keys]
            if missing:
                async with self.db.autocommit() as session:
                    used = used | await limits.used(session, missing)
        level = self.federation.cached_level(catalog, read.links, read.activity)
        if level is None:
            level = await self.federation.level(read.links, read.activity)
        return await self._store(member_id, level, read.activity.tiers, chains, points, used, now)

    def _keys(self, chains: list[quotes.Chain], member_id: str, now: datetime) -> list[str]:
        """The limit counters any of ``chains`` counts against, each once, in key order."""
        return sorted(
            {cap.key for chain in chains for cap in quotes.chain_caps(chain, member_id, now, self.policy.timezone)}
        )

    async def _store(
        self,
        member_id: str,
        level: int,
        tier_activity: int,
        chains: list[quotes.Chain],
        points: int,
        used: dict[str, int],
        now: datetime,
    ) -> PricedQuote:
        request = quotes.QuoteRequest(
            member_id=member_id,
            member_level=level,
            source=chains[0][0].source.id,
            target=chains[0][-1].target.id,
            points=points,
            tier_activity=tier_activity,
        )
        quote = quotes.price_quote(request, chains, used, policy=self.policy, now=now)
        await self.db.write(quotes.STORE, quotes.stored(quote))
        # A routed quote names its first leg's version.
        version = next(chain[0].version for chain in chains if chain[0].version.id == quote.rate_version_id)
        return PricedQuote(quote, version)


def _terms(catalog: Catalog, book: PricingBook, source: str, target: str, at: datetime) -> quotes.PairTerms:
    return quotes.PairTerms(
        source=catalog.program(source, field="fromProgram"),
        target=catalog.program(target, field="toProgram"),
        coalition=catalog.coalition,
        version=book.version_at(source, target, at),
        promotions=book.promotions_at(source, target, at),
    )


def _chains(catalog: Catalog, book: PricingBook, source: str, target: str, at: datetime) -> list[quotes.Chain]:
    """The terms of every route from ``source`` into ``target``, from memory (as
    :func:`quotes.read_chains` reads them from the database)."""
    return routes.usable(
        routes.paths(source, target, catalog.coalition.point_program_id),
        lambda leg_source, leg_target: _terms(catalog, book, leg_source, leg_target, at),
    )


def _chains_or_none(catalog: Catalog, book: PricingBook, source: str, target: str, at: datetime) -> list[quotes.Chain]:
    """The chains, or none when the pair has none (the checks that follow say why)."""
    try:
        return _chains(catalog, book, source, target, at)
    except ExchangeError:
        return []
