"""The redemption saga against a real sandbox partner on loopback, a fault injected at each of
its partner steps — the debit and a cancel's reversal — and the database cut at each of its
commits: after recovery the redemption is final, the paying partner's balance is what the
ledger says, and the same idempotency key (the same cancel) returns that one outcome."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from exchange.connectors.registry import ConnectorRegistry
from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.federation.accounts import Federation
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import verify_ledger
from exchange.loading import load_directory
from exchange.members.authority import DebitAuthority
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import PartnersDirectory
from exchange.rewards import catalog
from exchange.rewards.jobs import RedemptionJob
from exchange.rewards.models import Redemption, RedemptionStatus, RewardKind
from exchange.rewards.redemption import RedeemRequest, RedemptionSaga
from exchange.sagas.doubt import CONTRADICTED
from exchange.sagas.engine import SagaPolicy
from exchange.sandbox.faults import CannedAnswer, FaultKind
from exchange.services.container import risk_gates
from exchange.settings import Settings
from exchange.testing.clock import FrozenClock
from exchange.testing.sandboxes import SandboxFleet
from tests.factories import member_with_accounts
from tests.outages import KilledPosting

PAYING = "happy-card"
OPENING = 120_000
#: What the reward (150 TWD, formosa-air's) costs in happy-card points, fee included.
PRICE = 612


@dataclass
class Exchange:
    db: Database
    saga: RedemptionSaga
    clock: FrozenClock
    sandboxes: SandboxFleet
    member: str

    async def redeem(self, reward_id: str, key: str = "k1") -> Redemption:
        return await self.saga.redeem(
            RedeemRequest(
                member_id=self.member,
                reward_id=reward_id,
                pay_with=PAYING,
                idempotency_key=key,
                authority=DebitAuthority(asserted_by=PAYING),
            )
        )

    async def reward(self, kind: RewardKind = RewardKind.DIRECT) -> str:
        draft = catalog.RewardDraft(title="Lounge pass", price=Decimal("150"), stock=10, kind=kind)
        async with self.db.transaction() as session:
            return (await catalog.publish(session, "formosa-air", draft, self.clock.now())).id

    async def recover(self) -> int:
        self.clock.advance(hours=1)
        return await RedemptionJob(self.saga).run_once()

    async def get(self, redemption_id: str) -> Redemption:
        return await self.saga.reload(redemption_id)

    async def faults(self, *script: FaultKind, answer: CannedAnswer | None = None) -> None:
        await self.sandboxes[PAYING].admin.set_faults(script=list(script), answer=answer)

    async def assert_partner_agrees_with_ledger(self, charged: int) -> None:
        """The member's points at the paying partner moved by ``charged``, and so did the
        ledger's; the ledger verifies, and holds no posting twice."""
        async with self.db.transaction() as session:
            report = await verify_ledger(session)
            balances = dict(
                tuple(row)  # type: ignore[misc]
                for row in await session.exec(text("SELECT code, balance FROM ledger_account_balance"))  # type: ignore[call-overload]
            )
        assert report.ok, report.problem
        assert await self.sandboxes[PAYING].admin.balance("alice") - OPENING == -charged
        assert balances.get(f"member-points:{PAYING}", 0) == -charged


@pytest.fixture
async def exchange(
    request: pytest.FixtureRequest, pg_db: Database, sandboxes: SandboxFleet, sample_partners: PartnersDirectory
) -> AsyncIterator[Exchange]:
    """The saga on the sandbox partner, each call tried once (so that a fault meets the saga,
    not a retry), or as many times as an indirect parameter says."""
    await sandboxes.start(PAYING)
    clock = FrozenClock(datetime.now(UTC))
    settings = Settings(partner_retry_attempts=getattr(request, "param", 1))
    async with pg_db.transaction() as session:
        await load_directory(session, sample_partners, clock.now())
    member = await member_with_accounts(pg_db, {PAYING: "alice"}, clock.now())
    registry: ConnectorRegistry = sandboxes.registry(settings)
    saga = RedemptionSaga(
        db=pg_db,
        connector_for=registry.for_program,
        member_level=Federation(
            pg_db, registry.for_program, CatalogCache(pg_db, ttl=0), balance_ttl=0, tier_ttl=0
        ).level_read,
        ledger=Ledger(timezone=settings.timezone, clock=clock),
        clock=clock,
        policy=SagaPolicy(timezone=settings.timezone),
        delivery_window=timedelta(days=14),
        gates=risk_gates(),
    )
    try:
        yield Exchange(pg_db, saga, clock, sandboxes, member)
    finally:
        await registry.aclose()


def wrong_amount(operation_id: str, kind: str, points: int) -> CannedAnswer:
    """A 200 whose body is a well-formed operation of another amount than was sent (nothing
    applied): a broken partner's answer."""
    body = {
        "operation_id": operation_id,
        "kind": kind,
        "status": "applied",
        "member_ref": "alice",
        "points": points,
        "created_at": datetime.now(UTC).isoformat(),
    }
    return CannedAnswer(status=200, body=json.dumps(body))


@pytest.mark.parametrize(
    ("fault", "final", "charged"),
    [
        (FaultKind.ERROR, RedemptionStatus.FAILED, 0),
        (FaultKind.APPLY_THEN_ERROR, RedemptionStatus.COMPLETED, PRICE),
        (FaultKind.APPLY_THEN_DROP, RedemptionStatus.COMPLETED, PRICE),
        (FaultKind.APPLY_THEN_GARBLE, RedemptionStatus.COMPLETED, PRICE),
        (FaultKind.MISAPPLY, RedemptionStatus.REVERSED, 0),  # twice the points taken: not trusted
        (FaultKind.ANSWER, RedemptionStatus.FAILED, 0),  # another amount answered, nothing applied
    ],
)
@pytest.mark.parametrize("kind", [RewardKind.DIRECT, RewardKind.LOTTERY])
async def test_a_fault_at_the_debit_ends_final_and_agreeing_and_the_key_returns_that_outcome(
    exchange: Exchange, kind: RewardKind, fault: FaultKind, final: RedemptionStatus, charged: int
) -> None:
    reward = await exchange.reward(kind)
    answer = wrong_amount("x", "debit", PRICE + 1) if fault is FaultKind.ANSWER else None
    await exchange.faults(fault, answer=answer)
    first = await exchange.redeem(reward)
    if first.status == RedemptionStatus.PENDING:
        assert first.in_doubt
        again = await exchange.redeem(reward)  # the client asks again while it is in doubt
        assert (again.id, again.status) == (first.id, RedemptionStatus.PENDING)
        assert await exchange.recover() == 1
    redemption = await exchange.get(first.id)
    assert redemption.status == final
    await exchange.assert_partner_agrees_with_ledger(charged)
    repeat = await exchange.redeem(reward)
    assert (repeat.id, repeat.status) == (first.id, final)
    assert await exchange.recover() == 0
    await exchange.assert_partner_agrees_with_ledger(charged)


@pytest.mark.parametrize("exchange", [Settings().partner_retry_attempts], indirect=True)
async def test_a_debit_applied_otherwise_and_refused_as_a_conflict_when_retried_is_reversed(
    exchange: Exchange,
) -> None:
    """With the gateway's default retries: the partner takes twice the points and answers so;
    the retry of the debit is refused, the partner holding another request under its id. That
    is no refusal of a debit that never moved: the redemption waits in doubt, and recovery,
    finding the partner's record is not the debit sent, reverses it (PARTNER_CONTRADICTED)."""
    reward = await exchange.reward()
    await exchange.faults(FaultKind.MISAPPLY)
    pending = await exchange.redeem(reward)
    assert (pending.status, pending.in_doubt) == (RedemptionStatus.PENDING, True)
    assert await exchange.recover() == 1
    redemption = await exchange.get(pending.id)
    assert (redemption.status, redemption.failure_code) == (RedemptionStatus.REVERSED, CONTRADICTED)
    await exchange.assert_partner_agrees_with_ledger(0)
    assert (await exchange.redeem(reward)).status == RedemptionStatus.REVERSED


@pytest.mark.parametrize(
    "fault",
    [
        FaultKind.ERROR,
        FaultKind.APPLY_THEN_ERROR,
        FaultKind.APPLY_THEN_DROP,
        FaultKind.APPLY_THEN_GARBLE,
        FaultKind.ANSWER,
    ],
)
@pytest.mark.parametrize("kind", [RewardKind.DIRECT, RewardKind.LOTTERY])
async def test_a_fault_at_a_cancels_reversal_ends_reversed_once_and_agreeing(
    exchange: Exchange, kind: RewardKind, fault: FaultKind
) -> None:
    reward = await exchange.reward(kind)
    paid = await exchange.redeem(reward)
    assert paid.status == RedemptionStatus.COMPLETED
    # A reversal answered as if it had given back one point more than was taken.
    answer = wrong_amount(paid.reverse_debit_operation, "reversal", PRICE + 1) if fault is FaultKind.ANSWER else None
    await exchange.faults(fault, answer=answer)
    # A paid lottery entry is in the draw: its publisher cancels it, not its member.
    by: dict[str, str] = {"program_id": "formosa-air"} if kind is RewardKind.LOTTERY else {"member_id": exchange.member}
    cancelling = await exchange.saga.cancel(paid.id, **by)
    assert cancelling.status == RedemptionStatus.REVERSING
    again = await exchange.saga.cancel(paid.id, **by)  # the same party asks again
    assert again.status == RedemptionStatus.REVERSING
    assert await exchange.recover() == 1
    assert (await exchange.get(paid.id)).status == RedemptionStatus.REVERSED
    await exchange.assert_partner_agrees_with_ledger(0)
    reversals = [op for op in await exchange.sandboxes[PAYING].admin.operations() if op["kind"] == "reversal"]
    assert [op["operation_id"] for op in reversals] == [paid.reverse_debit_operation]
    assert (await exchange.saga.cancel(paid.id, **by)).status == RedemptionStatus.REVERSED
    assert (await exchange.redeem(reward)).status == RedemptionStatus.REVERSED


@pytest.mark.parametrize("cancel", [False, True], ids=["posting", "reversing"])
async def test_the_database_cut_while_posting_leaves_the_redemption_to_recovery_posted_once(
    exchange: Exchange, cancel: bool
) -> None:
    """The connection is killed while the ledger posting (or, on a cancel, its reversal) holds
    its unit of work, after the partner moved the points: the request fails for want of its
    database, the row keeps its step, and recovery posts exactly once what the partner did."""
    reward = await exchange.reward()
    saga = exchange.saga
    killed = KilledPosting(exchange.db, exchange.clock, Settings().timezone, kills=1, after=1 if cancel else 0)
    saga.ledger = killed
    paid: Redemption | None = None
    if cancel:
        paid = await exchange.redeem(reward)
        assert paid.status == RedemptionStatus.COMPLETED
    with pytest.raises(DatabaseUnavailable):
        if paid is None:
            await exchange.redeem(reward)
        else:
            await saga.cancel(paid.id, member_id=exchange.member)
    assert killed.kills == 0
    [row] = [await exchange.get(r) for r in await _redemptions(exchange.db)]
    assert row.status == (RedemptionStatus.REVERSING if cancel else RedemptionStatus.PENDING)
    exchange.clock.advance(minutes=1)  # past the dead request's lease
    assert await exchange.recover() == 1
    final = await exchange.get(row.id)
    assert final.status == (RedemptionStatus.REVERSED if cancel else RedemptionStatus.COMPLETED)
    await exchange.assert_partner_agrees_with_ledger(0 if cancel else PRICE)
    assert (await exchange.redeem(reward)).status == final.status


async def _redemptions(db: Database) -> list[str]:
    async with db.transaction() as session:
        return [str(row[0]) for row in await session.exec(text("SELECT id FROM redemption"))]  # type: ignore[call-overload]
