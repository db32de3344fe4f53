"""``exchange demo``: the whole exchange on one machine, with sample programs."""

from __future__ import annotations

import asyncio

from exchange.app import create_app
from exchange.db import migrate
from exchange.loading import load_partners_directory
from exchange.serving import start_server
from exchange.settings import Settings

EXAMPLE_QUERY = "{ programs { id name pointValue tiers { name level } } }"


def banner(gateway_url: str, settings: Settings) -> str:
    url = f"{gateway_url}/graphql"
    return "\n".join(
        [
            "",
            "The coalition points exchange demo is running.",
            f"  GraphiQL (open in a browser): {url}",
            f"  Database: {settings.database_url}",
            "  Try this query:",
            f"    {EXAMPLE_QUERY}",
            "  or from a shell:",
            f"    curl -s {url} -H 'content-type: application/json' \\",
            f"      -d '{{\"query\": \"{EXAMPLE_QUERY}\"}}'",
            "Stop it with Ctrl-C.",
            "",
        ]
    )


async def run_demo(settings: Settings) -> None:
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    report = (await load_partners_directory(settings)).programs
    print(f"loaded {len(report.created) + len(report.updated) + len(report.unchanged)} programs "
          f"from {settings.partners_dir}")
    gateway = await start_server(create_app(settings), host=settings.host, port=settings.port)
    print(banner(gateway.url, settings), flush=True)
    await gateway.task
