"""What the gateway benchmarks share: a throwaway PostgreSQL, sandbox partners and the gateway,
each in a process of its own, and members with tokens and linked accounts.

Not a benchmark itself; ``federated_latency.py`` and ``conversion_throughput.py`` use it.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url

from exchange.db import migrate
from exchange.db.database import Database
from exchange.sandbox.admin_client import SandboxAdmin
from exchange.services.container import load_partners_directory
from exchange.serving import free_port
from exchange.settings import Settings
from exchange.testing.databases import PostgresDatabases
from exchange.testing.kit import ExchangeKit
from exchange.testing.postgres import ThrowawayCluster
from exchange.testing.processes import ExchangeProcess, declarations_pointing_at, gateway_process, sandbox_process

SAMPLE_PARTNERS = Path(__file__).resolve().parents[1] / "partners"
#: What the gateway sent the database so far: every statement but the transaction boundaries,
#: and the transactions (one BEGIN each, with or without an isolation level). Left out: the
#: query reading the counters, and the statements of the ledger's deferred trigger, which the
#: server runs at COMMIT as if they were sent (they read the trigger's NEW row, which no
#: statement a client sends can).
STATEMENTS_SENT = text(
    """
    SELECT coalesce(sum(calls) FILTER (WHERE upper(query) NOT SIMILAR TO '(BEGIN|COMMIT|ROLLBACK)%'), 0),
           coalesce(sum(calls) FILTER (WHERE upper(query) LIKE 'BEGIN%'), 0)
      FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
     WHERE d.datname = :database AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%NEW.%'
    """
)
#: Each statement's calls so far, most called first (``--statements``).
STATEMENT_CALLS = text(
    """
    SELECT query, sum(calls) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
     WHERE d.datname = :database AND query NOT LIKE '%pg_stat_statements%'
     GROUP BY query
    """
)


@dataclass
class Stack:
    settings: Settings
    database_url: str
    kit: ExchangeKit
    admins: dict[str, SandboxAdmin]
    sandboxes: list[ExchangeProcess]
    gateway: ExchangeProcess
    cluster: ThrowawayCluster

    async def statements_sent(self) -> tuple[int, int]:
        """Statements (besides BEGIN, COMMIT, ROLLBACK) and transactions run so far in the
        exchange's database, as PostgreSQL counted them (``pg_stat_statements``): everything the
        gateway's processes sent, its background jobs included."""
        async with self.kit.db.transaction() as session:
            row = (await session.execute(STATEMENTS_SENT, {"database": make_url(self.database_url).database})).one()
        return int(row[0]), int(row[1])

    async def statement_calls(self) -> dict[str, int]:
        """Calls so far of each statement (normalized by ``pg_stat_statements``)."""
        async with self.kit.db.transaction() as session:
            rows = await session.execute(STATEMENT_CALLS, {"database": make_url(self.database_url).database})
        return {query: int(calls) for query, calls in rows}

    def profile_gateway(self, output: str, duration: float) -> subprocess.Popen[bytes]:
        """Start sampling the gateway's processes (``py-spy``) for ``duration`` seconds into
        ``output`` (collapsed stacks); wait on the process returned."""
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid_of(self.gateway)),
                "--subprocesses",
                "--nonblocking",  # pausing the workers to sample them would cost them CPU and stall them
                "--gil",  # only samples holding the interpreter: not a thread blocked in a socket write
                "--duration",
                str(int(duration)),
                "--format",
                "raw",
                "--output",
                output,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each part of the stack (with its child processes); and,
        apart, the gateway's time in the kernel (``gateway (system)``, part of ``gateway``)."""
        postmaster = int((self.cluster.root / "data" / "postmaster.pid").read_text().split()[0])
        return {
            "gateway": tree_cpu_seconds(pid_of(self.gateway)),
            "gateway (system)": tree_cpu_seconds(pid_of(self.gateway), kernel_only=True),
            "PostgreSQL": tree_cpu_seconds(postmaster),
            "partners": sum(tree_cpu_seconds(pid_of(sandbox)) for sandbox in self.sandboxes),
            "load generator": own_cpu_seconds(),
        }

    async def members(self, count: int, programs: Sequence[str], *, balance: int) -> dict[str, dict[str, str]]:
        """``count`` members with ``balance`` points at every program, linked; by ref, a token
        from each program (a token spends only its own program's points)."""
        tokens = {}
        for n in range(count):
            ref = f"bench{n:03d}"
            for program in programs:
                await self.admins[program].add_member(ref, balance=balance, verification="9999")
            tokens[ref] = await self.kit.linked_member(ref, programs, verification="9999")
        return tokens


@asynccontextmanager
async def running_stack(
    programs: Sequence[str],
    *,
    workers: int = 1,
    transport: httpx.AsyncBaseTransport | None = None,
    **gateway_env: str,
) -> AsyncIterator[Stack]:
    """PostgreSQL, one sandbox process per program, and ``exchange serve`` on a migrated database;
    the load generator asks the gateway through ``transport`` (None: httpx's own)."""
    work = Path(tempfile.mkdtemp(prefix="exchange-bench-"))
    cluster = ThrowawayCluster.start(shared_preload_libraries="pg_stat_statements")
    databases = PostgresDatabases(cluster.url)
    processes: list[ExchangeProcess] = []
    try:
        urls = {}
        for program in programs:
            process, urls[program] = sandbox_process(program, SAMPLE_PARTNERS, work / "sandboxes")
            processes.append(process)
            await process.start()
        partners = declarations_pointing_at(urls, SAMPLE_PARTNERS, work / "partners")
        database_url = databases.create()
        settings = Settings(database_url=database_url, partners_dir=partners, port=free_port())
        await asyncio.to_thread(migrate.ensure_migrated, database_url)
        await load_partners_directory(settings)
        db = Database.from_url(database_url)
        async with db.transaction() as session:
            await session.execute(text("CREATE EXTENSION pg_stat_statements"))
        gateway = gateway_process(settings, workers=workers, output=None, EXCHANGE_LOG_LEVEL="warning", **gateway_env)
        processes.append(gateway)
        await gateway.start()
        sandboxes = processes[:-1]
        async with httpx.AsyncClient(base_url=settings.issuer_url, timeout=60, transport=transport) as http:
            try:
                yield Stack(
                    settings=settings,
                    database_url=database_url,
                    kit=ExchangeKit(settings=settings, http=http, db=db),
                    admins={program: SandboxAdmin(url) for program, url in urls.items()},
                    sandboxes=sandboxes,
                    gateway=gateway,
                    cluster=cluster,
                )
            finally:
                await db.dispose()
    finally:
        for process in reversed(processes):
            process.stop()
        databases.drop_all()
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def pid_of(process: ExchangeProcess) -> int:
    assert process.process is not None
    return process.process.pid


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tree_cpu_seconds(root: int, *, kernel_only: bool = False) -> float:
    """User and system CPU seconds (``kernel_only``: system only) of process ``root`` and its
    descendants, live or reaped, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        # utime, stime, and the times of children already reaped (cutime, cstime)
        counted = (fields[12], fields[14]) if kernel_only else fields[11:15]
        times[pid] = sum(int(value) for value in counted) / os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [root]
    while pending:
        pid = pending.pop()
        total += times.get(pid, 0.0)
        pending.extend(children.get(pid, []))
    return total


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe(samples: Sequence[float]) -> str:
    """p50 / p99 / max of latencies given in seconds, in milliseconds."""
    return (
        f"p50 {statistics.median(samples) * 1000:7.1f} ms   p99 {percentile(samples, 0.99) * 1000:7.1f} ms   "
        f"max {max(samples) * 1000:7.1f} ms"
    )
