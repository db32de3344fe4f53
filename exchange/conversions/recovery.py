"""Recovering conversions left PENDING by an unknown outcome or a crash.

The shared :class:`~exchange.sagas.recovery.RecoveryWorker` runs inside ``exchange serve`` as
a periodic job (every ``EXCHANGE_RECOVERY_INTERVAL_SECONDS``); :func:`recover_all` is
``exchange recover``.
"""

from __future__ import annotations

import asyncio
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
from exchange.sagas.recovery import RecoveryWorker
from exchange.settings import Settings


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
