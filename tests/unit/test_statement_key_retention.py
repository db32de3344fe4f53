"""How long a retired statement key stays published, in calendar years."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exchange.settlement.keys import years_after


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 20, 4, 0, tzinfo=UTC), datetime(2033, 11, 20, 4, 0, tzinfo=UTC)),
        (datetime(2028, 2, 29, 12, 0, tzinfo=UTC), datetime(2035, 3, 1, 12, 0, tzinfo=UTC)),
        (datetime(2027, 2, 28, 12, 0, tzinfo=UTC), datetime(2034, 2, 28, 12, 0, tzinfo=UTC)),
    ],
    ids=["same-day", "29-february-becomes-1-march", "28-february"],
)
def test_a_retention_counts_calendar_years(moment: datetime, expected: datetime) -> None:
    assert years_after(moment, 7) == expected
