"""The recovery worker: finishes every saga row left active by an unknown outcome or a crash.

It runs inside ``exchange serve`` as periodic jobs (one per saga) and in ``exchange
recover`` (every kind, each through what its job runs: :func:`recovery_report` then says
what is left). Several workers (one per gateway process) can run at once: each claims due rows
with ``FOR UPDATE SKIP LOCKED`` and a lease, so none is driven twice at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from sqlalchemy import func
from sqlmodel import col, select

from exchange.db.availability import DatabaseUnavailable
from exchange.observability.tracing import tracer
from exchange.sagas.engine import Saga

logger = logging.getLogger("exchange.sagas.recovery")

#: ``due_by`` for a pass that drives every active row now, whatever its next attempt time
#: (``exchange recover``, after a crash).
EVERY_ROW = datetime.max.replace(tzinfo=UTC)


class Recoverable(Protocol):
    label: ClassVar[str]

    async def claim_due(
        self, batch: int = 20, *, due_by: datetime | None = None, skip: Collection[str] = ()
    ) -> list[str]: ...

    async def recover(self, row_id: str) -> Any: ...


class RecoveryWorker:
    def __init__(self, saga: Recoverable, *, batch: int = 20, concurrency: int = 8) -> None:
        self.saga = saga
        self.batch = batch
        self._slots = asyncio.Semaphore(concurrency)

    async def _recover(self, row_id: str) -> None:
        async with self._slots:
            try:
                # One trace per row recovered, its steps and partner calls beneath.
                with tracer().start_as_current_span(f"recover {self.saga.label}"):
                    await self.saga.recover(row_id)
            except DatabaseUnavailable:
                # An outage or a failover is expected (as for every periodic job): one line, no
                # trace; the row keeps its lease and is taken again once the lease runs out.
                logger.warning(
                    "recovering %s %s: the database is unavailable; it is taken again after its lease",
                    self.saga.label,
                    row_id,
                )
            except Exception:  # one bad row must not stop the others
                logger.exception("recovering %s %s failed", self.saga.label, row_id)

    async def run_once(self, *, due_by: datetime | None = None) -> int:
        """Drive every row due by ``due_by`` at most once; returns how many were driven."""
        driven: set[str] = set()
        while ids := await self.saga.claim_due(self.batch, due_by=due_by, skip=driven):
            driven.update(ids)
            await asyncio.gather(*(self._recover(row_id) for row_id in ids))
        return len(driven)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What a recovery pass left of one saga (``saga``: its label, ``conversion``):
    ``pending`` rows still not final; ``leased`` of them were not driven because a gateway
    process (a request, or its recovery) holds them until ``leased_until``: after a crash,
    the dead process's lease is what keeps recovery away until then."""

    saga: str
    driven: int
    pending: int
    leased: int
    leased_until: datetime | None


async def recovery_report(saga: Saga, driven: int) -> RecoveryReport:  # type: ignore[type-arg]
    """The report of a pass that drove ``driven`` rows of ``saga``: its rows not final yet
    now, and those a lease keeps from recovery."""
    model = saga.model
    now = saga.clock.now()
    leased = col(model.lease_until) > now
    statement = select(
        func.count(),
        func.count().filter(leased),
        func.max(model.lease_until).filter(leased),
    ).where(col(model.status).in_(list(saga.active)))
    async with saga.db.transaction() as session:
        pending, leased_count, leased_until = (await session.exec(statement)).one()
    return RecoveryReport(saga.label, driven, pending, leased_count, leased_until)
