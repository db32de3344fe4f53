"""End-to-end conversions per second on PostgreSQL with sandbox partners, next to pgbench's
TPC-B on the same database and a bare Strawberry query on the same server setup.

A conversion here is what a member's app does: `createQuote` then `executeConversion`, over
HTTP with a member token, each through the whole gateway (auth, pricing, limits, the saga:
debit at one sandbox partner, credit at another, the ledger posting). The same load generator
(CONCURRENCY clients) asks a bare Strawberry app served by uvicorn with the same worker count
for `{ hello }`. The two loads take turns, ROUNDS rounds of each sharing DURATION seconds, so
that the machine's drift (a quarter from minute to minute on a shared machine) weighs on both
alike; the figures add the rounds up. pgbench then runs TPC-B on the exchange's own database.
Target: conversions/s at least 0.3x the bare query's rate.

It counts the SQL statements the gateway sent per conversion (quote and execute), as
PostgreSQL's ``pg_stat_statements`` saw them: every statement but BEGIN, COMMIT and ROLLBACK
(the transactions are counted apart), less what the gateway's background jobs send on their
own, measured in an idle window (``--idle`` seconds) before the load and printed beside.

It also prints the CPU time each part of the machine (gateway, PostgreSQL, partners, the load
generator itself) spent per conversion and per bare query, read from /proc (Linux): on a
machine whose cores are all busy, that sum bounds the rate whatever the concurrency.

    .venv/bin/python bench/conversion_throughput.py [--workers 2] [--concurrency 16] [--duration 20]
        [--rounds 4] [--statements] [--profile FILE]

``--profile`` needs py-spy (``.venv/bin/pip install py-spy``); FILE holds its collapsed stacks
(``py-spy record --format raw``), one line per stack with its sample count.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url
from stack import describe, own_cpu_seconds, running_stack, tree_cpu_seconds

from exchange.serving import free_port
from exchange.testing.postgres import find_server_binaries

PROGRAMS = ("wallet-pay", "happy-card", "fresh-mart")
#: Amounts each source accepts (minimum, increment).
AMOUNTS = {"wallet-pay": (10, 1), "happy-card": (100, 4), "fresh-mart": (200, 10)}
QUOTE = """mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) { id } }"""
EXECUTE = """mutation($quote: ID!, $key: String!) {
  executeConversion(quoteId: $quote, idempotencyKey: $key) { status } }"""


async def load(
    operation: Callable[[int], Awaitable[None]], concurrency: int, duration: float
) -> tuple[int, list[float]]:
    """Run ``operation`` from ``concurrency`` clients for ``duration`` seconds; count and latencies."""
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    counter = iter(range(10**9))

    async def client() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await operation(next(counter))
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    return len(latencies), latencies


def pgbench(database_url: str, duration: int) -> float:
    url = make_url(database_url)
    binary = str(find_server_binaries() / "pgbench")
    env = {
        **os.environ,
        "PGHOST": str(url.host),
        "PGPORT": str(url.port),
        "PGUSER": str(url.username),
        "PGDATABASE": str(url.database),
    }
    subprocess.run([binary, "-i", "-s", "10", "-q"], env=env, check=True, capture_output=True)
    output = subprocess.run(
        [binary, "-c", "8", "-j", "2", "-T", str(duration), "-n"], env=env, check=True, capture_output=True, text=True
    ).stdout
    match = re.search(r"tps = ([\d.]+)", output)
    assert match, output
    return float(match.group(1))


@asynccontextmanager
async def bare_server(workers: int) -> AsyncIterator[tuple[int, httpx.AsyncClient]]:
    """The bare Strawberry app under uvicorn with ``workers`` workers: its process id and a client."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--app-dir",
            str(Path(__file__).parent),
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(200):
                try:
                    await http.post("/graphql", json={"query": "{ hello }"})
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            yield server.pid, http
    finally:
        server.terminate()
        server.wait(timeout=30)


@dataclass
class Tally:
    """What the rounds of one kind of load added up to: operations, their latencies, seconds
    under load, and CPU seconds by part of the machine."""

    count: int = 0
    seconds: float = 0
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)

    async def measure(
        self,
        operation: Callable[[int], Awaitable[None]],
        concurrency: int,
        duration: float,
        cpu: Callable[[], dict[str, float]],
    ) -> None:
        before = cpu()
        count, latencies = await load(operation, concurrency, duration)
        after = cpu()
        self.count += count
        self.seconds += duration
        self.latencies += latencies
        for part, seconds in after.items():
            self.cpu[part] = self.cpu.get(part, 0.0) + seconds - before[part]

    def per_operation(self) -> dict[str, float]:
        return {part: seconds / self.count for part, seconds in self.cpu.items()}


async def main(arguments: argparse.Namespace) -> None:
    round_seconds = arguments.duration / arguments.rounds
    async with (
        bare_server(arguments.workers) as (bare_pid, bare_http),
        running_stack(PROGRAMS, workers=arguments.workers) as stack,
    ):
        tokens = await stack.members(arguments.members, PROGRAMS, balance=100_000_000)
        refs = list(tokens)
        rng = random.Random(7)
        statuses: dict[str, int] = {}

        async def conversion(number: int) -> None:
            member = rng.choice(refs)
            source, target = rng.sample(PROGRAMS, 2)
            minimum, step = AMOUNTS[source]
            points = minimum + step * rng.randrange(0, 50)
            variables: dict[str, Any] = {"from": source, "to": target, "points": points}
            quote = (await stack.kit.graphql(QUOTE, tokens[member][source], **variables)).json()
            quote_id = quote["data"]["createQuote"]["id"]
            executed = (
                await stack.kit.graphql(
                    EXECUTE, tokens[member][source], quote=quote_id, key=f"bench-{uuid.uuid4().hex}"
                )
            ).json()
            assert executed.get("data") and executed["data"]["executeConversion"], executed
            status = executed["data"]["executeConversion"]["status"]
            statuses[status] = statuses.get(status, 0) + 1

        async def hello(_: int) -> None:
            response = await bare_http.post("/graphql", json={"query": "{ hello }"})
            assert response.json() == {"data": {"hello": "world"}}

        def bare_cpu() -> dict[str, float]:
            return {"server": tree_cpu_seconds(bare_pid), "load generator": own_cpu_seconds()}

        await load(conversion, arguments.concurrency, 3)  # warm up: tokens, connections, caches
        await load(hello, arguments.concurrency, 1)
        statuses.clear()
        # What the background jobs (recovery, expiry, ...) send on their own, measured idle.
        idle_before = await stack.statements_sent()
        await asyncio.sleep(arguments.idle)
        idle_after = await stack.statements_sent()
        background_rate = (idle_after[0] - idle_before[0]) / arguments.idle
        calls_before = await stack.statement_calls()
        profiler = stack.profile_gateway(arguments.profile, 2 * arguments.duration) if arguments.profile else None
        conversions, bare = Tally(), Tally()
        sent = [0, 0]
        # The two loads take turns, a round of each at a time, so that whatever else the machine
        # does meanwhile (its speed drifts by a quarter from minute to minute here) weighs on both.
        for _ in range(arguments.rounds):
            sent_before = await stack.statements_sent()
            await conversions.measure(conversion, arguments.concurrency, round_seconds, stack.cpu_seconds)
            sent_after = await stack.statements_sent()
            sent = [sent[i] + sent_after[i] - sent_before[i] for i in range(2)]
            await bare.measure(hello, arguments.concurrency, round_seconds, bare_cpu)
        if profiler is not None:
            profiler.wait()
        statements, transactions = sent
        calls = {query: n - calls_before.get(query, 0) for query, n in (await stack.statement_calls()).items()}
        count = conversions.count
        conversion_cpu = conversions.per_operation()
        gateway_kernel = conversion_cpu.pop("gateway (system)")
        bare_cpu_per_query = bare.per_operation()
        conversions_rate = count / conversions.seconds
        bare_rate = bare.count / bare.seconds
        tps = await asyncio.to_thread(pgbench, stack.database_url, int(arguments.duration))

    print(
        f"conversion throughput benchmark: {arguments.concurrency} clients for {arguments.duration:.0f} s, "
        f"{arguments.workers} gateway worker(s), {len(PROGRAMS)} sandbox partners, PostgreSQL"
    )
    print(
        f"  conversions (quote + execute)  {conversions_rate:8.1f} /s   {describe(conversions.latencies)}   {statuses}"
    )
    print(f"  bare Strawberry query          {bare_rate:8.1f} /s   {describe(bare.latencies)}")
    print(f"  pgbench TPC-B (8 clients)      {tps:8.1f} tps on the same database")
    print(f"  ratio conversions / bare query: {conversions_rate / bare_rate:.3f}   (target >= 0.3)")
    background = background_rate * conversions.seconds
    print(
        f"  SQL statements per conversion: {(statements - background) / count:.1f}   "
        f"(in {transactions / count:.1f} transactions; the background jobs sent {background / count:.2f} "
        "more per conversion)"
    )
    if arguments.statements:
        for query, n in sorted(calls.items(), key=lambda item: -item[1]):
            if n:
                print(f"    {n / count:5.2f}  {' '.join(query.split())[:150]}")
    cores = os.cpu_count() or 1
    for label, cpu in (("a conversion", conversion_cpu), ("a bare query", bare_cpu_per_query)):
        total = sum(cpu.values())
        parts = ", ".join(f"{part} {seconds * 1000:.1f}" for part, seconds in cpu.items())
        print(
            f"  CPU ms per {label}: {parts}; all {total * 1000:.1f} (at most {cores / total:,.0f}/s on {cores} cores)"
        )
    print(
        f"  gateway CPU per conversion / bare query server CPU: "
        f"{conversion_cpu['gateway'] / bare_cpu_per_query['server']:.1f}x"
        f"   (target <= 6x; of the gateway's {conversion_cpu['gateway'] * 1000:.1f} ms,"
        f" {gateway_kernel * 1000:.1f} in the kernel)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--members", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4, help="turns each load takes, sharing --duration (default 4)")
    parser.add_argument("--idle", type=float, default=10, help="seconds to count the background jobs' statements")
    parser.add_argument("--statements", action="store_true", help="print each statement's calls per conversion")
    parser.add_argument(
        "--profile", metavar="FILE", help="sample the gateway's processes with py-spy under the load into FILE"
    )
    asyncio.run(main(parser.parse_args()))
