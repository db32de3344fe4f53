"""When a failed delivery is tried again, and when the exchange gives up on it.

After the n-th failed attempt the next one waits ``first × 2^(n-1)``, capped at ``longest``,
scaled by a random factor between ½ and 1 ("equal jitter": receivers that came back after an
outage are not hit by every delivery at the same instant). A delivery whose next attempt
would fall more than ``give_up_after`` after its first is dead-lettered instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    first: timedelta = timedelta(seconds=5)
    longest: timedelta = timedelta(hours=6)
    give_up_after: timedelta = timedelta(days=3)

    def delay(self, failures: int, draw: float) -> timedelta:
        """The wait after the ``failures``-th failure in a row; ``draw`` in [0, 1) is the jitter."""
        base = min(self.first * (1 << min(failures - 1, 30)), self.longest)
        return base * (0.5 + draw / 2)

    def next_attempt(self, first_attempt_at: datetime, now: datetime, failures: int, draw: float) -> datetime | None:
        """When to try again, or ``None``: past the retry window, dead-letter it."""
        at = now + self.delay(failures, draw)
        return at if at <= first_attempt_at + self.give_up_after else None
