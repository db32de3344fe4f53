"""A clock tests move by hand."""

from __future__ import annotations

from datetime import datetime, timedelta


class MovableClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, by: timedelta) -> None:
        self.current += by
