"""Settlement periods: calendar months in the settlement time zone, named ``YYYY-MM``."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def period_of(moment: datetime, timezone: ZoneInfo) -> str:
    """The period a moment falls in, read on the settlement time zone's calendar."""
    local = moment.astimezone(timezone)
    return f"{local.year:04d}-{local.month:02d}"
