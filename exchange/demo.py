"""``exchange demo``: the whole exchange on one machine, with sample programs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from exchange.app import create_app
from exchange.db import migrate
from exchange.loading import load_partners_directory
from exchange.programs.declarations import read_partners_directory
from exchange.sandbox.server import SandboxServer, demo_sandboxes
from exchange.serving import RunningServer, start_server, wait_for_stop_signal
from exchange.settings import Settings

EXAMPLE_QUERY = "{ programs { id name pointValue tiers { name level } } }"


def banner(gateway_url: str, settings: Settings, sandboxes: list[SandboxServer]) -> str:
    url = f"{gateway_url}/graphql"
    partners = [
        f"    {server.program.id:<12} {server.program.connector.kind:<8} {server.url}"
        for server in sandboxes
    ]
    return "\n".join(
        [
            "",
            "The coalition points exchange demo is running.",
            f"  GraphiQL (open in a browser): {url}",
            f"  Database: {settings.database_url}",
            "  Sandbox partners (members alice, bob, carol, dave; admin API at <url>/_sandbox):",
            *partners,
            "  Try this query:",
            f"    {EXAMPLE_QUERY}",
            "  or from a shell:",
            f"    curl -s {url} -H 'content-type: application/json' \\",
            f"      -d '{{\"query\": \"{EXAMPLE_QUERY}\"}}'",
            "Stop it with Ctrl-C.",
            "",
        ]
    )


async def run_demo(settings: Settings, data_dir: Path) -> None:
    """Sandbox partners, then the gateway; Ctrl-C (or SIGTERM) stops the gateway, then them.

    The sandboxes run in this process and event loop (through exchange.serving), not as
    child processes: one Ctrl-C stops everything, nothing is left behind if the demo dies,
    and a port already taken fails the start with a clear message.
    """
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    report = (await load_partners_directory(settings)).programs
    print(f"loaded {len(report.created) + len(report.updated) + len(report.unchanged)} programs "
          f"from {settings.partners_dir}")
    programs = read_partners_directory(settings.partners_dir).programs
    sandboxes = demo_sandboxes(programs, data_dir / "sandboxes", os.environ)
    gateway: RunningServer | None = None
    try:
        for sandbox in sandboxes:
            await sandbox.start()
        gateway = await start_server(
            create_app(settings), host=settings.host, port=settings.port, handle_signals=False
        )
        print(banner(gateway.url, settings, sandboxes), flush=True)
        await wait_for_stop_signal()
    finally:
        if gateway is not None:
            await gateway.stop()
        await asyncio.gather(*(sandbox.stop() for sandbox in sandboxes))
