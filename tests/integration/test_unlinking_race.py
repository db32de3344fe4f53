"""An unlink and a conversion (or a redemption) out of the same account at once, on PostgreSQL
with two real sessions, in both orders (forced with events and the database's own row locks, not with sleeps):
the conversion records from the account under a share lock, so whichever goes first, the other
sees what it left. Either the conversion is recorded and the unlink is refused while it is
unfinished, or the account is unlinked and the conversion is refused; never a conversion left
running through an account no longer linked."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlmodel import select

from exchange.conversions.models import Conversion, ConversionStatus
from exchange.db.database import Database
from exchange.members.models import LinkedAccount
from exchange.members.service import AccountNotLinked
from exchange.pricing import limits
from exchange.unlinking import service as unlinking
from exchange.unlinking.service import Rule, UnlinkRefused
from tests.integration.locks import waiting_on_a_lock
from tests.integration.test_conversion_saga import make_world
from tests.integration.test_redemptions import make_world as redemption_world


async def links_of_m1(db: Database) -> set[str]:
    async with db.transaction() as session:
        return {
            link.program_id for link in await session.exec(select(LinkedAccount).where(LinkedAccount.member_id == "m1"))
        }


async def test_a_conversion_recorded_first_keeps_the_account_linked(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await make_world(pg_db)
    quote = await world.quote(1000, source="happy-card")
    holding, go = asyncio.Event(), asyncio.Event()
    reserve = limits.reserve

    async def reserve_then_hold(session: Any, usages: Any) -> None:
        await reserve(session, usages)  # the conversion's row is inserted, not committed
        holding.set()
        await go.wait()

    async def recorded_only(conversion: Conversion) -> Conversion:
        return conversion  # the process stopped before the debit: the conversion stays PENDING

    monkeypatch.setattr(limits, "reserve", reserve_then_hold)
    monkeypatch.setattr(world.saga, "drive", recorded_only)
    converting = asyncio.create_task(world.execute(quote))
    await holding.wait()

    async def unlink() -> unlinking.Unlinked:
        async with pg_db.transaction() as session:
            return await unlinking.unlink(session, "m1", "happy-card", "alice", world.clock.now(), signed_in_through=())

    unlinking_task = asyncio.create_task(unlink())
    await waiting_on_a_lock(pg_db)  # the unlink waits for the conversion's share lock on the account
    go.set()
    conversion = await converting
    with pytest.raises(UnlinkRefused) as refused:
        await unlinking_task

    assert conversion.status == ConversionStatus.PENDING
    assert (refused.value.rule, refused.value.details["sagaId"]) == (Rule.SAGA_IN_PROGRESS, conversion.id)
    assert "happy-card" in await links_of_m1(pg_db)


async def test_an_unlink_made_first_refuses_the_conversion(pg_db: Database) -> None:
    world = await make_world(pg_db)
    quote = await world.quote(1000, source="happy-card")
    async with pg_db.transaction() as session:  # the unlink: the account locked and deleted, not committed
        await unlinking.unlink(session, "m1", "happy-card", "alice", world.clock.now(), signed_in_through=())
        converting = asyncio.create_task(world.execute(quote))
        await waiting_on_a_lock(pg_db)  # the conversion waits to read the account
    with pytest.raises(AccountNotLinked):
        await converting

    async with pg_db.transaction() as session:
        assert (await session.exec(select(Conversion))).all() == []
    assert "happy-card" not in await links_of_m1(pg_db)
    assert world.partners["happy-card"].balances["alice"] == 100_000, "nothing debited"


async def test_an_unlink_made_first_refuses_the_redemption(pg_db: Database) -> None:
    world = await redemption_world(pg_db)
    reward = await world.reward()
    async with pg_db.transaction() as session:  # the unlink: the account locked and deleted, not committed
        await unlinking.unlink(session, world.alice, "happy-card", "alice", world.clock.now(), signed_in_through=())
        redeeming = asyncio.create_task(world.redeem(reward))
        await waiting_on_a_lock(pg_db)  # the redemption waits to read the account it pays with
    with pytest.raises(AccountNotLinked):
        await redeeming

    assert await world.stock(reward) == 10, "nothing reserved"
    assert world.partners["happy-card"].balances["alice"] == 100_000, "nothing debited"
