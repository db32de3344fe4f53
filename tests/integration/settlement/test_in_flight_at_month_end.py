"""A conversion still in doubt when its month closes (SQLite and PostgreSQL): the closed month's
statements leave it out, and once recovery finishes it, its clearing lands in the first open
month as a late line that keeps its own date and names the month it happened in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from exchange.conversions.models import ConversionStatus
from exchange.db.database import Database
from tests.fakes import Fault
from tests.integration.settlement.conftest import settlement_on
from tests.integration.test_conversion_saga import make_world

#: A minute before November ends in Taipei.
LAST_MINUTE = datetime(2026, 11, 30, 15, 59, tzinfo=UTC)


def references(document: str) -> dict[str, list[dict[str, str]]]:
    lines: dict[str, list[dict[str, str]]] = {}
    for line in json.loads(document)["lines"]:
        lines.setdefault(line["reference"], []).append(line)
    return lines


async def test_a_conversion_in_doubt_at_month_end_is_the_next_months_late_line(db: Database) -> None:
    world = await make_world(db)
    assert (await world.execute(await world.quote(2000), key="earlier")).status == ConversionStatus.COMPLETED
    world.clock.advance(seconds=(LAST_MINUTE - world.clock.now()).total_seconds())
    world.partners["fresh-mart"].fail_next("credit", Fault.APPLY_THEN_LOSE_ANSWER)
    conversion = await world.execute(await world.quote(1000))
    assert conversion.status == ConversionStatus.PENDING
    settlement = await settlement_on(world.db, world.clock)
    world.clock.advance(hours=1)  # December in Taipei: November is over, the conversion still in doubt
    await settlement.close("2026-11", by="staff")
    reference = f"conversion:{conversion.id}"
    november = await settlement.statement("happy-card", "2026-11")
    assert reference not in references(november.json())

    await world.recover_all()
    world.clock.advance(days=32)  # January: December is over
    await settlement.close("2026-12", by="staff")
    for participant, counterparty, sign in (("happy-card", "fresh-mart", "-"), ("fresh-mart", "happy-card", "")):
        lines = references((await settlement.statement(participant, "2026-12")).json())[reference]
        assert {(line["effectivePeriod"], line["effectiveAt"]) for line in lines} == {
            ("2026-11", "2026-11-30T15:59:00Z")
        }
        [line] = [line for line in lines if line["counterparty"] == counterparty]
        assert line["amount"].startswith(sign) and line["amount"] != "0.00", line
