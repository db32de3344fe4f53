"""A conversion still in doubt when its month closes (SQLite and PostgreSQL): the closed month's
statements leave it out, and once recovery finishes it, its clearing lands in the first open
month as a late line that keeps its own date and names the month it happened in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from exchange.conversions.models import ConversionStatus
from exchange.db.database import Database
from exchange.members.service import link_coalition_accounts
from exchange.settlement.errors import NoSuchParticipant
from tests.fakes import Fault
from tests.integration.settlement.conftest import served, settlement_on
from tests.integration.test_conversion_saga import POINT, make_world

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
    november = await served(settlement, "happy-card", "2026-11")
    assert reference not in references(november.json())

    await world.recover_all()
    world.clock.advance(days=32)  # January: December is over
    await settlement.close("2026-12", by="staff")
    for participant, counterparty, sign in (("happy-card", "fresh-mart", "-"), ("fresh-mart", "happy-card", "")):
        lines = references((await served(settlement, participant, "2026-12")).json())[reference]
        assert {(line["effectivePeriod"], line["effectiveAt"]) for line in lines} == {
            ("2026-11", "2026-11-30T15:59:00Z")
        }
        [line] = [line for line in lines if line["counterparty"] == counterparty]
        assert line["amount"].startswith(sign) and line["amount"] != "0.00", line


#: A tenth of a second before November ends in Taipei.
LAST_INSTANT = datetime(2026, 11, 30, 15, 59, 59, 900_000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("source", "target", "lost"),
    [("happy-card", POINT, "debit"), (POINT, "fresh-mart", "credit")],
    ids=["into-the-point", "out-of-the-point"],
)
async def test_a_conversion_of_the_points_made_in_the_last_instant_posts_late_and_its_records_agree(
    db: Database, source: str, target: str, lost: str
) -> None:
    """Made at 23:59:59.9 on 30 November, its partner's answer lost; November closes while it is
    PENDING; recovery finishes it in December, where the ledger posts it as a late line. Both
    partners' statements, the point's own records and the ledger agree, and no point is made
    or lost."""
    world = await make_world(db)
    async with db.transaction() as session:
        await link_coalition_accounts(session, world.clock.now())
    # Earlier in November m1 earns points of the point (the ones it spends, out of the point).
    earned = await world.execute(await world.quote(40_000, target=POINT), key="earn")
    assert earned.status == ConversionStatus.COMPLETED
    world.clock.advance(seconds=(LAST_INSTANT - world.clock.now()).total_seconds())
    partner = target if lost == "credit" else source
    world.partners[partner].fail_next(lost, Fault.APPLY_THEN_LOSE_ANSWER)
    conversion = await world.execute(await world.quote(1000, source=source, target=target))
    assert conversion.status == ConversionStatus.PENDING, (earned.points_out, conversion)
    settlement = await settlement_on(world.db, world.clock)
    world.clock.advance(seconds=0.2)  # 00:00:00.1 on 1 December in Taipei
    await settlement.close("2026-11", by="staff")
    reference = f"conversion:{conversion.id}"
    for participant in (source, target):
        try:
            november = references((await served(settlement, participant, "2026-11")).json())
        except NoSuchParticipant:  # no other business with the exchange in November
            november = {}
        assert reference not in november

    # In flight, a debit at the point is in the book and not yet in the ledger: a break.
    in_flight = await settlement.import_point_records("2026-11", by="staff")
    assert in_flight.unresolved == (1 if source == POINT else 0)
    assert await world.recover_all() == 1  # the point's credit (or the partner's) lands in December
    world.clock.advance(days=32)
    await settlement.close("2026-12", by="staff")
    for participant in (source, target):
        lines = references((await served(settlement, participant, "2026-12")).json())[reference]
        assert {(line["effectivePeriod"], line["effectiveAt"]) for line in lines} == {
            ("2026-11", "2026-11-30T15:59:59.900000Z")
        }, lines
    for period in ("2026-11", "2026-12"):
        view = await settlement.import_point_records(period, by="staff")
        assert view.unresolved == 0, (period, [b.row for b in await settlement.breaks(view.reconciliation)])
    checked = await settlement.verify_ledger()
    assert checked.problem is None
    assert checked.point is not None and checked.point.check.in_flight == 0
