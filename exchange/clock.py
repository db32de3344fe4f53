"""Time, passed in: services ask a clock for "now" so tests can control it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SetClock:
    """A clock that shows the time it was set to until it is moved: for work done "as of" a
    moment, such as the demo's previous month built through the real services."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def set(self, now: datetime) -> None:
        self.current = now


def utc_instant(moment: datetime) -> str:
    """``moment`` as the exchange writes an instant into what a partner downloads (a signed
    statement, a statement's or the books' CSV): RFC 3339 in UTC with ``Z``
    (``2026-12-01T16:00:00Z``; microseconds only when it has some), one notation in every file
    so that a spreadsheet or a program comparing them reads the same text for the same instant."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
