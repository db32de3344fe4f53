"""The sandbox partner's pure parts: expiring points and the order in which faults are drawn."""

from __future__ import annotations

from datetime import date

import pytest

from exchange.connectors.contract import ExpiringPoints
from exchange.sandbox.faults import (
    FaultInjected,
    FaultInjector,
    FaultKind,
    FaultSettings,
)
from exchange.sandbox.points import expiring_view

TODAY = date(2026, 11, 27)


def test_spent_points_come_out_of_the_soonest_expiring_lots() -> None:
    lots = [(2_000, date(2026, 12, 7)), (1_000, date(2027, 2, 25))]
    assert expiring_view(25_000, lots, TODAY) == (
        ExpiringPoints(points=2_000, expires_on=date(2026, 12, 7)),
        ExpiringPoints(points=1_000, expires_on=date(2027, 2, 25)),
    )
    assert expiring_view(1_500, lots, TODAY) == (
        ExpiringPoints(points=500, expires_on=date(2026, 12, 7)),
        ExpiringPoints(points=1_000, expires_on=date(2027, 2, 25)),
    )
    assert expiring_view(0, lots, TODAY) == ()


def test_lapsed_lots_are_not_shown() -> None:
    assert expiring_view(5_000, [(5_000, date(2026, 11, 26))], TODAY) == ()


async def _applied() -> tuple[str, bool]:
    return "done", True


async def test_a_magic_amount_wins_over_the_script_and_the_script_over_chance() -> None:
    faults = FaultInjector(FaultSettings(script=[FaultKind.APPLY_THEN_DROP], percent={FaultKind.ERROR: 100}))
    with pytest.raises(FaultInjected, match="hang"):
        await faults.run(_applied, write=True, points=13_000)
    assert faults.settings.script == [FaultKind.APPLY_THEN_DROP], "a magic amount uses no script"
    assert await faults.run(_applied, write=True, points=5) == "done"  # the script's apply-first fault
    assert faults.settings.script == []
    with pytest.raises(FaultInjected, match="error"):
        await faults.run(_applied, write=True, points=5)


async def test_the_script_is_for_writes_only() -> None:
    faults = FaultInjector(FaultSettings(script=[FaultKind.ERROR]))
    assert await faults.run(_applied, write=False) == "done"
    with pytest.raises(FaultInjected):
        await faults.run(_applied, write=True)


def test_percentages_may_not_add_up_to_more_than_100() -> None:
    with pytest.raises(ValueError, match="more than 100"):
        FaultSettings(percent={FaultKind.ERROR: 60, FaultKind.HANG: 41})


async def test_latency_is_waited_through_the_injected_sleep() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    faults = FaultInjector(FaultSettings(latency_ms=250), sleep=sleep)
    await faults.run(_applied, write=False)
    assert waits == [0.25]
