"""The clearing ledger on SQLite and PostgreSQL: balanced, idempotent, append-only, chained."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from exchange.db.database import Database
from exchange.db.types import UTCDateTime
from exchange.errors import IdempotencyConflict
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.errors import (
    AlreadyReversed,
    InvalidPeriod,
    UnbalancedTransaction,
    UnknownTransaction,
)
from exchange.ledger.hashing import chain_digest, request_digest
from exchange.ledger.periods import SettlementCalendar, start_closing
from exchange.ledger.posting import Ledger, Leg, TransactionRequest
from exchange.ledger.verify import verify_ledger
from exchange.observability.metrics import REGISTRY
from exchange.testing.clock import FrozenClock
from tests.integration.tampering import tamper

CHART = ChartOfAccounts("TWD")
TAIPEI = ZoneInfo("Asia/Taipei")
NOON = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(timezone=TAIPEI, clock=FrozenClock(NOON))


def payment(
    transaction_id: str, amount: int = 1000, *, at: datetime = NOON, reference: str = "conversion:c1"
) -> TransactionRequest:
    """wallet-pay owes fresh-mart ``amount`` cents; the exchange keeps 2%."""
    fee = amount // 50
    return TransactionRequest(
        id=transaction_id,
        kind="conversion",
        reference=reference,
        effective_at=at,
        legs=(
            Leg(CHART.clearing("wallet-pay"), -amount),
            Leg(CHART.clearing("fresh-mart"), amount - fee),
            Leg(CHART.fees(), fee),
        ),
    )


async def balances(db: Database) -> dict[str, int]:
    async with db.transaction() as session:
        rows = await session.exec(text("SELECT code, balance FROM ledger_account_balance"))
        return dict(rows.all())


async def test_posting_moves_balances_and_assigns_the_period(db: Database, ledger: Ledger) -> None:
    late_evening = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # 1 December, 01:00 in Taipei
    async with db.transaction() as session:
        first = await ledger.post(session, payment("t1"))
        second = await ledger.post(session, payment("t2", 5000, at=late_evening))
    assert (first.seq, second.seq) == (1, 2)
    assert (first.period, second.period) == ("2026-11", "2026-12")
    assert not first.replayed
    assert await balances(db) == {
        "partner-clearing:wallet-pay": -6000,
        "partner-clearing:fresh-mart": 5880,
        "exchange-fees": 120,
    }


class Abandoned(Exception):
    """Raised to roll a unit of work back after its posting."""


async def test_a_posting_rolled_back_is_not_counted_nor_are_its_new_accounts_remembered(
    db: Database, ledger: Ledger
) -> None:
    def counted() -> float:
        return REGISTRY.get_sample_value("exchange_ledger_postings_total", {"kind": "conversion"}) or 0.0

    before = counted()
    with pytest.raises(Abandoned):
        async with db.transaction() as session:
            await ledger.post(session, payment("t1"))  # opens the three accounts
            raise Abandoned
    assert counted() == before and await balances(db) == {}
    async with db.transaction() as session:  # the accounts are opened again, not taken from memory
        await ledger.post(session, payment("t1"))
    assert counted() == before + 1
    assert await balances(db) == {
        "partner-clearing:wallet-pay": -1000,
        "partner-clearing:fresh-mart": 980,
        "exchange-fees": 20,
    }


async def test_a_repeat_with_the_same_content_returns_the_first_result(db: Database, ledger: Ledger) -> None:
    async with db.transaction() as session:
        first = await ledger.post(session, payment("t1"))
    async with db.transaction() as session:
        again = await ledger.post(session, payment("t1"))
    assert again.replayed and (again.seq, again.hash) == (first.seq, first.hash)
    assert (await balances(db))["exchange-fees"] == 20


async def test_the_same_id_with_other_content_is_a_conflict(db: Database, ledger: Ledger) -> None:
    async with db.transaction() as session:
        await ledger.post(session, payment("t1"))
    with pytest.raises(IdempotencyConflict) as caught:
        async with db.transaction() as session:
            await ledger.post(session, payment("t1", 2000))
    assert caught.value.extensions()["code"] == "IDEMPOTENCY_CONFLICT"
    assert (await balances(db))["exchange-fees"] == 20


@pytest.mark.parametrize(
    ("legs", "field"),
    [
        ((Leg(CHART.clearing("a"), -100), Leg(CHART.clearing("b"), 99)), "legs"),
        ((Leg(CHART.clearing("a"), -100),), "legs"),
        ((Leg(CHART.clearing("a"), 0), Leg(CHART.clearing("b"), 0)), "legs[0].amount"),
        # Balanced in count but not per unit: points cannot pay for money.
        ((Leg(CHART.member_points("a"), -100), Leg(CHART.clearing("b"), 100)), "legs"),
        # Two debtors and two creditors in money: nothing says who owes whom.
        (
            (
                Leg(CHART.clearing("a"), -60),
                Leg(CHART.clearing("b"), -40),
                Leg(CHART.clearing("c"), 50),
                Leg(CHART.fees(), 50),
            ),
            "legs",
        ),
    ],
)
async def test_malformed_transactions_are_refused_and_change_nothing(
    db: Database, ledger: Ledger, legs: tuple[Leg, ...], field: str
) -> None:
    with pytest.raises(UnbalancedTransaction) as caught:
        async with db.transaction() as session:
            await ledger.post(session, TransactionRequest("bad", "adjustment", "x", NOON, legs))
    assert caught.value.field == field
    assert await balances(db) == {}


async def test_reversal_negates_once(db: Database, ledger: Ledger) -> None:
    async with db.transaction() as session:
        await ledger.post(session, payment("t1"))
        reversal = await ledger.reverse(session, "t1", transaction_id="t1-reversal", effective_at=NOON)
    assert reversal.seq == 2
    assert set((await balances(db)).values()) == {0}
    with pytest.raises(AlreadyReversed):
        async with db.transaction() as session:
            await ledger.reverse(session, "t1", transaction_id="t1-again", effective_at=NOON)
    with pytest.raises(UnknownTransaction):
        async with db.transaction() as session:
            await ledger.reverse(session, "nope", transaction_id="r", effective_at=NOON)


async def test_a_batch_holding_two_reversals_of_one_transaction_is_refused(db: Database, ledger: Ledger) -> None:
    async with db.transaction() as session:
        await ledger.post(session, payment("t1"))
    negated = tuple(Leg(leg.account, -leg.amount) for leg in payment("t1").legs)
    twice = [TransactionRequest(f"r{n}", "reversal", "conversion:c1", NOON, negated, reverses="t1") for n in (1, 2)]
    with pytest.raises(AlreadyReversed, match="'t1' was already reversed by 'r1'"):
        async with db.transaction() as session:
            await ledger.post_many(session, twice)
    assert (await balances(db))["exchange-fees"] == 20


async def test_a_reversal_must_negate_exactly(db: Database, ledger: Ledger) -> None:
    async with db.transaction() as session:
        await ledger.post(session, payment("t1"))
    half = payment("t1-half", 500)
    forged = TransactionRequest(
        "t1-half",
        "reversal",
        "conversion:c1",
        NOON,
        tuple(Leg(leg.account, -leg.amount) for leg in half.legs),
        reverses="t1",
    )
    with pytest.raises(UnbalancedTransaction, match="does not exactly negate"):
        async with db.transaction() as session:
            await ledger.post(session, forged)


async def test_batches_post_in_order_and_skip_repeats(db: Database, ledger: Ledger) -> None:
    async with db.transaction() as session:
        await ledger.post(session, payment("t0"))
    async with db.transaction() as session:
        results = await ledger.post_many(session, [payment("t1"), payment("t0"), payment("t2"), payment("t1")])
    assert [(r.id, r.seq, r.replayed) for r in results] == [
        ("t1", 2, False),
        ("t0", 1, True),
        ("t2", 3, False),
        ("t1", 2, False),
    ]
    async with db.transaction() as session:
        report = await verify_ledger(session)
    assert report.ok and report.transactions == 3


async def test_verify_accepts_an_honest_ledger(db: Database, ledger: Ledger) -> None:
    async with db.transaction() as session:
        for index in range(5):
            await ledger.post(session, payment(f"t{index}", 1000 + index))
        await ledger.reverse(session, "t2", transaction_id="t2-r", effective_at=NOON)
    async with db.transaction() as session:
        report = await verify_ledger(session)
    assert report.ok, report.problem
    assert (report.transactions, report.accounts) == (6, 3)


async def test_the_database_refuses_to_change_or_delete_ledger_rows(db: Database, ledger: Ledger) -> None:
    async with db.transaction() as session:
        await ledger.post(session, payment("t1"))
    for statement in (
        "UPDATE ledger_entry SET amount = amount * 2",
        "DELETE FROM ledger_entry",
        "UPDATE ledger_transaction SET reference = 'x'",
        "DELETE FROM ledger_transaction",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.transaction() as session:
                await session.exec(text(statement))


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("UPDATE ledger_entry SET amount = -2000 WHERE transaction_seq = 2 AND position = 0", "does not balance"),
        (
            "UPDATE ledger_entry SET amount = -amount WHERE transaction_seq = 2",
            "its content does not match its hash",
        ),
        ("UPDATE ledger_transaction SET reference = 'conversion:other' WHERE seq = 2", "does not match its hash"),
        (
            "UPDATE ledger_balance SET balance = balance + 1"
            " WHERE account_id = (SELECT id FROM ledger_account WHERE code = 'exchange-fees')",
            "account exchange-fees says",
        ),
        # The counterparty is outside the hash: only recomputing it from the legs vouches for it.
        (
            "UPDATE ledger_entry SET counterparty_account_id = account_id WHERE transaction_seq = 2 AND position = 1",
            "leg 1 names counterparty account 2; its legs give account 3",
        ),
        (
            "UPDATE ledger_entry SET counterparty_account_id = NULL WHERE transaction_seq = 2 AND position = 2",
            "leg 2 names counterparty none; its legs give account 3",
        ),
        (
            "UPDATE ledger_entry SET counterparty_account_id = 2 WHERE transaction_seq = 2 AND position = 0",
            "leg 0 names counterparty account 2; its legs give none",
        ),
    ],
)
async def test_verify_names_the_first_tampered_transaction(
    db: Database, ledger: Ledger, statement: str, reason: str
) -> None:
    async with db.transaction() as session:
        for index in range(4):
            await ledger.post(session, payment(f"t{index}"))
    await tamper(db, statement)
    async with db.transaction() as session:
        report = await verify_ledger(session)
    assert report.problem is not None
    assert reason in str(report.problem)
    if not reason.startswith("account "):
        assert (report.problem.seq, report.problem.transaction_id) == (2, "t1")


async def test_verify_names_a_chained_transaction_that_is_not_a_star(db: Database, ledger: Ledger) -> None:
    """Someone with the database's rights and the hashing code can append a transaction whose
    hashes chain; if it is not a star, no counterparty can be right, and verify says so."""
    async with db.transaction() as session:
        await ledger.post(session, payment("t0"))
        shard, head_hash = (await session.exec(text("SELECT shard, hash FROM ledger_chain_head"))).one()
    legs = [
        (CHART.clearing("wallet-pay"), -60),
        (CHART.clearing("fresh-mart"), -40),
        (CHART.fees(), 50),
        (CHART.clearing("formosa-air"), 50),
    ]
    request_hash = request_digest(
        transaction_id="forged",
        kind="adjustment",
        reference="x",
        effective_at=NOON,
        reverses=None,
        legs=((account.code, account.unit, amount) for account, amount in legs),
    )
    chained = chain_digest(seq=2, prev_hash=head_hash, request_hash=request_hash, period="2026-11")
    async with db.transaction() as session:
        await session.exec(  # type: ignore[call-overload]
            text(
                "INSERT INTO ledger_account (code, kind, program_id, unit, created_at)"
                " VALUES ('partner-clearing:formosa-air', 'partner-clearing', 'formosa-air', 'TWD', :at)"
            ).bindparams(bindparam("at", type_=UTCDateTime())),
            params={"at": NOON},
        )
        await session.exec(  # type: ignore[call-overload]
            text(
                "INSERT INTO ledger_transaction (seq, shard, id, kind, reference, period, effective_at, posted_at,"
                " request_hash, prev_hash, hash)"
                " VALUES (2, :shard, 'forged', 'adjustment', 'x', '2026-11', :at, :at, :request, :prev, :hash)"
            ).bindparams(bindparam("at", type_=UTCDateTime())),
            params={"at": NOON, "shard": shard, "request": request_hash, "prev": head_hash, "hash": chained},
        )
        for position, (account, amount) in enumerate(legs):
            await session.exec(  # type: ignore[call-overload]
                text(
                    "INSERT INTO ledger_entry (transaction_seq, position, account_id, unit, amount, period, shard)"
                    " SELECT 2, :position, id, unit, :amount, '2026-11', :shard FROM ledger_account WHERE code = :code"
                ),
                params={"position": position, "amount": amount, "code": account.code, "shard": shard},
            )  # the chain's head and the balances follow, as the database moves them
    async with db.transaction() as session:
        problem = (await verify_ledger(session)).problem
    assert problem is not None and (problem.seq, problem.transaction_id) == (2, "forged")
    assert problem.reason == "has 2 negative and 2 positive legs in TWD: not a star"


@pytest.mark.postgres_only
async def test_postgres_refuses_an_unbalanced_transaction_at_commit(pg_db: Database, ledger: Ledger) -> None:
    async with pg_db.transaction() as session:
        await ledger.post(session, payment("t1"))
    with pytest.raises(IntegrityError, match="does not balance"):
        async with pg_db.transaction() as session:
            await session.exec(
                text(
                    "INSERT INTO ledger_transaction (seq, shard, id, kind, reference, period, effective_at, posted_at,"
                    " request_hash, prev_hash, hash) SELECT 2, shard, 'sneaky', 'adjustment', 'x', '2026-11', now(), now(),"
                    " 'h', hash, 'h' FROM ledger_chain_head"
                )
            )
            await session.exec(
                text(
                    "INSERT INTO ledger_entry (transaction_seq, position, account_id, unit, amount, period, shard)"
                    " SELECT 2, 0, id, unit, 500, '2026-11', 1 FROM ledger_account WHERE code = 'exchange-fees'"
                )
            )
    with pytest.raises(DBAPIError, match="append-only"):
        async with pg_db.transaction() as session:
            await session.exec(text("TRUNCATE ledger_entry, ledger_transaction"))


async def test_late_items_go_to_the_next_open_period_keeping_their_date(db: Database, ledger: Ledger) -> None:
    november = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
    async with db.transaction() as session:
        assert (await ledger.post(session, payment("on-time", at=november))).period == "2026-11"
        await start_closing(session, ledger.calendar, "2026-11", by="staff", now=datetime(2026, 12, 1, tzinfo=UTC))
    async with db.transaction() as session:
        late = await ledger.post(session, payment("late", at=november))
        early = await ledger.post(session, payment("older", at=datetime(2026, 9, 1, tzinfo=UTC)))
        rows = (await session.exec(text("SELECT id, period, effective_at FROM ledger_transaction ORDER BY seq"))).all()
    assert (late.period, early.period) == ("2026-12", "2026-12")
    assert [row[1] for row in rows] == ["2026-11", "2026-12", "2026-12"]


def test_periods_follow_the_settlement_calendar() -> None:
    monthly = SettlementCalendar(TAIPEI)
    assert monthly.period_of(datetime(2026, 12, 31, 16, 0, tzinfo=UTC)) == "2027-01"
    assert monthly.next("2026-12") == "2027-01" and monthly.next("2027-01") == "2027-02"
    assert monthly.posting_period("2026-10", "2026-11") == "2026-12"
    assert monthly.posting_period("2026-12", "2026-11") == "2026-12"
    assert monthly.posting_period("2026-12", None) == "2026-12"
    assert monthly.starts_at("2026-11") == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)
    assert monthly.ends_at("2026-12") == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)


def test_a_quarterly_calendar_names_each_period_by_its_first_month() -> None:
    quarterly = SettlementCalendar(TAIPEI, 3)
    assert quarterly.period_of(datetime(2026, 12, 31, 15, 59, tzinfo=UTC)) == "2026-10"
    assert quarterly.period_of(datetime(2026, 12, 31, 16, 0, tzinfo=UTC)) == "2027-01"
    assert quarterly.next("2026-10") == "2027-01"
    assert quarterly.posting_period("2026-07", "2026-07") == "2026-10"
    assert quarterly.parse("2026-04") == "2026-04"
    with pytest.raises(InvalidPeriod, match="start in months 01, 04, 07, 10"):
        quarterly.parse("2026-05")


def test_the_latest_period_over_is_the_one_before_now_on_the_settlement_calendar() -> None:
    monthly = SettlementCalendar(TAIPEI)
    # 00:30 on 1 December in Taipei is still 30 November in UTC: November is over there.
    assert monthly.latest_over(datetime(2026, 11, 30, 16, 30, tzinfo=UTC)) == "2026-11"
    assert monthly.latest_over(datetime(2026, 11, 30, 15, 59, tzinfo=UTC)) == "2026-10"
    assert monthly.latest_over(datetime(2027, 1, 15, tzinfo=UTC)) == "2026-12"
    quarterly = SettlementCalendar(TAIPEI, 3)
    assert quarterly.latest_over(datetime(2027, 2, 1, tzinfo=UTC)) == "2026-10"
    assert quarterly.previous("2027-01") == "2026-10"


@pytest.mark.parametrize("months", [1, 2, 3, 4, 6, 12])
def test_previous_undoes_next_across_years(months: int) -> None:
    calendar = SettlementCalendar(TAIPEI, months)
    periods = [f"{year}-{month:02d}" for year in (2026, 2027) for month in range(1, 13, months)]
    assert [calendar.next(period) for period in periods[:-1]] == periods[1:]
    assert [calendar.previous(period) for period in periods[1:]] == periods[:-1]


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-11", "2026-00", "november"])
def test_a_period_name_must_be_a_month(text: str) -> None:
    with pytest.raises(InvalidPeriod, match="YYYY-MM"):
        SettlementCalendar(TAIPEI).parse(text)
