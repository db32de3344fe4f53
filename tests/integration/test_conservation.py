"""Property: over any sequence of quotes, conversions and reversals, no point and no minor
unit is created or lost — the ledger agrees with an independent tally of what happened."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from exchange.clock import Clock
from exchange.conversions.clearing import conversion_transaction
from exchange.db.database import Database
from exchange.errors import BadUserInput
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import verify_ledger
from exchange.loading import load_directory
from exchange.pricing import limits, quotes, rates
from exchange.pricing.errors import LimitExceeded
from exchange.pricing.models import Quote
from exchange.programs import service as programs
from exchange.programs.declarations import read_partners_directory
from exchange.testing.clock import FrozenClock
from exchange.testing.databases import PostgresDatabases, SqliteDatabases
from tests.conftest import SAMPLE_PARTNERS

PROGRAMS = ["wallet-pay", "happy-card", "fresh-mart", "harbor-bank", "tune-stream", "formosa-air"]
TAIPEI = ZoneInfo("Asia/Taipei")
CHART = ChartOfAccounts("TWD")
POLICY = quotes.QuotePolicy(ttl=timedelta(seconds=60), timezone=TAIPEI)

# Every example is valid by construction: a program is never converted into itself, the
# amount is a whole number of the pair's minimum in its increment, and the first operation is a
# conversion, which a fresh database always accepts (no single one reaches a cap). Later ones
# may still be refused by caps they add up to; that path is part of the property.
convert = st.tuples(
    st.just("convert"),
    st.integers(0, 2),  # member
    st.sampled_from([(source, target) for source in PROGRAMS for target in PROGRAMS if source != target]),
    st.integers(1, 40),  # how many of the source's minimum amounts
    st.integers(0, 4),  # member's coalition level
)
reverse = st.tuples(st.just("reverse"), st.integers(0, 30))
operations = st.tuples(convert, st.lists(st.one_of(convert, convert, reverse), max_size=19)).map(
    lambda first_and_rest: [first_and_rest[0], *first_and_rest[1]]
)


@dataclass
class Executed:
    quote: Quote
    usages: list[limits.Usage]
    reversed: bool = False


async def execute(db: Database, ledger: Ledger, clock: Clock, operation: tuple[Any, ...]) -> Executed | None:
    _, member, (source, target), multiple, level = operation
    now = clock.now()
    try:
        async with db.transaction() as session:
            program = await programs.get_program(session, source)
            version = await rates.version_at(session, source, target, now) if source != target else None
            minimum = max(program.minimum_points, (version.minimum_points or 0) if version else 0)
            step = version.increment if version and version.increment else program.increment
            points = -(-minimum // step) * step * multiple
            quote = await quotes.create_quote(
                session,
                quotes.QuoteRequest(
                    member_id=f"m{member}", member_level=level, source=source, target=target, points=points
                ),
                policy=POLICY,
                now=now,
            )
            usages = limits.conversion_usages(
                member_id=quote.member_id,
                source=program,
                target=await programs.get_program(session, target),
                version=await rates.version_at(session, source, target, now),
                points_in=quote.points_in,
                points_out=quote.points_out,
                at=now,
                timezone=TAIPEI,
            )
            await limits.reserve(session, usages)
            await ledger.post(
                session,
                conversion_transaction(
                    chart=CHART,
                    transaction_id=f"conversion:{quote.id}",
                    conversion_id=quote.id,
                    source=source,
                    target=target,
                    points_in=quote.points_in,
                    points_out=quote.points_out,
                    money_value_minor=quote.money_value_minor,
                    fee_minor=quote.fee_minor,
                    effective_at=now,
                ),
            )
    except (BadUserInput, LimitExceeded):
        return None  # refused: the unit of work rolled back, nothing may have changed
    return Executed(quote, usages)


async def run_sequence(url: str, steps: list[tuple[Any, ...]]) -> None:
    db = Database.from_url(url)
    clock = FrozenClock(datetime(2026, 11, 20, 3, 0, tzinfo=UTC))
    ledger = Ledger(timezone=TAIPEI, clock=clock)
    try:
        async with db.transaction() as session:
            await load_directory(session, read_partners_directory(SAMPLE_PARTNERS), clock.now())
        executed: list[Executed] = []
        for step in steps:
            clock.advance(hours=5)
            if step[0] == "convert":
                if (done := await execute(db, ledger, clock, step)) is not None:
                    executed.append(done)
            elif executed:
                target = executed[step[1] % len(executed)]
                if not target.reversed:
                    async with db.transaction() as session:
                        await ledger.reverse(
                            session,
                            f"conversion:{target.quote.id}",
                            transaction_id=f"reversal:{target.quote.id}",
                            effective_at=clock.now(),
                        )
                        await limits.release(session, target.usages)
                    target.reversed = True
        event(f"{len(executed)} executed, {sum(done.reversed for done in executed)} reversed")
        assert executed, f"no conversion of {steps} was posted: the example tested nothing"
        await assert_ledger_agrees(db, [done for done in executed if not done.reversed])
    finally:
        await db.dispose()


async def assert_ledger_agrees(db: Database, standing: list[Executed]) -> None:
    expected: Counter[str] = Counter()
    usage: Counter[str] = Counter()
    for done in standing:
        quote = done.quote
        expected[CHART.member_points(quote.from_program).code] -= quote.points_in
        expected[CHART.redeemed(quote.from_program).code] += quote.points_in
        expected[CHART.issued(quote.to_program).code] -= quote.points_out
        expected[CHART.member_points(quote.to_program).code] += quote.points_out
        expected[CHART.clearing(quote.from_program).code] -= quote.money_value_minor
        expected[CHART.clearing(quote.to_program).code] += quote.money_value_minor - quote.fee_minor
        expected[CHART.fees().code] += quote.fee_minor
        for item in done.usages:
            usage[item.key] += item.amount
    async with db.transaction() as session:
        verification = await verify_ledger(session)
        balances = dict(
            tuple(row) for row in await session.exec(text("SELECT code, balance FROM ledger_account_balance"))
        )
        per_unit = dict(
            tuple(row)
            for row in await session.exec(text("SELECT unit, sum(balance) FROM ledger_account_balance GROUP BY unit"))
        )
        used = dict(tuple(row) for row in await session.exec(text("SELECT key, used FROM limit_usage")))
    assert verification.ok, verification.problem
    assert {code: balance for code, balance in balances.items() if balance} == {
        code: amount for code, amount in expected.items() if amount
    }
    assert set(per_unit.values()) <= {0}
    assert {key: amount for key, amount in used.items() if amount} == {key: n for key, n in usage.items() if n}


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(steps=operations)
def test_no_point_or_minor_unit_is_created_or_lost_on_sqlite(
    sqlite_databases: SqliteDatabases, steps: list[tuple[Any, ...]]
) -> None:
    url = sqlite_databases.create()
    try:
        asyncio.run(run_sequence(url, steps))
    finally:
        sqlite_databases.drop(url)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(steps=operations)
def test_no_point_or_minor_unit_is_created_or_lost_on_postgresql(
    postgres_databases: PostgresDatabases, steps: list[tuple[Any, ...]]
) -> None:
    url = postgres_databases.create()
    try:
        asyncio.run(run_sequence(url, steps))
    finally:
        postgres_databases.drop(url)
