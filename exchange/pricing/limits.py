"""Conversion limits: the amount's own rules, and caps counted per member and per program.

Caps are counters in ``limit_usage``, one row per subject and window (a member's day at a
program, a program's month of issuing). Checking a quote reads them; executing a conversion
reserves, in one guarded upsert that adds each amount only where it stays within its cap —
rows in key order, a fixed order, so concurrent reservations queue instead of deadlocking —
and refuses (the caller's unit of work then rolls back) if any counter lacked room. A
conversion that fails or is reversed releases what it reserved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, String, TextClause, bindparam, case, text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import direct
from exchange.errors import BadUserInput
from exchange.pricing.errors import LimitExceeded
from exchange.pricing.models import LimitUsage, RateVersion
from exchange.programs.models import Program
from exchange.text import fill

#: The most points one conversion may move; beyond it a request is refused as oversized.
MAX_POINTS = 1_000_000_000

#: Why a conversion's amount or a capped counter refuses it, each written from one template, so
#: that a page can read the refusal back and say it in its reader's language
#: (:mod:`exchange.web.said`; :func:`~exchange.text.fill` writes them): ``points``, the minimum
#: (a count of points) or the increment; ``name``, the cap's name
#: (:func:`conversion_caps`), ``limit`` its size, ``remaining`` what is left and ``amount`` what
#: was asked.
BELOW_MINIMUM = "at least {points:point} must be converted"
NOT_AN_INCREMENT = "points must be a multiple of {points}"
CAP_EXCEEDED = "{name} of {limit} would be exceeded: {remaining} left, {amount} asked"


#: How many points one conversion may move, whatever the pair (:func:`check_points`):
#: ``points``, :data:`MAX_POINTS`, and ``got``, the points asked, each with thousands commas;
#: a page says it in the reader's language by its key ``POINTS_RANGE``.
POINTS_RANGE = "points must be from 1 to {points}, got {got}"


def check_points(points: int) -> None:
    """Refuse an amount of points out of range: at least 1, at most :data:`MAX_POINTS`."""
    if not 0 < points <= MAX_POINTS:
        raise BadUserInput(POINTS_RANGE.format(points=f"{MAX_POINTS:,}", got=f"{points:,}"), field="points")


#: How the points a person types must be written (the portal's convert form): as a page says
#: it, in the reader's language, by its key ``NOT_WHOLE_POINTS``.
NOT_WHOLE_POINTS = "points must be a whole number from 1 to {points:point}, written in digits such as 1000 or 1,000"


def beyond_max_points(message: str, *, field: str = "points") -> LimitExceeded:
    """The refusal of a request that would move more than :data:`MAX_POINTS` (``message`` says
    how many, and of what)."""
    return LimitExceeded(message, limit="max_points", remaining=MAX_POINTS, field=field)


@dataclass(frozen=True, slots=True)
class Usage:
    """``amount`` counted against ``limit`` on counter ``key``; ``name`` says which limit."""

    key: str
    name: str
    limit: int
    amount: int


@dataclass(frozen=True, slots=True)
class Cap:
    """A limit a conversion counts against, before its amounts are known: ``counts`` says
    which of them, the points in or the points out."""

    key: str
    name: str
    limit: int
    counts: str

    def usage(self, *, points_in: int, points_out: int) -> Usage:
        return Usage(self.key, self.name, self.limit, points_in if self.counts == "in" else points_out)


@dataclass(frozen=True, slots=True)
class AmountRule:
    """What one conversion of a pair may take: at least ``minimum`` points, in whole steps of
    ``increment``."""

    minimum: int
    increment: int

    @classmethod
    def of(cls, source: Program, minimum_points: int | None, increment: int | None) -> AmountRule:
        """A pair's rule: its source program's minimum, or the pair's own if higher; in steps
        of the pair's own increment if it sets one, else the source's."""
        return cls(max(source.minimum_points, minimum_points or 0), increment or source.increment)

    @classmethod
    def of_source(cls, source: Program) -> AmountRule:
        """The rule of a pair that sets none of its own."""
        return cls(source.minimum_points, source.increment)

    def check(self, points: int) -> None:
        """The amount's own rules: at least the minimum, in whole steps of the increment."""
        if points < self.minimum:
            raise LimitExceeded(fill(BELOW_MINIMUM, points=self.minimum), limit="minimum_points", remaining=0)
        if points % self.increment:
            raise LimitExceeded(NOT_AN_INCREMENT.format(points=self.increment), limit="increment", remaining=0)


@lru_cache(maxsize=16)
def _windows(at: datetime, timezone: ZoneInfo) -> dict[str, str]:
    """The day, month and year ``at`` falls in, in ``timezone``; kept for the few instants a
    moment's quotes ask about (a quote prices every route at one ``now``). Read only."""
    local = at.astimezone(timezone)
    year, month = f"{local.year:04d}", f"{local.year:04d}-{local.month:02d}"
    return {"day": f"{month}-{local.day:02d}", "month": month, "year": year}


def conversion_caps(
    *, member_id: str, source: Program, target: Program, version: RateVersion, at: datetime, timezone: ZoneInfo
) -> list[Cap]:
    """Every capped counter a conversion at ``at`` counts against, in key order."""
    windows = _windows(at, timezone)
    caps: list[Cap] = []
    member_caps = (
        ("day", "member_daily_cap", source.member_daily_cap, version.member_daily_cap),
        ("month", "member_monthly_cap", source.member_monthly_cap, version.member_monthly_cap),
        ("year", "member_yearly_cap", source.member_yearly_cap, version.member_yearly_cap),
    )
    for window, name, program_cap, pair_cap in member_caps:
        if program_cap is not None:
            caps.append(Cap(f"member:{member_id}:out:{source.id}:{window}:{windows[window]}", name, program_cap, "in"))
        if pair_cap is not None:
            caps.append(
                Cap(
                    f"member:{member_id}:pair:{source.id}>{target.id}:{window}:{windows[window]}",
                    f"pair_{name}",
                    pair_cap,
                    "in",
                )
            )
    if target.monthly_issue_budget is not None:
        caps.append(
            Cap(
                f"program:{target.id}:issue:month:{windows['month']}",
                "monthly_issue_budget",
                target.monthly_issue_budget,
                "out",
            )
        )
    return sorted(caps, key=lambda cap: cap.key)


def conversion_usages(
    *,
    member_id: str,
    source: Program,
    target: Program,
    version: RateVersion,
    points_in: int,
    points_out: int,
    at: datetime,
    timezone: ZoneInfo,
) -> list[Usage]:
    """Every capped counter a conversion counts against, with the amount it adds."""
    caps = conversion_caps(member_id=member_id, source=source, target=target, version=version, at=at, timezone=timezone)
    return [cap.usage(points_in=points_in, points_out=points_out) for cap in caps]


def _refuse(usage: Usage, used: int) -> LimitExceeded:
    remaining = max(0, usage.limit - used)
    return LimitExceeded(
        CAP_EXCEEDED.format(name=usage.name, limit=usage.limit, remaining=remaining, amount=usage.amount),
        limit=usage.name,
        remaining=remaining,
    )


async def used(session: AsyncSession, keys: Sequence[str], *, lock: bool = False) -> dict[str, int]:
    """How much of each counter is used (a counter never used has no row: 0)."""
    statement = select(LimitUsage).where(col(LimitUsage.key).in_(keys)).order_by(col(LimitUsage.key))
    rows = await session.exec(statement.with_for_update() if lock else statement)
    return {row.key: row.used for row in rows}


def check_room(usages: Sequence[Usage], used: Mapping[str, int]) -> None:
    """Refuse, without reserving, if any counter lacks room (what a quote does)."""
    for usage in usages:
        if used.get(usage.key, 0) + usage.amount > usage.limit:
            raise _refuse(usage, used.get(usage.key, 0))


async def reserve(session: AsyncSession, usages: Sequence[Usage]) -> None:
    """Count ``usages`` against their caps, or refuse; on a refusal some counters may have
    been counted already: the caller's unit of work must roll back (raising does)."""
    if not usages:
        return
    usages = sorted(usages, key=lambda usage: usage.key)
    counted: set[str] = set()
    if all(usage.amount <= usage.limit for usage in usages):
        params: dict[str, Any] = {}
        for index, usage in enumerate(usages):
            params |= {f"key_{index}": usage.key, f"amount_{index}": usage.amount, f"cap_{index}": usage.limit}
        counted = set((await direct.execute(session, _reservation(len(usages)), params)).scalars())
        if len(counted) == len(usages):
            return
    refused = [usage for usage in usages if usage.key not in counted]
    before = await used(session, [usage.key for usage in refused])  # not counted: as they were
    raise _refuse(refused[0], before.get(refused[0].key, 0))


@lru_cache(maxsize=64)
def _reservation(count: int) -> TextClause:
    """Add ``amount_<i>`` to counter ``key_<i>`` (a new one starts at it) wherever the sum stays
    within ``cap_<i>``, rows in the order given; returns the keys counted. SQLAlchemy would
    compile a multi-row insert anew each time: as text, its cache keeps it."""
    rows = ", ".join(f"(:key_{index}, :amount_{index})" for index in range(count))
    caps = " ".join(f"WHEN :key_{index} THEN :cap_{index}" for index in range(count))
    return text(
        f"INSERT INTO limit_usage (key, used) VALUES {rows} "
        "ON CONFLICT (key) DO UPDATE SET used = limit_usage.used + excluded.used "
        f"WHERE limit_usage.used + excluded.used <= CASE limit_usage.key {caps} END "
        "RETURNING key"
    ).bindparams(
        *(
            bindparam(f"{name}_{index}", type_=kind)
            for index in range(count)
            for name, kind in (("key", String()), ("amount", BigInteger()), ("cap", BigInteger()))
        )
    )


async def release(session: AsyncSession, usages: Sequence[Usage]) -> None:
    """Give back what a failed or reversed conversion reserved (rows locked in key order first)."""
    if usages:
        amounts = {usage.key: usage.amount for usage in usages}
        await used(session, sorted(amounts), lock=True)
        await session.exec(
            update(LimitUsage)
            .where(col(LimitUsage.key).in_(list(amounts)))
            .values(used=LimitUsage.used - case(amounts, value=col(LimitUsage.key)))
        )
