"""Quotes: a conversion's price, fixed for a short time.

A quote pins the rate version, the promotions and the tier bonus it used and the exact
amounts; executing it later converts exactly those amounts, whatever changed meanwhile,
as long as it has not expired.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.errors import BadUserInput
from exchange.pricing import limits, promotions, rates
from exchange.pricing.errors import QuoteExpired, QuoteNotFound
from exchange.pricing.models import Quote, RateVersion
from exchange.pricing.rules import AppliedPromotion, PriceBreakdown, price
from exchange.programs import service as programs
from exchange.programs.models import Program


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    member_id: str
    member_level: int
    source: str
    target: str
    points: int


@dataclass(frozen=True, slots=True)
class QuotePolicy:
    """How quotes are made: how long they live, and whose calendar caps count in."""

    ttl: timedelta
    timezone: ZoneInfo


def _check_points(points: int) -> None:
    if points <= 0:
        raise BadUserInput(f"points must be positive, got {points}", field="points")
    if points > limits.MAX_POINTS:
        raise BadUserInput(f"points must be at most {limits.MAX_POINTS:,}, got {points:,}", field="points")


@dataclass(frozen=True, slots=True)
class Priced:
    """A conversion priced now, before any member's caps are counted or anything is stored."""

    source: Program
    target: Program
    version: RateVersion
    breakdown: PriceBreakdown
    currency: str


async def price_conversion(
    session: AsyncSession, *, source: str, target: str, points: int, member_level: int, now: datetime
) -> Priced:
    """Price ``request`` by the rate version, promotions and tier bonus in effect at ``now``,
    checking the amount against the minimum and increment; nothing is written. A quote is
    this and the member's caps; a partner's preview is this alone."""
    _check_points(points)
    if source == target:
        raise BadUserInput("a program cannot be converted into itself", field="toProgram")
    source_program = await programs.get_program(session, source, field="fromProgram")
    target_program = await programs.get_program(session, target, field="toProgram")
    view = await programs.get_coalition(session)
    if not 0 <= member_level <= view.ladder[-1].level:
        raise BadUserInput(f"memberLevel must be a ladder level, 0 to {view.ladder[-1].level}", field="memberLevel")
    coalition = view.settings
    version = await rates.version_at(session, source, target, now)
    content = rates.RateContent.of(version)
    pair_limits = content.override.limits
    limits.check_amount(
        points,
        minimum=max(source_program.minimum_points, pair_limits.minimum_points or 0),
        increment=pair_limits.increment or source_program.increment,
    )
    applied = await promotions.active_promotions(session, source=source, target=target, at=now)
    tier_bonus = coalition.tier_bonus_for(member_level)
    breakdown = price(
        content.rule(),
        points,
        currency=coalition.currency,
        promotions=applied,
        tier_bonus_percent=tier_bonus,
    )
    if breakdown.points_out < 1:
        raise BadUserInput(f"{points} points of {source} convert into no {target} points", field="points")
    return Priced(source_program, target_program, version, breakdown, coalition.settlement_currency)


async def create_quote(session: AsyncSession, request: QuoteRequest, *, policy: QuotePolicy, now: datetime) -> Quote:
    """Price a conversion and fix the price until ``now + policy.ttl``."""
    priced = await price_conversion(
        session,
        source=request.source,
        target=request.target,
        points=request.points,
        member_level=request.member_level,
        now=now,
    )
    version, breakdown = priced.version, priced.breakdown
    await limits.check_room(
        session,
        limits.conversion_usages(
            member_id=request.member_id,
            source=priced.source,
            target=priced.target,
            version=version,
            points_in=breakdown.points_in,
            points_out=breakdown.points_out,
            at=now,
            timezone=policy.timezone,
        ),
    )
    quote = _quote_row(request, version, breakdown, currency=priced.currency, now=now, ttl=policy.ttl)
    session.add(quote)
    await session.flush()
    return quote


def _quote_row(
    request: QuoteRequest,
    version: RateVersion,
    breakdown: PriceBreakdown,
    *,
    currency: str,
    now: datetime,
    ttl: timedelta,
) -> Quote:
    assert version.id is not None
    return Quote(
        id=str(uuid.uuid4()),
        member_id=request.member_id,
        from_program=request.source,
        to_program=request.target,
        rate_version_id=version.id,
        points_in=breakdown.points_in,
        points_out=breakdown.points_out,
        base_points=breakdown.base_points,
        step_bonus_points=breakdown.step_bonus_points,
        promotion_bonus_points=breakdown.promotion_bonus_points,
        tier_bonus_points=breakdown.tier_bonus_points,
        currency=currency,
        money_value_minor=breakdown.money_value_minor,
        fee_minor=breakdown.fee_minor,
        promotions=[{"id": p.id, "bonus_percent": str(p.bonus_percent)} for p in breakdown.promotions],
        member_level=request.member_level,
        tier_bonus_percent=breakdown.tier_bonus_percent,
        created_at=now,
        expires_at=now + ttl,
    )


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


def applied_promotions(quote: Quote) -> tuple[AppliedPromotion, ...]:
    return tuple(AppliedPromotion(p["id"], Decimal(p["bonus_percent"])) for p in quote.promotions)
