"""``exchange webhooks``: subscribe, deliver, read the log, replay, rotate and delete, as an
operator does (in process, through click's runner, on a migrated database of each kind); and a
delivery process killed with SIGKILL mid-delivery."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime

from click.testing import CliRunner, Result
from sqlalchemy import update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exchange.cli import main
from exchange.db.database import Database
from exchange.serving import free_port, serving
from exchange.webhooks.events import Event, EventType
from exchange.webhooks.models import WebhookDelivery
from exchange.webhooks.outbox import emit


def exchange(database_url: str, *argv: str) -> Result:
    return CliRunner().invoke(main, list(argv), prog_name="exchange", env={"EXCHANGE_DATABASE_URL": database_url})


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
    listed = exchange(database_url, "webhooks", "list")
    assert listed.stdout == f"{sid}  -  {down}  period.closed\n" and listed.stderr == "1 subscription\n"

    asyncio.run(close_a_period(database_url))
    delivered = exchange(database_url, "webhooks", "deliver")
    assert delivered.output.strip() == "1 delivery made; 0 delivered, 1 to retry, 0 dead-lettered, 0 cut off"
    listed = exchange(database_url, "webhooks", "deliveries", sid)
    deliveries = listed.stdout
    assert re.search(r"^\d+  msg_\w+  period.closed  period:2026-10  PENDING  tries=1  last=ConnectError", deliveries)
    assert listed.stderr == "1 delivery\n"
    log = exchange(database_url, "webhooks", "log", sid)
    assert "status=-" in log.stdout and log.stderr == "1 attempt\n"

    pending = deliveries.split()[0]
    refused = exchange(database_url, "webhooks", "replay", "--delivery", pending, sid)
    assert refused.exit_code == 2
    assert f"no delivered or dead-lettered delivery with id {pending}" in refused.output
    assert "0 deliveries queued again" in exchange(database_url, "webhooks", "replay", "--dead", sid).output
    unsaid = exchange(database_url, "webhooks", "replay", sid)  # named the options: GraphQL's words named none
    assert (unsaid.exit_code, unsaid.output) == (
        2,
        "Error: say which deliveries: --delivery ID (repeatable), --dead or --since TIME "
        "(see 'exchange webhooks replay --help')\n",
    )

    rotated = exchange(database_url, "webhooks", "rotate", sid)
    assert re.search(r"^secret: whsec_\S{40,}$", rotated.output, re.MULTILINE), rotated.output
    bad = exchange(database_url, "webhooks", "create", "--url", "http://partner.example/hook")
    assert (bad.exit_code, bad.output.strip()) == (
        2,
        "Error: https:// is required (http:// only to a loopback host in development)",
    )
    assert exchange(database_url, "webhooks", "delete", sid).exit_code == 0
    emptied = exchange(database_url, "webhooks", "list")
    assert (emptied.stdout, emptied.stderr) == ("", "0 subscriptions\n"), "an empty listing says so, apart"
    # Deleted, it is listed on request, and its log (what never reached the receiver) still read.
    gone = exchange(database_url, "webhooks", "list", "--deleted")
    assert re.match(rf"^{sid}  .*  deleted=\S+\n$", gone.stdout), gone.stdout
    cancelled = exchange(database_url, "webhooks", "deliveries", sid)
    assert f"{pending}  " in cancelled.stdout and "  CANCELLED  " in cancelled.stdout, cancelled.output
    assert "status=-" in exchange(database_url, "webhooks", "log", sid).stdout
    never = exchange(database_url, "webhooks", "deliveries", "no-such-subscription")
    assert (never.exit_code, never.output.strip()) == (
        2,
        "Error: no webhook subscription has id 'no-such-subscription'",
    )


def test_an_operator_names_event_types_as_receivers_see_them_or_as_graphql_does_and_reads_them_back_canonical(
    database_url: str,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    made = exchange(
        database_url, "webhooks", "create", "--url", url, "--event", "CONVERSION_COMPLETED", "--event", "period.closed"
    )
    assert made.exit_code == 0, made.output
    assert "events: conversion.completed period.closed" in made.output
    assert f"{url}  conversion.completed,period.closed" in exchange(database_url, "webhooks", "list").output
    wrong = exchange(database_url, "webhooks", "create", "--url", url, "--event", "conversion_completed")
    assert wrong.exit_code == 2
    assert "unknown event type 'conversion_completed'; the types are conversion.completed," in wrong.output


async def test_a_delivery_process_killed_while_its_receiver_holds_the_event_leaves_it_sent_again_with_its_id(
    pg_database_url: str,
) -> None:
    """The only test that SIGKILLs a real delivery process: ``exchange webhooks deliver`` dies
    while the receiver holds the event, before it could record the attempt. Once its lease has
    run out, the next pass sends the same message (``webhook-id`` and body) again and records
    it delivered: at least once, and the receiver can dedupe."""
    received: list[tuple[str, bytes]] = []
    got, release = asyncio.Event(), asyncio.Event()

    async def hook(request: Request) -> Response:
        received.append((request.headers["webhook-id"], await request.body()))
        got.set()
        if len(received) == 1:
            await release.wait()  # the first request gets no answer before its sender dies
        return Response(status_code=204)

    async with serving(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver:
        url = receiver.url + "/hook"
        made = await asyncio.to_thread(
            exchange, pg_database_url, "webhooks", "create", "--url", url, "--event", "period.closed"
        )
        assert made.exit_code == 0, made.output
        await close_a_period(pg_database_url)
        worker = subprocess.Popen(
            [sys.executable, "-m", "exchange", "webhooks", "deliver"],
            env={**os.environ, "EXCHANGE_DATABASE_URL": pg_database_url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await asyncio.wait_for(got.wait(), timeout=120)
        finally:
            worker.kill()
            worker.wait()
        release.set()
        assert worker.returncode == -signal.SIGKILL

        db = Database.from_url(pg_database_url)
        try:
            async with db.transaction() as session:  # the dead worker's lease runs out
                await session.exec(update(WebhookDelivery).values(lease_until=datetime.now(UTC)))
        finally:
            await db.dispose()
        again = await asyncio.to_thread(exchange, pg_database_url, "webhooks", "deliver")
    assert again.output.strip() == "0 deliveries made; 1 delivered, 0 to retry, 0 dead-lettered, 0 cut off"
    [(first_id, first_body), (second_id, second_body)] = received
    assert (second_id, second_body) == (first_id, first_body)
