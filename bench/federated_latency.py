"""`me { accounts }` over five partners that each take 20 ms: the gateway should take about as
long as the slowest partner, not the sum of them.

Five sandbox partners (each its own process) add 20 ms to every answer; the balance cache is
off so every request asks all five. Measures the gateway's latency for the federated view
and, in the same run, each partner's own latency for the same account call (through the same
connector code the gateway uses), alone and all five at once. Asked at once, five partner
processes share this machine's cores, so the slowest of them answers later than any does
alone: that concurrent figure is the floor for anyone federating the five, and the target
(the gateway's p50 within 5 ms of the slowest partner) is measured against it. Both gaps
are printed. The gateway's requests and the five partners asked at once take turns, one of
each a round, so that whatever else the machine does meanwhile weighs on both alike.

    .venv/bin/python bench/federated_latency.py [--requests 200] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import time
from collections.abc import Awaitable, Callable

from stack import describe, running_stack

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.registry import ConnectorRegistry
from exchange.connectors.transport import AiohttpTransport
from exchange.programs.declarations import read_partners_directory

COALITION_POINT = "coalition"
PROGRAMS = ("wallet-pay", "happy-card", "fresh-mart", "harbor-bank", "tune-stream")
ACCOUNTS = "{ me { accounts { program { id } balance error { code } } } }"


async def timed(call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def main(arguments: argparse.Namespace) -> None:
    # The gateway is asked over the transport the partners are asked over in the comparisons
    # below (the exchange's connectors'), so that neither side pays a client the other does not.
    async with running_stack(PROGRAMS, transport=AiohttpTransport(), EXCHANGE_BALANCE_CACHE_SECONDS="0") as stack:
        token = (await stack.members(1, PROGRAMS, balance=10_000))["bench000"][PROGRAMS[0]]
        for admin in stack.admins.values():
            await admin.set_faults(latency_ms=20)

        async def federated() -> None:
            body = (await stack.kit.graphql(ACCOUNTS, token)).json()
            accounts = body["data"]["me"]["accounts"]
            # The five partners' accounts, and the coalition point's, which the exchange keeps itself.
            asked = {account["program"]["id"] for account in accounts} - {COALITION_POINT}
            assert asked == set(PROGRAMS) and all(account["error"] is None for account in accounts), body

        partner_times = {}
        declarations = {p.id: p for p in read_partners_directory(stack.settings.partners_dir).programs}
        registry = ConnectorRegistry(stack.settings, environ={})
        try:
            connectors = [registry.connector(program, declarations[program].connector) for program in PROGRAMS]
            for connector in connectors:

                async def direct(connector: PartnerConnector = connector) -> None:
                    await connector.account("bench000")

                for _ in range(10):
                    await direct()
                partner_times[connector.program_id] = [await timed(direct) for _ in range(arguments.requests)]

            async def all_at_once() -> None:
                await asyncio.gather(*(connector.account("bench000") for connector in connectors))

            for _ in range(20):
                await federated()
                await all_at_once()
            profiler = stack.profile_gateway(arguments.profile, 3600) if arguments.profile else None
            gateway, together = [], []
            for _ in range(arguments.requests):
                gateway.append(await timed(federated))
                together.append(await timed(all_at_once))
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)  # py-spy stops and writes what it sampled
                profiler.wait()
        finally:
            await registry.aclose()

        slowest = max(partner_times, key=lambda program: statistics.median(partner_times[program]))
        median = statistics.median
        print(f"federated view benchmark: {arguments.requests} sequential requests, 5 partners at +20 ms each")
        for program, samples in partner_times.items():
            print(f"  partner {program:<12} alone        {describe(samples)}")
        print(f"  all 5 partners at once, direct  {describe(together)}")
        print(f"  gateway me.accounts             {describe(gateway)}")
        print(f"  sum of the partners' p50s: {sum(median(s) for s in partner_times.values()) * 1000:.1f} ms")
        print(
            f"  gateway p50 - slowest partner's p50 alone ({slowest}): "
            f"{(median(gateway) - median(partner_times[slowest])) * 1000:+.1f} ms"
        )
        print(
            f"  gateway p50 - slowest of all 5 asked at once (p50): "
            f"{(median(gateway) - median(together)) * 1000:+.1f} ms   (target <= 5 ms)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--profile", metavar="FILE", help="sample the gateway with py-spy while it answers, into FILE")
    asyncio.run(main(parser.parse_args()))
