"""Properties of netting, against a reference computed without SQL: any set of star-shaped
money transactions nets into obligations the reference agrees with, and into net positions
that sum to exactly zero and equal what each participant's legs add up to."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, text

from exchange.db.database import Database
from exchange.db.types import UTCDateTime
from exchange.ledger.posting import Ledger, Leg, TransactionRequest
from exchange.ledger.verify import verify_ledger
from exchange.settlement import netting
from exchange.settlement.errors import SettlementInvariantBroken
from exchange.settlement.netting import NettingSaving
from exchange.settlement.participants import EXCHANGE, account_of
from exchange.testing.clock import FrozenClock
from exchange.testing.databases import PostgresDatabases, SqliteDatabases
from tests.integration.settlement.conftest import CHART, NOVEMBER, TAIPEI
from tests.integration.tampering import tamper

PARTICIPANTS = ["wallet-pay", "fresh-mart", "formosa-air", "tune-stream", EXCHANGE]

#: (hub, hub owes?, [(spoke, amount)]): the hub's one leg balances its spokes' legs.
star = st.tuples(
    st.sampled_from(PARTICIPANTS),
    st.booleans(),
    st.lists(st.tuples(st.sampled_from(PARTICIPANTS), st.integers(1, 10**9)), min_size=1, max_size=4),
)
stars = st.lists(star, min_size=1, max_size=25)
#: A transaction as ``star`` draws it: hub, whether the hub owes, and the spokes with their amounts.
Star = tuple[str, bool, list[tuple[str, int]]]


def as_request(index: int, transaction: Star) -> TransactionRequest:
    hub, owes, spokes = transaction
    sign = 1 if owes else -1
    legs = [Leg(account_of(CHART, hub), -sign * sum(amount for _, amount in spokes))]
    legs += [Leg(account_of(CHART, spoke), sign * amount) for spoke, amount in spokes]
    return TransactionRequest(
        id=f"t{index}",
        kind="conversion",
        reference=f"conversion:{index}",
        effective_at=NOVEMBER + timedelta(minutes=index),
        legs=tuple(legs),
    )


def reference(
    transactions: list[Star],
) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """Who owed whom by the attribution rule, and each participant's legs summed."""
    owed: Counter[tuple[str, str]] = Counter()
    legs: Counter[str] = Counter()
    for hub, owes, spokes in transactions:
        for spoke, amount in spokes:
            legs[hub] += -amount if owes else amount
            legs[spoke] += amount if owes else -amount
            if spoke != hub:
                owed[(hub, spoke) if owes else (spoke, hub)] += amount
    return owed, legs


async def check(url: str, transactions: list[Star]) -> None:
    db = Database.from_url(url)
    ledger = Ledger(timezone=TAIPEI, clock=FrozenClock(NOVEMBER))
    try:
        async with db.transaction() as session:
            await ledger.post_many(session, [as_request(index, t) for index, t in enumerate(transactions)])
        async with db.transaction() as session:
            obligations = await netting.obligations(session, "2026-11", "TWD")
    finally:
        await db.dispose()
    owed, legs = reference(transactions)
    assert {(o.debtor, o.creditor): o.amount for o in obligations} == {
        key: amount for key, amount in owed.items() if amount
    }
    nets = Counter[str]()
    for o in obligations:
        nets[o.debtor] -= o.amount
        nets[o.creditor] += o.amount
    assert sum(nets.values()) == 0
    assert {p: n for p, n in nets.items() if n} == {p: n for p, n in legs.items() if n}
    saving = NettingSaving.of(obligations, nets)
    assert saving.multilateral.total <= saving.bilateral.total <= saving.gross.total
    assert saving.multilateral.count <= len(PARTICIPANTS)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(transactions=stars)
def test_netting_agrees_with_the_reference_on_sqlite(
    sqlite_databases: SqliteDatabases, transactions: list[Star]
) -> None:
    url = sqlite_databases.create()
    try:
        asyncio.run(check(url, transactions))
    finally:
        sqlite_databases.drop(url)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(transactions=stars)
def test_netting_agrees_with_the_reference_on_postgresql(
    postgres_databases: PostgresDatabases, transactions: list[Star]
) -> None:
    url = postgres_databases.create()
    try:
        asyncio.run(check(url, transactions))
    finally:
        postgres_databases.drop(url)


async def test_netting_refuses_a_transaction_that_is_not_a_star(db: Database) -> None:
    """Posting refuses one; here it is written behind the ledger's back, as only someone with
    the database's rights could, and netting notices instead of misattributing it."""
    ledger = Ledger(timezone=TAIPEI, clock=FrozenClock(NOVEMBER))
    async with db.transaction() as session:
        await ledger.post(
            session, as_request(0, ("wallet-pay", True, [("fresh-mart", 50), ("formosa-air", 50), ("tune-stream", 1)]))
        )
        await session.exec(  # type: ignore[call-overload]
            text(
                "INSERT INTO ledger_transaction (seq, shard, id, kind, reference, period, effective_at, posted_at,"
                " request_hash, prev_hash, hash) VALUES (2, 1, 'sneaky', 'adjustment', 'x', '2026-11', :at, :at, 'h', 'h', 'h')"
            ).bindparams(bindparam("at", type_=UTCDateTime())),
            params={"at": NOVEMBER},
        )
        await session.exec(
            text(  # type: ignore[call-overload]
                "INSERT INTO ledger_entry (transaction_seq, position, account_id, unit, amount, period, shard)"
                " SELECT 2, row_number() OVER (ORDER BY id), id, unit,"
                "        CASE program_id WHEN 'wallet-pay' THEN -60 WHEN 'fresh-mart' THEN -40 WHEN 'formosa-air' THEN 50 ELSE 50 END,"
                "        '2026-11', 1"
                "   FROM ledger_account WHERE program_id IN ('wallet-pay', 'fresh-mart', 'formosa-air', 'tune-stream')"
            )
        )
    with pytest.raises(SettlementInvariantBroken, match="do not balance the spoke legs naming them"):
        async with db.transaction() as session:
            await netting.obligations(session, "2026-11", "TWD")


async def test_netting_refuses_a_spoke_naming_an_account_outside_its_transaction(db: Database) -> None:
    """The counterparty is stored, not recomputed, when closing: one rewritten behind the
    ledger's back would move an obligation to a participant that took no part in the transaction.
    Closing refuses the period; the verifier names the transaction."""
    ledger = Ledger(timezone=TAIPEI, clock=FrozenClock(NOVEMBER))
    async with db.transaction() as session:
        await ledger.post(session, as_request(0, ("wallet-pay", True, [("fresh-mart", 50), ("formosa-air", 30)])))
        await ledger.post(session, as_request(1, ("tune-stream", False, [("fresh-mart", 20)])))
    await tamper(
        db,
        "UPDATE ledger_entry SET counterparty_account_id ="
        " (SELECT id FROM ledger_account WHERE program_id = 'tune-stream' AND unit = 'TWD')"
        " WHERE transaction_seq = 1 AND position = 2",
    )
    with pytest.raises(SettlementInvariantBroken, match="hub legs of tune-stream, wallet-pay do not balance"):
        async with db.transaction() as session:
            await netting.obligations(session, "2026-11", "TWD")
    async with db.transaction() as session:
        problem = (await verify_ledger(session)).problem
    assert problem is not None and (problem.transaction_id, problem.seq) == ("t0", 1)
    assert "leg 2 names counterparty account" in problem.reason
