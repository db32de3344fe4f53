"""The recovery worker: finishes every conversion left PENDING by an unknown outcome or a crash.

It runs inside ``exchange serve`` as a periodic job (every
``EXCHANGE_RECOVERY_INTERVAL_SECONDS``) and as ``exchange recover``. Several workers (one per gateway process) can run at once: each claims
due conversions with ``FOR UPDATE SKIP LOCKED`` and a lease, so none is driven twice at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import select

from exchange.clock import Clock, SystemClock
from exchange.connectors.registry import ConnectorRegistry
from exchange.conversions.models import Conversion, ConversionStatus
from exchange.conversions.saga import ConversionSaga
from exchange.db import migrate
from exchange.db.database import Database
from exchange.programs.catalog import CatalogCache
from exchange.settings import Settings

logger = logging.getLogger("exchange.conversions.recovery")


class RecoveryWorker:
    def __init__(self, saga: ConversionSaga, *, batch: int = 20, concurrency: int = 8) -> None:
        self.saga = saga
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


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    driven: int
    pending: int


async def recover_all(settings: Settings, clock: Clock | None = None) -> RecoveryReport:
    """Drive every PENDING conversion once, whatever its next attempt time (``exchange recover``)."""
    await asyncio.to_thread(migrate.ensure_migrated, settings.database_url)
    clock = clock or SystemClock()
    db = Database.from_url(settings.database_url)
    connectors = ConnectorRegistry(settings, environ=os.environ)
    try:
        catalog = CatalogCache(db, ttl=settings.catalog_cache_seconds)
        saga = ConversionSaga.for_settings(settings, db=db, connectors=connectors, catalog=catalog, clock=clock)
        driven = await RecoveryWorker(saga).run_once(due_by=datetime.max.replace(tzinfo=UTC))
        async with db.transaction() as session:
            pending = (
                await session.exec(
                    select(func.count()).select_from(Conversion).where(Conversion.status == ConversionStatus.PENDING)
                )
            ).one()
        return RecoveryReport(driven=driven, pending=pending)
    finally:
        await connectors.aclose()
        await db.dispose()
