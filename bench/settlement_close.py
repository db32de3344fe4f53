"""Closing a month against the bare GROUP BY of the same rows, on PostgreSQL.

Posts a month of N clearing transactions among 20 partners through the ledger (see
``settlement_data.py`` for the mix), then, on a fresh copy of that database per round:

* baseline: the bare aggregation of the month's money legs,
  ``SELECT account_id, sum(amount) FROM ledger_entry WHERE period = … AND unit = … GROUP BY account_id``,
  as PostgreSQL plans it (parallel workers allowed);
* closing: ``SettlementService.close``, on a database as a started gateway leaves it (the
  statement-signing key made, the current and next periods' ledger partitions made) — the
  settlement currency and the signing key read, CLOSING under the chain-head lock, the gross
  obligations per pair from the month's legs grouped by account and counterparty, the check of
  hub legs against the spokes naming them, the positions, CLOSED; timed until then. It then
  issues every participant's signed statement, timed apart (no target: a statement lists every
  line of the participant's month), with the process's peak memory while it does (Linux: the
  resident set's high-water mark, reset when issuing begins).

Each is run warm (the copy's pages read once first) and timed; prints the medians, their ratio
(target: closing <= 1.5x the baseline) and what the netting found.

    .venv/bin/python bench/settlement_close.py [--transactions 1000000] [--rounds 3]

Uses a throwaway PostgreSQL cluster from the local binaries, or --database-url.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from settlement_data import AFTER_MONTH, MONTH, post_month
from sqlalchemy.engine import make_url

from exchange.db.database import Database
from exchange.ledger.verify import verify_ledger
from exchange.services.settlement import ISSUING_STATEMENTS, SettlementService
from exchange.settings import Settings
from exchange.settlement.closing import PeriodReport
from exchange.testing.clock import FrozenClock
from exchange.testing.databases import PostgresDatabases
from exchange.testing.postgres import ThrowawayCluster

PARTNERS = [f"partner-{n:02d}" for n in range(20)]
BASELINE = "SELECT account_id, sum(amount) FROM ledger_entry WHERE period = %s AND unit = 'TWD' GROUP BY account_id"


def conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def admin(server_url: str, statement: str) -> None:
    with psycopg.connect(conninfo(server_url), autocommit=True) as connection:
        connection.execute(statement)


def time_baseline(url: str) -> float:
    with psycopg.connect(conninfo(url)) as connection:
        connection.execute(BASELINE, (MONTH,)).fetchall()  # warm: the copy's pages read once
        started = time.perf_counter()
        rows = connection.execute(BASELINE, (MONTH,)).fetchall()
        elapsed = time.perf_counter() - started
    assert sum(total for _, total in rows) == 0
    return elapsed


async def start_as_a_gateway(service: SettlementService) -> None:
    """Do before timing what a gateway does when it starts (``exchange.app``): make the
    statement-signing key if there is none, and the current and next periods' ledger partitions
    (closing October on 2 November finds November's and December's made). This opens the
    pool's connection too, as the baseline's is open."""
    await service.ensure_signing_key()
    await service.ensure_partitions()


@dataclass(frozen=True)
class Issuing:
    """How long issuing the statements took, and the resident memory (MB) when it began and at
    its peak."""

    seconds: float
    began_mb: int
    peak_mb: int


def resident_mb(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since :func:`reset_peak`) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) // 1024
    raise LookupError(field)


def reset_peak() -> None:
    """Start the resident set's high-water mark (``VmHWM``) again from what is resident now."""
    Path("/proc/self/clear_refs").write_text("5")


async def time_close(url: str) -> tuple[float, Issuing, PeriodReport]:
    """How long closing took until the period was CLOSED, then issuing its statements. Closing
    reads the month's rows from the heap, as the baseline does: the baseline's run has warmed
    them."""
    db = Database.from_url(url)
    clock = FrozenClock(AFTER_MONTH)
    service = SettlementService.for_settings(Settings(database_url=url), db=db, clock=clock)
    try:
        await start_as_a_gateway(service)
        closed: list[float] = []
        began: list[int] = []

        async def progress(_percent: int, step: str) -> None:
            if step == ISSUING_STATEMENTS:
                closed.append(time.perf_counter())
                gc.collect()  # what closing left behind is not issuing's
                began.append(resident_mb("VmRSS"))
                reset_peak()

        started = time.perf_counter()
        report = await service.close(MONTH, by="bench", progress=progress)
        ended = time.perf_counter()
        return closed[0] - started, Issuing(ended - closed[0], began[0], resident_mb("VmHWM")), report
    finally:
        await db.dispose()


async def main(arguments: argparse.Namespace) -> None:
    cluster = None if arguments.database_url else ThrowawayCluster.start()
    server_url = arguments.database_url if cluster is None else cluster.url
    databases = PostgresDatabases(server_url)
    data = databases.create()
    copies: list[str] = []
    try:
        count = arguments.transactions
        print(f"posting {count:,} transactions among {len(PARTNERS)} partners through Ledger.post_many …", flush=True)
        posting = await post_month(data, count, PARTNERS)
        print(f"  posted in {posting:.1f} s ({count / posting:,.0f} transactions/s)", flush=True)
        if not arguments.skip_verify:
            db = Database.from_url(data)
            async with db.transaction() as session:
                verification = await verify_ledger(session)
            await db.dispose()
            assert verification.ok, verification.problem
            print(f"  ledger verified: {verification.transactions:,} transactions")
        with psycopg.connect(conninfo(data), autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
            entries = connection.execute("SELECT count(*) FROM ledger_entry WHERE period = %s", (MONTH,)).fetchone()
        print(f"  {entries[0]:,} ledger entries in {MONTH}" if entries else "")

        baseline_times: list[float] = []
        close_times: list[float] = []
        issuings: list[Issuing] = []
        report: PeriodReport | None = None
        for round_number in range(arguments.rounds):
            name = f"{make_url(data).database}_round{round_number}"
            admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{make_url(data).database}"')
            copy = with_database(data, name)
            copies.append(copy)
            baseline_times.append(time_baseline(copy))
            elapsed, issuing, report = await time_close(copy)
            close_times.append(elapsed)
            issuings.append(issuing)
            admin(server_url, f'DROP DATABASE "{name}" WITH (FORCE)')
            copies.remove(copy)

        baseline, closing = statistics.median(baseline_times), statistics.median(close_times)
        print(f"\nclosing benchmark: {count:,} transactions, {arguments.rounds} rounds (medians)")
        print(
            f"  bare GROUP BY of the month:   {baseline:8.3f} s   (rounds: {', '.join(f'{t:.3f}' for t in baseline_times)})"
        )
        print(
            f"  closing the month:            {closing:8.3f} s   (rounds: {', '.join(f'{t:.3f}' for t in close_times)})"
        )
        print(f"  ratio closing/GROUP BY:       {closing / baseline:8.2f}   (target <= 1.50)")
        print(
            f"  then issuing the statements:  {statistics.median(i.seconds for i in issuings):8.3f} s   (no target: "
            "each lists every line; one unit of work per participant, after the period is CLOSED)"
        )
        highest = max(issuings, key=lambda issuing: issuing.peak_mb - issuing.began_mb)
        print(
            f"  issuing's peak memory:        {highest.peak_mb:8d} MB resident, {highest.peak_mb - highest.began_mb:+d} MB "
            f"over its start (the highest of the rounds)"
        )
        assert report is not None
        money = report.currency.from_minor
        saving = report.saving
        print(
            f"  {len(report.positions)} positions summing to {money(sum(p.net for p in report.positions))}; "
            f"{len(report.obligations)} gross obligations"
        )
        if saving is not None:
            for name, payments in (
                ("gross", saving.gross),
                ("bilateral", saving.bilateral),
                ("multilateral", saving.multilateral),
            ):
                print(f"  payments {name + ':':<14} {payments.count:5d} moving {money(payments.total):>16} TWD")
    finally:
        for copy in copies:
            admin(server_url, f'DROP DATABASE IF EXISTS "{make_url(copy).database}" WITH (FORCE)')
        databases.drop_all()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-verify", action="store_true", help="do not verify the posted ledger first")
    parser.add_argument("--database-url", help="a PostgreSQL server to use instead of a throwaway cluster")
    asyncio.run(main(parser.parse_args()))
