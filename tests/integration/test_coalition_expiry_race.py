"""The expiry job and a conversion out of the point drawing the same lot at once, on PostgreSQL
with two real sessions, in both orders (forced with events and the database's own row locks,
not with sleeps): whichever takes the lot first, the other sees what it left, and the lot, the
ledger (points issued, redeemed and expired, the point's clearing) and the member's balance
agree, with no point made or lost."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from exchange.coalition import lots
from exchange.coalition.expiry import expire_batch
from exchange.coalition.rules import point_rules
from exchange.coalition.verify import check_point
from exchange.conversions.models import Conversion, ConversionStatus
from exchange.db.database import Database
from exchange.ledger.verify import verify_ledger
from exchange.members.service import link_coalition_accounts
from exchange.services.coalition import CoalitionService
from tests.integration.locks import waiting_on_a_lock
from tests.integration.test_conversion_saga import POINT, World, make_world


async def earned_lot(world: World) -> tuple[int, Any]:
    """m1 earns points of the point (one lot); the clock is moved to the lot's last second."""
    async with world.db.transaction() as session:
        await link_coalition_accounts(session, world.clock.now())
    earned = await world.execute(await world.quote(40_000, target=POINT), key="earn")
    assert earned.status == ConversionStatus.COMPLETED
    async with world.db.transaction() as session:
        [(points, expires_at)] = (
            await session.exec(text("SELECT points, expires_at FROM coalition_lot"))  # type: ignore[call-overload]
        ).all()
    world.clock.advance(seconds=(expires_at - timedelta(seconds=1) - world.clock.now()).total_seconds())
    return points, expires_at


async def conserved(world: World, earned: int) -> dict[str, int]:
    """The ledger verifies, the lots agree with it (none in flight), and every point earned is
    outstanding, spent or expired, in the lots and in the ledger alike."""
    async with world.db.transaction() as session:
        report = await verify_ledger(session)
        assert report.ok, report.problem
        checked = await check_point(session, await point_rules(session))
        assert (checked.problem, checked.in_flight) == (None, 0)
        [(remaining, expired, drawn)] = (
            await session.exec(  # type: ignore[call-overload]
                text(
                    "SELECT remaining, expired, (SELECT coalesce(sum(points - restored), 0) FROM coalition_draw)"
                    " FROM coalition_lot"
                )
            )
        ).all()
        balances = {
            code: balance
            for code, balance in await session.exec(text("SELECT code, balance FROM ledger_account_balance"))  # type: ignore[call-overload]
            if code.endswith(f":{POINT}")
        }
    assert remaining + expired + drawn == earned
    assert balances[f"member-points:{POINT}"] == remaining
    assert balances.get(f"points-expired:{POINT}", 0) == expired
    assert -balances[f"points-issued:{POINT}"] == earned
    assert balances.get(f"points-redeemed:{POINT}", 0) == drawn
    assert (await world.point.account("m1")).balance == remaining
    return {"remaining": remaining, "expired": expired, "drawn": drawn}


async def test_a_conversion_that_takes_the_lot_first_leaves_the_expiry_the_rest(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await make_world(pg_db)
    earned, expires_at = await earned_lot(world)
    holding, go = asyncio.Event(), asyncio.Event()
    debit = lots.debit

    async def debit_then_hold(session: Any, **arguments: Any) -> lots.Recorded:
        recorded = await debit(session, **arguments)  # the lot is locked and drawn, not committed
        holding.set()
        await go.wait()
        return recorded

    monkeypatch.setattr(lots, "debit", debit_then_hold)
    converting = asyncio.create_task(world.execute(await world.quote(1000, source=POINT), key="spend"))
    await holding.wait()
    expiring = asyncio.create_task(
        CoalitionService(db=pg_db, ledger=world.saga.ledger, clock=world.clock).expire(now=expires_at)
    )
    await waiting_on_a_lock(pg_db)  # the expiry waits for the conversion's lock on the lot
    go.set()
    conversion, expiry = await asyncio.gather(converting, expiring)

    assert conversion.status == ConversionStatus.COMPLETED
    assert expiry.points == earned - 1000
    assert await conserved(world, earned) == {"remaining": 0, "expired": earned - 1000, "drawn": 1000}


async def test_an_expiry_that_takes_the_lot_first_refuses_the_conversion(pg_db: Database) -> None:
    world = await make_world(pg_db)
    earned, expires_at = await earned_lot(world)
    quote = await world.quote(1000, source=POINT)
    async with pg_db.transaction() as session:  # the job's batch: the lot locked and emptied, not committed
        async with pg_db.transaction() as reading:
            rules = await point_rules(reading)
        batch = await expire_batch(session, rules, world.saga.ledger, now=expires_at, limit=10)
        assert batch.points == earned
        converting = asyncio.create_task(world.execute(quote, key="spend"))
        await waiting_on_a_lock(pg_db)  # the conversion's debit waits for the job's lock on the lot
    conversion = await converting

    assert conversion.status == ConversionStatus.FAILED
    assert world.partners["fresh-mart"].balances["alice"] == 100_000, "nothing credited"
    async with pg_db.transaction() as session:
        row = await session.get(Conversion, conversion.id)
    assert row is not None and row.failure_code is not None
    assert await conserved(world, earned) == {"remaining": 0, "expired": earned, "drawn": 0}
