"""The coalition point's lots, through its internal connector, against a real database: no point
is created or lost across earns, spends, expiries and reversals; expiry falls exactly on the
lots' boundaries in the point's time zone; the expiry job is idempotent; verify catches a lot
changed by hand."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import col, select

from exchange.coalition import lots
from exchange.coalition.connector import CoalitionConnector
from exchange.coalition.errors import CoalitionRefusal
from exchange.coalition.expiry import expire_batch
from exchange.coalition.models import CoalitionLot
from exchange.coalition.rules import PointRules, expiry_of, point_rules
from exchange.coalition.verify import LOT_THAT_DOES_NOT_ADD_UP, check_point
from exchange.connectors.errors import InsufficientPoints, OperationConflict, OperationVoided
from exchange.conversions.clearing import conversion_transaction
from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import verify_ledger
from exchange.loading import load_directory
from exchange.members.service import link_coalition_accounts
from exchange.programs.catalog import CatalogCache
from exchange.programs.declarations import read_partners_directory
from exchange.services.coalition import CoalitionService
from exchange.testing.clock import FrozenClock
from exchange.testing.databases import PostgresDatabases, SqliteDatabases
from tests.conftest import SAMPLE_PARTNERS
from tests.factories import member_with_accounts
from tests.outages import KilledPosting

TAIPEI = ZoneInfo("Asia/Taipei")
CHART = ChartOfAccounts("TWD")
POINT = "coalition"
#: Late on 31 December in Taipei: a lot earned now expires at the start of 2028 there.
START = datetime(2026, 12, 31, 15, 0, tzinfo=UTC)


async def funded_by_fresh_mart(session: Any, saga_id: str) -> str | None:
    return "fresh-mart"


@dataclass
class Point:
    """A loaded coalition on a fresh database, its connector and a clock the test moves."""

    db: Database
    clock: FrozenClock
    connector: CoalitionConnector
    ledger: Ledger
    members: list[str] = field(default_factory=list)

    async def rules(self) -> PointRules:
        async with self.db.transaction() as session:
            return await point_rules(session)

    async def post(self, saga: str, source: str, target: str, points: int) -> None:
        """The clearing transaction a completed conversion of ``points`` posts (1 point = 1 TWD
        at the point; the partner's side is left at the same figures, enough for the ledger)."""
        async with self.db.transaction() as session:
            await self.ledger.post(
                session,
                conversion_transaction(
                    chart=CHART,
                    transaction_id=f"conversion:{saga}",
                    conversion_id=saga,
                    source=source,
                    target=target,
                    points_in=points,
                    points_out=points,
                    money_value_minor=points * 100,
                    fee_minor=0,
                    effective_at=self.clock.now(),
                ),
            )

    async def check(self) -> Any:
        async with self.db.transaction() as session:
            verification = await verify_ledger(session)
            checked = await check_point(session, await point_rules(session))
        assert verification.ok, verification.problem
        return checked

    async def lots(self, member: str) -> list[tuple[int, int, int]]:
        async with self.db.transaction() as session:
            rows = await session.exec(
                text("SELECT id, remaining, expired FROM coalition_lot WHERE member_id = :m ORDER BY id"),
                params={"m": member},
            )
            return [tuple(row) for row in rows]  # type: ignore[misc]


async def open_point(url: str, members: int = 2) -> Point:
    db = Database.from_url(url)
    clock = FrozenClock(START)
    async with db.transaction() as session:
        await load_directory(session, read_partners_directory(SAMPLE_PARTNERS), clock.now())
    point = Point(
        db,
        clock,
        CoalitionConnector(POINT, db, clock, funded_by_fresh_mart, CatalogCache(db, ttl=0)),
        Ledger(timezone=TAIPEI, clock=clock),
    )
    for _ in range(members):
        member = await member_with_accounts(db, {}, clock.now())
        point.members.append(member)
    async with db.transaction() as session:
        await link_coalition_accounts(session, clock.now())
    return point


# -- the property -------------------------------------------------------------------------

earn = st.tuples(st.just("earn"), st.integers(0, 1), st.integers(1, 500), st.booleans())
spend = st.tuples(st.just("spend"), st.integers(0, 1), st.integers(1, 700), st.booleans())
undo = st.tuples(st.just("undo"), st.integers(0, 40), st.integers(0, 1))
wait = st.tuples(st.just("wait"), st.integers(1, 500))
replay = st.tuples(st.just("replay"), st.integers(0, 40))
steps = st.lists(st.one_of(earn, earn, spend, spend, undo, wait, replay), min_size=3, max_size=24)


@dataclass
class Tally:
    """What the test itself counts: points credited and debited for good, and each write done."""

    credited: int = 0
    debited: int = 0
    writes: list[tuple[str, str, str, int]] = field(default_factory=list)  # (kind, saga, member, points)
    undone: set[str] = field(default_factory=set)
    parted: set[str] = field(default_factory=set)
    """Sagas whose part reversal is counted: asked again (the rest was refused before), the
    point answers the first one again under its key, and that is no new reversal."""
    in_flight: int = 0


async def run_steps(url: str, script: list[tuple[Any, ...]]) -> str:
    """Run ``script``; what it did, for hypothesis's statistics."""
    point = await open_point(url)
    tally = Tally()
    connector = point.connector
    try:
        for step in script:
            point.clock.advance(hours=7)
            kind = step[0]
            if kind in ("earn", "spend"):
                _, who, points, completes = step
                member, saga = point.members[who], uuid.uuid4().hex
                try:
                    if kind == "earn":
                        await connector.credit(f"{saga}:credit", member, points)
                    else:
                        await connector.debit(f"{saga}:debit", member, points)
                except InsufficientPoints:
                    continue
                tally.writes.append((kind, saga, member, points))
                if completes:  # the saga completed: posted
                    await point.post(saga, "fresh-mart", POINT, points) if kind == "earn" else await point.post(
                        saga, POINT, "fresh-mart", points
                    )
                    tally.credited += points if kind == "earn" else 0
                    tally.debited += points if kind == "spend" else 0
                else:  # still in flight: applied to the lots, not posted
                    tally.in_flight += points if kind == "earn" else -points
            elif kind == "undo" and tally.writes:
                # The saga failed after its write: reverse it (a debit wholly, or a part first).
                write_kind, saga, member, points = tally.writes[step[1] % len(tally.writes)]
                async with point.db.transaction() as session:
                    posted = (
                        await session.exec(
                            text("SELECT count(*) FROM ledger_transaction WHERE id = :id"),
                            params={"id": f"conversion:{saga}"},
                        )
                    ).scalar_one()  # type: ignore[call-overload]
                if posted or saga in tally.undone:
                    continue
                write_id = f"{saga}:{'credit' if write_kind == 'earn' else 'debit'}"
                sign = 1 if write_kind == "earn" else -1
                try:
                    if step[2] and points > 1:
                        part = await connector.reverse(f"{saga}:undo-part", write_id, points // 2)
                        if saga not in tally.parted:
                            tally.in_flight -= sign * int(part.points or 0)
                            tally.parted.add(saga)
                    rest = await connector.reverse(f"{saga}:undo", write_id)
                except InsufficientPoints:
                    continue  # a credit already spent stays: it is still in flight
                tally.in_flight -= sign * int(rest.points or 0)
                tally.undone.add(saga)
            elif kind == "wait":
                point.clock.advance(days=step[1])
                async with point.db.transaction() as session:
                    await expire_batch(session, await point.rules(), point.ledger, now=point.clock.now(), limit=3)
            elif kind == "replay" and tally.writes:
                write_kind, saga, member, points = tally.writes[step[1] % len(tally.writes)]
                write = connector.credit if write_kind == "earn" else connector.debit
                try:
                    again = await write(f"{saga}:{'credit' if write_kind == 'earn' else 'debit'}", member, points)
                except OperationVoided:
                    continue
                assert again.points == points
            checked = await point.check()
            assert checked.problem is None, checked.problem
        async with point.db.transaction() as session:
            expired = (await session.exec(text("SELECT coalesce(sum(expired), 0) FROM coalition_lot"))).scalar_one()  # type: ignore[call-overload]
            balances = [
                row[0]
                for row in await session.exec(
                    text("SELECT coalesce(sum(remaining), 0) FROM coalition_lot GROUP BY member_id")
                )
            ]
        checked = await point.check()
        assert checked.problem is None, checked.problem
        assert checked.outstanding == tally.credited - tally.debited - expired + tally.in_flight
        assert checked.in_flight == tally.in_flight
        assert all(balance >= 0 for balance in balances)
        return f"{len(tally.writes)} writes, {len(tally.undone)} undone, expired {'some' if expired else 'none'}"
    finally:
        await point.db.dispose()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(script=steps)
# A member's credit, partly reversed, then spent, so the rest cannot be: asked to undo it again,
# the point answers the part reversal again under its key, and nothing more leaves the flight.
@example(
    script=[
        ("earn", 0, 1, False),
        ("earn", 1, 242, False),
        ("spend", 1, 1, False),
        ("undo", 1, 1),
        ("undo", 1, 1),
    ]
)
def test_no_coalition_point_is_created_or_lost_on_sqlite(
    sqlite_databases: SqliteDatabases, script: list[tuple[Any, ...]]
) -> None:
    url = sqlite_databases.create()
    try:
        event(asyncio.run(run_steps(url, script)))
    finally:
        sqlite_databases.drop(url)


def test_no_coalition_point_is_created_or_lost_on_postgresql(postgres_databases: PostgresDatabases) -> None:
    script = [
        ("earn", 0, 400, True),
        ("earn", 0, 300, False),
        ("spend", 0, 500, True),
        ("spend", 1, 10, True),
        ("earn", 1, 50, True),
        ("spend", 1, 40, False),
        ("undo", 5, 1),
        ("undo", 1, 0),
        ("replay", 0),
        ("wait", 400),
        ("replay", 2),
        ("wait", 400),
        ("earn", 0, 25, True),
    ]
    url = postgres_databases.create()
    try:
        asyncio.run(run_steps(url, script))
    finally:
        postgres_databases.drop(url)


# -- lots, expiry boundaries, the job, verify ----------------------------------------------


def test_a_lot_expires_at_the_first_instant_of_the_year_after_next_in_the_point_zone() -> None:
    last_moment_of_2026 = datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=TAIPEI)
    first_moment_of_2027 = datetime(2027, 1, 1, 0, 0, tzinfo=TAIPEI)
    assert expiry_of(last_moment_of_2026, TAIPEI) == datetime(2028, 1, 1, tzinfo=TAIPEI)
    assert expiry_of(first_moment_of_2027, TAIPEI) == datetime(2029, 1, 1, tzinfo=TAIPEI)
    # 16:00 UTC on 31 December is already 1 January in Taipei.
    assert expiry_of(datetime(2026, 12, 31, 16, 0, tzinfo=UTC), TAIPEI) == datetime(2029, 1, 1, tzinfo=TAIPEI)
    assert expiry_of(datetime(2026, 12, 31, 15, 59, 59, 999999, tzinfo=UTC), TAIPEI) == datetime(
        2028, 1, 1, tzinfo=TAIPEI
    )


@pytest.fixture
async def point(database_url: str) -> Any:
    opened = await open_point(database_url, members=1)
    try:
        yield opened
    finally:
        await opened.db.dispose()


async def test_points_are_spendable_to_the_last_instant_of_the_lot_and_expire_exactly_at_its_end(point: Point) -> None:
    [member] = point.members
    point.clock.current = datetime(2026, 12, 31, 23, 59, 59, 999000, tzinfo=TAIPEI).astimezone(UTC)
    await point.connector.credit("earned-2026:credit", member, 100)
    point.clock.current = datetime(2027, 1, 1, 0, 0, tzinfo=TAIPEI).astimezone(UTC)
    await point.connector.credit("earned-2027:credit", member, 40)
    await point.post("earned-2026", "fresh-mart", POINT, 100)
    await point.post("earned-2027", "fresh-mart", POINT, 40)
    service = CoalitionService(point.db, point.ledger, point.clock)

    last_instant = datetime(2027, 12, 31, 23, 59, 59, 999999, tzinfo=TAIPEI)
    point.clock.current = last_instant.astimezone(UTC)
    assert (await service.expire()).points == 0
    account = await point.connector.account(member)
    assert account.balance == 140
    assert [(lot.points, lot.expires_on.isoformat()) for lot in account.expiring] == [
        (100, "2027-12-31"),
        (40, "2028-12-31"),
    ]

    point.clock.current = datetime(2028, 1, 1, 0, 0, tzinfo=TAIPEI).astimezone(UTC)
    assert (await point.connector.account(member)).balance == 40  # expired, though the job has not run
    with pytest.raises(InsufficientPoints):
        await point.connector.debit("too-much:debit", member, 41)
    report = await service.expire()
    assert (report.lots, report.points, report.transactions) == (1, 100, 1)
    again = await service.expire()
    assert (again.lots, again.points, again.transactions) == (0, 0, 0)
    checked = await point.check()
    assert checked.problem is None and checked.outstanding == 40
    async with point.db.transaction() as session:
        balances = dict(
            tuple(row)  # type: ignore[misc]
            for row in await session.exec(text("SELECT code, balance FROM ledger_account_balance WHERE balance <> 0"))
        )
    # The operator keeps breakage: the value of 100 points leaves the point's float for it.
    assert balances["points-expired:coalition"] == 100
    assert balances["coalition-breakage"] == 100_00
    assert balances["partner-clearing:coalition"] == 140_00 - 100_00


async def test_an_expiry_job_killed_between_its_batches_expires_the_rest_once_on_its_next_pass(
    pg_database_url: str,
) -> None:
    """The only test that breaks the expiry job midway (its second batch's connection killed by
    ``pg_terminate_backend`` while it posts): the first batch stands, the second changed
    nothing, and the next pass expires the rest once, the lots agreeing with the ledger."""
    point = await open_point(pg_database_url, members=1)
    try:
        [member] = point.members
        for n, points in enumerate((10, 20, 30)):
            await point.connector.credit(f"earn-{n}:credit", member, points)
            await point.post(f"earn-{n}", "fresh-mart", POINT, points)
        point.clock.current = datetime(2028, 1, 1, tzinfo=TAIPEI).astimezone(UTC)
        ledger = KilledPosting(point.db, point.clock, TAIPEI, kills=1, after=1)
        service = CoalitionService(point.db, ledger, point.clock, batch=1)
        with pytest.raises(DatabaseUnavailable):
            await service.expire()
        assert [(remaining, expired) for _, remaining, expired in await point.lots(member)] == [
            (0, 10),
            (20, 0),
            (30, 0),
        ]
        report = await service.expire()  # the job's next pass
        assert (report.lots, report.points, report.transactions) == (2, 50, 2)
        assert (await service.expire()).lots == 0
        checked = await point.check()
        assert checked.problem is None and checked.outstanding == 0
        async with point.db.transaction() as session:
            expired = (
                await session.exec(
                    text("SELECT balance FROM ledger_account_balance WHERE code = 'points-expired:coalition'")
                )  # type: ignore[call-overload]
            ).scalar_one()
        assert expired == 60
    finally:
        await point.db.dispose()


async def test_spending_takes_the_soonest_to_expire_first_and_a_reversal_puts_back_exactly_that(
    point: Point,
) -> None:
    [member] = point.members
    await point.connector.credit("a:credit", member, 30)  # expires 2028
    point.clock.advance(days=2)  # now 2027 in Taipei
    await point.connector.credit("b:credit", member, 50)  # expires 2029
    point.clock.advance(days=1)
    await point.connector.credit("c:credit", member, 20)  # expires 2029, a later id
    before = await point.lots(member)
    debit = await point.connector.debit("spend:debit", member, 70)
    assert debit.points == 70
    spent = await point.lots(member)
    assert [remaining for _, remaining, _ in spent] == [0, 10, 20]
    reversal = await point.connector.reverse("spend:reverse-debit", "spend:debit")
    assert reversal.target is not None and reversal.target.status == "reversed"
    assert await point.lots(member) == before
    with pytest.raises(OperationConflict):
        await point.connector.debit("spend:debit", member, 71)


async def test_a_reversal_of_no_points_or_fewer_is_refused_and_changes_nothing(point: Point) -> None:
    """The lots' own rule, not only the connector's: a negative part reversed would have put
    back points the debit never took."""
    [member] = point.members
    await point.connector.credit("earn:credit", member, 100)
    await point.connector.debit("spend:debit", member, 30)
    spent = await point.lots(member)
    rules = await point.rules()
    for points in (0, -5):
        with pytest.raises(CoalitionRefusal) as refused:
            async with point.db.transaction() as session:
                await lots.reverse(
                    session, rules, operation_id="undo", reverses="spend:debit", points=points, now=point.clock.now()
                )
        assert refused.value.reason == "INVALID_REQUEST" and str(points) in refused.value.detail
    assert await point.lots(member) == spent


async def test_verify_names_a_lot_changed_by_hand(point: Point) -> None:
    [member] = point.members
    await point.connector.credit("earn:credit", member, 100)
    await point.post("earn", "fresh-mart", POINT, 100)
    await point.connector.debit("spend:debit", member, 30)
    await point.post("spend", POINT, "fresh-mart", 30)
    assert (await point.check()).problem is None
    async with point.db.transaction() as session:
        # Within what the lot's own CHECK allows (remaining + expired <= points): only verify sees it.
        await session.exec(text("UPDATE coalition_lot SET remaining = remaining + 20"))  # type: ignore[call-overload]
    problem = (await point.check()).problem
    assert problem is not None and "does not add up" in problem and "90 remaining" in problem


async def test_a_reversal_puts_back_into_lots_still_alive_and_renews_per_funder_what_expired_lots_gave(
    point: Point,
) -> None:
    """A debit took from two lots that expire at the start of 2028 (Wallet Pay's, then Fresh
    Mart's) and one good to the end of 2028. Reversed in two parts in January 2028, the last
    taken first: the live lot gets its points back with its own expiry; what each expired lot
    gave comes back in a lot of that lot's funder, opened by the reversal and good to the end
    of 2029; every lot adds up, and nothing is due to expire."""
    [member] = point.members
    earned_2026 = datetime(2026, 12, 31, 23, 0, tzinfo=TAIPEI).astimezone(UTC)
    earned_2027 = datetime(2027, 1, 2, tzinfo=TAIPEI).astimezone(UTC)
    rules = await point.rules()
    async with point.db.transaction() as session:
        for name, funder, points, at in (
            ("a", "wallet-pay", 10, earned_2026),
            ("b", "fresh-mart", 20, earned_2026),
            ("c", "fresh-mart", 30, earned_2027),
        ):
            await lots.credit(
                session,
                rules,
                operation_id=f"{name}:credit",
                member_ref=member,
                points=points,
                funded_by=funder,
                now=at,
            )
        await lots.debit(session, operation_id="spend:debit", member_ref=member, points=55, now=earned_2027)
    point.clock.current = datetime(2028, 1, 5, tzinfo=TAIPEI).astimezone(UTC)
    assert (await point.connector.reverse("spend:reverse-1", "spend:debit", 40)).points == 40
    assert (await point.connector.reverse("spend:reverse-2", "spend:debit")).points == 15

    async with point.db.transaction() as session:
        held = (await session.exec(select(CoalitionLot).order_by(col(CoalitionLot.id)))).all()
        rows = [(lot.opened_by, lot.funded_by, lot.points, lot.remaining, lot.expires_at) for lot in held]
        unbalanced = (await session.exec(LOT_THAT_DOES_NOT_ADD_UP)).first()  # type: ignore[call-overload]
    end_of_2027, end_of_2028, end_of_2029 = (datetime(year, 1, 1, tzinfo=TAIPEI) for year in (2028, 2029, 2030))
    assert rows == [
        ("a:credit", "wallet-pay", 10, 0, end_of_2027),
        ("b:credit", "fresh-mart", 20, 0, end_of_2027),
        ("c:credit", "fresh-mart", 30, 30, end_of_2028),
        ("spend:reverse-1#fresh-mart", "fresh-mart", 15, 15, end_of_2029),
        ("spend:reverse-2#fresh-mart", "fresh-mart", 5, 5, end_of_2029),
        ("spend:reverse-2#wallet-pay", "wallet-pay", 10, 10, end_of_2029),
    ]
    assert unbalanced is None
    assert (await point.connector.account(member)).balance == 60
    assert (await CoalitionService(point.db, point.ledger, point.clock).expire()).points == 0


@pytest.mark.parametrize("points", [30, None], ids=["a part", "the whole"])
async def test_one_reversal_asked_twice_at_once_puts_the_points_back_once_and_answers_both_alike(
    point: Point, points: int | None
) -> None:
    """Two copies of one reversal (a client's retry racing its first try) queue on the debit's
    lock; the second, let in once the first committed, answers with the first's reversal and
    puts nothing back again (it used to refund a part a second time, and refuse the whole as
    exceeding what was left)."""
    [member] = point.members
    await point.connector.credit("earn:credit", member, 100)
    await point.connector.debit("spend:debit", member, 70)
    first, second = await asyncio.gather(
        *(point.connector.reverse("spend:undo", "spend:debit", points) for _ in range(2))
    )
    assert first == second and first.points == (points or 70)
    assert (await point.connector.account(member)).balance == 30 + (points or 70)
    assert (await point.check()).problem is None
