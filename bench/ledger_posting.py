"""Ledger posting rate against plain inserts of the same rows, on PostgreSQL.

Posts N transactions of three legs each through the ledger API (``Ledger.post_many``, one
unit of work per batch: balance checks, idempotency lookup, hash chain, account balances,
the database's deferred balance trigger), then inserts the same header and entry rows with
plain ``executemany`` into tables of the same shape and indexes but no ledger logic, in
batches of the same size. Prints both rates and their ratio (target: ledger >= 0.5x plain).

    .venv/bin/python bench/ledger_posting.py [--transactions 20000] [--batch 500] [--rounds 3]

Uses a throwaway PostgreSQL cluster from the local binaries, or --database-url.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from sqlalchemy.engine import make_url

from exchange.db.database import Database
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger, Leg, TransactionRequest
from exchange.ledger.stars import hub_positions
from exchange.ledger.verify import verify_ledger
from exchange.testing.clock import FrozenClock
from exchange.testing.databases import PostgresDatabases
from exchange.testing.postgres import ThrowawayCluster

CHART = ChartOfAccounts("TWD")
PARTNERS = [f"partner-{n:02d}" for n in range(20)]
START = datetime(2026, 11, 1, tzinfo=UTC)


def requests(count: int, prefix: str) -> list[TransactionRequest]:
    """Three-leg clearing transactions among 20 partners, with a fee."""
    made = []
    for n in range(count):
        amount = 1000 + n % 997
        fee = amount // 50
        payer, payee = PARTNERS[n % 20], PARTNERS[(n * 7 + 3) % 20]
        if payer == payee:
            payee = PARTNERS[(n + 1) % 20]
        made.append(
            TransactionRequest(
                id=f"{prefix}-{n}",
                kind="conversion",
                reference=f"conversion:{prefix}-{n}",
                effective_at=START + timedelta(seconds=n),
                legs=(
                    Leg(CHART.clearing(payer), -amount),
                    Leg(CHART.clearing(payee), amount - fee),
                    Leg(CHART.fees(), fee),
                ),
            )
        )
    return made


async def post_through_ledger(url: str, batches: list[list[TransactionRequest]]) -> float:
    db = Database.from_url(url)
    ledger = Ledger(timezone=ZoneInfo("Asia/Taipei"), clock=FrozenClock(START))
    try:
        started = time.perf_counter()
        for batch in batches:
            async with db.transaction() as session:
                await ledger.post_many(session, batch)
        elapsed = time.perf_counter() - started
        async with db.transaction() as session:
            verification = await verify_ledger(session)
        assert verification.ok, verification.problem
        return elapsed
    finally:
        await db.dispose()


PLAIN_TABLES = """
CREATE TABLE IF NOT EXISTS plain_transaction (LIKE ledger_transaction INCLUDING ALL);
CREATE TABLE IF NOT EXISTS plain_entry (LIKE ledger_entry INCLUDING ALL);
TRUNCATE plain_transaction, plain_entry;
"""


async def insert_plainly(url: str, batches: list[list[TransactionRequest]]) -> float:
    """The same rows, with precomputed values (each spoke's counterparty too), by executemany:
    the floor any ledger sits on."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(conninfo) as connection:
        await connection.execute(PLAIN_TABLES)
        await connection.commit()
        rows = []
        seq = 0
        for batch in batches:
            headers: list[tuple[Any, ...]] = []
            entries: list[tuple[Any, ...]] = []
            for request in batch:
                seq += 1
                headers.append(
                    (
                        seq,
                        1,
                        request.id,
                        request.kind,
                        request.reference,
                        "2026-11",
                        request.effective_at,
                        START,
                        None,
                        "0" * 64,
                        "0" * 64,
                        "0" * 64,
                    )
                )
                entries.extend(
                    (
                        seq,
                        position,
                        position + 1,
                        leg.account.unit,
                        leg.amount,
                        "2026-11",
                        1,
                        None if hub is None else hub + 1,
                    )
                    for position, (leg, hub) in enumerate(zip(request.legs, hub_positions(request), strict=True))
                )
            rows.append((headers, entries))
        started = time.perf_counter()
        for headers, entries in rows:
            async with connection.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO plain_transaction (seq, shard, id, kind, reference, period, effective_at, posted_at,"
                    " reverses, request_hash, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    headers,
                )
                await cursor.executemany(
                    "INSERT INTO plain_entry (transaction_seq, position, account_id, unit, amount, period, shard,"
                    " counterparty_account_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    entries,
                )
            await connection.commit()
        return time.perf_counter() - started


async def main(arguments: argparse.Namespace) -> None:
    cluster = None if arguments.database_url else ThrowawayCluster.start()
    server_url = arguments.database_url if cluster is None else cluster.url
    databases = PostgresDatabases(server_url)
    try:
        count, size = arguments.transactions, arguments.batch
        ledger_times, plain_times = [], []
        for round_number in range(arguments.rounds):
            made = requests(count, f"r{round_number}")
            batches = [made[start : start + size] for start in range(0, count, size)]
            url = databases.create()
            plain_times.append(await insert_plainly(url, batches))
            ledger_times.append(await post_through_ledger(url, batches))
            databases.drop(url)
        ledger_rate = count / statistics.median(ledger_times)
        plain_rate = count / statistics.median(plain_times)
        print(
            f"ledger posting benchmark: {count} transactions x 3 legs, batches of {size}, "
            f"{arguments.rounds} rounds (medians)"
        )
        print(
            f"  ledger API (post_many):  {ledger_rate:10,.0f} transactions/s   "
            f"({statistics.median(ledger_times):.3f} s)"
        )
        print(
            f"  plain executemany:       {plain_rate:10,.0f} transactions/s   ({statistics.median(plain_times):.3f} s)"
        )
        print(f"  ratio ledger/plain:      {ledger_rate / plain_rate:10.2f}   (target >= 0.50)")
    finally:
        databases.drop_all()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="a PostgreSQL server to use instead of a throwaway cluster")
    asyncio.run(main(parser.parse_args()))
