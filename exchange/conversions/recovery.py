"""The recovery worker: finishes every conversion left PENDING by an unknown outcome or a crash.

It runs inside ``exchange serve`` (every ``EXCHANGE_RECOVERY_INTERVAL_SECONDS``) and as
``exchange recover``. Several workers (one per gateway process) can run at once: each claims
due conversions with ``FOR UPDATE SKIP LOCKED`` and a lease, so none is driven twice at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from exchange.conversions.saga import ConversionSaga

logger = logging.getLogger("exchange.conversions.recovery")


class RecoveryWorker:
    def __init__(self, saga: ConversionSaga, *, interval: float, batch: int = 20, concurrency: int = 8) -> None:
        self.saga = saga
        self.interval = interval
        self.batch = batch
        self._slots = asyncio.Semaphore(concurrency)

    async def _recover(self, conversion_id: str) -> None:
        async with self._slots:
            try:
                await self.saga.recover(conversion_id)
            except Exception:  # one bad conversion must not stop the others
                logger.exception("recovering conversion %s failed", conversion_id)

    async def run_once(self, *, due_by: datetime | None = None) -> int:
        """Drive every conversion due by ``due_by`` at most once; returns how many were driven."""
        driven: set[str] = set()
        while ids := [i for i in await self.saga.claim_due(self.batch, due_by=due_by) if i not in driven]:
            driven.update(ids)
            await asyncio.gather(*(self._recover(conversion_id) for conversion_id in ids))
        return len(driven)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                logger.exception("recovery pass failed; trying again in %s s", self.interval)
            await asyncio.sleep(self.interval)
