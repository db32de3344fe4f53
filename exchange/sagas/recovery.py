"""The recovery worker: finishes every saga row left active by an unknown outcome or a crash.

It runs inside ``exchange serve`` as periodic jobs (one per saga) and in ``exchange
recover`` (every kind, each through what its job runs: :func:`recovery_report` then says
what is left). Several workers (one per gateway process) can run at once: each claims due rows
with ``FOR UPDATE SKIP LOCKED`` and a lease, so none is driven twice at once.

A row whose driving raises an unexpected error (a bug) is put off by its saga
(:meth:`~exchange.sagas.engine.Saga.recover`), as it is when a request drives it: its lease
released, the error kept as its ``last_error``, due again after the retry back-off. The worker
logs it with its trace, counts it (``exchange_saga_faults_total``) and names it in the pass's
:class:`RecoveryPass`.
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
from exchange.observability.metrics import count_saga_fault
from exchange.observability.tracing import span
from exchange.sagas.engine import Saga, StepFault

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

    @property
    def slug(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RecoveryPass:
    """What one pass did: ``driven`` rows (each at most once), and the ids of those whose
    driving raised an unexpected error (``faulted``, in the order they failed)."""

    driven: int
    faulted: tuple[str, ...] = ()


class RecoveryWorker:
    def __init__(self, saga: Recoverable, *, batch: int = 20, concurrency: int = 8) -> None:
        self.saga = saga
        self.batch = batch
        self._slots = asyncio.Semaphore(concurrency)

    async def _recover(self, row_id: str) -> bool:
        """Drive one row; ``False`` if it raised an unexpected error (logged, counted). A
        database outage is no such error: the row is simply not finished this pass."""
        async with self._slots:
            try:
                # One trace per row recovered, its steps and partner calls beneath.
                with span(f"recover {self.saga.label}"):
                    await self.saga.recover(row_id)
            except DatabaseUnavailable:
                # An outage or a failover is expected (as for every periodic job): one line, no
                # trace; the row keeps its lease and is taken again once the lease runs out.
                logger.warning(
                    "recovering %s %s: the database is unavailable; it is taken again after its lease",
                    self.saga.label,
                    row_id,
                )
                return True
            except StepFault as fault:  # one bad row must not stop the others
                fault.report(logger, "recovering")
                return False
            except Exception:  # before the row was leased: nothing of it to put off
                logger.exception("recovering %s %s failed", self.saga.label, row_id)
            else:
                return True
        count_saga_fault(self.saga.slug)
        return False

    async def run_pass(self, *, due_by: datetime | None = None) -> RecoveryPass:
        """Drive every row due by ``due_by`` at most once."""
        driven: list[str] = []
        faulted: list[str] = []
        while ids := await self.saga.claim_due(self.batch, due_by=due_by, skip=driven):
            driven.extend(ids)
            finished = await asyncio.gather(*(self._recover(row_id) for row_id in ids))
            faulted.extend(row_id for row_id, ok in zip(ids, finished, strict=True) if not ok)
        return RecoveryPass(len(driven), tuple(faulted))

    async def run_once(self, *, due_by: datetime | None = None) -> int:
        """:meth:`run_pass` (the gateway's periodic job); returns how many rows were driven."""
        return (await self.run_pass(due_by=due_by)).driven


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What a recovery pass left of one saga (``saga``: its label, ``conversion``):
    ``pending`` rows still not final; ``leased`` of them were not driven because a gateway
    process (a request, or its recovery) holds them until ``leased_until``: after a crash,
    the dead process's lease is what keeps recovery away until then. ``faulted``: the rows
    whose driving raised an unexpected error, put off until their retry back-off."""

    saga: str
    driven: int
    pending: int
    leased: int
    leased_until: datetime | None
    faulted: tuple[str, ...] = ()


async def recovery_report(saga: Saga, recovery: RecoveryPass) -> RecoveryReport:  # type: ignore[type-arg]
    """The report of ``recovery``, a pass over ``saga``: its rows not final yet now, and
    those a lease keeps from recovery."""
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
    return RecoveryReport(saga.label, recovery.driven, pending, leased_count, leased_until, recovery.faulted)
