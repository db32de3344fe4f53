"""The redemption saga: stock and limits, the clearing entries, faults, cancellation and
undelivered rewards — on SQLite and PostgreSQL, with in-memory partners and the coalition
point; faults and crashes on a cancel's way back and on a debit of coalition points (the
lots agree with the ledger after recovery); and on PostgreSQL, 50 parallel redemptions of a
reward with stock 10, and two recovery workers on the same redemptions in doubt."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.coalition.connector import CoalitionConnector
from exchange.coalition.rules import point_rules
from exchange.coalition.verify import check_point
from exchange.connectors.contract import OperationKind
from exchange.conversions.clearing import conversion_transaction
from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.errors import BadUserInput, ErrorCode, ExchangeError, IdempotencyConflict
from exchange.federation.accounts import Federation, LevelRead
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import verify_ledger
from exchange.loading import load_directory
from exchange.members.authority import DebitAuthority
from exchange.members.service import link_coalition_accounts
from exchange.pricing.errors import LimitExceeded
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import read_partners_directory
from exchange.programs.models import Program
from exchange.rewards import catalog
from exchange.rewards.errors import (
    NoLongerHeld,
    NotCancellable,
    OutOfStock,
    PriceChanged,
    RedemptionNotFound,
    RewardUnavailable,
    TiersChanged,
    TierTooLow,
)
from exchange.rewards.jobs import RedemptionJob
from exchange.rewards.models import (
    CancelledBy,
    Redemption,
    RedemptionStatus,
    RedemptionStep,
    Reward,
    RewardKind,
)
from exchange.rewards.redemption import RedeemRequest, RedemptionSaga
from exchange.sagas.engine import SagaPolicy
from exchange.sagas.recovery import RecoveryWorker
from exchange.services.container import risk_gates
from exchange.testing.clock import FrozenClock
from exchange.unlinking.service import unlink
from tests.conftest import SAMPLE_PARTNERS
from tests.factories import member_with_accounts
from tests.fakes import FakePartner, Fault
from tests.integration.locks import waiting_on_a_lock
from tests.integration.settlement.conftest import settlement_on
from tests.outages import cut_next_point_write

TAIPEI = ZoneInfo("Asia/Taipei")
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
PROGRAMS = ("wallet-pay", "happy-card", "fresh-mart", "harbor-bank", "tune-stream", "formosa-air")
POINT = "coalition"


async def funded_by_fresh_mart(session: AsyncSession, saga_id: str) -> str | None:
    return "fresh-mart"


@dataclass
class World:
    db: Database
    clock: FrozenClock
    partners: dict[str, FakePartner]
    saga: RedemptionSaga
    alice: str
    point: CoalitionConnector
    """The coalition point, which the exchange keeps itself: no fault to inject, but a crash."""

    async def reward(self, stock: int = 10, **options: object) -> Reward:
        draft = catalog.RewardDraft(title="Lounge pass", price=Decimal("150"), stock=stock, **options)  # type: ignore[arg-type]
        async with self.db.transaction() as session:
            return await catalog.publish(session, "formosa-air", draft, self.clock.now())

    async def redeem(
        self,
        reward: Reward,
        key: str = "k1",
        member: str | None = None,
        pay_with: str = "happy-card",
        *,
        expected_points: int | None = None,
    ) -> Redemption:
        return await self.saga.redeem(
            RedeemRequest(
                member_id=member or self.alice,
                reward_id=reward.id,
                pay_with=pay_with,
                idempotency_key=key,
                authority=DebitAuthority(asserted_by=pay_with),
                expected_points=expected_points,
            )
        )

    async def stock(self, reward: Reward) -> int:
        async with self.db.transaction() as session:
            row = await session.get(Reward, reward.id)
        assert row is not None
        return row.stock

    async def get(self, redemption_id: str) -> Redemption:
        async with self.db.transaction() as session:
            row = await session.get(Redemption, redemption_id)
        assert row is not None
        return row

    async def balances(self) -> dict[str, int]:
        async with self.db.transaction() as session:
            report = await verify_ledger(session)
            assert report.ok, report.problem
            rows = await session.exec(text("SELECT code, balance FROM ledger_account_balance"))  # type: ignore[call-overload]
            return {code: balance for code, balance in rows if balance}

    async def recover(self) -> int:
        self.clock.advance(hours=1)
        return await RedemptionJob(self.saga).run_once()


async def make_world(db: Database, members: int = 0) -> World:
    clock = FrozenClock(T0)
    async with db.transaction() as session:
        await load_directory(session, read_partners_directory(SAMPLE_PARTNERS), T0)
    balances = {"alice": 100_000, "bob": 500, **{f"m{n}": 10_000 for n in range(members)}}
    partners = {program: FakePartner(program, dict(balances)) for program in PROGRAMS}
    point = CoalitionConnector(POINT, db, clock, funded_by_fresh_mart, CatalogCache(db, ttl=0))

    def connector_for(program: Program) -> FakePartner | CoalitionConnector:
        return point if program.id == POINT else partners[program.id]

    saga = RedemptionSaga(
        db=db,
        connector_for=connector_for,  # type: ignore[arg-type]
        member_level=Federation(
            db,
            connector_for,
            CatalogCache(db, ttl=0),
            balance_ttl=0,
            tier_ttl=0,
        ).level_read,
        ledger=Ledger(timezone=TAIPEI, clock=clock),
        clock=clock,
        policy=SagaPolicy(timezone=TAIPEI),
        delivery_window=timedelta(days=14),
        gates=risk_gates(),
    )
    alice = await member_with_accounts(db, {"happy-card": "alice", "fresh-mart": "alice"}, T0)
    return World(db, clock, partners, saga, alice, point)


@pytest.fixture
async def world(db: Database) -> World:
    return await make_world(db)


async def test_a_redemption_debits_the_member_posts_the_clearing_and_takes_one_from_stock(world: World) -> None:
    reward = await world.reward()
    redemption = await world.redeem(reward)
    # 150 TWD + 2 % fee = 153 TWD; happy-card points are worth 0.25 TWD: 612 points.
    assert (redemption.status, redemption.points, redemption.price_minor, redemption.fee_minor) == (
        RedemptionStatus.COMPLETED,
        612,
        15000,
        300,
    )
    assert redemption.deliver_by == T0 + timedelta(days=14)
    assert world.partners["happy-card"].balances["alice"] == 100_000 - 612
    assert await world.stock(reward) == 9
    assert await world.balances() == {
        "member-points:happy-card": -612,
        "points-redeemed:happy-card": 612,
        "partner-clearing:happy-card": -15300,
        "partner-clearing:formosa-air": 15000,
        "exchange-fees": 300,
    }
    assert (await world.redeem(reward)).id == redemption.id, "the same key is the same redemption"
    assert world.partners["happy-card"].balances["alice"] == 100_000 - 612
    with pytest.raises(IdempotencyConflict, match="choose a new key for a new redemption"):
        await world.redeem(reward, pay_with="fresh-mart")


async def test_a_redemption_expecting_the_points_shown_is_refused_when_the_point_value_changed_meanwhile(
    world: World,
) -> None:
    """The member saw 612 happy-card points; an operator's `partners load` then makes a point
    worth 0.20 TWD instead of 0.25 (153 TWD is 765 points): redeeming at the 612 shown is
    refused with both figures, nothing recorded, taken or debited; at the new price it goes
    through. The key's redemption is the same request only expecting what it was charged."""
    reward = await world.reward()
    shown = (await world.saga.quote(world.alice, reward.id, "happy-card")).price.points
    assert shown == 612
    async with world.db.transaction() as session:
        await session.exec(  # type: ignore[call-overload]
            update(Program).where(col(Program.id) == "happy-card").values(point_value=Decimal("0.20"))
        )
    with pytest.raises(PriceChanged) as refused:
        await world.redeem(reward, expected_points=shown)
    assert refused.value.field == "expectedPoints"
    assert refused.value.details == {"expectedPoints": 612, "points": 765}
    async with world.db.transaction() as session:
        assert (await session.exec(select(Redemption))).all() == []
    assert await world.stock(reward) == 10
    assert world.partners["happy-card"].balances["alice"] == 100_000
    assert world.partners["happy-card"].calls == []
    redemption = await world.redeem(reward, expected_points=765)
    assert (redemption.status, redemption.points) == (RedemptionStatus.COMPLETED, 765)
    assert world.partners["happy-card"].balances["alice"] == 100_000 - 765
    assert (await world.redeem(reward, expected_points=765)).id == redemption.id
    assert (await world.redeem(reward)).id == redemption.id
    with pytest.raises(IdempotencyConflict):
        await world.redeem(reward, expected_points=612)


async def test_the_per_member_limit_holds_and_out_of_stock_is_clear(world: World) -> None:
    limited = await world.reward(stock=5, per_member_limit=2)
    await world.redeem(limited, "a")
    await world.redeem(limited, "b")
    with pytest.raises(LimitExceeded) as refused:
        await world.redeem(limited, "c")
    assert refused.value.details == {"limit": "per_member_limit", "remaining": 0}
    scarce = await world.reward(stock=1, id="scarce")
    await world.redeem(scarce, "d")
    with pytest.raises(OutOfStock):
        await world.redeem(scarce, "e")
    assert (await world.stock(limited), await world.stock(scarce)) == (3, 0)


async def test_a_refused_debit_fails_and_gives_stock_and_limit_back(world: World) -> None:
    bob = await member_with_accounts(world.db, {"happy-card": "bob"}, T0)
    reward = await world.reward(stock=1, per_member_limit=1)
    failed = await world.redeem(reward, member=bob)
    assert (failed.status, failed.failure_code) == (RedemptionStatus.FAILED, "INSUFFICIENT_POINTS")
    assert await world.stock(reward) == 1
    assert (await world.redeem(reward, key="k2")).status == RedemptionStatus.COMPLETED
    assert await world.balances() != {}


@pytest.mark.parametrize(
    ("fault", "final", "charged"),
    [
        (Fault.APPLY_THEN_LOSE_ANSWER, RedemptionStatus.COMPLETED, 612),
        (Fault.LOSE_REQUEST, RedemptionStatus.FAILED, 0),
        (Fault.APPLY_DOUBLE, RedemptionStatus.REVERSED, 0),  # another amount: reversed, not trusted
    ],
)
async def test_a_debit_in_doubt_is_settled_by_recovery(
    world: World, fault: Fault, final: RedemptionStatus, charged: int
) -> None:
    reward = await world.reward()
    world.partners["happy-card"].fail_next("debit", fault)
    pending = await world.redeem(reward)
    assert pending.status == RedemptionStatus.PENDING and pending.in_doubt
    assert await world.recover() == 1
    assert (await world.get(pending.id)).status == final
    assert world.partners["happy-card"].balances["alice"] == 100_000 - charged
    assert (await world.balances()).get("member-points:happy-card", 0) == -charged
    assert await world.stock(reward) == (9 if charged else 10)


async def test_a_cancelled_redemption_is_reversed_in_points_ledger_and_stock(world: World) -> None:
    reward = await world.reward(per_member_limit=1)
    redemption = await world.redeem(reward)
    other = await member_with_accounts(world.db, {"wallet-pay": "bob"}, T0)
    with pytest.raises(RedemptionNotFound):
        await world.saga.cancel(redemption.id, member_id=other)
    with pytest.raises(RedemptionNotFound):
        await world.saga.cancel(redemption.id, program_id="happy-card")
    cancelled = await world.saga.cancel(redemption.id, member_id=world.alice)
    assert (cancelled.status, cancelled.cancelled_by) == (RedemptionStatus.REVERSED, CancelledBy.MEMBER)
    assert world.partners["happy-card"].balances["alice"] == 100_000
    assert await world.stock(reward) == 10
    assert await world.balances() == {}, "the reversal negates every leg"
    for expected in (None, RedemptionStatus.COMPLETED):  # a repeat answers as the cancel did, once
        repeat = await world.saga.cancel(redemption.id, member_id=world.alice, expected=expected)
        assert (repeat.id, repeat.status, repeat.cancelled_by) == (
            redemption.id,
            RedemptionStatus.REVERSED,
            CancelledBy.MEMBER,
        )
    assert world.partners["happy-card"].balances["alice"] == 100_000
    assert await world.stock(reward) == 10 and await world.balances() == {}
    with pytest.raises(NoLongerHeld):  # it was never held: not the cancel that ended it
        await world.saga.cancel(redemption.id, member_id=world.alice, expected=RedemptionStatus.HELD)
    with pytest.raises(NotCancellable, match="cancelled by the member"):  # the member's cancel, not the publisher's
        await world.saga.cancel(redemption.id, program_id="formosa-air")
    again = await world.redeem(reward, key="k2")
    assert again.status == RedemptionStatus.COMPLETED, "the member's count came back"
    by_publisher = await world.saga.cancel(again.id, program_id="formosa-air")
    assert by_publisher.cancelled_by == CancelledBy.PUBLISHER
    assert (await world.saga.cancel(again.id, program_id="formosa-air")).cancelled_by == CancelledBy.PUBLISHER


async def test_an_undelivered_reward_is_reversed_and_a_delivered_one_stays(world: World) -> None:
    reward = await world.reward()
    late = await world.redeem(reward, "late")
    delivered = await world.saga.confirm_delivery((await world.redeem(reward, "on-time")).id, "formosa-air")
    lottery = await world.redeem(await world.reward(kind=RewardKind.LOTTERY, id="draw"), "draw")
    assert (delivered.status, lottery.status, lottery.deliver_by) == (
        RedemptionStatus.DELIVERED,
        RedemptionStatus.COMPLETED,
        None,
    )
    world.clock.advance(days=15)
    assert await RedemptionJob(world.saga).run_once() == 1
    reversed_ = await world.get(late.id)
    assert (reversed_.status, reversed_.cancelled_by) == (RedemptionStatus.REVERSED, CancelledBy.TIMEOUT)
    with pytest.raises(NotCancellable):  # it ended otherwise than by a cancel of the member's
        await world.saga.cancel(late.id, member_id=world.alice)
    assert (await world.get(delivered.id)).status == RedemptionStatus.DELIVERED
    assert (await world.get(lottery.id)).status == RedemptionStatus.COMPLETED
    assert world.partners["happy-card"].balances["alice"] == 100_000 - 2 * 612


async def test_a_reward_refuses_members_below_its_level_and_outside_its_window(world: World) -> None:
    with pytest.raises(TierTooLow) as refused:
        await world.redeem(await world.reward(min_level=1))
    assert refused.value.details == {"minLevel": 1, "level": 0}
    later = await world.reward(id="later", available_from=T0 + timedelta(days=1))
    with pytest.raises(RewardUnavailable):
        await world.redeem(later, "k2")
    assert world.partners["happy-card"].calls == [("account", "alice")], "the level read live; nothing debited"
    assert world.partners["fresh-mart"].calls == [("account", "alice")]


async def test_a_level_lost_between_its_check_and_the_record_is_refused_and_nothing_is_recorded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alice holds level 2 through her FreshMart tier. Right after the partners reported it,
    and before the redemption is recorded, she unlinks FreshMart: the unit of work that records
    it sees her tiers changed and refuses, nothing taken; the same request again reads her level
    anew (0) and is refused for it."""
    world.partners["fresh-mart"].tiers["alice"] = "Gold Shopper"
    reward = await world.reward(min_level=1)
    read_level = world.saga.member_level

    async def then_unlinked(member_id: str) -> LevelRead:
        level = await read_level(member_id)
        async with world.db.transaction() as session:
            await unlink(session, member_id, "fresh-mart", "alice", world.clock.now(), signed_in_through={"happy-card"})
        return level

    monkeypatch.setattr(world.saga, "member_level", then_unlinked)
    with pytest.raises(TiersChanged) as changed:
        await world.redeem(reward)
    assert changed.value.code is ErrorCode.TIER_TOO_LOW
    assert changed.value.details == {"minLevel": 1, "reason": "TIERS_CHANGED"}
    async with world.db.transaction() as session:
        assert (await session.exec(select(Redemption))).all() == []
    assert await world.stock(reward) == 10
    assert world.partners["happy-card"].balances["alice"] == 100_000, "nothing debited"

    monkeypatch.setattr(world.saga, "member_level", read_level)
    with pytest.raises(TierTooLow) as refused:
        await world.redeem(reward)
    assert refused.value.details == {"minLevel": 1, "level": 0}


@pytest.mark.parametrize(("read_as", "raised_to"), [(0, 1), (2, 3)])
async def test_a_level_its_publisher_raised_after_the_reward_was_read_is_checked_before_the_record(
    world: World, monkeypatch: pytest.MonkeyPatch, read_as: int, raised_to: int
) -> None:
    """The request read the reward needing level ``read_as``, and its publisher raised that to
    ``raised_to`` before the redemption was recorded: the redemption was recorded for a member
    below it. The unit of work that records it reads the level the reward needs now and refuses
    a member below it, nothing taken: against the level read, or, where the reward needed none,
    the level read then; a member who holds it has it recorded."""
    world.partners["fresh-mart"].tiers["alice"] = "Gold Shopper"  # level 2
    reward = await world.reward(min_level=raised_to)
    read_reward = catalog.get_reward
    reads: list[str] = []

    async def read_before_the_raise(session: AsyncSession, reward_id: str, *, field: str = "rewardId") -> Reward:
        read = await read_reward(session, reward_id, field=field)
        reads.append(reward_id)
        if len(reads) == 1:  # as it was read before the raise
            session.expunge(read)
            read.min_level = read_as
        return read

    monkeypatch.setattr(catalog, "get_reward", read_before_the_raise)
    if raised_to > 2:
        with pytest.raises(TierTooLow) as refused:
            await world.redeem(reward)
        assert refused.value.details == {"minLevel": raised_to, "level": 2}
        async with world.db.transaction() as session:
            assert (await session.exec(select(Redemption))).all() == []
        assert await world.stock(reward) == 10
        assert world.partners["happy-card"].balances["alice"] == 100_000, "nothing debited"
    else:
        assert (await world.redeem(reward)).status == RedemptionStatus.COMPLETED
    assert world.partners["fresh-mart"].calls == [("account", "alice")], "her level read once"


@pytest.mark.postgres_only
async def test_a_redemption_recorded_during_an_unlink_that_takes_its_level_waits_for_it_and_is_refused(
    pg_db: Database,
) -> None:
    """The unlink of the account that gives Alice her level is under way (its unit of work open)
    when her redemption is recorded: the record waits for it, then sees her tiers changed."""
    world = await make_world(pg_db)
    world.partners["fresh-mart"].tiers["alice"] = "Gold Shopper"
    reward = await world.reward(min_level=1)
    async with world.db.transaction() as session:
        await unlink(session, world.alice, "fresh-mart", "alice", world.clock.now(), signed_in_through={"happy-card"})
        redeeming = asyncio.create_task(world.redeem(reward))
        await waiting_on_a_lock(world.db, 1)
    with pytest.raises(TiersChanged):
        await redeeming
    assert await world.stock(reward) == 10


async def test_fifty_parallel_redemptions_of_ten_in_stock_make_exactly_ten(pg_db: Database) -> None:
    world = await make_world(pg_db, members=50)
    members = [await member_with_accounts(pg_db, {"happy-card": f"m{n}"}, T0) for n in range(50)]
    reward = await world.reward(stock=10)
    results = await asyncio.gather(
        *(world.redeem(reward, key="k", member=member) for member in members), return_exceptions=True
    )
    completed = [result for result in results if isinstance(result, Redemption)]
    refused = [result for result in results if not isinstance(result, Redemption)]
    assert [redemption.status for redemption in completed] == [RedemptionStatus.COMPLETED] * 10
    assert len(refused) == 40 and all(isinstance(error, OutOfStock) for error in refused)
    assert {error.extensions()["code"] for error in refused if isinstance(error, OutOfStock)} == {"OUT_OF_STOCK"}
    assert await world.stock(reward) == 0
    async with pg_db.transaction() as session:
        lines = (
            await session.exec(text("SELECT count(*) FROM ledger_transaction WHERE kind = 'redemption'"))  # type: ignore[call-overload]
        ).one()[0]
    assert lines == 10
    assert (await world.balances())["partner-clearing:formosa-air"] == 10 * 15000


# -- faults and crashes on the way back: nothing lost, nothing given back twice ----------


def reversals(partner: FakePartner) -> list[str]:
    """The reversals ``partner`` recorded (each applies once, however often it was sent)."""
    return [op.operation_id for op in partner.operations.values() if op.kind is OperationKind.REVERSAL]


@pytest.mark.parametrize("fault", [Fault.LOSE_REQUEST, Fault.APPLY_THEN_LOSE_ANSWER, Fault.UNREACHABLE])
async def test_a_cancel_whose_reversal_fails_midway_is_finished_by_recovery_exactly_once(
    world: World, fault: Fault
) -> None:
    reward = await world.reward(per_member_limit=1)
    redemption = await world.redeem(reward)
    happy_card = world.partners["happy-card"]
    happy_card.fail_next("reverse", fault)
    cancelling = await world.saga.cancel(redemption.id, member_id=world.alice)
    assert (cancelling.status, cancelling.step) == (RedemptionStatus.REVERSING, RedemptionStep.REVERSE_DEBIT)
    assert (await world.balances())["member-points:happy-card"] == -612, "the ledger waits for the points"
    assert await world.stock(reward) == 9
    sent = len(happy_card.calls)
    repeat = await world.saga.cancel(redemption.id, member_id=world.alice)  # the member cancels again meanwhile
    assert (repeat.status, len(happy_card.calls)) == (RedemptionStatus.REVERSING, sent), "a repeat sends nothing"
    with pytest.raises(NotCancellable):  # nor may the publisher start a reversal of its own
        await world.saga.cancel(redemption.id, program_id="formosa-air")

    assert await world.recover() == 1
    final = await world.get(redemption.id)
    assert (final.status, final.step, final.cancelled_by) == (
        RedemptionStatus.REVERSED,
        RedemptionStep.DONE,
        CancelledBy.MEMBER,
    )
    assert happy_card.balances["alice"] == 100_000, "given back exactly once"
    assert reversals(happy_card) == [redemption.reverse_debit_operation]
    assert await world.balances() == {}, "the ledger reversal is posted once"
    assert await world.stock(reward) == 10
    assert await world.recover() == 0
    assert (await world.redeem(reward, key="k2")).status == RedemptionStatus.COMPLETED, "the count came back"


async def test_a_cancel_whose_debit_the_partner_gave_back_on_its_own_meanwhile_is_reversed_once(
    world: World,
) -> None:
    """The cancel's reversal cannot reach happy-card, which meanwhile refunds the debit whole
    on its own (its support desk, under its own id): the reversal, sent again, is refused as
    nothing is left to reverse, which is what it asked for. The redemption is REVERSED, the
    ledger reversal posted once, alice has her points back once."""
    reward = await world.reward(per_member_limit=1)
    redemption = await world.redeem(reward)
    happy_card = world.partners["happy-card"]
    happy_card.fail_next("reverse", Fault.UNREACHABLE)
    cancelling = await world.saga.cancel(redemption.id, member_id=world.alice)
    assert (cancelling.status, cancelling.step) == (RedemptionStatus.REVERSING, RedemptionStep.REVERSE_DEBIT)
    await happy_card.reverse("desk-refund-1", redemption.debit_operation)
    assert await world.recover() == 1
    final = await world.get(redemption.id)
    assert (final.status, final.step) == (RedemptionStatus.REVERSED, RedemptionStep.DONE)
    assert happy_card.balances["alice"] == 100_000, "given back exactly once"
    assert await world.balances() == {}, "the ledger reversal is posted once"
    assert await world.stock(reward) == 10


@pytest.mark.parametrize("partner_reversed", [False, True], ids=["before-the-reversal", "after-the-reversal"])
async def test_a_crash_in_the_middle_of_a_cancel_is_finished_by_recovery_exactly_once(
    world: World, partner_reversed: bool
) -> None:
    reward = await world.reward()
    redemption = await world.redeem(reward)
    happy_card = world.partners["happy-card"]
    async with world.db.transaction() as session:  # the cancel is recorded, then the process dies
        row = await session.get(Redemption, redemption.id, with_for_update=True)
        assert row is not None
        world.saga._start_reversal(row, CancelledBy.PUBLISHER)
        session.add(row)
    if partner_reversed:  # ... after the partner gave the points back, before the ledger knew
        await happy_card.reverse(redemption.reverse_debit_operation, redemption.debit_operation)
    assert await RedemptionJob(world.saga).run_once() == 0, "the cancel's lease holds the row"
    assert await world.recover() == 1
    final = await world.get(redemption.id)
    assert (final.status, final.cancelled_by) == (RedemptionStatus.REVERSED, CancelledBy.PUBLISHER)
    assert happy_card.balances["alice"] == 100_000
    assert reversals(happy_card) == [redemption.reverse_debit_operation]
    assert await world.balances() == {}
    assert await world.stock(reward) == 10


async def alice_earns_coalition_points(world: World, *, at: datetime) -> None:
    """Alice's coalition account, with 1000 points she earned at ``at`` by a completed
    conversion out of fresh-mart (in the point's book and in the ledger)."""
    async with world.db.transaction() as session:
        await link_coalition_accounts(session, T0, member_id=world.alice)
    await world.point.credit("earned:credit", world.alice, 1000)
    async with world.db.transaction() as session:
        await world.saga.ledger.post(
            session,
            conversion_transaction(
                chart=ChartOfAccounts("TWD"),
                transaction_id="conversion:earned",
                conversion_id="earned",
                source="fresh-mart",
                target=POINT,
                points_in=10_000,
                points_out=1000,
                money_value_minor=100_000,
                fee_minor=0,
                effective_at=at,
            ),
        )


async def test_coalition_points_pay_through_a_crash_after_the_debit_and_come_back_on_cancel(world: World) -> None:
    await alice_earns_coalition_points(world, at=T0)
    reward = await world.reward()
    request = RedeemRequest(
        member_id=world.alice,
        reward_id=reward.id,
        pay_with=POINT,
        idempotency_key="k-point",
        authority=DebitAuthority(asserted_by="happy-card", exchange_held=frozenset({POINT}), spends_exchange_held=True),
    )
    async with world.db.transaction() as session:  # recorded, debited at the point, then the process dies
        redemption, created = await world.saga._record_in(session, request, None)
    assert created and redemption.points == 153  # 150 TWD + 2 %, at 1 TWD a point
    await world.point.debit(redemption.debit_operation, world.alice, redemption.points)
    assert await point_in_flight(world) == -153, "the lots moved; the ledger has not yet"
    assert (await world.saga.redeem(request)).status == RedemptionStatus.PENDING, "a repeat debits nothing"

    assert await world.recover() == 1
    assert (await world.get(redemption.id)).status == RedemptionStatus.COMPLETED
    assert (await world.point.account(world.alice)).balance == 847
    assert (await world.balances())["member-points:coalition"] == 847
    assert await point_in_flight(world) == 0

    async with world.db.transaction() as session:  # the member cancels; the process dies after the point
        row = await session.get(Redemption, redemption.id, with_for_update=True)
        assert row is not None
        world.saga._start_reversal(row, CancelledBy.MEMBER)
        session.add(row)
    await world.point.reverse(redemption.reverse_debit_operation, redemption.debit_operation)
    assert await point_in_flight(world) == 153
    assert await world.recover() == 1
    assert (await world.get(redemption.id)).status == RedemptionStatus.REVERSED
    assert (await world.point.account(world.alice)).balance == 1000, "put back once, into the lot it came from"
    assert (await world.balances())["member-points:coalition"] == 1000
    assert await point_in_flight(world) == 0
    assert await world.stock(reward) == 10


async def point_in_flight(world: World) -> int:
    """The coalition lots' points moved by sagas the ledger has not posted yet; the lots must
    otherwise agree with the ledger (and each lot add up)."""
    async with world.db.transaction() as session:
        checked = await check_point(session, await point_rules(session))
    assert checked.problem is None, checked.problem
    return checked.in_flight


async def test_two_workers_settle_each_redemption_in_doubt_once(pg_db: Database) -> None:
    world = await make_world(pg_db)
    reward = await world.reward(stock=20)
    happy_card = world.partners["happy-card"]
    debits = []
    for n in range(3):  # debits applied whose answers were lost
        happy_card.fail_next("debit", Fault.APPLY_THEN_LOSE_ANSWER)
        debits.append(await world.redeem(reward, key=f"debit-{n}"))
    cancels = []
    for n in range(3):  # cancels whose reversals were lost on the way
        paid = await world.redeem(reward, key=f"cancel-{n}")
        happy_card.fail_next("reverse", Fault.LOSE_REQUEST)
        cancels.append(await world.saga.cancel(paid.id, member_id=world.alice))
    assert {r.status for r in debits + cancels} == {RedemptionStatus.PENDING, RedemptionStatus.REVERSING}
    world.clock.advance(hours=1)

    driven = await asyncio.gather(*(RecoveryWorker(world.saga, batch=2).run_once() for _ in range(2)))
    assert sum(driven) == 6
    assert [(await world.get(r.id)).status for r in debits] == [RedemptionStatus.COMPLETED] * 3
    assert [(await world.get(r.id)).status for r in cancels] == [RedemptionStatus.REVERSED] * 3
    checks = [call for call in happy_card.calls if call[0] == "operation_status"]
    assert sorted(checks) == sorted(("operation_status", r.debit_operation) for r in debits)
    assert sorted(reversals(happy_card)) == sorted(r.reverse_debit_operation for r in cancels)
    assert happy_card.balances["alice"] == 100_000 - 3 * 612
    balances = await world.balances()
    assert balances["member-points:happy-card"] == -3 * 612
    assert balances["partner-clearing:formosa-air"] == 3 * 15000
    assert await world.stock(reward) == 17


async def test_a_redemption_paid_with_the_point_and_cancelled_next_month_reconciles_in_both_months(
    world: World, tmp_path: Path
) -> None:
    """The ledger keeps the redemption in November and posts its reversal in December, when it
    was cancelled: the point's records (written from its own book) say the same, so both months
    reconcile with no break, and November's records do not change when December cancels."""
    # Earned in October, a month not reconciled here.
    await alice_earns_coalition_points(world, at=datetime(2026, 10, 20, tzinfo=UTC))
    reward = await world.reward()
    request = RedeemRequest(
        member_id=world.alice,
        reward_id=reward.id,
        pay_with=POINT,
        idempotency_key="k-point",
        authority=DebitAuthority(asserted_by="happy-card", exchange_held=frozenset({POINT}), spends_exchange_held=True),
    )
    redemption = await world.saga.redeem(request)
    assert redemption.status == RedemptionStatus.COMPLETED
    reference = f"redemption:{redemption.id}"
    settlement = await settlement_on(world.db, world.clock)

    world.clock.advance(days=11)  # 1 December in Taipei, before the reward's delivery is due
    for period in ("2026-10", "2026-11"):
        await settlement.close(period, by="staff")
    before = await settlement.import_point_records("2026-11", by="staff")
    assert before.unresolved == 0
    cancelled = await world.saga.cancel(redemption.id, member_id=world.alice)
    assert cancelled.status == RedemptionStatus.REVERSED
    world.clock.advance(days=31)  # January
    await settlement.close("2026-12", by="staff")

    for period, amount, publisher in (("2026-11", "-153.00", 15_000), ("2026-12", "153.00", -15_000)):
        kept = tmp_path / f"{period}.csv"
        view = await settlement.import_point_records(period, by="staff", keep=kept)
        assert view.unresolved == 0, [b.row for b in await settlement.breaks(view.reconciliation)]
        assert f"\n{reference},{amount},formosa-air,{POINT},{period},TWD\n" in kept.read_text()
        lines = await settlement.ledger_lines("formosa-air", period)
        assert [line.amount for line in lines if line.reference == reference] == [publisher]
    assert (await world.balances())["member-points:coalition"] == 1000
    assert (await world.point.account(world.alice)).balance == 1000
    assert await point_in_flight(world) == 0


async def test_a_paid_lottery_entry_is_in_the_draw_so_only_its_publisher_cancels_it(world: World) -> None:
    """Cancelled by its member after the draw, an entry would have cost nothing; the publisher
    may call the draw off, giving the points back."""
    lottery = await world.redeem(await world.reward(kind=RewardKind.LOTTERY, id="draw"), "draw")
    assert lottery.status == RedemptionStatus.COMPLETED
    with pytest.raises(BadUserInput) as refused:
        await world.saga.cancel(lottery.id, member_id=world.alice)
    assert (refused.value.field, refused.value.details) == ("redemptionId", {"status": "COMPLETED"})
    assert "an entry in its reward's draw, final for its member once paid" in refused.value.message
    assert (await world.get(lottery.id)).status == RedemptionStatus.COMPLETED
    assert world.partners["happy-card"].balances["alice"] == 100_000 - 612, "no points given back"

    cancelled = await world.saga.cancel(lottery.id, program_id="formosa-air")
    assert (cancelled.status, cancelled.cancelled_by) == (RedemptionStatus.REVERSED, CancelledBy.PUBLISHER)
    assert world.partners["happy-card"].balances["alice"] == 100_000


@pytest.mark.postgres_only
async def test_a_redemption_that_may_still_be_reversed_keeps_its_month_from_being_archived(pg_db: Database) -> None:
    """Archiving takes a month's clearing out of the ledger, which then cannot post a reversal's
    exact negation: a month waits for its direct rewards to be delivered (or reversed), and a
    lottery entry of an archived month can no longer be cancelled by its publisher, saying why,
    rather than give the points back and leave the ledger unreversed."""
    world = await make_world(pg_db)
    direct = await world.redeem(await world.reward(), "direct")
    lottery = await world.redeem(await world.reward(kind=RewardKind.LOTTERY, id="draw"), "draw")
    settlement = await settlement_on(world.db, world.clock)
    world.clock.advance(days=11)  # December in Taipei, before the direct reward's delivery is due
    await settlement.close("2026-11", by="staff")
    async with world.db.transaction() as session:
        await session.exec(text("UPDATE settlement_position SET signed_off_at = now()"))  # type: ignore[call-overload]

    with pytest.raises(ExchangeError, match=f"redemptions paid in it may still be reversed.*: {direct.id} "):
        await settlement.archive("2026-11", export=None)
    await world.saga.confirm_delivery(direct.id, "formosa-air")
    await settlement.archive("2026-11", export=None)

    with pytest.raises(ExchangeError, match="it was paid in period 2026-11, which is settled and archived"):
        await world.saga.cancel(lottery.id, program_id="formosa-air")
    assert (await world.get(lottery.id)).status == RedemptionStatus.COMPLETED
    assert world.partners["happy-card"].balances["alice"] == 100_000 - 2 * 612, "no points given back"


@pytest.mark.postgres_only
async def test_the_points_lots_agree_with_the_ledger_after_a_month_of_coalition_points_is_archived(
    pg_db: Database,
) -> None:
    """Archiving takes a month's entries out of the ledger's tables (its running balances keep
    them): a saga posted in it is settled, not a saga in flight whose entries are missing."""
    world = await make_world(pg_db)
    await alice_earns_coalition_points(world, at=T0)
    settlement = await settlement_on(world.db, world.clock)
    world.clock.advance(days=11)
    await settlement.close("2026-11", by="staff")
    async with world.db.transaction() as session:
        await session.exec(text("UPDATE settlement_position SET signed_off_at = now()"))  # type: ignore[call-overload]
    await settlement.archive("2026-11", export=None)
    assert await point_in_flight(world) == 0
    checked = await settlement.verify_ledger()
    assert checked.point is not None and (checked.point.check.outstanding, checked.point.check.problem) == (1000, None)


@pytest.mark.postgres_only
async def test_a_lottery_entry_cancelled_while_its_month_is_being_archived_waits_and_is_refused(
    pg_db: Database,
) -> None:
    """Archiving has read the month's redemptions (a lottery entry does not keep it from being
    archived) and waits on a reader of the ledger; its publisher's cancel of that entry
    meanwhile waits for the archive to end and is refused, rather than give the points back and
    then find its clearing gone."""
    world = await make_world(pg_db)
    lottery = await world.redeem(await world.reward(kind=RewardKind.LOTTERY, id="draw"), "draw")
    settlement = await settlement_on(world.db, world.clock)
    world.clock.advance(days=11)
    await settlement.close("2026-11", by="staff")
    async with world.db.transaction() as session:
        await session.exec(text("UPDATE settlement_position SET signed_off_at = now()"))  # type: ignore[call-overload]

    async with world.db.transaction() as reader:
        await reader.exec(text("SELECT 1 FROM ledger_entry LIMIT 1"))  # type: ignore[call-overload]
        archiving = asyncio.create_task(settlement.archive("2026-11", export=None))
        await waiting_on_a_lock(world.db, 1)
        cancelling = asyncio.create_task(world.saga.cancel(lottery.id, program_id="formosa-air"))
        await waiting_on_a_lock(world.db, 2)
    await archiving
    with pytest.raises(ExchangeError, match="it was paid in period 2026-11, which is settled and archived"):
        await cancelling
    assert (await world.get(lottery.id)).status == RedemptionStatus.COMPLETED
    assert world.partners["happy-card"].balances["alice"] == 100_000 - 612, "no points given back"


@pytest.mark.postgres_only
@pytest.mark.parametrize("committed", [False, True], ids=["cut-before-commit", "answer-lost-after-commit"])
async def test_coalition_points_whose_debit_loses_the_database_are_settled_by_recovery_once(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    """The point's own debit loses the database: its connection killed before the lots' unit of
    work commits (nothing taken), or the lots committed and the answer lost with the database.
    The request fails for want of its database, the redemption stays PENDING, and recovery asks
    the point's book: the debit is voided (FAILED, stock back) or found applied (COMPLETED,
    posted once). The lots agree with the ledger throughout and the key returns that outcome."""
    world = await make_world(pg_db)
    await alice_earns_coalition_points(world, at=T0)
    reward = await world.reward()
    cut_next_point_write(monkeypatch, world.point, world.db, committed=committed)
    request = RedeemRequest(
        member_id=world.alice,
        reward_id=reward.id,
        pay_with=POINT,
        idempotency_key="k-cut",
        authority=DebitAuthority(asserted_by="happy-card", exchange_held=frozenset({POINT}), spends_exchange_held=True),
    )
    with pytest.raises(DatabaseUnavailable):
        await world.saga.redeem(request)
    pending = await world.saga.redeem(request)  # the client asks again: the same redemption, nothing sent
    assert pending.status == RedemptionStatus.PENDING
    assert await point_in_flight(world) == (-pending.points if committed else 0)

    assert await world.recover() == 1
    final = await world.get(pending.id)
    assert final.status == (RedemptionStatus.COMPLETED if committed else RedemptionStatus.FAILED)
    left = 1000 - pending.points if committed else 1000
    assert (await world.point.account(world.alice)).balance == left
    assert (await world.balances())["member-points:coalition"] == left
    assert await point_in_flight(world) == 0
    assert await world.stock(reward) == (9 if committed else 10)
    assert (await world.saga.redeem(request)).status == final.status
