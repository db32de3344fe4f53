"""After a mix of conversions, redemptions, cancellations and faults against real sandbox
partners, the ledger verifies and each program's member-points account equals the net
change of its partner's balances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from exchange.conversions.saga import ConversionSaga, ExecuteRequest
from exchange.db.database import Database
from exchange.federation.accounts import Federation
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import verify_ledger
from exchange.loading import load_directory
from exchange.members.authority import DebitAuthority
from exchange.pricing import quotes
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import PartnersDirectory
from exchange.rewards import catalog
from exchange.rewards.jobs import RedemptionJob
from exchange.rewards.models import RedemptionStatus
from exchange.rewards.redemption import RedeemRequest, RedemptionSaga
from exchange.sagas.engine import SagaPolicy
from exchange.sagas.recovery import RecoveryWorker
from exchange.sandbox.faults import FaultKind
from exchange.services.container import risk_gates
from exchange.settings import Settings
from exchange.testing.clock import FrozenClock
from exchange.testing.sandboxes import SandboxFleet
from tests.factories import member_with_accounts

PROGRAMS = ("happy-card", "fresh-mart", "formosa-air")


async def test_the_ledger_agrees_with_every_partner_after_a_mix(
    pg_db: Database, sandboxes: SandboxFleet, sample_partners: PartnersDirectory
) -> None:
    await sandboxes.start(*PROGRAMS)
    clock = FrozenClock(datetime.now(UTC))
    settings = Settings(partner_retry_attempts=1)
    async with pg_db.transaction() as session:
        await load_directory(session, sample_partners, clock.now())
        reward = await catalog.publish(
            session,
            "formosa-air",
            catalog.RewardDraft(title="Upgrade voucher", price=Decimal("100"), stock=10),
            clock.now(),
        )
    alice = await member_with_accounts(pg_db, {"happy-card": "alice", "fresh-mart": "alice"}, clock.now())
    registry = sandboxes.registry(settings)
    policy = SagaPolicy(timezone=settings.timezone)
    ledger = Ledger(timezone=settings.timezone, clock=clock)
    conversions = ConversionSaga(
        db=pg_db,
        connector_for=registry.for_program,
        catalog=CatalogCache(pg_db, ttl=0),
        ledger=ledger,
        clock=clock,
        policy=policy,
        gates=risk_gates(),
    )
    federation = Federation(pg_db, registry.for_program, CatalogCache(pg_db, ttl=0), balance_ttl=0, tier_ttl=0)
    redemptions = RedemptionSaga(
        db=pg_db,
        connector_for=registry.for_program,
        member_level=federation.level_read,
        ledger=ledger,
        clock=clock,
        policy=policy,
        delivery_window=timedelta(days=14),
        gates=risk_gates(),
    )

    async def convert(points: int, source: str, target: str, key: str) -> None:
        async with pg_db.transaction() as session:
            quote = await quotes.create_quote(
                session,
                quotes.QuoteRequest(member_id=alice, member_level=0, source=source, target=target, points=points),
                policy=quotes.QuotePolicy(ttl=settings.quote_ttl, timezone=settings.timezone),
                now=clock.now(),
            )
        await conversions.execute(
            ExecuteRequest(
                member_id=alice,
                quote_id=quote.id,
                idempotency_key=key,
                authority=DebitAuthority(asserted_by=source),
            )
        )

    async def redeem(pay_with: str, key: str) -> str:
        redemption = await redemptions.redeem(
            RedeemRequest(
                member_id=alice,
                reward_id=reward.id,
                pay_with=pay_with,
                idempotency_key=key,
                authority=DebitAuthority(asserted_by=pay_with),
            )
        )
        return redemption.id

    try:
        await convert(1000, "happy-card", "fresh-mart", "c1")
        await convert(2000, "fresh-mart", "happy-card", "c2")
        kept = await redeem("happy-card", "r1")
        cancelled = await redeem("fresh-mart", "r2")
        await redemptions.cancel(cancelled, member_id=alice)
        await sandboxes["happy-card"].admin.set_faults(script=[FaultKind.APPLY_THEN_DROP])
        in_doubt = await redeem("happy-card", "r3")
        await sandboxes["fresh-mart"].admin.set_faults(script=[FaultKind.ERROR])
        never_applied = await redeem("fresh-mart", "r4")
        undelivered = await redeem("fresh-mart", "r5")
        await redemptions.confirm_delivery(kept, "formosa-air")
        await convert(1000, "happy-card", "fresh-mart", "c3")

        clock.advance(days=15)
        await RedemptionJob(redemptions).run_once()
        await RecoveryWorker(conversions).run_once()
    finally:
        await registry.aclose()

    statuses = {}
    async with pg_db.transaction() as session:
        for redemption_id in (kept, cancelled, in_doubt, never_applied, undelivered):
            (status,) = (await session.exec(text(f"SELECT status FROM redemption WHERE id = '{redemption_id}'"))).one()  # type: ignore[call-overload]
            statuses[redemption_id] = status
        report = await verify_ledger(session)
        accounts = dict(
            tuple(row) for row in await session.exec(text("SELECT code, balance FROM ledger_account_balance"))
        )  # type: ignore[call-overload]
        (redemption_lines,) = (
            await session.exec(text("SELECT count(*) FROM ledger_transaction WHERE kind LIKE 'redemption%'"))  # type: ignore[call-overload]
        ).one()
    assert statuses == {
        kept: RedemptionStatus.DELIVERED,
        cancelled: RedemptionStatus.REVERSED,
        in_doubt: RedemptionStatus.COMPLETED,
        never_applied: RedemptionStatus.FAILED,
        undelivered: RedemptionStatus.REVERSED,
    }
    assert report.ok, report.problem
    assert redemption_lines == 4 + 2, "four paid redemptions, two of them reversed"
    for program in ("happy-card", "fresh-mart"):
        members = await sandboxes[program].admin.members()
        partner_net = members["total_points"] - members["total_opening_points"]
        assert accounts.get(f"member-points:{program}", 0) == partner_net, program
    money = [
        balance for code, balance in accounts.items() if code.startswith("partner-clearing") or code == "exchange-fees"
    ]
    assert sum(money) == 0
    assert accounts["partner-clearing:formosa-air"] == 2 * 10000
