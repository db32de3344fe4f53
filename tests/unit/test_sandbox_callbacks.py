"""An async sandbox's callbacks: sent as its ``callback`` knob says, and sent again when the
exchange answers that it is not waiting for the word yet (respx plays the exchange)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from exchange.connectors.contract import Operation
from exchange.sandbox import late
from exchange.sandbox.faults import FaultInjector
from exchange.sandbox.late import CallbackTarget, LateSettler
from exchange.testing.clock import FrozenClock

URL = "http://exchange.test/partners/fresh-mart/callbacks"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SETTLED = Operation(
    operation_id="c1:credit", kind="credit", status="applied", member_ref="alice", points=100, created_at=NOW
)


class SettledOnce:
    """The sandbox's points system, down to one operation settled on the first pass."""

    def __init__(self) -> None:
        self.due = [SETTLED]

    async def settle_pending(self, **_: Any) -> list[Operation]:
        settled, self.due = self.due, []
        return settled


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(late, "NOT_WAITING_PAUSE_SECONDS", 0)


async def sent_answers(*answers: int) -> list[int | None]:
    target = CallbackTarget(url=URL)
    settler = LateSettler(SettledOnce(), FaultInjector(), target, secret="s", clock=FrozenClock(NOW))  # type: ignore[arg-type]
    with respx.mock:
        respx.post(URL).mock(side_effect=[httpx.Response(status) for status in answers])
        async with httpx.AsyncClient() as http:
            await settler.settle_once(http)
    return [sent["answer"] for sent in target.sent]


async def test_a_callback_the_exchange_is_not_waiting_for_yet_is_sent_again_until_taken() -> None:
    assert await sent_answers(409, 409, 200) == [409, 409, 200]


async def test_a_callback_sent_again_gives_up_after_its_tries() -> None:
    assert await sent_answers(*[409] * (late.NOT_WAITING_TRIES + 1)) == [409] * late.NOT_WAITING_TRIES


async def test_any_other_refusal_is_not_sent_again_the_exchange_polls() -> None:
    assert await sent_answers(500, 200) == [500]
