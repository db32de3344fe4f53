"""The step driver every saga runs on.

A saga row (a :class:`~exchange.sagas.state.SagaState` table) names its next ``step``. The
driver attempts that step — usually one partner call, made outside any database
transaction — and applies what the attempt decided (a :class:`Transition`) in one short unit
of work that first locks the row and checks it still stands at that step, so a request and
the recovery worker can never both move one row. Effects that must commit with the
transition (a ledger posting, stock given back) run in that same unit of work, in the
saga's :meth:`Saga.on_transition`.

When a call's outcome is unknown (or, while settling a doubt, the partner cannot be
reached), the row is *postponed*: it stays at its step, marked in doubt, and is tried again
after a growing backoff. Rows a request is still driving hold a lease that keeps the
recovery worker away; the worker claims due rows with ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar, Generic, TypeVar
from zoneinfo import ZoneInfo

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.connectors.errors import (
    OutcomeUnknown,
    PartnerError,
    PartnerRefusal,
    PartnerUnavailable,
)
from exchange.db.database import Database
from exchange.errors import ExchangeError, NotFound
from exchange.observability.logs import log_context
from exchange.observability.tracing import tracer
from exchange.sagas.state import SagaState

logger = logging.getLogger("exchange.sagas")

Row = TypeVar("Row", bound=SagaState)


@dataclass(frozen=True, slots=True)
class SagaPolicy:
    timezone: ZoneInfo
    lease: timedelta = timedelta(seconds=30)
    first_retry: timedelta = timedelta(seconds=1)
    longest_retry: timedelta = timedelta(minutes=5)
    give_up_after: int = 8
    """Attempts at a write in doubt that may be sent again before it is voided instead."""

    def backoff(self, attempts: int) -> timedelta:
        return min(self.first_retry * (1 << min(attempts, 20)), self.longest_retry)


@dataclass(frozen=True, slots=True)
class Transition:
    """What one step decided: the next step, the status (``None``: unchanged) and why."""

    step: str
    status: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None


def failure(error: PartnerError) -> tuple[str, str]:
    """A partner error as a row's ``failure_code`` and ``failure_message``."""
    return error.code.value, error.message


class Saga(abc.ABC, Generic[Row]):
    """Drives rows of one saga table. Subclasses say which statuses still have steps to run
    (:attr:`active`), how each step is attempted, and what commits with a transition."""

    model: ClassVar[type[SagaState]]
    active: ClassVar[Collection[str]]
    label: ClassVar[str]

    db: Database
    clock: Clock
    policy: SagaPolicy

    @abc.abstractmethod
    async def attempt(self, row: Row, step: str, *, in_doubt: bool) -> Transition:
        """Do ``step`` (a partner call, or nothing for a step that only writes locally).

        Partner errors propagate: unknown outcomes and unreachable partners postpone the row.
        """

    async def on_transition(self, session: AsyncSession, row: Row, step: str, transition: Transition) -> None:
        """Writes that commit with ``transition`` (``row`` is locked, still at ``step``)."""

    @property
    def slug(self) -> str:
        """The saga's name in metrics, traces and log fields: ``conversion``, ``status_match``."""
        return self.label.replace(" ", "_")

    def missing(self, row_id: str) -> ExchangeError:
        """The error for an id that names no row."""
        return NotFound(f"no {self.label} has id {row_id!r}", field="id")

    # -- entry points -------------------------------------------------------------------

    async def recover(self, row_id: str) -> Row:
        """Drive one row on from wherever it stands (the recovery worker's job)."""
        async with self.db.transaction() as session:
            row = await session.get(self.model, row_id)
            if row is None:
                raise self.missing(row_id)
            if row.status not in self.active:
                return row  # type: ignore[return-value]
            row.lease_until = self.clock.now() + self.policy.lease
            session.add(row)
        return await self.drive(row, recovering=True)  # type: ignore[arg-type]

    async def claim_due(self, batch: int = 20, *, due_by: datetime | None = None) -> list[str]:
        """Lease up to ``batch`` active rows whose next attempt is due by ``due_by``
        (default: now), skipping any another worker or a request holds; return their ids."""
        now = self.clock.now()
        due_by = due_by or now
        model = self.model
        async with self.db.transaction() as session:
            rows = await session.exec(
                select(model)
                .where(col(model.status).in_(list(self.active)), col(model.next_attempt_at) <= due_by)
                .order_by(col(model.next_attempt_at))
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            claimed = [row for row in rows if row.lease_until is None or row.lease_until <= now]
            for row in claimed:
                row.lease_until = now + self.policy.lease
                session.add(row)
        return [row.id for row in claimed]  # type: ignore[attr-defined]

    async def drive(self, row: Row, *, recovering: bool) -> Row:
        """Run steps until the row is final or must wait (postponed with a backoff).

        Every log line written meanwhile names the row (``conversion_id=…``), and each step is
        a span of the current trace (the request's, or the recovery pass's)."""
        in_doubt = recovering or row.in_doubt
        with log_context(**{f"{self.slug}_id": self._id(row)}):
            while row.status in self.active:
                step = row.step
                with tracer().start_as_current_span(
                    f"{self.label} {step}",
                    attributes={
                        "exchange.saga": self.slug,
                        "exchange.saga.id": self._id(row),
                        "exchange.saga.step": step,
                    },
                ):
                    try:
                        transition = await self.attempt(row, step, in_doubt=in_doubt)
                    except (OutcomeUnknown, PartnerUnavailable) as error:
                        # Unknown, or (while settling a doubt) not reachable: ask again later.
                        return await self._postpone(row, step, error)
                    except PartnerRefusal as error:
                        # A refusal where the contract allows none (a reversal refused): keep the
                        # row for an operator, and keep asking, slowly.
                        logger.error(
                            "%s %s: partner refused %s at step %s", self.label, self._id(row), error.message, step
                        )
                        return await self._postpone(row, step, error)
                    row = await self._apply(row, step, transition)
                in_doubt = False
        return row

    # -- state changes ------------------------------------------------------------------

    @staticmethod
    def _id(row: SagaState) -> str:
        return str(row.id)  # type: ignore[attr-defined]

    async def locked(self, session: AsyncSession, row_id: str, step: str | None = None) -> Row | None:
        """The row, locked, if it is still active (and at ``step``, if given); else ``None``."""
        model = self.model
        row = (await session.exec(select(model).where(model.id == row_id).with_for_update())).one()  # type: ignore[attr-defined]
        if row.status not in self.active or (step is not None and row.step != step):
            return None
        return row  # type: ignore[return-value]

    async def reload(self, row_id: str) -> Row:
        async with self.db.transaction() as session:
            row = await session.get(self.model, row_id)
        assert row is not None
        return row  # type: ignore[return-value]

    async def _apply(self, row: Row, step: str, transition: Transition) -> Row:
        async with self.db.transaction() as session:
            current = await self.locked(session, self._id(row), step)
            if current is None:
                return await self.reload(self._id(row))
            await self.on_transition(session, current, step, transition)
            now = self.clock.now()
            current.step = transition.step
            if transition.status is not None:
                current.status = transition.status
            current.in_doubt, current.attempts = False, 0
            if transition.failure_code is not None:
                current.failure_code = transition.failure_code
                current.failure_message = (transition.failure_message or "")[:500]
            if current.status not in self.active:
                current.finished_at, current.lease_until = now, None
            current.updated_at = now
            session.add(current)
        if current.status not in self.active:
            logger.info("%s %s finished: %s", self.label, self._id(current), current.status)
        return current

    async def _postpone(self, row: Row, step: str, error: PartnerError) -> Row:
        logger.warning("%s %s: %s at step %s; will ask again", self.label, self._id(row), error.message, step)
        async with self.db.transaction() as session:
            current = await self.locked(session, self._id(row), step)
            if current is None:
                return await self.reload(self._id(row))
            now = self.clock.now()
            current.in_doubt = current.in_doubt or isinstance(error, OutcomeUnknown)
            current.attempts += 1
            current.next_attempt_at = now + self.policy.backoff(current.attempts)
            current.lease_until = None
            current.updated_at = now
            session.add(current)
        return current
