"""An async sandbox's late answers: it settles the debits and credits it accepted pending, and
tells the exchange by a signed callback (:mod:`exchange.connectors.callbacks`).

The settler runs beside the sandbox's server while the program's connector ``mode`` is
``async``, every few milliseconds: it settles what was accepted at least ``settle_after_ms``
ago (a fault knob; null holds every operation pending) and posts each settled operation to
the callback URL the admin API set (``PUT /_sandbox/callbacks``), as the ``callback`` knob
says: once, never, twice, or signed with a wrong key. A callback that fails is not sent
again: the exchange polls for what it missed, which is the point of the faults. Only one the
exchange answers ``409 NOT_WAITING_YET`` (it came before the exchange heard the operation's
"pending" answer) is sent again shortly, as partners/CONTRACT.md asks of every partner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from exchange.clock import Clock
from exchange.connectors.callbacks import callback_key, signed_headers
from exchange.connectors.contract import Operation
from exchange.sandbox.faults import CallbackFault, FaultInjector
from exchange.sandbox.points import PointsSystem
from exchange.trust_store import trust_store

logger = logging.getLogger("exchange.sandbox.late")

#: How often the settler looks for operations to settle.
INTERVAL_SECONDS = 0.05
#: Sends of one callback the exchange answers "not waiting yet", and the pause between them.
NOT_WAITING_TRIES = 5
NOT_WAITING_PAUSE_SECONDS = 0.2


@dataclass
class CallbackTarget:
    """Where the sandbox posts its callbacks (kept across restarts, like the fault knobs), and
    the latest callbacks sent with the answers they got (``None``: no answer)."""

    url: str | None = None
    sent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=1000))


class LateSettler:
    def __init__(
        self, points: PointsSystem, faults: FaultInjector, target: CallbackTarget, *, secret: str, clock: Clock
    ) -> None:
        self.points = points
        self.faults = faults
        self.target = target
        self.secret = secret
        self.clock = clock

    async def settle_once(self, http: httpx.AsyncClient) -> list[Operation]:
        """Settle what is due and send its callbacks; returns the operations settled."""
        after = self.faults.settings.settle_after_ms
        if after is None:
            return []
        settled = await self.points.settle_pending(
            accepted_by=self.clock.now() - timedelta(milliseconds=after), declines=self.faults.declines
        )
        for operation in settled:
            await self._tell(http, operation)
        return settled

    async def _tell(self, http: httpx.AsyncClient, operation: Operation) -> None:
        fault = self.faults.settings.callback
        if self.target.url is None or fault is CallbackFault.NEVER:
            return
        body = operation.model_dump_json().encode()
        key = callback_key("forged-" + self.secret if fault is CallbackFault.FORGED else self.secret)
        headers = signed_headers(
            key, f"{operation.operation_id}:{operation.status.value}", int(self.clock.now().timestamp()), body
        )
        for _ in range(2 if fault is CallbackFault.TWICE else 1):
            for tries_left in reversed(range(NOT_WAITING_TRIES)):
                answer = await self._post(http, self.target.url, operation, body, headers)
                if answer != 409 or not tries_left:
                    break
                await asyncio.sleep(NOT_WAITING_PAUSE_SECONDS)

    async def _post(
        self, http: httpx.AsyncClient, url: str, operation: Operation, body: bytes, headers: dict[str, str]
    ) -> int | None:
        """Send one callback and log it; the exchange's HTTP status, or ``None``: no answer."""
        try:
            response = await http.post(url, content=body, headers={**headers, "content-type": "application/json"})
            answer: int | None = response.status_code
        except httpx.HTTPError as error:
            logger.warning("callback for %s failed: %s", operation.operation_id, error)
            answer = None
        self.target.sent.append(
            {"operation_id": operation.operation_id, "status": operation.status.value, "answer": answer}
        )
        return answer

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=10, verify=trust_store()) as http:
            while True:
                try:
                    await self.settle_once(http)
                except Exception:  # a bad pass must not stop the settler
                    logger.exception("settling pending operations failed")
                await asyncio.sleep(INTERVAL_SECONDS)


async def stop(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
