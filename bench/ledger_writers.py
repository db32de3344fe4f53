"""Ledger postings per second with 1, 4, 8 and 16 concurrent writers, on PostgreSQL.

Every posting locks one of the ledger's shards first and holds it until its unit of work
commits; postings in different shards go on at once (``--shards``, default the setting's
default; ``--shards 1`` is the single chain head every posting once waited for). This
measures what that gives: N writers, each with a pooled connection of its own, post for a fixed time
through the real ledger (``Ledger.post``), one unit of work per posting holding one
conversion's clearing transaction (``conversion_transaction``: seven legs between two sample
programs, as a completed conversion posts it). Prints postings per second per writer count,
the ratio to one writer (the issue's target: 8 writers post at least 3x what one does), each
posting's latency (unit of work begun to committed: the wait for a shard included), how
long each posting held its shard as its writer saw it (its lock statement answered to its
commit answered: no other posting in that shard moves meanwhile, so with one shard and one
writer 1 / that time is the ceiling of every writer together; with several, the event loop's
delay in reading answers counts too, so the figure bounds the server's from above), and the
CPU the writing processes spent per posting (on a small machine they share the cores with
PostgreSQL). Writers run as asyncio tasks in ``--processes`` processes (default 1); with more,
each process runs its share of the writers, as a gateway's workers would. Each writer count runs
on a fresh migrated database with the sample programs (partners/) loaded; ``exchange ledger
verify`` then checks it: sums, every shard's hash chains, balances.

    .venv/bin/python bench/ledger_writers.py [--duration 10] [--writers 1,4,8,16] [--rounds 3]
        [--shards 8] [--processes 1] [--durable]

Uses a throwaway PostgreSQL cluster from the local binaries (fsync and synchronous commit off,
as the other benchmarks; ``--durable`` turns both on, so each commit waits for its WAL flush
while it holds its shard's lock), or --database-url.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import event

from exchange.conversions.clearing import conversion_transaction
from exchange.db.database import Database
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import DEFAULT_SHARDS, Ledger, TransactionRequest
from exchange.loading import load_directory
from exchange.programs.declarations import read_partners_directory
from exchange.testing.clock import FrozenClock
from exchange.testing.databases import PostgresDatabases
from exchange.testing.postgres import ThrowawayCluster

PARTNERS_DIR = Path(__file__).resolve().parent.parent / "partners"
START = datetime(2026, 11, 1, tzinfo=UTC)
SHARD_LOCKED_AT = "bench_shard_locked_at"
DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}


@dataclass(frozen=True)
class Round:
    writers: int
    postings: int
    seconds: float
    latencies: list[float]
    holds: list[float]
    cpu_seconds: float
    busy_seconds: float
    """Core-seconds the whole machine was busy meanwhile."""

    @property
    def rate(self) -> float:
        return self.postings / self.seconds

    @property
    def busy_cores(self) -> float:
        return self.busy_seconds / self.seconds


@dataclass(frozen=True)
class Pooled:
    """Several rounds of one writer count taken together: postings per second is exactly
    cores busy / machine CPU per posting, which splits a ratio of rates into its two causes."""

    rate: float
    busy_cores: float
    cpu_per_posting: float


def pooled(rounds: list[Round]) -> Pooled:
    seconds = sum(result.seconds for result in rounds)
    postings = sum(result.postings for result in rounds)
    busy = sum(result.busy_seconds for result in rounds)
    return Pooled(rate=postings / seconds, busy_cores=busy / seconds, cpu_per_posting=busy / postings)


def machine_busy_seconds() -> float:
    """Core-seconds every core of the machine has spent not idle since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


async def busy_between(start_at: float, duration: float) -> float:
    """Core-seconds the machine is busy from ``start_at`` (wall clock) for ``duration``."""
    await asyncio.sleep(max(0.0, start_at - time.time()))
    before = machine_busy_seconds()
    await asyncio.sleep(duration)
    return machine_busy_seconds() - before


class Conversions:
    """An endless supply of distinct conversions between the sample programs, round robin over
    every ordered pair, as a conversion's saga would post them."""

    def __init__(self, chart: ChartOfAccounts, programs: list[str], prefix: str) -> None:
        self.chart = chart
        self.pairs = [(source, target) for source in programs for target in programs if source != target]
        self.prefix = prefix
        self.counter = itertools.count()

    def next(self) -> TransactionRequest:
        n = next(self.counter)
        source, target = self.pairs[n % len(self.pairs)]
        value = 1000 + n % 997
        return conversion_transaction(
            chart=self.chart,
            transaction_id=f"{self.prefix}-{n}",
            conversion_id=f"{self.prefix}-{n}",
            source=source,
            target=target,
            points_in=10 * value,
            points_out=9 * value,
            money_value_minor=value,
            fee_minor=value // 50,
            effective_at=START + timedelta(milliseconds=n),
        )


async def load_programs(db: Database) -> tuple[ChartOfAccounts, list[str]]:
    directory = read_partners_directory(PARTNERS_DIR)
    async with db.transaction() as session:
        await load_directory(session, directory, START)
    programs = sorted(program.id for program in directory.programs)
    return ChartOfAccounts(directory.coalition.settlement_currency), programs


def note_shard_locks(db: Database) -> None:
    """Stamp a connection with the moment its lock of a shard came back: from then to the
    commit, no other posting in that shard can proceed (the serial part of every posting)."""

    def stamp(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "FOR UPDATE" in statement and "ledger_shard" in statement:
            conn.info[SHARD_LOCKED_AT] = time.perf_counter()

    event.listen(db.engine.sync_engine, "after_cursor_execute", stamp)


async def write_for(
    db: Database, ledger: Ledger, conversions: Conversions, until: float, latencies: list[float], holds: list[float]
) -> int:
    """One writer: post conversions one unit of work at a time until ``until``."""
    posted = 0
    while time.perf_counter() < until:
        request = conversions.next()
        started = time.perf_counter()
        async with db.transaction() as session:
            await ledger.post(session, request)
            info = (await session.connection()).info
        committed = time.perf_counter()
        latencies.append(committed - started)
        holds.append(committed - info.pop(SHARD_LOCKED_AT))
        posted += 1
    return posted


async def run_writers(
    url: str, writers: int, shards: int, prefix: str, start_at: float, duration: float
) -> tuple[int, list[float], list[float], float, float]:
    """``writers`` writers in this process: warm up, wait for ``start_at`` (wall clock, so that
    every process starts together), post for ``duration``. Postings, latencies, holds, CPU, seconds."""
    db = Database.from_url(url, pool_size=writers)
    try:
        directory = read_partners_directory(PARTNERS_DIR)
        chart = ChartOfAccounts(directory.coalition.settlement_currency)
        programs = sorted(program.id for program in directory.programs)
        ledger = Ledger(timezone=ZoneInfo("Asia/Taipei"), clock=FrozenClock(START), shards=shards)
        conversions = Conversions(chart, programs, prefix)
        note_shard_locks(db)
        # Warm up: open every account and a connection per writer before the clock starts.
        warm_until = time.perf_counter() + 0.5
        await asyncio.gather(*(write_for(db, ledger, conversions, warm_until, [], []) for _ in range(writers)))
        await asyncio.sleep(max(0.0, start_at - time.time()))
        latencies: list[float] = []
        holds: list[float] = []
        cpu_started, started = time.process_time(), time.perf_counter()
        until = started + duration
        counts = await asyncio.gather(
            *(write_for(db, ledger, conversions, until, latencies, holds) for _ in range(writers))
        )
        return sum(counts), latencies, holds, time.process_time() - cpu_started, time.perf_counter() - started
    finally:
        await db.dispose()


def run_process(
    url: str, writers: int, shards: int, prefix: str, start_at: float, duration: float
) -> tuple[int, list[float], list[float], float, float]:
    return asyncio.run(run_writers(url, writers, shards, prefix, start_at, duration))


async def measure(url: str, writers: int, arguments: argparse.Namespace) -> Round:
    db = Database.from_url(url)
    try:
        await load_programs(db)
    finally:
        await db.dispose()
    processes = min(arguments.processes, writers)
    shares = [writers // processes + (index < writers % processes) for index in range(processes)]
    if processes == 1:
        start_at = time.time() + 1  # warmed up by then
        busy = asyncio.create_task(busy_between(start_at, arguments.duration))
        results = [await run_writers(url, writers, arguments.shards, f"w{writers}", start_at, arguments.duration)]
    else:
        start_at = time.time() + 5  # every process imported, connected and warmed up by then
        busy = asyncio.create_task(busy_between(start_at, arguments.duration))
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [
                asyncio.wrap_future(
                    pool.submit(
                        run_process, url, share, arguments.shards, f"w{writers}-p{index}", start_at, arguments.duration
                    )
                )
                for index, share in enumerate(shares)
            ]
            results = await asyncio.gather(*futures)
    return Round(
        writers,
        sum(result[0] for result in results),
        max(result[4] for result in results),
        [latency for result in results for latency in result[1]],
        [hold for result in results for hold in result[2]],
        sum(result[3] for result in results),
        await busy,
    )


def verify(url: str) -> str:
    """``exchange ledger verify`` on the benchmark's database; fails the run if it does."""
    result = subprocess.run(
        [sys.executable, "-m", "exchange", "ledger", "verify"],
        env={**os.environ, "EXCHANGE_DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"exchange ledger verify failed: {(result.stderr or result.stdout).strip()}")
    return result.stdout.strip()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def main(arguments: argparse.Namespace) -> None:
    cluster = None
    if not arguments.database_url:
        cluster = ThrowawayCluster.start(**(DURABLE if arguments.durable else {}))
    server_url = arguments.database_url if cluster is None else cluster.url
    databases = PostgresDatabases(server_url)
    counts = [int(count) for count in arguments.writers.split(",")]
    try:
        measured: dict[int, list[Round]] = {writers: [] for writers in counts}
        for _ in range(arguments.rounds):  # interleaved, so that a drift of the machine touches every count alike
            for writers in counts:
                url = databases.create()
                measured[writers].append(await measure(url, writers, arguments))
                verified = verify(url)
                databases.drop(url)
        commits = "durable commits" if arguments.durable else "fsync and synchronous_commit off"
        print(
            f"ledger writers benchmark: conversions' clearing transactions (7 legs), {arguments.duration:g} s each, "
            f"{arguments.shards} shard(s), writers in {arguments.processes} process(es), {commits}, "
            f"{arguments.rounds} round(s): medians"
        )
        rates = {writers: statistics.median(result.rate for result in results) for writers, results in measured.items()}
        base = rates[counts[0]]
        for writers, results in measured.items():
            latencies = [latency for result in results for latency in result.latencies]
            holds = [hold for result in results for hold in result.holds]
            postings = sum(result.postings for result in results)
            cpu = sum(result.cpu_seconds for result in results) / postings
            machine = sum(result.busy_seconds for result in results) / postings
            busy = statistics.median(result.busy_cores for result in results)
            print(
                f"  {writers:3d} writer(s) {rates[writers]:9,.0f} postings/s   x{rates[writers] / base:5.2f}   "
                f"p50 {statistics.median(latencies) * 1000:7.2f} ms   "
                f"p99 {percentile(latencies, 0.99) * 1000:7.2f} ms   "
                f"shard held {statistics.mean(holds) * 1000:5.2f} ms   "
                f"writers' CPU {cpu * 1000:5.2f} ms/posting   "
                f"machine CPU {machine * 1000:5.2f} ms/posting, {busy:4.2f} cores busy   "
                f"(rounds: {', '.join(f'{result.rate:,.0f}' for result in results)})"
            )
        if 1 in rates and 8 in rates:
            print(f"  8 writers / 1 writer: {rates[8] / rates[1]:.2f}   (target >= 3)")
            one, eight = (pooled(measured[count]) for count in (1, 8))
            cores = os.cpu_count() or 1
            print(
                f"  the same, every round pooled: {eight.rate / one.rate:.2f} = "
                f"{eight.busy_cores / one.busy_cores:.2f} as many cores busy "
                f"({one.busy_cores:.2f} -> {eight.busy_cores:.2f} of {cores}: "
                f"at most {cores / one.busy_cores:.2f} as many on this machine) x "
                f"{one.cpu_per_posting / eight.cpu_per_posting:.2f} as little machine CPU per posting "
                f"({one.cpu_per_posting * 1000:.2f} -> {eight.cpu_per_posting * 1000:.2f} ms)"
            )
        print(f"  exchange ledger verify passed on every database; the last: {verified}")
    finally:
        databases.drop_all()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each writer count posts for")
    parser.add_argument("--writers", default="1,4,8,16", help="comma-separated writer counts")
    parser.add_argument("--rounds", type=int, default=3, help="times each writer count is measured (medians shown)")
    parser.add_argument("--durable", action="store_true", help="fsync and synchronous commit on")
    parser.add_argument("--shards", type=int, default=DEFAULT_SHARDS, help="shards postings spread over (1 to 16)")
    parser.add_argument("--processes", type=int, default=1, help="processes the writers are spread over")
    parser.add_argument("--database-url", help="a PostgreSQL server to use instead of a throwaway cluster")
    asyncio.run(main(parser.parse_args()))
