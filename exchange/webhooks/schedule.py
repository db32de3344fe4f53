"""When a failed delivery is tried again, and when the exchange gives up on it.

After the n-th failed attempt the next one waits ``first × 2^(n-1)``, capped at ``longest``,
scaled by a random factor between ½ and 1 ("equal jitter": receivers that came back after an
outage are not hit by every delivery at the same instant). A receiver that answered 429 or
503 with ``Retry-After`` is not tried again before the time it asked for, up to ``longest``
(a receiver may slow its deliveries down, not hold them back longer than the schedule
would). A delivery whose next attempt would fall more than ``give_up_after`` after its window
started (its event, or its replay) is dead-lettered instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

#: Digits a ``Retry-After`` in seconds may have (more would be centuries: read as unreadable).
RETRY_AFTER_DIGITS = 9


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    first: timedelta = timedelta(seconds=5)
    longest: timedelta = timedelta(hours=6)
    give_up_after: timedelta = timedelta(days=3)

    def delay(self, failures: int, draw: float) -> timedelta:
        """The wait after the ``failures``-th failure in a row; ``draw`` in [0, 1) is the jitter."""
        base = min(self.first * (1 << min(failures - 1, 30)), self.longest)
        return base * (0.5 + draw / 2)

    def next_attempt(
        self,
        first_attempt_at: datetime,
        now: datetime,
        failures: int,
        draw: float,
        asked: timedelta | None = None,
    ) -> datetime | None:
        """When to try again, or ``None``: past the retry window, dead-letter it. ``asked``:
        the wait the receiver asked for (``Retry-After``), honoured up to ``longest``."""
        wait = self.delay(failures, draw)
        if asked is not None:
            wait = max(wait, min(asked, self.longest))
        at = now + wait
        return at if at <= first_attempt_at + self.give_up_after else None


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """The wait a ``Retry-After`` header asks for from ``now`` (RFC 9110: seconds, or an HTTP
    date); ``None`` if there is none, it cannot be read, or it asks for no wait."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        if len(value) > RETRY_AFTER_DIGITS:
            return None
        wait = timedelta(seconds=int(value))
    else:
        try:
            at = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        wait = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)) - now
    return wait if wait > timedelta(0) else None
