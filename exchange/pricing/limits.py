"""Conversion limits: the amount's own rules, and caps counted per member and per program.

Caps are counters in ``limit_usage``, one row per subject and window (a member's day at a
program, a program's month of issuing). Checking a quote reads them; executing a conversion
reserves: the rows are locked in key order (a fixed order, so concurrent reservations
queue instead of deadlocking), checked and incremented in the caller's unit of work. A
conversion that fails or is reversed releases what it reserved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import dialects
from exchange.pricing.errors import LimitExceeded
from exchange.pricing.models import LimitUsage, RateVersion
from exchange.programs.models import Program

#: The most points one conversion may move; beyond it a request is refused as oversized.
MAX_POINTS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Usage:
    """``amount`` counted against ``limit`` on counter ``key``; ``name`` says which limit."""

    key: str
    name: str
    limit: int
    amount: int


def check_amount(points: int, *, minimum: int, increment: int) -> None:
    """The amount's own rules: at least the minimum, in whole steps of the increment."""
    if points < minimum:
        raise LimitExceeded(f"at least {minimum} points must be converted", limit="minimum_points", remaining=0)
    if points % increment:
        raise LimitExceeded(f"points must be a multiple of {increment}", limit="increment", remaining=0)


def _windows(at: datetime, timezone: ZoneInfo) -> dict[str, str]:
    local = at.astimezone(timezone)
    return {"day": local.strftime("%Y-%m-%d"), "month": local.strftime("%Y-%m"), "year": local.strftime("%Y")}


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
    windows = _windows(at, timezone)
    usages: list[Usage] = []
    member_caps = (
        ("day", "member_daily_cap", source.member_daily_cap, version.member_daily_cap),
        ("month", "member_monthly_cap", source.member_monthly_cap, version.member_monthly_cap),
        ("year", "member_yearly_cap", source.member_yearly_cap, version.member_yearly_cap),
    )
    for window, name, program_cap, pair_cap in member_caps:
        if program_cap is not None:
            usages.append(
                Usage(f"member:{member_id}:out:{source.id}:{window}:{windows[window]}", name, program_cap, points_in)
            )
        if pair_cap is not None:
            usages.append(
                Usage(
                    f"member:{member_id}:pair:{source.id}>{target.id}:{window}:{windows[window]}",
                    f"pair_{name}",
                    pair_cap,
                    points_in,
                )
            )
    if target.monthly_issue_budget is not None:
        usages.append(
            Usage(
                f"program:{target.id}:issue:month:{windows['month']}",
                "monthly_issue_budget",
                target.monthly_issue_budget,
                points_out,
            )
        )
    return sorted(usages, key=lambda usage: usage.key)


def _refuse(usage: Usage, used: int) -> LimitExceeded:
    remaining = max(0, usage.limit - used)
    return LimitExceeded(
        f"{usage.name} of {usage.limit} would be exceeded: {remaining} left, {usage.amount} asked",
        limit=usage.name,
        remaining=remaining,
    )


async def _used(session: AsyncSession, keys: Sequence[str], *, lock: bool) -> dict[str, int]:
    statement = select(LimitUsage).where(col(LimitUsage.key).in_(keys)).order_by(col(LimitUsage.key))
    rows = await session.exec(statement.with_for_update() if lock else statement)
    return {row.key: row.used for row in rows}


async def check_room(session: AsyncSession, usages: Sequence[Usage]) -> None:
    """Refuse, without reserving, if any counter lacks room (what a quote does)."""
    used = await _used(session, [usage.key for usage in usages], lock=False)
    for usage in usages:
        if used.get(usage.key, 0) + usage.amount > usage.limit:
            raise _refuse(usage, used.get(usage.key, 0))


async def reserve(session: AsyncSession, usages: Sequence[Usage]) -> None:
    """Count ``usages`` against their caps, or refuse and count nothing."""
    if not usages:
        return
    keys = [usage.key for usage in usages]
    await session.exec(
        dialects.insert(session, LimitUsage).values([{"key": key, "used": 0} for key in keys]).on_conflict_do_nothing()
    )
    used = await _used(session, keys, lock=True)
    for usage in usages:
        if used[usage.key] + usage.amount > usage.limit:
            raise _refuse(usage, used[usage.key])
    await _add(session, {usage.key: usage.amount for usage in usages})


async def release(session: AsyncSession, usages: Sequence[Usage]) -> None:
    """Give back what a failed or reversed conversion reserved."""
    if usages:
        await _used(session, [usage.key for usage in usages], lock=True)
        await _add(session, {usage.key: -usage.amount for usage in usages})


async def _add(session: AsyncSession, amounts: dict[str, int]) -> None:
    rows = await session.exec(select(LimitUsage).where(col(LimitUsage.key).in_(list(amounts))))
    for row in rows:
        row.used += amounts[row.key]
        session.add(row)
    await session.flush()
