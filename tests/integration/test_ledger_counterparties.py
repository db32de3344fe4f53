"""Each spoke leg of a money transaction records its hub's account, however it is written: one
posting at a time, in batches large enough for COPY on PostgreSQL, or by the migration that
added the column to a ledger posted before it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from exchange.conversions.clearing import conversion_transaction
from exchange.db import migrate
from exchange.db.bulk import COPY_FROM_ROWS
from exchange.db.database import Database
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger, Leg, TransactionRequest
from exchange.ledger.verify import verify_ledger
from exchange.testing.clock import FrozenClock

CHART = ChartOfAccounts("TWD")
NOON = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
WALLET, MART, AIR, FEES = (
    CHART.clearing("wallet-pay"),
    CHART.clearing("fresh-mart"),
    CHART.clearing("formosa-air"),
    CHART.fees(),
)

#: Legs of each shape, and the account code each leg must name (None: a hub or points leg).
SHAPES: list[tuple[tuple[Leg, ...], list[str | None]]] = [
    # One debtor, several creditors.
    ((Leg(MART, 980), Leg(WALLET, -1000), Leg(FEES, 20)), [WALLET.code, None, WALLET.code]),
    # Several debtors, one creditor.
    ((Leg(MART, -980), Leg(FEES, -20), Leg(WALLET, 1000)), [WALLET.code, WALLET.code, None]),
    # One leg on each side, the creditor first: the debtor is the hub.
    ((Leg(AIR, 300), Leg(MART, -300)), [MART.code, None]),
    # A spoke on the hub's own account.
    ((Leg(WALLET, -500), Leg(WALLET, 200), Leg(AIR, 300)), [None, WALLET.code, WALLET.code]),
]
CONVERSION = conversion_transaction(
    chart=CHART,
    transaction_id="conversion",
    conversion_id="c",
    source="fresh-mart",
    target="formosa-air",
    points_in=800,
    points_out=400,
    money_value_minor=700,
    fee_minor=14,
    effective_at=NOON,
)
#: The conversion's four points legs name nothing; its money legs follow the source.
CONVERSION_NAMES: list[str | None] = [None, None, None, None, None, MART.code, MART.code]


def requests(copies: int) -> list[TransactionRequest]:
    made = [
        TransactionRequest(
            f"t{copy}-{shape}", "adjustment", f"adjustment:{copy}-{shape}", NOON + timedelta(minutes=copy), legs
        )
        for copy in range(copies)
        for shape, (legs, _) in enumerate(SHAPES)
    ]
    return [*made, CONVERSION]


def expected(copies: int) -> list[str | None]:
    return [name for _ in range(copies) for _, names in SHAPES for name in names] + CONVERSION_NAMES


async def named_counterparties(db: Database) -> list[str | None]:
    async with db.transaction() as session:
        rows = await session.exec(
            text(
                "SELECT c.code FROM ledger_entry e LEFT JOIN ledger_account c ON c.id = e.counterparty_account_id"
                " ORDER BY e.transaction_seq, e.position"
            )
        )
        return [code for (code,) in rows]


async def post(db: Database, batches: list[list[TransactionRequest]]) -> None:
    ledger = Ledger(timezone=ZoneInfo("Asia/Taipei"), clock=FrozenClock(NOON))
    for batch in batches:
        async with db.transaction() as session:
            await ledger.post_many(session, batch)


@pytest.mark.parametrize("one_batch", [False, True], ids=["one-by-one", "one-batch"])
async def test_posting_records_each_spoke_legs_hub(db: Database, one_batch: bool) -> None:
    """One by one, every insert is an executemany; in one batch the entries are enough for COPY."""
    copies = 6
    made = requests(copies)
    assert sum(len(request.legs) for request in made) >= COPY_FROM_ROWS
    await post(db, [made] if one_batch else [[request] for request in made])
    assert await named_counterparties(db) == expected(copies)
    async with db.transaction() as session:
        assert (await verify_ledger(session)).ok


async def test_the_migration_fills_the_counterparties_of_rows_posted_before_it(database_url: str) -> None:
    """Posted with the column, taken back to the revision before it and up again: the migration's
    SQL names the same counterparties as posting did."""
    db = Database.from_url(database_url)
    try:
        await post(db, [requests(2)])
        config = migrate.alembic_config(database_url)
        await asyncio.to_thread(command.downgrade, config, "0006")
        await asyncio.to_thread(command.upgrade, config, "head")
        assert await named_counterparties(db) == expected(2)
        async with db.transaction() as session:
            assert (await verify_ledger(session)).ok
        with pytest.raises(DBAPIError, match="append-only"):  # the guard lifted for the update is back
            async with db.transaction() as session:
                await session.exec(text("UPDATE ledger_entry SET counterparty_account_id = NULL"))
    finally:
        await db.dispose()
