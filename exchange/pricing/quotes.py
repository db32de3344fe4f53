"""Quotes: a conversion's price, fixed for a short time.

A quote pins the rate version, the promotions and the tier bonus it used, the exact
amounts, and the limit counters it counts against (the day, month and year it was made in,
and the caps then); executing it later converts exactly those amounts and counts them there,
whatever changed meanwhile, as long as it has not expired. The tier bonus is the one thing the
member can take away themself: a quote with one is executed only while the member's tiers
stand as they were read for it (:func:`ensure_tiers_stand`), so unlinking the account whose
tier earned it, or a status match ending, leaves it to be asked for again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, insert
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import direct
from exchange.errors import BadUserInput, ExchangeError
from exchange.pricing import limits, promotions, rates, routes
from exchange.pricing.errors import NoRate, QuoteExpired, QuoteNotFound, QuoteTiersChanged
from exchange.pricing.models import Quote, RateVersion
from exchange.pricing.rules import AppliedPromotion, PriceBreakdown, price
from exchange.programs import service as programs
from exchange.programs.models import CoalitionSettings, Program
from exchange.text import counted

QUOTES: Table = Quote.__table__  # type: ignore[attr-defined]
#: A quote written whole (:func:`stored`).
STORE = insert(QUOTES)


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """``tier_activity``: the member's tier activity marker read with the links that made
    ``member_level`` (``None``: not read, and the quote's tier bonus is not checked again)."""

    member_id: str
    member_level: int
    source: str
    target: str
    points: int
    tier_activity: int | None = None


@dataclass(frozen=True, slots=True)
class QuotePolicy:
    """How quotes are made: how long they live, and whose calendar caps count in."""

    ttl: timedelta
    timezone: ZoneInfo


@dataclass(frozen=True, slots=True)
class PairTerms:
    """What prices a pair at one moment: the programs, the coalition's settings, the rate
    version and the target's promotions that apply."""

    source: Program
    target: Program
    coalition: CoalitionSettings
    version: RateVersion
    promotions: tuple[AppliedPromotion, ...]

    def caps(self, member_id: str, at: datetime, timezone: ZoneInfo) -> list[limits.Cap]:
        """The limit counters a conversion by ``member_id`` at ``at`` counts against."""
        return limits.conversion_caps(
            member_id=member_id, source=self.source, target=self.target, version=self.version, at=at, timezone=timezone
        )


Chain = tuple[PairTerms, ...]
"""The terms of a route's legs, in order: one for the direct pair, two through the coalition
point (:mod:`exchange.pricing.routes`)."""


def chain_caps(chain: Chain, member_id: str, at: datetime, timezone: ZoneInfo) -> list[limits.Cap]:
    """The limit counters a conversion along ``chain`` counts against: every leg's."""
    return [cap for terms in chain for cap in terms.caps(member_id, at, timezone)]


def check_request(points: int, source: str, target: str) -> None:
    """What a quote request must be, whatever the programs: a sane amount, two programs."""
    limits.check_points(points)
    if source == target:
        raise BadUserInput("a program cannot be converted into itself", field="toProgram")


async def read_terms(session: AsyncSession, source: str, target: str, at: datetime) -> PairTerms:
    """The pair's terms at ``at``, read from the database."""
    source_program = await programs.get_program(session, source, field="fromProgram")
    target_program = await programs.get_program(session, target, field="toProgram")
    coalition = (await programs.get_coalition(session)).settings
    return PairTerms(
        source=source_program,
        target=target_program,
        coalition=coalition,
        version=await rates.version_at(session, source, target, at),
        promotions=await promotions.active_promotions(session, source=source, target=target, at=at),
    )


async def read_chains(session: AsyncSession, source: str, target: str, at: datetime) -> list[Chain]:
    """The terms of every route from ``source`` into ``target`` at ``at``, read from the
    database: the direct pair, then the route through the coalition point, each if every pair
    of it has a rate in force (else ``NO_RATE``, the direct pair's)."""
    ways = routes.paths(source, target, (await programs.get_coalition(session)).settings.point_program_id)
    terms: dict[routes.Pair, PairTerms | NoRate] = {}
    for pair in dict.fromkeys(pair for way in ways for pair in way):
        try:
            terms[pair] = await read_terms(session, *pair, at)
        except NoRate as error:
            terms[pair] = error

    def terms_for(leg_source: str, leg_target: str) -> PairTerms:
        found = terms[(leg_source, leg_target)]
        if isinstance(found, NoRate):
            raise found
        return found

    return routes.usable(ways, terms_for)


@dataclass(frozen=True, slots=True)
class Priced:
    """A conversion priced now, before any member's caps are counted or anything is stored."""

    source: Program
    target: Program
    version: RateVersion
    breakdown: PriceBreakdown
    currency: str


def price_on(terms: PairTerms, points: int, member_level: int) -> PriceBreakdown:
    """``points`` of the pair priced on ``terms`` for a member at coalition ``member_level``,
    checked against the pair's minimum and increment."""
    content = rates.RateContent.of(terms.version)
    pair_limits = content.override.limits
    limits.AmountRule.of(terms.source, pair_limits.minimum_points, pair_limits.increment).check(points)
    breakdown = price(
        content.rule(),
        points,
        currency=terms.coalition.currency,
        promotions=terms.promotions,
        tier_bonus_percent=terms.coalition.tier_bonus_for(member_level),
    )
    if breakdown.points_out < 1:
        raise BadUserInput(
            f"{counted(points, 'point')} of {terms.source.id} would give no {terms.target.id} points", field="points"
        )
    if breakdown.points_out > limits.MAX_POINTS:
        raise limits.beyond_max_points(
            f"{counted(points, 'point', grouped=True)} of {terms.source.id} would convert into {breakdown.points_out:,} "
            f"{terms.target.id} points, more than the {limits.MAX_POINTS:,} one conversion may move"
        )
    return breakdown


async def price_conversion(
    session: AsyncSession, *, source: str, target: str, points: int, member_level: int, now: datetime
) -> Priced:
    """What converting ``points`` of ``source`` into ``target`` gives at ``now`` for a member at
    coalition ``member_level``; nothing is written. A quote is this and the member's caps; a
    partner's preview is this alone."""
    check_request(points, source, target)
    terms = await read_terms(session, source, target, now)
    ladder = (await programs.get_coalition(session)).ladder
    if not 0 <= member_level <= ladder[-1].level:
        raise BadUserInput(f"memberLevel must be a ladder level, 0 to {ladder[-1].level}", field="memberLevel")
    breakdown = price_on(terms, points, member_level)
    return Priced(terms.source, terms.target, terms.version, breakdown, terms.coalition.settlement_currency)


def price_route(request: QuoteRequest, chain: Chain, *, policy: QuotePolicy, now: datetime) -> routes.Route:
    """``request``'s points priced along ``chain``, each leg on its own terms (:func:`price_on`)
    converting what the leg before paid out, with the limit counters each counts against."""
    legs: list[routes.PricedLeg] = []
    points = request.points
    for terms in chain:
        breakdown = price_on(terms, points, request.member_level)
        assert terms.version.id is not None
        legs.append(
            routes.PricedLeg(
                source=terms.source.id,
                target=terms.target.id,
                rate_version_id=terms.version.id,
                breakdown=breakdown,
                usages=tuple(
                    cap.usage(points_in=breakdown.points_in, points_out=breakdown.points_out)
                    for cap in terms.caps(request.member_id, now, policy.timezone)
                ),
            )
        )
        points = breakdown.points_out
    return routes.Route(tuple(legs))


def choose_route(
    request: QuoteRequest, chains: Sequence[Chain], used: Mapping[str, int], *, policy: QuotePolicy, now: datetime
) -> routes.Route:
    """The best of ``chains`` (:func:`routes.best`) that can take the request now: priced, and
    within the limits given how much of each counter is ``used``. The direct pair's refusal
    (its minimum, increment or caps) is final: a route never goes around the limits a pair
    declares. A route that cannot take the request is left out; when it was the only way, its
    refusal is raised."""
    priced: list[routes.Route] = []
    refusal: ExchangeError | None = None
    for chain in chains:
        try:
            route = price_route(request, chain, policy=policy, now=now)
            limits.check_room(route.usages, used)
        except ExchangeError as error:
            if len(chain) == 1:
                raise
            refusal = refusal or error
            continue
        priced.append(route)
    if not priced:
        assert refusal is not None, "a quote has at least one chain to price"
        raise refusal
    return routes.best(priced)


def price_quote(
    request: QuoteRequest, chains: Sequence[Chain], used: Mapping[str, int], *, policy: QuotePolicy, now: datetime
) -> Quote:
    """The quote for ``request`` along the best of ``chains`` (not stored), fixed until
    ``now + policy.ttl``, given how much of each limit counter is ``used``."""
    route = choose_route(request, chains, used, policy=policy, now=now)
    return _quote_row(
        request,
        route,
        currency=chains[0][0].coalition.settlement_currency,
        now=now,
        ttl=policy.ttl,
    )


def stored(quote: Quote) -> dict[str, Any]:
    """The values :data:`STORE` writes for ``quote``: every column's."""
    return {column.name: getattr(quote, column.name) for column in QUOTES.columns}


async def create_quote(session: AsyncSession, request: QuoteRequest, *, policy: QuotePolicy, now: datetime) -> Quote:
    """Price a conversion and fix the price until ``now + policy.ttl``, reading what it needs
    from the database (the gateway's :class:`~exchange.conversions.quoting.Quoting` reads the
    same in one statement)."""
    check_request(request.points, request.source, request.target)
    chains = await read_chains(session, request.source, request.target, now)
    keys = {cap.key for chain in chains for cap in chain_caps(chain, request.member_id, now, policy.timezone)}
    used = await limits.used(session, sorted(keys))
    quote = price_quote(request, chains, used, policy=policy, now=now)
    await direct.execute(session, STORE, stored(quote))
    return quote


def _quote_row(
    request: QuoteRequest,
    route: routes.Route,
    *,
    currency: str,
    now: datetime,
    ttl: timedelta,
) -> Quote:
    """The quote of ``route``: the points in and the money value are its first leg's, the points
    out and their breakdown its last leg's, the fee every leg's; a routed quote names its first
    leg's rate version and keeps every leg in ``route``. Built as the ORM loads a row (every
    column is given here), without an instrumented assignment per column."""
    breakdown = route.last.breakdown
    values = {
        "id": str(uuid.uuid4()),
        "member_id": request.member_id,
        "from_program": request.source,
        "to_program": request.target,
        "rate_version_id": route.first.rate_version_id,
        "points_in": route.first.breakdown.points_in,
        "points_out": breakdown.points_out,
        "base_points": breakdown.base_points,
        "step_bonus_points": breakdown.step_bonus_points,
        "promotion_bonus_points": breakdown.promotion_bonus_points,
        "tier_bonus_points": breakdown.tier_bonus_points,
        "value_cap_points": breakdown.value_cap_points,
        "currency": currency,
        "money_value_minor": route.money_value_minor,
        "fee_minor": route.fee_minor,
        "promotions": [{"id": p.id, "bonus_percent": str(p.bonus_percent)} for p in breakdown.promotions],
        "member_level": request.member_level,
        "tier_bonus_percent": breakdown.tier_bonus_percent,
        "tier_activity": request.tier_activity,
        "created_at": now,
        "expires_at": now + ttl,
        "usages": [asdict(usage) for usage in route.usages],
        "route": route.record(),
    }
    return direct.loaded(Quote, [values[column.name] for column in QUOTES.columns])


async def member_quote(session: AsyncSession, quote_id: str, member_id: str, *, lock: bool = False) -> Quote:
    """The member's own quote; another member's is reported as not found."""
    try:
        uuid.UUID(quote_id)
    except ValueError:
        raise QuoteNotFound(quote_id) from None
    quote = await session.get(Quote, quote_id, with_for_update=lock)
    if quote is None or quote.member_id != member_id:
        raise QuoteNotFound(quote_id)
    return quote


def ensure_open(quote: Quote, now: datetime) -> None:
    if now >= quote.expires_at:
        raise QuoteExpired(
            f"quote {quote.id} expired at {quote.expires_at.isoformat()}; ask for a new one",
            field="quoteId",
        )
    if quote.usages is None:
        raise QuoteExpired(
            f"quote {quote.id} is of an earlier version of the exchange; ask for a new one", field="quoteId"
        )


def ensure_tiers_stand(quote: Quote, tier_activity: int) -> None:
    """Refuse ``quote`` if it has a tier bonus and the member's tier activity marker has moved
    (to ``tier_activity``) since its level was read: that level may be one the member no longer
    holds, as when the account whose tier earned it is unlinked."""
    if quote.tier_bonus_percent and quote.tier_activity is not None and quote.tier_activity != tier_activity:
        raise QuoteTiersChanged(quote.id, quote.member_level, quote.tier_bonus_points)


def applied_promotions(quote: Quote) -> tuple[AppliedPromotion, ...]:
    return tuple(AppliedPromotion(p["id"], Decimal(p["bonus_percent"])) for p in quote.promotions)
