"""Webhooks across crashes. Real gateway processes killed with SIGKILL: once after a
conversion committed and before any worker dispatched its event, and once while the event's
delivery was on the wire to a receiver that had not answered. The partner's receiver gets
the event after the restart, every time under the same ``webhook-id`` and with the same body,
the delivery ends DELIVERED once, and the event exists once: it committed with the
conversion. And a conversion whose completing unit of work dies (its connection killed
after the event was written in it) leaves no event: none for a change that rolled back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlmodel import col, select
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exchange.clock import SystemClock
from exchange.conversions.models import ConversionStatus
from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.services.webhooks import WebhookService
from exchange.serving import serving
from exchange.testing.sandboxes import SandboxFleet
from exchange.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent
from exchange.webhooks.subscriptions import SubscriptionDraft
from tests.integration import test_conversion_saga as conversions
from tests.integration.soaking import EXECUTE, QUOTE, Soak, running_soak
from tests.outages import KilledPosting

MEMBER = "soak00"
SOURCE, TARGET = "wallet-pay", "happy-card"


class Receiver:
    """A partner's receiver on loopback: while ``hanging`` is set it takes each request and
    never answers; otherwise it answers 204. It keeps every request's headers and body."""

    def __init__(self) -> None:
        self.hanging = asyncio.Event()
        self.released = asyncio.Event()
        self.received: list[tuple[dict[str, str], bytes]] = []

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((dict(request.headers), body))
        if self.hanging.is_set():
            await self.released.wait()
        return Response(status_code=204)

    async def until_received(self, count: int, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} requests received, not {count}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def soak(pg_database_url: str, sandboxes: SandboxFleet, tmp_path: Path) -> AsyncIterator[Soak]:
    """A gateway that dispatches no webhook (an interval of 0) until a test restarts it with one."""
    async with running_soak(
        pg_database_url,
        sandboxes,
        tmp_path,
        members=(MEMBER,),
        EXCHANGE_WEBHOOK_INTERVAL_SECONDS="0",
        EXCHANGE_WEBHOOK_TIMEOUT_SECONDS="2",  # the kill comes well within one attempt
        EXCHANGE_WEBHOOK_FIRST_RETRY_SECONDS="0.2",
    ) as running:
        yield running


async def _delivered(soak: Soak, within: float = 60) -> WebhookDelivery:
    deadline = time.monotonic() + within
    while True:
        async with soak.kit.db.transaction() as session:
            rows = (await session.exec(select(WebhookDelivery))).all()
        if rows and all(row.status == DeliveryStatus.DELIVERED for row in rows):
            (row,) = rows
            return row
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.1)


async def test_a_gateway_killed_before_dispatching_and_again_while_delivering_delivers_after_restart(
    soak: Soak,
) -> None:
    receiver = Receiver()
    async with serving(Starlette(routes=[Route("/hook", receiver.hook, methods=["POST"])])) as server:
        try:
            service = WebhookService.for_settings(soak.kit.settings, db=soak.kit.db, clock=SystemClock())
            made = await service.create(
                SubscriptionDraft(server.url + "/hook", ["conversion.completed"], program_id=TARGET), by="test"
            )
            await service.aclose()
            token = soak.tokens[MEMBER][SOURCE]
            quote = await soak.kit.data(QUOTE, token, **{"from": SOURCE, "to": TARGET, "points": 50})
            conversion = await soak.kit.data(EXECUTE, token, quote=quote["createQuote"]["id"], key="k")
            assert conversion["executeConversion"]["status"] == "COMPLETED"

            # Killed after the conversion committed, before any worker dispatched its event.
            soak.gateway.kill()
            assert not receiver.received
            soak.gateway.env["EXCHANGE_WEBHOOK_INTERVAL_SECONDS"] = "0.2"
            receiver.hanging.set()
            await soak.gateway.start()
            await receiver.until_received(1)
            # Killed again while the receiver holds the delivery's request unanswered.
            soak.gateway.kill()
            receiver.hanging.clear()
            await soak.gateway.start()
            delivery = await _delivered(soak)  # once the dead process's lease ran out
        finally:
            receiver.released.set()
    async with soak.kit.db.transaction() as session:
        events = (await session.exec(select(WebhookEvent).order_by(col(WebhookEvent.sequence)))).all()
    (event,) = events
    assert event.object == f"conversion:{conversion['executeConversion']['id']}"
    assert len(receiver.received) == 2
    assert {headers["webhook-id"] for headers, _ in receiver.received} == {event.id}
    for headers, body in receiver.received:
        assert Webhook(made.secret).verify(body, headers)["type"] == "conversion.completed"
    assert delivery.attempts == 1  # the killed attempt was never recorded; the one after it was


async def test_a_completion_whose_unit_of_work_dies_leaves_no_event_and_its_recovery_writes_one(
    pg_db: Database,
) -> None:
    world = await conversions.make_world(pg_db)
    world.saga.ledger = KilledPosting(pg_db, world.clock, conversions.TAIPEI, kills=1)
    quote = await world.quote(1000)
    with pytest.raises(DatabaseUnavailable):
        await world.execute(quote)  # the credit applied; the move to COMPLETED rolled back
    async with pg_db.transaction() as session:
        assert (await session.exec(select(WebhookEvent))).all() == []
    again = await world.execute(quote)
    assert again.status == ConversionStatus.PENDING
    assert await world.recover_all() == 1
    async with pg_db.transaction() as session:
        events = (await session.exec(select(WebhookEvent))).all()
    assert [(event.type, event.object) for event in events] == [("conversion.completed", f"conversion:{again.id}")]
    assert await world.ledger_transactions() == 1
