"""``exchange webhooks``: subscribe, deliver, read the log, replay, rotate and delete, as an
operator does (in process, through click's runner, on a migrated database of each kind)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from click.testing import CliRunner, Result

from exchange.cli import main
from exchange.db.database import Database
from exchange.serving import free_port
from exchange.webhooks.events import Event, EventType
from exchange.webhooks.outbox import emit


def exchange(database_url: str, *argv: str) -> Result:
    return CliRunner().invoke(main, list(argv), env={"EXCHANGE_DATABASE_URL": database_url})


async def close_a_period(database_url: str) -> None:
    db = Database.from_url(database_url)
    try:
        async with db.transaction() as session:
            now = datetime.now(UTC)
            await emit(session, Event(EventType.PERIOD_CLOSED, "period:2026-10", None, {"period": "2026-10"}, now))
    finally:
        await db.dispose()


def test_an_operator_subscribes_delivers_reads_the_log_replays_rotates_and_deletes(database_url: str) -> None:
    down = f"http://127.0.0.1:{free_port()}/hook"
    made = exchange(database_url, "webhooks", "create", "--url", down, "--event", "period.closed")
    assert made.exit_code == 0, made.output
    subscription = re.search(r"^subscription: (\S+)$", made.output, re.MULTILINE)
    assert subscription is not None and re.search(r"^secret:\s+whsec_\S{40,}$", made.output, re.MULTILINE)
    sid = subscription.group(1)
    assert f"{sid}  -  {down}  period.closed" in exchange(database_url, "webhooks", "list").output

    asyncio.run(close_a_period(database_url))
    delivered = exchange(database_url, "webhooks", "deliver")
    assert delivered.output.strip() == "1 deliveries made; 0 delivered, 1 to retry, 0 dead-lettered"
    deliveries = exchange(database_url, "webhooks", "deliveries", sid).output
    assert re.search(r"^\d+  msg_\w+  period.closed  period:2026-10  PENDING  tries=1  last=ConnectError", deliveries)
    assert "status=-" in exchange(database_url, "webhooks", "log", sid).output

    pending = deliveries.split()[0]
    refused = exchange(database_url, "webhooks", "replay", "--delivery", pending, sid)
    assert refused.exit_code == 2
    assert f"no delivered or dead-lettered delivery with id {pending}" in refused.output
    assert "0 deliveries queued again" in exchange(database_url, "webhooks", "replay", "--dead", sid).output

    rotated = exchange(database_url, "webhooks", "rotate", sid)
    assert re.search(r"^secret: whsec_\S{40,}$", rotated.output, re.MULTILINE), rotated.output
    bad = exchange(database_url, "webhooks", "create", "--url", "http://partner.example/hook")
    assert (bad.exit_code, bad.output.strip()) == (
        2,
        "Error: https:// is required (http:// only to a loopback host in development)",
    )
    assert exchange(database_url, "webhooks", "delete", sid).exit_code == 0
    assert exchange(database_url, "webhooks", "list").output == ""
    gone = exchange(database_url, "webhooks", "deliveries", sid)
    assert (gone.exit_code, gone.output.strip()) == (2, f"Error: no webhook subscription has id {sid!r}")
