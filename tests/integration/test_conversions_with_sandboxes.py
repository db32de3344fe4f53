"""The conversion saga against real sandbox partners on loopback, faults included."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from exchange.connectors.registry import ConnectorRegistry
from exchange.connectors.transport import MAX_ANSWER_BYTES
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.conversions.saga import ConversionSaga, ExecuteRequest, SagaPolicy
from exchange.db.database import Database
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import verify_ledger
from exchange.loading import load_directory
from exchange.members.authority import DebitAuthority
from exchange.pricing import quotes, rates
from exchange.pricing.models import Quote
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import PartnersDirectory
from exchange.ratio import Ratio
from exchange.sagas.recovery import RecoveryReport, RecoveryWorker
from exchange.sandbox.faults import CannedAnswer, FaultKind
from exchange.services.container import risk_gates
from exchange.services.conversions import ConversionService
from exchange.settings import Settings
from exchange.testing.clock import FrozenClock
from exchange.testing.sandboxes import SandboxFleet
from exchange.web.said import Said
from tests.factories import member_with_accounts

PROGRAMS = ("happy-card", "fresh-mart", "wallet-pay", "tune-stream")  # tune-stream speaks GraphQL


@dataclass
class Exchange:
    db: Database
    saga: ConversionSaga
    clock: FrozenClock
    sandboxes: SandboxFleet
    settings: Settings

    async def quote(self, points: int, source: str, target: str, member: str = "alice") -> Quote:
        async with self.db.transaction() as session:
            return await quotes.create_quote(
                session,
                quotes.QuoteRequest(member_id=member, member_level=0, source=source, target=target, points=points),
                policy=quotes.QuotePolicy(ttl=self.settings.quote_ttl, timezone=self.settings.timezone),
                now=self.clock.now(),
            )

    async def convert(self, points: int, source: str, target: str, key: str, member: str = "alice") -> Conversion:
        return await self.execute(await self.quote(points, source, target, member), key)

    async def execute(self, quote: Quote, key: str) -> Conversion:
        return await self.saga.execute(
            ExecuteRequest(
                member_id=quote.member_id,
                quote_id=quote.id,
                idempotency_key=key,
                authority=DebitAuthority(asserted_by=quote.from_program),
            )
        )

    async def recover(self) -> None:
        self.clock.advance(minutes=10)
        await RecoveryWorker(self.saga).run_once()

    async def recover_all(self) -> RecoveryReport:
        """``exchange recover``'s pass (every PENDING conversion, due or not), clock unmoved."""
        return await ConversionService(self.db, self.saga, quoting=None, federation=None).recover()  # both unused here

    async def status(self, conversion_id: str) -> str:
        async with self.db.transaction() as session:
            conversion = await session.get(Conversion, conversion_id)
        assert conversion is not None
        return conversion.status


@pytest.fixture
async def exchange(
    request: pytest.FixtureRequest, pg_db: Database, sandboxes: SandboxFleet, sample_partners: PartnersDirectory
) -> AsyncIterator[Exchange]:
    """The saga on sandbox partners, each call tried once (so that a fault meets the saga, not
    a retry), or as many times as an indirect parameter says."""
    await sandboxes.start(*PROGRAMS)
    clock = FrozenClock(datetime.now(UTC))
    settings = Settings(partner_retry_attempts=getattr(request, "param", 1))
    async with pg_db.transaction() as session:
        await load_directory(session, sample_partners, clock.now())
    for member in ("alice", "erin"):  # known by the same name at every partner
        await member_with_accounts(pg_db, dict.fromkeys(PROGRAMS, member), clock.now(), member_id=member)
    registry: ConnectorRegistry = sandboxes.registry(settings)
    saga = ConversionSaga(
        db=pg_db,
        connector_for=registry.for_program,
        catalog=CatalogCache(pg_db, ttl=0),
        ledger=Ledger(timezone=settings.timezone, clock=clock),
        clock=clock,
        policy=SagaPolicy(timezone=settings.timezone, give_up_after=2),
        gates=risk_gates(),
    )
    try:
        yield Exchange(pg_db, saga, clock, sandboxes, settings)
    finally:
        await registry.aclose()


async def partner_net(sandboxes: SandboxFleet, program: str, member: str) -> int:
    return await sandboxes[program].admin.balance(member) - 120_000


async def ledger_balances(exchange: Exchange) -> dict[str, int]:
    """Each ledger account's balance, by code, once the ledger is verified whole."""
    async with exchange.db.transaction() as session:
        report = await verify_ledger(session)
        balances = dict(
            tuple(row) for row in await session.exec(text("SELECT code, balance FROM ledger_account_balance"))
        )
    assert report.ok, report.problem
    return balances


async def test_a_conversion_moves_points_between_real_partners(exchange: Exchange) -> None:
    conversion = await exchange.convert(1000, "happy-card", "fresh-mart", "k1")
    assert conversion.status == ConversionStatus.COMPLETED
    assert await partner_net(exchange.sandboxes, "happy-card", "alice") == -1000
    assert await partner_net(exchange.sandboxes, "fresh-mart", "alice") == conversion.points_out == 2450


@pytest.mark.parametrize(
    ("program", "fault", "final"),
    [
        ("fresh-mart", FaultKind.APPLY_THEN_DROP, ConversionStatus.COMPLETED),
        ("fresh-mart", FaultKind.APPLY_THEN_ERROR, ConversionStatus.COMPLETED),
        ("fresh-mart", FaultKind.ERROR, ConversionStatus.COMPLETED),
        ("happy-card", FaultKind.APPLY_THEN_DROP, ConversionStatus.COMPLETED),
        ("happy-card", FaultKind.APPLY_THEN_GARBLE, ConversionStatus.COMPLETED),
        ("fresh-mart", FaultKind.APPLY_THEN_GARBLE, ConversionStatus.COMPLETED),
        ("happy-card", FaultKind.MISAPPLY, ConversionStatus.REVERSED),  # twice the points taken: not trusted
        ("fresh-mart", FaultKind.MISAPPLY, ConversionStatus.REVERSED),
        ("happy-card", FaultKind.ERROR, ConversionStatus.FAILED),
    ],
)
async def test_faults_at_either_partner_end_final_and_agreeing(
    exchange: Exchange, program: str, fault: FaultKind, final: ConversionStatus
) -> None:
    await exchange.sandboxes[program].admin.set_faults(script=[fault])
    conversion = await exchange.convert(1000, "happy-card", "fresh-mart", "k1")
    if conversion.status == ConversionStatus.PENDING:
        await exchange.recover()
    assert await exchange.status(conversion.id) == final
    debited = await partner_net(exchange.sandboxes, "happy-card", "alice")
    credited = await partner_net(exchange.sandboxes, "fresh-mart", "alice")
    balances = await ledger_balances(exchange)
    assert debited == balances.get("member-points:happy-card", 0)
    assert credited == balances.get("member-points:fresh-mart", 0)
    if final == ConversionStatus.COMPLETED:
        assert (debited, credited) == (-1000, 2450)
    else:
        assert (debited, credited) == (0, 0)


@pytest.mark.parametrize("exchange", [Settings().partner_retry_attempts], indirect=True)
@pytest.mark.parametrize("program", ["happy-card", "fresh-mart"])
async def test_a_write_applied_otherwise_and_refused_as_a_conflict_when_retried_moves_nothing_for_good(
    exchange: Exchange, program: str
) -> None:
    """With the gateway's default retries: the source's debit or the target's credit is applied
    with twice the points and answered so, and its retry refused, the partner holding another
    request under the exchange's id. The conversion does not take that refusal for a write that
    never moved: it waits in doubt, and recovery reverses the partner's record as contradicted
    (and the debit, if the credit was the one). Nothing is taken, nothing created, nothing posted."""
    await exchange.sandboxes[program].admin.set_faults(script=[FaultKind.MISAPPLY])
    conversion = await exchange.convert(1000, "happy-card", "fresh-mart", "k1")
    assert (conversion.status, conversion.in_doubt) == (ConversionStatus.PENDING, True)
    await exchange.recover()
    assert await exchange.status(conversion.id) == ConversionStatus.REVERSED
    assert await partner_net(exchange.sandboxes, "happy-card", "alice") == 0
    assert await partner_net(exchange.sandboxes, "fresh-mart", "alice") == 0
    balances = await ledger_balances(exchange)
    assert (balances.get("member-points:happy-card", 0), balances.get("member-points:fresh-mart", 0)) == (0, 0)


@pytest.mark.parametrize(
    ("source", "answer"),
    [
        # A GraphQL refusal whose words PostgreSQL cannot keep: a NUL, an unpaired surrogate.
        ("tune-stream", '{"errors": [{"message": "no\\u0000pe", "extensions": {"code": "INSUFFICIENT_POINTS"}}]}'),
        ("tune-stream", '{"errors": [{"message": "no\\ud800pe", "extensions": {"code": "INSUFFICIENT_POINTS"}}]}'),
        # An unknown code with such words, and JSON nested deeper than Python's reader goes.
        ("tune-stream", '{"errors": [{"message": "\\u0000", "extensions": {"code": "NOPE"}}]}'),
        ("happy-card", "[" * 100_000),
        # An answer larger than any the contract has (the gateway would hold all of it).
        ("happy-card", '{"filler": "' + "x" * 2_000_000 + '"}'),
    ],
    ids=["graphql-nul", "graphql-surrogate", "graphql-unknown-code-nul", "rest-nested", "rest-too-large"],
)
async def test_a_debit_answered_with_what_cannot_be_kept_is_in_doubt_and_recovered(
    exchange: Exchange, source: str, answer: str
) -> None:
    """A hostile or broken partner's answer to the debit (nothing applied) is no usable answer:
    the conversion waits in doubt with a reason the database keeps, and the status lookup ends
    it FAILED, nothing taken and nothing posted; the partner's words never break the saga's
    own bookkeeping."""
    await exchange.sandboxes[source].admin.set_faults(
        script=[FaultKind.ANSWER], answer=CannedAnswer(status=200, body=answer)
    )
    conversion = await exchange.convert(1000, source, "fresh-mart", "k1")
    assert (conversion.status, conversion.step, conversion.in_doubt) == (
        ConversionStatus.PENDING,
        SagaStep.DEBIT,
        True,
    )
    kept = await exchange.saga.reload(conversion.id)
    assert kept.last_error is not None and kept.last_error.startswith(f"partner {source}: debit: ")
    if len(answer) > MAX_ANSWER_BYTES:  # not read beyond the limit
        assert kept.last_error == f"partner {source}: debit: answer larger than {MAX_ANSWER_BYTES} bytes"
    await exchange.recover()
    assert await exchange.status(conversion.id) == ConversionStatus.FAILED
    assert await partner_net(exchange.sandboxes, source, "alice") == 0
    assert await ledger_balances(exchange) == {}


async def test_a_partner_restart_mid_conversion_is_recovered(exchange: Exchange) -> None:
    await exchange.sandboxes["fresh-mart"].admin.set_faults(script=[FaultKind.APPLY_THEN_HANG])
    conversion = await exchange.convert(1000, "happy-card", "fresh-mart", "k1")
    assert conversion.status == ConversionStatus.PENDING
    await exchange.sandboxes["fresh-mart"].restart(down=0.2)
    await exchange.recover()
    assert await exchange.status(conversion.id) == ConversionStatus.COMPLETED
    assert await partner_net(exchange.sandboxes, "fresh-mart", "alice") == 2450


async def test_a_misapplied_credit_the_member_has_spent_stands_posted_as_sent_and_flagged(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    """fresh-mart credits twice the points sent (its bug) and alice spends them at once in its
    own shop, so it refuses to reverse the credit: the conversion ends COMPLETED, posted as sent,
    with PARTNER_CONTRADICTED and an error for staff; no point is lost or made twice on the
    exchange's side: the source's debit and the target's credit stand as the ledger has them,
    and what fresh-mart credited beyond that is its records' difference to reconcile."""
    await exchange.sandboxes["fresh-mart"].admin.set_faults(script=[FaultKind.MISAPPLY])
    conversion = await exchange.convert(1000, "happy-card", "fresh-mart", "k1")
    assert (conversion.status, conversion.in_doubt) == (
        ConversionStatus.PENDING,
        True,
    )  # the answer is not the credit sent
    assert await partner_net(exchange.sandboxes, "fresh-mart", "alice") == 2 * 2450
    fresh_mart = exchange.saga.connector_for((await exchange.saga.catalog.get()).program("fresh-mart"))
    await fresh_mart.debit("shop-basket-1", "alice", 120_000 + 4000)  # spent: 900 points left
    with caplog.at_level(logging.ERROR, logger="exchange.sagas"):
        await exchange.recover()
        await exchange.recover()
    finished = await exchange.saga.reload(conversion.id)
    assert (finished.status, finished.failure_code) == (ConversionStatus.COMPLETED, "PARTNER_CONTRADICTED")
    assert finished.failure_message is not None and "reconciliation" in finished.failure_message
    said = Said.failure(finished.failure_code, finished.failure_message, {})  # as a page says it
    assert (said.key, said.values["partner"], said.values["write"]) == ("WRITE_STANDS", "target", "credit")
    assert any("refused to reverse it" in record.getMessage() for record in caplog.records)
    balances = await ledger_balances(exchange)
    assert balances["member-points:happy-card"] == await partner_net(exchange.sandboxes, "happy-card", "alice") == -1000
    assert balances["member-points:fresh-mart"] == 2450  # posted as sent
    assert await partner_net(exchange.sandboxes, "fresh-mart", "alice") == 2 * 2450 - 124_000


async def give_up_the_credit(exchange: Exchange, reversal_fault: FaultKind) -> Conversion:
    """A conversion whose credit fresh-mart never confirms (two 500s): given up, voided, and the
    debit's reversal sent to happy-card, where it meets ``reversal_fault``."""
    await exchange.sandboxes["fresh-mart"].admin.set_faults(script=[FaultKind.ERROR, FaultKind.ERROR])
    conversion = await exchange.convert(1000, "happy-card", "fresh-mart", "k1")
    await exchange.recover_all()  # the credit fails again
    await exchange.sandboxes["happy-card"].admin.set_faults(script=[reversal_fault])
    await exchange.recover_all()  # given up: the credit voided; the debit's reversal meets the fault
    assert (await exchange.saga.reload(conversion.id)).step == SagaStep.REVERSE_DEBIT
    return conversion


@pytest.mark.parametrize("fault", [FaultKind.APPLY_THEN_DROP, FaultKind.APPLY_THEN_GARBLE])
async def test_a_reversal_applied_whose_answer_was_lost_is_sent_again_and_gives_the_points_back_once(
    exchange: Exchange, fault: FaultKind
) -> None:
    conversion = await give_up_the_credit(exchange, fault)
    assert await partner_net(exchange.sandboxes, "happy-card", "alice") == 0  # applied, unanswered
    await exchange.recover_all()
    assert await exchange.status(conversion.id) == ConversionStatus.REVERSED
    assert await partner_net(exchange.sandboxes, "happy-card", "alice") == 0  # given back once
    reversals = [op for op in await exchange.sandboxes["happy-card"].admin.operations() if op["reverses"]]
    assert [op["operation_id"] for op in reversals] == [conversion.reverse_debit_operation]
    assert await ledger_balances(exchange) == {}


async def test_a_debit_the_source_gave_back_on_its_own_while_its_reversal_was_in_doubt_ends_reversed(
    exchange: Exchange,
) -> None:
    """The credit is given up (voided), the reversal of the debit fails (a 500), and happy-card
    meanwhile refunds the debit whole on its own (its support desk, under its own id): the
    exchange's reversal, sent again, is refused (nothing is left to reverse), which is what it
    asked for. The conversion ends REVERSED, alice has her points once, nothing is posted."""
    conversion = await give_up_the_credit(exchange, FaultKind.ERROR)
    happy_card = exchange.saga.connector_for((await exchange.saga.catalog.get()).program("happy-card"))
    await happy_card.reverse("support-refund-1", conversion.debit_operation)
    await exchange.recover_all()
    assert await exchange.status(conversion.id) == ConversionStatus.REVERSED
    assert await partner_net(exchange.sandboxes, "happy-card", "alice") == 0
    assert await partner_net(exchange.sandboxes, "fresh-mart", "alice") == 0
    assert await ledger_balances(exchange) == {}


async def test_a_debit_in_doubt_the_source_gave_back_on_its_own_ends_reversed_not_pending_for_ever(
    exchange: Exchange,
) -> None:
    """The debit applies and its answer is lost; happy-card then refunds it whole on its own
    (its support desk, under its own id). Recovery finds the debit reversed: nothing is left to
    void (a reversal would be refused, and the conversion asked about for ever), so it ends
    REVERSED, nothing credited, alice's points given back once, nothing posted."""
    await exchange.sandboxes["happy-card"].admin.set_faults(script=[FaultKind.APPLY_THEN_DROP])
    conversion = await exchange.convert(1000, "happy-card", "fresh-mart", "k1")
    assert (conversion.status, conversion.step, conversion.in_doubt) == (
        ConversionStatus.PENDING,
        SagaStep.DEBIT,
        True,
    )
    happy_card = exchange.saga.connector_for((await exchange.saga.catalog.get()).program("happy-card"))
    await happy_card.reverse("support-refund-1", conversion.debit_operation)
    await exchange.recover()
    assert await exchange.status(conversion.id) == ConversionStatus.REVERSED
    assert await partner_net(exchange.sandboxes, "happy-card", "alice") == 0
    assert await partner_net(exchange.sandboxes, "fresh-mart", "alice") == 0
    assert await ledger_balances(exchange) == {}


async def test_each_recovery_pass_drives_again_what_the_last_left_in_doubt_at_the_same_instant(
    exchange: Exchange,
) -> None:
    """A pass leases nothing it does not drive: a conversion it left in doubt is free for the
    next pass at once, not only once the clock has passed a lease (the demo's month recovers
    under a clock that stands still)."""
    await exchange.sandboxes["fresh-mart"].admin.set_faults(script=[FaultKind.ERROR, FaultKind.ERROR])
    conversion = await exchange.convert(1000, "happy-card", "fresh-mart", "k1")
    assert conversion.status == ConversionStatus.PENDING
    assert await exchange.recover_all() == RecoveryReport(
        saga="conversion", driven=1, pending=1, leased=0, leased_until=None
    )  # the credit fails again
    assert await exchange.recover_all() == RecoveryReport(
        saga="conversion", driven=1, pending=0, leased=0, leased_until=None
    )  # given up: voided, reversed
    assert await exchange.status(conversion.id) == ConversionStatus.REVERSED
    assert await partner_net(exchange.sandboxes, "happy-card", "alice") == 0


async def test_the_same_points_cannot_be_spent_twice_in_parallel(exchange: Exchange) -> None:
    await exchange.sandboxes["happy-card"].admin.add_member("erin", balance=1000, verification="5555")
    await exchange.sandboxes["fresh-mart"].admin.add_member("erin", balance=0, verification="5555")
    await exchange.sandboxes["wallet-pay"].admin.add_member("erin", balance=0, verification="5555")
    first, second = await asyncio.gather(
        exchange.convert(1000, "happy-card", "fresh-mart", "k1", member="erin"),
        exchange.convert(1000, "happy-card", "wallet-pay", "k2", member="erin"),
    )
    assert sorted([first.status, second.status]) == [ConversionStatus.COMPLETED, ConversionStatus.FAILED]
    failed = first if first.status == ConversionStatus.FAILED else second
    assert failed.failure_code == "INSUFFICIENT_POINTS"
    assert await exchange.sandboxes["happy-card"].admin.balance("erin") == 0


async def price_fresh_mart_poorly(exchange: Exchange) -> None:
    """fresh-mart prices happy-card points 1:2 (2,000 for 1,000): the route through the
    coalition point pays more (1,000 → 245 coalition points → 2,401)."""
    async with exchange.db.transaction() as session:
        await rates.set_partner_override(
            session,
            target="fresh-mart",
            source="happy-card",
            override=rates.PairOverride.fixed(Ratio(1, 2)),
            actor="fresh-mart",
            now=exchange.clock.now(),
        )


async def routed_ledger(exchange: Exchange, conversion_id: str) -> tuple[list[str], dict[str, int]]:
    """The conversion's clearing transactions and every account's balance, the ledger verified."""
    async with exchange.db.transaction() as session:
        report = await verify_ledger(session)
        posted = [
            row[0]
            for row in await session.exec(  # type: ignore[call-overload]
                text("SELECT id FROM ledger_transaction WHERE reference = :reference ORDER BY seq"),
                params={"reference": f"conversion:{conversion_id}"},
            )
        ]
        balances = dict(
            tuple(row) for row in await session.exec(text("SELECT code, balance FROM ledger_account_balance"))
        )  # type: ignore[call-overload]
    assert report.ok, report.problem
    return posted, balances


#: What the two legs of 1,000 happy-card points through the coalition point post, when completed.
ROUTED_BALANCES = {
    "member-points:happy-card": -1000,
    "member-points:coalition": 0,  # issued by the first leg, redeemed by the second
    "member-points:fresh-mart": 2401,
    "partner-clearing:happy-card": -25000,
    "partner-clearing:coalition": 0,  # 245.00 in from happy-card, 245.00 out to fresh-mart
    "partner-clearing:fresh-mart": 24010,
    "exchange-fees": 500 + 490,
}


@pytest.mark.parametrize(
    ("program", "fault", "final"),
    [
        (None, None, ConversionStatus.COMPLETED),
        ("fresh-mart", FaultKind.APPLY_THEN_DROP, ConversionStatus.COMPLETED),
        ("happy-card", FaultKind.APPLY_THEN_DROP, ConversionStatus.COMPLETED),
        ("happy-card", FaultKind.APPLY_THEN_GARBLE, ConversionStatus.COMPLETED),
        ("fresh-mart", FaultKind.APPLY_THEN_GARBLE, ConversionStatus.COMPLETED),
        ("happy-card", FaultKind.MISAPPLY, ConversionStatus.REVERSED),  # twice the points taken: not trusted
        ("fresh-mart", FaultKind.MISAPPLY, ConversionStatus.REVERSED),
        ("happy-card", FaultKind.ERROR, ConversionStatus.FAILED),
    ],
)
async def test_a_conversion_through_the_coalition_point_ends_final_and_agreeing(
    exchange: Exchange, program: str | None, fault: FaultKind | None, final: ConversionStatus
) -> None:
    await price_fresh_mart_poorly(exchange)
    if program is not None and fault is not None:
        await exchange.sandboxes[program].admin.set_faults(script=[fault])
    quote = await exchange.quote(1000, "happy-card", "fresh-mart")
    conversion = await exchange.execute(quote, "routed")
    assert [leg["to_program"] for leg in conversion.route or []] == ["coalition", "fresh-mart"]
    if conversion.status == ConversionStatus.PENDING:
        await exchange.recover()
    assert await exchange.status(conversion.id) == final
    posted, balances = await routed_ledger(exchange, conversion.id)
    debited = await partner_net(exchange.sandboxes, "happy-card", "alice")
    credited = await partner_net(exchange.sandboxes, "fresh-mart", "alice")
    assert (debited, credited) == (
        balances.get("member-points:happy-card", 0),
        balances.get("member-points:fresh-mart", 0),
    )
    if final == ConversionStatus.COMPLETED:
        assert posted == [f"conversion:{conversion.id}:1", f"conversion:{conversion.id}:2"]
        assert {code: balances.get(code, 0) for code in ROUTED_BALANCES} == ROUTED_BALANCES
    else:
        assert (posted, debited, credited) == ([], 0, 0)
    replay = await exchange.execute(quote, "routed")
    assert (replay.id, replay.status) == (conversion.id, final)
    assert (await routed_ledger(exchange, conversion.id))[0] == posted, "a replay posts nothing more"


async def test_a_crash_between_the_legs_partners_is_recovered_with_both_postings(exchange: Exchange) -> None:
    await price_fresh_mart_poorly(exchange)
    quote = await exchange.quote(1000, "happy-card", "fresh-mart")
    conversion, _ = await exchange.saga._record(
        ExecuteRequest(
            member_id="alice",
            quote_id=quote.id,
            idempotency_key="k",
            authority=DebitAuthority(asserted_by="happy-card"),
        )
    )
    registry = exchange.sandboxes.registry(exchange.settings)
    try:
        catalog = await exchange.saga.catalog.get()
        await registry.for_program(catalog.program("happy-card")).debit(conversion.debit_operation, "alice", 1000)
    finally:
        await registry.aclose()
    # The process died after the debit: the row still says DEBIT, nothing is posted.
    assert (await routed_ledger(exchange, conversion.id))[0] == []
    await exchange.recover()
    assert await exchange.status(conversion.id) == ConversionStatus.COMPLETED
    posted, balances = await routed_ledger(exchange, conversion.id)
    assert len(posted) == 2
    assert {code: balances.get(code, 0) for code in ROUTED_BALANCES} == ROUTED_BALANCES
    assert await partner_net(exchange.sandboxes, "happy-card", "alice") == -1000
    assert await partner_net(exchange.sandboxes, "fresh-mart", "alice") == 2401


async def conversion_row(exchange: Exchange, conversion_id: str) -> Conversion:
    async with exchange.db.transaction() as session:
        row = await session.get(Conversion, conversion_id)
    assert row is not None
    return row


async def test_a_recovery_pass_that_finds_the_partner_down_leaves_the_row_to_the_next_pass_at_its_backoff(
    exchange: Exchange,
) -> None:
    """Neither ``exchange recover`` nor the gateway's job keeps a lease on a row it could not
    finish: the row is due again after the saga's retry back-off (1 s doubling to 5 min), and
    ``exchange recover`` takes it at once."""
    await exchange.sandboxes["fresh-mart"].admin.set_faults(script=[FaultKind.ERROR])
    conversion = await exchange.convert(1000, "happy-card", "fresh-mart", "k1")
    assert conversion.status == ConversionStatus.PENDING  # the credit in doubt
    await exchange.sandboxes["fresh-mart"].stop()

    report = await exchange.recover_all()
    assert (report.driven, report.pending, report.leased) == (1, 1, 0)
    row = await conversion_row(exchange, conversion.id)
    assert row.lease_until is None
    assert row.next_attempt_at == exchange.clock.now() + exchange.saga.policy.backoff(row.attempts)

    job = RecoveryWorker(exchange.saga)
    assert await job.run_once() == 0  # not due before its back-off
    exchange.clock.advance(seconds=exchange.saga.policy.backoff(row.attempts).total_seconds())
    assert await job.run_once() == 1  # due: taken again, and the partner is still down
    assert (await conversion_row(exchange, conversion.id)).lease_until is None
    assert (await exchange.recover_all()).leased == 0  # `exchange recover` takes it at once, too

    await exchange.sandboxes["fresh-mart"].start()
    assert (await exchange.recover_all()).pending == 0
    # Three passes in doubt are more than this policy sends a write again (give_up_after=2):
    # the credit is voided and the debit given back, as the policy says.
    assert await exchange.status(conversion.id) == ConversionStatus.REVERSED
    assert await partner_net(exchange.sandboxes, "happy-card", "alice") == 0
    assert await partner_net(exchange.sandboxes, "fresh-mart", "alice") == 0
    assert await ledger_balances(exchange) == {}


async def test_a_credit_that_outlasts_the_lease_is_sent_again_by_recovery_and_moves_points_once(
    exchange: Exchange,
) -> None:
    """The target answers slower than the lease: recovery claims the row while the request still
    waits and sends the credit again, under the same operation id. The partner applies it
    once, and only one of the two drivers records the step and posts."""
    await exchange.sandboxes["fresh-mart"].admin.set_faults(latency_ms=1500)
    request = asyncio.create_task(exchange.convert(1000, "happy-card", "fresh-mart", "k1"))
    while not await exchange.sandboxes["happy-card"].admin.operations():
        await asyncio.sleep(0.05)  # debited: the request is now waiting for the slow credit
    await asyncio.sleep(0.2)
    exchange.clock.advance(seconds=exchange.saga.policy.lease.total_seconds() + 1)  # the lease is over
    assert await RecoveryWorker(exchange.saga).run_once() == 1  # taken while the request still waits
    conversion = await request

    assert await exchange.status(conversion.id) == ConversionStatus.COMPLETED
    sent = [r for r in await exchange.sandboxes["fresh-mart"].admin.trace_headers() if r["path"] == "/credits"]
    assert len(sent) == 2, sent  # the request's credit, and recovery's under the same operation id
    credits = [op for op in await exchange.sandboxes["fresh-mart"].admin.operations() if op["kind"] == "credit"]
    assert len(credits) == 1
    assert await partner_net(exchange.sandboxes, "fresh-mart", "alice") == 2450
    assert await partner_net(exchange.sandboxes, "happy-card", "alice") == -1000
    async with exchange.db.transaction() as session:
        posted = (
            await session.exec(
                text("SELECT count(*) FROM ledger_transaction WHERE reference = :ref"),
                params={"ref": f"conversion:{conversion.id}"},
            )
        ).scalar_one()
    assert posted == 1
    balances = await ledger_balances(exchange)
    assert (balances["member-points:happy-card"], balances["member-points:fresh-mart"]) == (-1000, 2450)
