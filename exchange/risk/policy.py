"""A program's risk gates as the gates read them (from ``[risk]`` in its declaration)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from exchange.programs.declarations import HOLD_EXPIRES_AFTER
from exchange.text import counted


class Per(StrEnum):
    #: Every conversion and redemption of the member, paid with any program's points.
    MEMBER = "member"
    #: The conversions and redemptions debiting the member's account at this program.
    ACCOUNT = "account"


@dataclass(frozen=True, slots=True)
class Velocity:
    per: Per
    window: timedelta
    max_count: int | None
    max_points: int | None


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    velocity: tuple[Velocity, ...] = ()
    cooling_period: timedelta = timedelta(0)
    refuse_name_mismatch: bool = False
    hold_above_points: int | None = None
    hold_expires_after: timedelta = HOLD_EXPIRES_AFTER

    def holds(self, points: int) -> bool:
        """Whether ``points`` leaving an account are above what goes without staff review."""
        return self.hold_above_points is not None and points > self.hold_above_points

    @classmethod
    def of(cls, declared: dict[str, Any] | None) -> RiskPolicy | None:
        """The policy a program's ``risk`` column holds (``None``: the program declares none)."""
        if declared is None:
            return None
        return cls(
            velocity=tuple(
                Velocity(
                    per=Per(rule["per"]),
                    window=timedelta(seconds=rule["window_seconds"]),
                    max_count=rule.get("max_count"),
                    max_points=rule.get("max_points"),
                )
                for rule in declared.get("velocity", [])
            ),
            cooling_period=timedelta(seconds=declared.get("cooling_period_seconds", 0)),
            refuse_name_mismatch=declared.get("refuse_name_mismatch", False),
            hold_above_points=declared.get("hold_above_points"),
            hold_expires_after=timedelta(
                seconds=declared.get("hold_expires_after_seconds", HOLD_EXPIRES_AFTER.total_seconds())
            ),
        )


def duration(span: timedelta) -> str:
    """``span`` in the largest whole unit, in English: ``1 day``, ``6 hours``, ``90 seconds``."""
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            return counted(seconds // size, unit)
    return counted(seconds, "second")
