"""The conversion saga against in-memory partners with scripted faults, and the coalition point
as a source or target (its lots checked against the ledger), on both databases."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import select

from exchange.coalition.connector import CoalitionConnector
from exchange.coalition.rules import point_rules
from exchange.coalition.verify import check_point
from exchange.connectors.contract import Operation, OperationState
from exchange.conversions import queries as conversion_queries
from exchange.conversions.errors import QuoteAlreadyExecuted
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.conversions.saga import ConversionSaga, ExecuteRequest, SagaPolicy
from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.errors import ErrorCode, IdempotencyConflict
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import verify_ledger
from exchange.loading import load_directory
from exchange.members.authority import DebitAuthority
from exchange.members.service import AccountNotLinked, link_coalition_accounts
from exchange.observability.metrics import SagaFigures
from exchange.pricing import quotes
from exchange.pricing.errors import QuoteExpired, QuoteNotFound
from exchange.pricing.models import Quote
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import read_partners_directory
from exchange.programs.models import Program
from exchange.risk.models import RiskDecision
from exchange.sagas import doubt
from exchange.sagas.engine import NotWaitingYet
from exchange.sagas.figures import read_figures
from exchange.sagas.recovery import RecoveryWorker
from exchange.services.container import risk_gates
from exchange.services.retrying import RetryingOperations
from exchange.settings import normalize_database_url
from exchange.testing.clock import FrozenClock
from tests.conftest import SAMPLE_PARTNERS
from tests.factories import member_with_accounts
from tests.fakes import FakePartner, Fault
from tests.outages import FrozenPosting, KilledPosting, cut_next_point_write
from tests.reads import sessions_begun

TAIPEI = ZoneInfo("Asia/Taipei")
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
POINT = "coalition"


@dataclass
class World:
    db: Database
    clock: FrozenClock
    partners: dict[str, FakePartner]
    saga: ConversionSaga
    point: CoalitionConnector
    """The coalition point, which the exchange keeps itself: no fault to inject, but a crash."""

    async def quote(
        self, points: int = 1000, source: str = "happy-card", target: str = "fresh-mart", member: str = "m1"
    ) -> Quote:
        async with self.db.transaction() as session:
            return await quotes.create_quote(
                session,
                quotes.QuoteRequest(member_id=member, member_level=0, source=source, target=target, points=points),
                policy=quotes.QuotePolicy(ttl=timedelta(seconds=60), timezone=TAIPEI),
                now=self.clock.now(),
            )

    async def execute(self, quote: Quote, key: str = "k1", member: str = "m1") -> Conversion:
        return await self.saga.execute(
            ExecuteRequest(
                member_id=member,
                quote_id=quote.id,
                idempotency_key=key,
                authority=DebitAuthority(asserted_by=quote.from_program),
            )
        )

    async def recover_all(self) -> int:
        self.clock.advance(hours=1)
        return await RecoveryWorker(self.saga).run_once()

    async def ledger_transactions(self) -> int:
        async with self.db.transaction() as session:
            report = await verify_ledger(session)
        assert report.ok, report.problem
        return report.transactions

    async def used(self) -> dict[str, int]:
        async with self.db.transaction() as session:
            return {key: used for key, used in await session.exec(text("SELECT key, used FROM limit_usage")) if used}


async def make_world(db: Database) -> World:
    clock = FrozenClock(T0)
    async with db.transaction() as session:
        await load_directory(session, read_partners_directory(SAMPLE_PARTNERS), T0)
    programs = ("wallet-pay", "happy-card", "fresh-mart", "harbor-bank", "tune-stream", "formosa-air")
    partners = {program: FakePartner(program, {"alice": 100_000, "bob": 500}) for program in programs}
    for member, ref in (("m1", "alice"), ("m2", "bob")):  # known as alice and bob at every partner
        await member_with_accounts(db, dict.fromkeys(programs, ref), T0, member_id=member)

    point = CoalitionConnector(POINT, db, clock, conversion_queries.source_program, CatalogCache(db, ttl=0))

    def connector_for(program: Program) -> FakePartner | CoalitionConnector:
        return point if program.id == POINT else partners[program.id]

    saga = ConversionSaga(
        db=db,
        connector_for=connector_for,  # type: ignore[arg-type]
        catalog=CatalogCache(db, ttl=0),
        ledger=Ledger(timezone=TAIPEI, clock=clock),
        clock=clock,
        policy=SagaPolicy(timezone=TAIPEI, give_up_after=3),
        gates=risk_gates(),
    )
    return World(db, clock, partners, saga, point)


@pytest.fixture
async def world(db: Database) -> World:
    return await make_world(db)


async def test_a_conversion_debits_credits_and_posts_once(world: World) -> None:
    quote = await world.quote(1000)
    conversion = await world.execute(quote)
    assert (conversion.status, conversion.step) == (ConversionStatus.COMPLETED, SagaStep.DONE)
    assert world.partners["happy-card"].balances["alice"] == 99_000
    assert world.partners["fresh-mart"].balances["alice"] == 100_000 + 2450
    assert await world.ledger_transactions() == 1
    again = await world.execute(quote)
    assert (again.id, again.status) == (conversion.id, ConversionStatus.COMPLETED)
    assert world.partners["happy-card"].balances["alice"] == 99_000
    assert await world.ledger_transactions() == 1


async def test_the_same_key_for_another_quote_is_a_conflict(world: World) -> None:
    await world.execute(await world.quote(1000))
    with pytest.raises(IdempotencyConflict) as caught:
        await world.execute(await world.quote(2000))
    assert caught.value.field == "idempotencyKey"


async def test_a_quote_runs_once_whatever_the_key(world: World) -> None:
    quote = await world.quote(1000)
    await world.execute(quote, key="first")
    with pytest.raises(QuoteAlreadyExecuted):
        await world.execute(quote, key="second")


async def test_an_expired_quote_is_refused_but_its_conversion_is_still_returned(world: World) -> None:
    quote = await world.quote(1000)
    done = await world.execute(quote)
    world.clock.advance(minutes=5)
    assert (await world.execute(quote)).id == done.id
    late = await world.quote(1000)
    world.clock.advance(seconds=61)
    with pytest.raises(QuoteExpired):
        await world.execute(late, key="k2")


async def test_insufficient_points_fail_the_conversion_and_give_back_the_limits(world: World) -> None:
    quote = await world.quote(1000, member="m2")
    conversion = await world.saga.execute(
        ExecuteRequest(
            member_id="m2",
            quote_id=quote.id,
            idempotency_key="k",
            authority=DebitAuthority(asserted_by=quote.from_program),
        )
    )
    assert (conversion.status, conversion.failure_code) == (ConversionStatus.FAILED, "INSUFFICIENT_POINTS")
    assert await world.used() == {}
    assert await world.ledger_transactions() == 0


async def test_an_unreachable_source_fails_cleanly(world: World) -> None:
    world.partners["happy-card"].fail_next("debit", Fault.UNREACHABLE)
    conversion = await world.execute(await world.quote(1000))
    assert (conversion.status, conversion.failure_code) == (ConversionStatus.FAILED, "PARTNER_UNAVAILABLE")
    assert world.partners["happy-card"].balances["alice"] == 100_000


async def test_a_debit_applied_but_unanswered_is_confirmed_and_completed(world: World) -> None:
    world.partners["happy-card"].fail_next("debit", Fault.APPLY_THEN_LOSE_ANSWER)
    conversion = await world.execute(await world.quote(1000))
    assert (conversion.status, conversion.step, conversion.in_doubt) == (ConversionStatus.PENDING, SagaStep.DEBIT, True)
    assert await world.recover_all() == 1
    async with world.db.transaction() as session:
        finished = await session.get(Conversion, conversion.id)
    assert finished is not None and finished.status == ConversionStatus.COMPLETED
    assert world.partners["fresh-mart"].balances["alice"] == 102_450
    assert await world.ledger_transactions() == 1


async def test_a_conversion_in_doubt_shows_in_the_figures_until_recovered(world: World) -> None:
    world.partners["happy-card"].fail_next("debit", Fault.APPLY_THEN_LOSE_ANSWER)
    await world.execute(await world.quote(1000))
    world.clock.advance(seconds=90)

    async def figures() -> SagaFigures:
        async with world.db.transaction() as session:
            [conversion] = await read_figures(session, [world.saga], world.clock.now())
        return conversion

    assert await figures() == SagaFigures("conversion", {"PENDING": 1}, oldest_seconds=90.0, backlog=1)
    await world.recover_all()
    assert await figures() == SagaFigures("conversion", {"PENDING": 0}, oldest_seconds=0.0, backlog=0)


async def test_a_debit_that_never_arrived_is_voided_and_cannot_apply_later(world: World) -> None:
    world.partners["happy-card"].fail_next("debit", Fault.LOSE_REQUEST)
    conversion = await world.execute(await world.quote(1000))
    assert conversion.status == ConversionStatus.PENDING
    await world.recover_all()
    async with world.db.transaction() as session:
        finished = await session.get(Conversion, conversion.id)
    assert finished is not None and finished.status == ConversionStatus.FAILED
    with pytest.raises(Exception, match="voided"):  # a late copy of the debit is refused for good
        await world.partners["happy-card"].debit(f"{conversion.id}:debit", "alice", 1000)
    assert world.partners["happy-card"].balances["alice"] == 100_000
    assert await world.used() == {}


async def test_a_refused_credit_reverses_the_debit(world: World) -> None:
    del world.partners["fresh-mart"].balances["alice"]  # unknown member at the target
    conversion = await world.execute(await world.quote(1000))
    assert (conversion.status, conversion.failure_code) == (ConversionStatus.REVERSED, "NOT_FOUND")
    assert world.partners["happy-card"].balances["alice"] == 100_000
    assert await world.used() == {}
    assert await world.ledger_transactions() == 0


@pytest.mark.parametrize("fault", [Fault.APPLY_THEN_LOSE_ANSWER, Fault.LOSE_REQUEST])
async def test_a_credit_in_doubt_is_settled_and_completed(world: World, fault: Fault) -> None:
    world.partners["fresh-mart"].fail_next("credit", fault)
    conversion = await world.execute(await world.quote(1000))
    assert (conversion.status, conversion.step) == (ConversionStatus.PENDING, SagaStep.CREDIT)
    await world.recover_all()
    async with world.db.transaction() as session:
        finished = await session.get(Conversion, conversion.id)
    assert finished is not None and finished.status == ConversionStatus.COMPLETED
    assert world.partners["fresh-mart"].balances["alice"] == 102_450  # credited exactly once
    assert await world.ledger_transactions() == 1


async def test_a_credit_that_never_confirms_is_voided_and_the_debit_reversed(world: World) -> None:
    world.partners["fresh-mart"].fail_next("credit", *[Fault.LOSE_REQUEST] * 10)
    conversion = await world.execute(await world.quote(1000))
    for _ in range(5):
        await world.recover_all()
    async with world.db.transaction() as session:
        finished = await session.get(Conversion, conversion.id)
    assert finished is not None and finished.status == ConversionStatus.REVERSED
    assert world.partners["happy-card"].balances["alice"] == 100_000
    assert world.partners["fresh-mart"].balances["alice"] == 100_000
    assert world.partners["fresh-mart"].operations[f"{conversion.id}:credit"].status.value == "voided"


async def recovered_as_contradicted(world: World, conversion_id: str) -> None:
    """Recovery meets a partner's record of another write than the one sent: the conversion
    ends REVERSED (PARTNER_CONTRADICTED), alice's points are back at both partners, and
    nothing is posted."""
    await world.recover_all()
    finished = await world.saga.reload(conversion_id)
    assert (finished.status, finished.failure_code) == (ConversionStatus.REVERSED, "PARTNER_CONTRADICTED")
    assert world.partners["happy-card"].balances["alice"] == 100_000
    assert world.partners["fresh-mart"].balances["alice"] == 100_000
    assert await world.ledger_transactions() == 0


async def test_a_debit_the_source_applied_with_another_amount_is_reversed_and_flagged_not_trusted(
    world: World,
) -> None:
    """A lying source: it takes twice the points under the debit's id. Its answer does not
    match the request, and its operation status, asked in recovery, shows the wrong amount:
    the debit is reversed whole, nothing is credited or posted, and the row says why."""
    world.partners["happy-card"].fail_next("debit", Fault.APPLY_DOUBLE)
    conversion = await world.execute(await world.quote(1000))
    assert (conversion.status, conversion.in_doubt) == (ConversionStatus.PENDING, True)
    assert world.partners["happy-card"].balances["alice"] == 98_000
    await recovered_as_contradicted(world, conversion.id)
    assert await world.used() == {}


async def test_a_debit_in_doubt_that_the_source_reversed_in_part_on_its_own_is_reversed_not_credited(
    world: World,
) -> None:
    source = world.partners["happy-card"]
    source.fail_next("debit", Fault.APPLY_THEN_LOSE_ANSWER)
    conversion = await world.execute(await world.quote(1000))
    debit = source.operations[conversion.debit_operation]
    source.operations[conversion.debit_operation] = debit.model_copy(update={"reversed_points": 400})
    source.balances["alice"] += 400  # the partner's own refund, which the exchange never asked for
    await recovered_as_contradicted(world, conversion.id)


async def test_a_debit_in_doubt_the_source_gave_back_on_its_own_is_said_to_be_so_not_confirmed_too_late(
    world: World,
) -> None:
    """The debit applies and its answer is lost; the source then refunds it whole under an id of
    its own. The conversion ends REVERSED saying the source gave the debit back itself
    (PARTNER_REFUSED), not that it confirmed the debit too late and the exchange reversed it."""
    source = world.partners["happy-card"]
    source.fail_next("debit", Fault.APPLY_THEN_LOSE_ANSWER)
    conversion = await world.execute(await world.quote(1000))
    await source.reverse("desk-refund-1", conversion.debit_operation)
    await world.recover_all()
    finished = await world.saga.reload(conversion.id)
    assert (finished.status, finished.failure_code, finished.failure_message) == (
        ConversionStatus.REVERSED,
        ErrorCode.PARTNER_REFUSED.value,
        doubt.WRITE_GIVEN_BACK.format(partner="source", write="debit"),
    )
    assert source.balances["alice"] == 100_000
    assert await world.ledger_transactions() == 0


async def test_a_debit_in_doubt_the_exchanges_own_void_undid_before_a_crash_was_confirmed_too_late(
    world: World,
) -> None:
    """The exchange's void of a debit in doubt reached the source (and undid the debit, which had
    applied) but the exchange crashed before recording it: asked again, the source's record is
    reversed by the exchange's own void, which is said as before (too late, reversed)."""
    source = world.partners["happy-card"]
    source.fail_next("debit", Fault.APPLY_THEN_LOSE_ANSWER)
    conversion = await world.execute(await world.quote(1000))
    await source.reverse(conversion.reverse_debit_operation, conversion.debit_operation)
    await world.recover_all()
    finished = await world.saga.reload(conversion.id)
    assert (finished.status, finished.failure_code, finished.failure_message) == (
        ConversionStatus.REVERSED,
        ErrorCode.PARTNER_UNAVAILABLE.value,
        doubt.WRITE_TOO_LATE.format(partner="source", write="debit"),
    )
    assert source.balances["alice"] == 100_000


async def test_a_debit_the_source_applied_otherwise_and_gave_back_on_its_own_ends_contradicted(world: World) -> None:
    """The source takes twice the points (its bug), then refunds them whole on its own: the
    exchange's reversal of the contradicted debit is refused (nothing is left), which is what it
    asked for; the conversion ends REVERSED, not PENDING for ever."""
    source = world.partners["happy-card"]
    source.fail_next("debit", Fault.APPLY_DOUBLE)
    conversion = await world.execute(await world.quote(1000))
    await source.reverse("desk-refund-1", conversion.debit_operation)
    await recovered_as_contradicted(world, conversion.id)


async def test_a_credit_the_target_applied_with_another_amount_is_reversed_with_the_debit(world: World) -> None:
    world.partners["fresh-mart"].fail_next("credit", Fault.APPLY_DOUBLE)
    conversion = await world.execute(await world.quote(1000))
    assert world.partners["fresh-mart"].balances["alice"] == 100_000 + 2 * 2450
    await recovered_as_contradicted(world, conversion.id)
    assert await world.used() == {}


@pytest.mark.parametrize("write", ["debit", "credit"])
async def test_a_pending_write_the_partner_settles_with_another_amount_is_reversed_not_trusted(
    world: World, write: str
) -> None:
    """The poll of a write left pending meets the partner's record of another amount (a signed
    callback saying so is refused: ``test_partners_that_answer_later``)."""
    partner = world.partners["happy-card" if write == "debit" else "fresh-mart"]
    partner.fail_next(write, Fault.ACCEPT_PENDING)
    conversion = await world.execute(await world.quote(1000))
    assert conversion.step == (SagaStep.AWAIT_DEBIT if write == "debit" else SagaStep.AWAIT_CREDIT)
    partner.settle(f"{conversion.id}:{write}", points=5)
    await recovered_as_contradicted(world, conversion.id)
    assert await world.used() == {}


async def test_a_credit_answered_failed_is_not_posted_and_the_debit_is_reversed(world: World) -> None:
    """The target answers the credit (a 200) with its record ``failed``: nothing credited. The
    conversion must not be COMPLETED on it (the ledger would hold a credit the target never
    made); the debit is reversed, nothing posted, and both partners are where they began."""
    world.partners["fresh-mart"].fail_next("credit", Fault.ANSWER_FAILED)
    conversion = await world.execute(await world.quote(1000))
    assert (conversion.status, conversion.failure_code) == (ConversionStatus.REVERSED, "PARTNER_REFUSED")
    assert world.partners["happy-card"].balances["alice"] == 100_000
    assert world.partners["fresh-mart"].balances["alice"] == 100_000
    assert await world.ledger_transactions() == 0
    assert await world.used() == {}


@pytest.mark.parametrize("write", ["debit", "credit"])
async def test_a_write_answered_applied_with_a_part_reversed_on_its_own_is_reversed_not_trusted(
    world: World, write: str
) -> None:
    """The partner answers the debit or credit applied but with half of it already reversed,
    which the exchange never asked: the answer is held against the write sent as a poll's is.
    The write is reversed whole (the debit too, for a credit), nothing is posted, and the
    partners' records agree with the ledger."""
    partner = world.partners["happy-card" if write == "debit" else "fresh-mart"]
    partner.fail_next(write, Fault.APPLY_PART_REVERSED)
    conversion = await world.execute(await world.quote(1000))
    assert (conversion.status, conversion.failure_code) == (ConversionStatus.REVERSED, "PARTNER_CONTRADICTED")
    assert world.partners["happy-card"].balances["alice"] == 100_000
    assert world.partners["fresh-mart"].balances["alice"] == 100_000
    assert await world.ledger_transactions() == 0


async def test_a_reversal_in_doubt_is_sent_again_until_it_lands(world: World) -> None:
    del world.partners["fresh-mart"].balances["alice"]
    world.partners["happy-card"].fail_next("reverse", Fault.LOSE_REQUEST, Fault.UNREACHABLE)
    conversion = await world.execute(await world.quote(1000))
    assert (conversion.status, conversion.step) == (ConversionStatus.PENDING, SagaStep.REVERSE_DEBIT)
    await world.recover_all()
    await world.recover_all()
    async with world.db.transaction() as session:
        finished = await session.get(Conversion, conversion.id)
    assert finished is not None and finished.status == ConversionStatus.REVERSED
    assert world.partners["happy-card"].balances["alice"] == 100_000


async def test_a_reversal_the_source_keeps_refusing_is_shown_to_staff_until_it_lands(world: World) -> None:
    """A step a partner keeps failing holds the conversion where it is (the debit taken,
    nothing posted) and, from its third attempt, lists it for staff with the partner's last
    words; once the partner takes the reversal the conversion ends and leaves the list."""
    del world.partners["fresh-mart"].balances["alice"]  # the credit is refused: the debit must come back
    world.partners["happy-card"].fail_next("reverse", Fault.UNREACHABLE, Fault.REFUSE, Fault.REFUSE)
    conversion = await world.execute(await world.quote(1000))
    retrying = RetryingOperations(world.db, world.clock)
    assert (await retrying.listed()).items == []  # one attempt so far: a hiccup is not shown
    await world.recover_all()
    assert (await retrying.listed()).items == []
    await world.recover_all()
    [row] = (await retrying.listed()).items
    assert (row.saga, row.id, row.program_id, row.status, row.step, row.attempts) == (
        "conversion",
        conversion.id,
        "happy-card",
        ConversionStatus.PENDING,
        SagaStep.REVERSE_DEBIT,
        3,
    )
    assert row.last_error == "the member's account is closed"
    assert (await retrying.listed(program_id="fresh-mart")).items == []
    assert world.partners["happy-card"].balances["alice"] == 99_000  # nothing moved meanwhile
    await world.recover_all()  # the partner takes the reversal now
    async with world.db.transaction() as session:
        finished = await session.get(Conversion, conversion.id)
    assert finished is not None and (finished.status, finished.last_error) == (ConversionStatus.REVERSED, None)
    assert world.partners["happy-card"].balances["alice"] == 100_000
    assert (await retrying.listed()).items == []


async def test_a_crash_before_the_debit_is_recovered_after_the_lease(world: World) -> None:
    quote = await world.quote(1000)
    conversion, created = await world.saga._record(  # the process dies right after recording
        ExecuteRequest(
            member_id="m1",
            quote_id=quote.id,
            idempotency_key="k",
            authority=DebitAuthority(asserted_by=quote.from_program),
        )
    )
    assert created
    assert await RecoveryWorker(world.saga).run_once() == 0  # still leased
    await world.recover_all()
    async with world.db.transaction() as session:
        finished = await session.get(Conversion, conversion.id)
    assert finished is not None and finished.status == ConversionStatus.FAILED
    assert world.partners["happy-card"].balances["alice"] == 100_000


async def test_a_crash_after_the_credit_is_posted_by_recovery(world: World) -> None:
    quote = await world.quote(1000)
    conversion, _ = await world.saga._record(
        ExecuteRequest(
            member_id="m1",
            quote_id=quote.id,
            idempotency_key="k",
            authority=DebitAuthority(asserted_by=quote.from_program),
        )
    )
    await world.partners["happy-card"].debit(conversion.debit_operation, "alice", conversion.points_in)
    await world.partners["fresh-mart"].credit(conversion.credit_operation, "alice", conversion.points_out)
    async with world.db.transaction() as session:  # the process recorded CREDIT, then died
        await session.exec(text(f"UPDATE conversion SET step = 'CREDIT' WHERE id = '{conversion.id}'"))
    await world.recover_all()
    async with world.db.transaction() as session:
        finished = await session.get(Conversion, conversion.id)
    assert finished is not None and finished.status == ConversionStatus.COMPLETED
    assert world.partners["fresh-mart"].balances["alice"] == 102_450
    assert await world.ledger_transactions() == 1


async def test_a_conversion_screened_by_every_gate_is_recorded_and_posted_in_lean_units_of_work(
    pg_db: Database,
) -> None:
    """Once the ledger's accounts are open (a first posting opens them, in a session), a
    conversion's units of work open no session, its source declaring every gate it passes
    (a cooling period, names, velocity per member and per account, a hold above more than it
    takes): its record, its transition and its posting are each one psycopg transaction."""
    world = await make_world(pg_db)
    await world.execute(await world.quote(1000), key="opens-the-accounts")
    async with pg_db.transaction() as session:
        source = await session.get(Program, "happy-card")
        assert source is not None
        source.risk = {
            "cooling_period_seconds": 60,
            "refuse_name_mismatch": True,
            "hold_above_points": 5000,
            "velocity": [
                {"per": "member", "window_seconds": 3600, "max_points": 10_000},
                {"per": "account", "window_seconds": 3600, "max_count": 5},
            ],
        }
        session.add(source)
    world.clock.advance(seconds=61)  # past the cooling period since the accounts were linked
    world.saga.catalog = CatalogCache(pg_db, ttl=3600)  # as the gateway keeps it: read once a while
    await world.saga.catalog.get()
    quote = await world.quote(1000)
    with sessions_begun(pg_db) as begun:
        conversion = await world.execute(quote, key="k2")
    assert (conversion.status, begun) == (ConversionStatus.COMPLETED, [])
    async with pg_db.transaction() as session:
        decided = (
            await session.exec(select(RiskDecision.decision).where(RiskDecision.conversion_id == conversion.id))
        ).all()
    assert decided == ["ALLOW"]
    assert await world.ledger_transactions() == 2


@pytest.mark.parametrize("unit", ["lean", "session"])
async def test_a_posting_whose_connection_is_killed_is_service_unavailable_and_finishes_once(
    pg_db: Database, unit: str
) -> None:
    """The only test that breaks the database connection inside the unit of work that posts a
    conversion (after both partners applied), a lean one or a session's: the request answers
    the typed, retryable ``DatabaseUnavailable``, nothing is posted, the same key returns the
    same conversion, and recovery posts it exactly once."""
    world = await make_world(pg_db)
    world.saga.ledger = KilledPosting(pg_db, world.clock, TAIPEI, kills=1, in_session=unit == "session")
    quote = await world.quote(1000)
    with pytest.raises(DatabaseUnavailable) as refused:
        await world.execute(quote)
    assert refused.value.code is ErrorCode.SERVICE_UNAVAILABLE
    assert await world.ledger_transactions() == 0
    again = await world.execute(quote)  # the client asks again with its key
    assert again.status == ConversionStatus.PENDING
    assert await world.recover_all() == 1
    finished = await world.saga.reload(again.id)
    assert finished.status == ConversionStatus.COMPLETED
    assert world.partners["happy-card"].balances["alice"] == 99_000
    assert world.partners["fresh-mart"].balances["alice"] == 102_450
    assert [call for call in world.partners["fresh-mart"].calls if call[0] == "credit"] == [
        ("credit", again.credit_operation),
        ("credit", again.credit_operation),  # sent again by recovery: the partner applies it once
    ]
    assert await world.ledger_transactions() == 1


async def test_a_recovery_whose_connection_is_killed_says_so_in_one_line_and_the_next_pass_posts_once(
    pg_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    world = await make_world(pg_db)
    world.partners["fresh-mart"].fail_next("credit", Fault.LOSE_REQUEST)
    conversion = await world.execute(await world.quote(1000))
    assert (conversion.status, conversion.step) == (ConversionStatus.PENDING, SagaStep.CREDIT)
    world.saga.ledger = KilledPosting(pg_db, world.clock, TAIPEI, kills=1)
    with caplog.at_level(logging.WARNING, logger="exchange.sagas.recovery"):
        assert await world.recover_all() == 1
    [outage] = [record for record in caplog.records if record.name == "exchange.sagas.recovery"]
    assert (outage.levelno, outage.exc_info) == (logging.WARNING, None)  # an outage is expected: no trace
    assert "database is unavailable" in outage.getMessage()
    assert (await world.saga.reload(conversion.id)).status == ConversionStatus.PENDING
    await world.recover_all()  # its lease has run out
    assert (await world.saga.reload(conversion.id)).status == ConversionStatus.COMPLETED
    assert world.partners["fresh-mart"].balances["alice"] == 102_450
    assert await world.ledger_transactions() == 1


async def test_more_conversions_than_pooled_connections_wait_or_are_refused_and_none_is_left_half_done(
    pg_database_url: str,
) -> None:
    """The only test that exhausts the pool under the saga: twenty conversions at once on one
    pooled connection that is waited for 5 ms at most. Each request finishes or answers the
    typed ``DatabaseUnavailable`` (no other error); after recovery every conversion is final,
    and each partner and the ledger agree on every point moved."""
    url = normalize_database_url(pg_database_url)
    db = Database(
        create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.005)
    )  # 5 ms: most requests meet a full pool
    try:
        world = await make_world(db)
        quotes_ = [await world.quote(1000) for _ in range(20)]
        answers = await asyncio.gather(
            *(world.execute(quote, key=f"k{n}") for n, quote in enumerate(quotes_)), return_exceptions=True
        )
        refused = [answer for answer in answers if isinstance(answer, BaseException)]
        assert all(isinstance(error, DatabaseUnavailable) for error in refused), refused
        for n, quote in enumerate(quotes_):  # every client asks again with its key, one at a time
            await world.execute(quote, key=f"k{n}")
        world.clock.advance(hours=1)
        await RecoveryWorker(world.saga, concurrency=1).run_once()  # one at a time: the pool suffices
        async with db.transaction() as session:
            statuses = [status for (status,) in await session.exec(text("SELECT status FROM conversion"))]  # type: ignore[call-overload]
        completed = statuses.count(ConversionStatus.COMPLETED)
        assert len(statuses) == 20 and completed + statuses.count(ConversionStatus.FAILED) == 20, statuses
        assert world.partners["happy-card"].balances["alice"] == 100_000 - 1000 * completed
        assert world.partners["fresh-mart"].balances["alice"] == 100_000 + 2450 * completed
        assert await world.ledger_transactions() == completed
    finally:
        await db.dispose()


async def test_a_conversion_frozen_while_it_posts_holds_up_the_others_only_until_the_server_ends_its_session(
    pg_database_url: str,
) -> None:
    """A gateway process freezes inside the unit of work that posts a conversion (the ledger's
    locks held, its connection still open). The server ends its session once it has been idle
    in that transaction for ``idle_in_transaction_seconds``, so the next conversion, queued
    behind those locks, completes instead of hanging; the frozen one, waking, meets the typed
    ``DatabaseUnavailable`` and is posted once by recovery."""
    db = Database.from_url(pg_database_url, idle_in_transaction_seconds=3)
    try:
        world = await make_world(db)
        ledger = world.saga.ledger = FrozenPosting(world.clock, TAIPEI)
        first, second = await world.quote(1000), await world.quote(1000)
        frozen = asyncio.create_task(world.execute(first, key="frozen"))
        await ledger.frozen.wait()
        async with asyncio.timeout(120):  # no hang: the frozen session is ended long before
            after = await world.execute(second, key="after")
        assert after.status == ConversionStatus.COMPLETED
        ledger.wake.set()
        with pytest.raises(DatabaseUnavailable):
            await frozen
        await world.recover_all()
        assert (await world.execute(first, key="frozen")).status == ConversionStatus.COMPLETED
        assert world.partners["happy-card"].balances["alice"] == 98_000
        assert world.partners["fresh-mart"].balances["alice"] == 100_000 + 2 * 2450
        assert await world.ledger_transactions() == 2
    finally:
        await db.dispose()


async def test_fifty_requests_with_one_key_make_one_conversion(pg_db: Database) -> None:
    world = await make_world(pg_db)
    quote = await world.quote(1000)
    results = await asyncio.gather(*(world.execute(quote) for _ in range(50)))
    assert len({conversion.id for conversion in results}) == 1
    assert [call for call in world.partners["happy-card"].calls if call[0] == "debit"] == [
        ("debit", f"{results[0].id}:debit")
    ]
    assert await world.ledger_transactions() == 1


async def test_two_workers_never_drive_one_conversion_twice(pg_db: Database) -> None:
    world = await make_world(pg_db)
    pending = []
    for n in range(6):
        world.partners["fresh-mart"].fail_next("credit", Fault.LOSE_REQUEST)
        pending.append(await world.execute(await world.quote(1000), key=f"k{n}"))
    world.clock.advance(hours=1)
    driven = await asyncio.gather(*(RecoveryWorker(world.saga, batch=2).run_once() for _ in range(2)))
    assert sum(driven) == 6
    status_checks = [call for call in world.partners["fresh-mart"].calls if call[0] == "operation_status"]
    assert len(status_checks) == 6
    assert await world.ledger_transactions() == 6


@pytest.mark.parametrize("credited", [False, True], ids=["before the credit", "after the credit"])
async def test_a_crash_between_the_debit_and_the_credit_is_recovered_from_the_debit(
    world: World, credited: bool
) -> None:
    quote = await world.quote(1000)
    conversion, _ = await world.saga._record(
        ExecuteRequest(
            member_id="m1", quote_id=quote.id, idempotency_key="k", authority=DebitAuthority(asserted_by="happy-card")
        )
    )
    await world.partners["happy-card"].debit(conversion.debit_operation, "alice", conversion.points_in)
    if credited:
        await world.partners["fresh-mart"].credit(conversion.credit_operation, "alice", conversion.points_out)
    # The process died here: moving on to the credit is not recorded, so the row says DEBIT.
    async with world.db.transaction() as session:
        assert (await session.get(Conversion, conversion.id)).step == SagaStep.DEBIT  # type: ignore[union-attr]
    await world.recover_all()
    async with world.db.transaction() as session:
        finished = await session.get(Conversion, conversion.id)
    assert finished is not None and finished.status == ConversionStatus.COMPLETED
    assert world.partners["happy-card"].balances["alice"] == 99_000
    assert world.partners["fresh-mart"].balances["alice"] == 102_450  # the credit sent again applied once
    assert await world.ledger_transactions() == 1


async def test_a_quote_is_executed_only_by_its_member_linked_at_both_programs(world: World) -> None:
    quote = await world.quote(1000)
    with pytest.raises(QuoteNotFound):
        await world.execute(quote, member="m2")
    async with world.db.transaction() as session:
        await session.exec(text("DELETE FROM linked_account WHERE member_id = 'm1' AND program_id = 'fresh-mart'"))
    with pytest.raises(AccountNotLinked) as caught:
        await world.execute(quote)
    assert caught.value.field == "quoteId"
    assert await world.used() == {} and await world.ledger_transactions() == 0


async def test_a_quote_without_its_limit_counters_must_be_asked_for_again(world: World) -> None:
    quote = await world.quote(1000)
    async with world.db.transaction() as session:  # as quotes made before they were recorded
        await session.exec(text(f"UPDATE quote SET usages = NULL WHERE id = '{quote.id}'"))
    with pytest.raises(QuoteExpired, match="ask for a new one"):
        await world.execute(quote)


# -- the coalition point as a saga's source or target: the lots agree with the ledger -------


async def point_in_flight(world: World) -> int:
    """The coalition lots' points moved by conversions the ledger has not posted yet; the lots
    must otherwise agree with the ledger (and each lot add up)."""
    async with world.db.transaction() as session:
        checked = await check_point(session, await point_rules(session))
    assert checked.problem is None, checked.problem
    return checked.in_flight


async def earn_coalition_points(world: World) -> Conversion:
    """m1 (alice at every partner) converts 1000 happy-card points into coalition points, and
    the process dies after the point credited them (the row still says DEBIT)."""
    async with world.db.transaction() as session:
        await link_coalition_accounts(session, T0, member_id="m1")
    quote = await world.quote(1000, target=POINT)
    authority = DebitAuthority(asserted_by="happy-card")
    conversion, _ = await world.saga._record(
        ExecuteRequest(member_id="m1", quote_id=quote.id, idempotency_key="earn", authority=authority)
    )
    await world.partners["happy-card"].debit(conversion.debit_operation, "alice", conversion.points_in)
    await world.point.credit(conversion.credit_operation, "m1", conversion.points_out)
    assert await point_in_flight(world) == conversion.points_out
    await world.recover_all()
    earned = await world.saga.reload(conversion.id)
    assert (earned.status, await point_in_flight(world)) == (ConversionStatus.COMPLETED, 0)
    assert (await world.point.account("m1")).balance == conversion.points_out, "credited once"
    return earned


@pytest.mark.postgres_only
@pytest.mark.parametrize("committed", [False, True], ids=["cut-before-commit", "answer-lost-after-commit"])
async def test_coalition_points_whose_credit_loses_the_database_are_credited_and_posted_once(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch, committed: bool
) -> None:
    """A conversion into the point whose credit loses the database, before the lots' unit of
    work commits or after: the request fails for want of its database, and recovery asks the
    point's book, credits the member once (sending the credit again if it never landed) and
    posts once; the lots agree with the ledger, and the key returns the conversion COMPLETED."""
    world = await make_world(pg_db)
    async with world.db.transaction() as session:
        await link_coalition_accounts(session, T0, member_id="m1")
    quote = await world.quote(1000, target=POINT)
    cut_next_point_write(monkeypatch, world.point, world.db, committed=committed)
    with pytest.raises(DatabaseUnavailable):
        await world.execute(quote, key="earn")
    pending = await world.execute(quote, key="earn")  # the client asks again: the same conversion
    assert pending.status == ConversionStatus.PENDING
    assert await point_in_flight(world) == (pending.points_out if committed else 0)

    await world.recover_all()
    earned = await world.saga.reload(pending.id)
    assert earned.status == ConversionStatus.COMPLETED
    assert (await world.point.account("m1")).balance == earned.points_out, "credited once"
    assert world.partners["happy-card"].balances["alice"] == 100_000 - earned.points_in, "debited once"
    assert await point_in_flight(world) == 0
    assert await world.ledger_transactions() == 1
    assert (await world.execute(quote, key="earn")).status == ConversionStatus.COMPLETED


@pytest.mark.parametrize("fault", ["refused", "never-confirmed"])
async def test_coalition_points_whose_credit_fails_at_the_target_come_back_into_their_lots(
    world: World, fault: str
) -> None:
    earned = await earn_coalition_points(world)
    used = await world.used()
    if fault == "refused":
        del world.partners["fresh-mart"].balances["alice"]  # unknown member at the target
    else:
        world.partners["fresh-mart"].fail_next("credit", *[Fault.LOSE_REQUEST] * 10)
    quote = await world.quote(earned.points_out, source=POINT, target="fresh-mart")
    authority = DebitAuthority(asserted_by="happy-card", exchange_held=frozenset({POINT}), spends_exchange_held=True)
    conversion = await world.saga.execute(
        ExecuteRequest(member_id="m1", quote_id=quote.id, idempotency_key="spend", authority=authority)
    )
    for _ in range(5):
        if conversion.status != ConversionStatus.PENDING:
            break
        assert await point_in_flight(world) == -conversion.points_in, "debited at the point, not yet posted"
        await world.recover_all()
        conversion = await world.saga.reload(conversion.id)
    assert conversion.status == ConversionStatus.REVERSED
    assert (await world.point.account("m1")).balance == earned.points_out, "put back once"
    assert await point_in_flight(world) == 0
    assert world.partners["fresh-mart"].balances.get("alice", 100_000) == 100_000
    assert await world.ledger_transactions() == 1, "only the earning is posted"
    assert await world.used() == used, "the spending's limits are given back"


async def test_a_callback_that_overtakes_the_partners_pending_answer_is_asked_again_and_the_poll_makes_up_for_it(
    world: World,
) -> None:
    """The partner answers the credit "accepted, pending", settles it at once, and its callback
    reaches the exchange before that answer does: the row does not wait yet (it is still at the
    step the credit is sent from), so the word is refused as not waiting yet and changes
    nothing; the first poll completes it."""
    fresh_mart = world.partners["fresh-mart"]
    refusals: list[NotWaitingYet] = []

    async def credit_then_call_back(operation_id: str, member_ref: str, points: int) -> Operation:
        settled = await FakePartner.credit(fresh_mart, operation_id, member_ref, points)
        conversion_id = operation_id.rpartition(":")[0]
        with pytest.raises(NotWaitingYet) as refused:
            await world.saga.conclude(
                conversion_id,
                SagaStep.AWAIT_CREDIT,
                lambda _: ConversionSaga.credit_outcome(settled.status),
                sent_from=(SagaStep.DEBIT, SagaStep.CREDIT),
            )
        refusals.append(refused.value)
        return settled.model_copy(update={"status": OperationState.PENDING, "balance_after": None})

    fresh_mart.credit = credit_then_call_back  # type: ignore[method-assign]
    conversion = await world.execute(await world.quote(1000))
    assert len(refusals) == 1
    assert (conversion.status, conversion.step) == (ConversionStatus.PENDING, SagaStep.AWAIT_CREDIT)
    assert await world.ledger_transactions() == 0
    await world.recover_all()
    finished = await world.saga.reload(conversion.id)
    assert finished.status == ConversionStatus.COMPLETED
    assert world.partners["happy-card"].balances["alice"] == 99_000
    assert fresh_mart.balances["alice"] == 102_450, "credited once"
    assert await world.ledger_transactions() == 1


async def test_a_partner_that_never_answers_the_status_poll_shows_waiting_since_the_wait_began(world: World) -> None:
    """The target accepts the credit pending, then every poll of its status is lost: the
    conversion waits, nothing posted, and staff see it waiting and failing since it began to
    wait (``updatedAt``: its status or step last changed), not since the latest lost poll."""
    target = world.partners["fresh-mart"]
    target.fail_next("credit", Fault.ACCEPT_PENDING)
    target.fail_next("operation_status", *[Fault.LOSE_REQUEST] * 4)
    conversion = await world.execute(await world.quote(1000))
    assert conversion.step == SagaStep.AWAIT_CREDIT
    began = conversion.updated_at
    for _ in range(4):
        await world.recover_all()  # an hour on, the poll is lost
    waiting = await world.saga.reload(conversion.id)
    assert (waiting.status, waiting.step, waiting.attempts) == (ConversionStatus.PENDING, SagaStep.AWAIT_CREDIT, 4)
    assert "timed out" in (waiting.last_error or "")
    assert waiting.updated_at == began
    [row] = (await RetryingOperations(world.db, world.clock).listed()).items
    assert (row.id, row.since, row.age) == (conversion.id, began, world.clock.now() - began)
    assert await world.ledger_transactions() == 0

    target.settle(conversion.credit_operation)  # the partner's word comes at last
    await world.recover_all()
    assert (await world.saga.reload(conversion.id)).status == ConversionStatus.COMPLETED
    assert await world.ledger_transactions() == 1
