"""Reconciling a partner's file against COPY of the same file plus a join, on PostgreSQL.

For each size (100,000 and 1,000,000 lines by default): posts a month of that many clearing
transactions between one partner and 19 others through the ledger, closes the month, and writes
the partner's records of it as CSV (reference, amount, counterparty, date) with a few of every
kind of break: an amount off by 0.01 every 1,000 lines, a line repeated every 5,000, a
transaction left out every 2,000 and an unknown reference every 2,000. Then, warm:

* baseline: ``COPY`` of the file into an unlogged table (the server parses it) and one join
  with the partner's ledger amounts per reference, counting the lines that agree;
* reconciling: ``exchange settle reconcile``'s path, in a process of its own — the file streamed
  through the validator into the staging table, classified in SQL, every break stored.

Prints both times, their ratio (target: reconciling <= 2x the baseline) and the reconciling
process's peak resident memory before and after the import (target: not growing with the file).

    .venv/bin/python bench/settlement_reconcile.py [--lines 100000 1000000]

Uses a throwaway PostgreSQL cluster from the local binaries, or --database-url.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from settlement_data import AFTER_MONTH, MONTH, parties, partner_amount, post_month, reference
from sqlalchemy import text
from sqlalchemy.engine import make_url

from exchange.db.database import Database
from exchange.services.settlement import SettlementService
from exchange.settings import Settings
from exchange.testing.clock import FrozenClock
from exchange.testing.databases import PostgresDatabases
from exchange.testing.postgres import ThrowawayCluster

PARTNERS = [f"partner-{n:02d}" for n in range(20)]
FOCUS = PARTNERS[0]
LEDGER_SIDE = """
    SELECT t.reference, sum(e.amount) AS amount
      FROM ledger_entry e JOIN ledger_transaction t ON t.seq = e.transaction_seq
     WHERE e.account_id = (SELECT id FROM ledger_account WHERE code = 'partner-clearing:{focus}') AND e.period = '{month}'
     GROUP BY t.reference
"""
BASELINE_JOIN = f"""
    SELECT count(*) FROM bench_records r JOIN ({LEDGER_SIDE}) l
        ON l.reference = r.reference AND l.amount = (r.amount * 100)::bigint
"""


def conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def money(minor: int) -> str:
    return f"{'-' if minor < 0 else ''}{abs(minor) // 100}.{abs(minor) % 100:02d}"


@dataclass(frozen=True)
class Measured:
    """One size's figures: the reconciling process's (from its JSON) and the baseline's."""

    count: int
    file_bytes: int
    baseline: float
    seconds: float
    rss_before_kb: int
    rss_peak_kb: int
    lines: int
    matched: int
    mismatched: int
    duplicate: int
    missing_in_ledger: int
    missing_in_partner: int


@dataclass
class Expected:
    lines: int = 0
    mismatched: int = 0
    repeated: int = 0
    left_out: int = 0
    unknown: int = 0


def write_records(path: Path, count: int) -> Expected:
    expected = Expected()
    with path.open("w") as out:
        out.write("reference,amount,counterparty,date\n")
        for n in range(count):
            payer, payee = parties(n, PARTNERS, FOCUS)
            other = payee if payer == FOCUS else payer
            day = f"2026-10-{1 + n * 30 // count:02d}"
            if n % 2000 == 7:
                expected.left_out += 1
            else:
                amount = partner_amount(n, FOCUS, PARTNERS, FOCUS)
                if n % 1000 == 3:
                    amount, expected.mismatched = amount + 1, expected.mismatched + 1
                line = f"{reference(n)},{money(amount)},{other},{day}\n"
                out.write(line)
                expected.lines += 1
                if n % 5000 == 11:
                    out.write(line)
                    expected.lines, expected.repeated = expected.lines + 1, expected.repeated + 1
            if n % 2000 == 13:
                out.write(f"unknown:{n},1.00,{other},{day}\n")
                expected.lines, expected.unknown = expected.lines + 1, expected.unknown + 1
    return expected


def time_baseline(url: str, path: Path) -> float:
    ledger_side = LEDGER_SIDE.format(focus=FOCUS, month=MONTH)
    join = BASELINE_JOIN.format(focus=FOCUS, month=MONTH)
    with psycopg.connect(conninfo(url)) as connection:
        connection.execute(f"SELECT count(*) FROM ({ledger_side}) warm").fetchall()
        connection.execute(
            "CREATE UNLOGGED TABLE bench_records (reference text, amount numeric, counterparty text, partner_date date)"
        )
        connection.commit()
        started = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.copy("COPY bench_records FROM STDIN (FORMAT csv, HEADER true)") as copy,
            path.open("rb") as records,
        ):
            while chunk := records.read(1 << 20):
                copy.write(chunk)
        agreeing = connection.execute(join).fetchone()
        connection.commit()
        elapsed = time.perf_counter() - started
        connection.execute("DROP TABLE bench_records")
        connection.commit()
    assert agreeing is not None and agreeing[0] > 0
    return elapsed


def peak_rss_kb() -> int:
    """This process's peak resident memory since it started (``VmHWM``). Not ``ru_maxrss``:
    on Linux that keeps, across exec, the peak of the process that forked this one (the parent
    that posted, closed and issued the month's statements)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def reconcile_in_this_process(url: str, path: Path) -> dict[str, float | int]:
    """The child's job: import the file as `exchange settle reconcile` does; report time and memory."""
    db = Database.from_url(url)
    clock = FrozenClock(AFTER_MONTH)
    service = SettlementService.for_settings(Settings(database_url=url), db=db, clock=clock)
    try:
        async with db.transaction() as session:  # connected, and the pool ready, before measuring
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        rss_before = peak_rss_kb()
        started = time.perf_counter()
        with path.open("rb") as records:
            view = await service.import_records(FOCUS, MONTH, records, by="bench")
        elapsed = time.perf_counter() - started
        rss_peak = peak_rss_kb()
    finally:
        await db.dispose()
    done = view.reconciliation
    return {
        "seconds": elapsed,
        "rss_before_kb": rss_before,
        "rss_peak_kb": rss_peak,
        "lines": done.lines,
        "matched": done.matched,
        "mismatched": done.amount_mismatch,
        "duplicate": done.duplicate,
        "missing_in_ledger": done.missing_in_ledger,
        "missing_in_partner": done.missing_in_partner,
    }


async def measure(databases: PostgresDatabases, count: int, workdir: Path) -> Measured:
    url = databases.create()
    print(f"posting {count:,} transactions of {FOCUS} with 19 partners through Ledger.post_many …", flush=True)
    posting = await post_month(url, count, PARTNERS, focus=FOCUS)
    print(f"  posted in {posting:.1f} s", flush=True)
    with psycopg.connect(conninfo(url), autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")  # what autovacuum does in the weeks before a close
    db = Database.from_url(url)
    clock = FrozenClock(AFTER_MONTH)
    await SettlementService.for_settings(Settings(database_url=url), db=db, clock=clock).close(MONTH, by="bench")
    await db.dispose()
    path = workdir / f"{FOCUS}-{MONTH}-{count}.csv"
    expected = write_records(path, count)
    baseline = time_baseline(url, path)
    child = subprocess.run(
        [sys.executable, __file__, "--child", url, str(path)], check=False, capture_output=True, text=True
    )
    if child.returncode:
        raise SystemExit(f"reconciling the file failed:\n{child.stderr}")
    measured = Measured(count=count, file_bytes=path.stat().st_size, baseline=baseline, **json.loads(child.stdout))
    found = (
        measured.lines,
        measured.mismatched,
        measured.duplicate,
        measured.missing_in_ledger,
        measured.missing_in_partner,
    )
    assert found == (expected.lines, expected.mismatched, expected.repeated, expected.unknown, expected.left_out), (
        measured,
        expected,
    )
    databases.drop(url)
    return measured


async def main(arguments: argparse.Namespace) -> None:
    cluster = None if arguments.database_url else ThrowawayCluster.start()
    server_url = arguments.database_url if cluster is None else cluster.url
    databases = PostgresDatabases(server_url)
    try:
        with tempfile.TemporaryDirectory(prefix="reconcile-bench-") as workdir:
            results = [await measure(databases, count, Path(workdir)) for count in arguments.lines]
        print("\nreconciliation benchmark (times warm; memory: the reconciling process's peak RSS)")
        print(
            f"  {'lines':>10} {'file':>9} {'COPY+join':>10} {'reconcile':>10} {'ratio':>6} {'RSS before':>11} {'RSS peak':>9}   breaks"
        )
        for r in results:
            print(
                f"  {r.lines:>10,} {r.file_bytes / 2**20:>7.1f}MB {r.baseline:>9.3f}s {r.seconds:>9.3f}s "
                f"{r.seconds / r.baseline:>6.2f} {r.rss_before_kb / 1024:>9.1f}MB {r.rss_peak_kb / 1024:>7.1f}MB   "
                f"{r.mismatched} mismatched, {r.duplicate} duplicate, "
                f"{r.missing_in_ledger} missing in ledger, {r.missing_in_partner} missing in partner"
            )
        print("  target: reconcile <= 2.00x COPY+join; peak RSS the same for every size")
    finally:
        databases.drop_all()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--database-url", help="a PostgreSQL server to use instead of a throwaway cluster")
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.child:
        print(json.dumps(asyncio.run(reconcile_in_this_process(parsed.child[0], Path(parsed.child[1])))))
    else:
        asyncio.run(main(parsed))
