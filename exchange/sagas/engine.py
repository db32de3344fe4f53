"""The step driver every saga runs on.

A saga row (a :class:`~exchange.sagas.state.SagaState` table) names its next ``step``. The
driver attempts that step — usually one partner call, made outside any database
transaction — and applies what the attempt decided (a :class:`Transition`) in one short unit
of work whose first statement is a guarded update: it moves the row only if the row still
stands at the step the driver last recorded (which also locks it), so a request and the
recovery worker can never both move one row. Effects that must commit with the transition
(a ledger posting, stock given back) run in that same unit of work, after it, in the saga's
:meth:`Saga.on_transition`.

A transition may be *chained*: the next step's partner call is keyed by a fixed operation id,
and settling the step before finds its way there again (a debit that applied leads to the
credit, which the partner applies at most once). Such a transition is not recorded on its
own: the driver goes on at once, and a crash in between is recovered from the earlier step.
When a saga records a new step (``DONE`` at the end of a run, or the step it stopped at to be
asked again or to wait) or falls in doubt, the database moves the member's activity marker
(``member.activity``), which the federated view's cache keys on: a partner's write may have
moved the member's points (a status match's end also moves ``member.tier_activity``, which
tiers are kept against).

A partner may answer a write "accepted, pending" and settle it hours or days later. The
saga then *waits*: the row is recorded at a waiting step (``AWAIT_CREDIT``, say) with no
lease and no worker held, and is polled (the partner's operation status) after a back-off
that grows from ``SagaPolicy.first_poll`` to ``longest_poll``. The partner's late word — a
signed callback or a line of a result file — reaches the row sooner through
:meth:`Saga.conclude`, which applies it exactly as a poll's answer would be applied.

When a call's outcome is unknown (or, while settling a doubt, the partner cannot be
reached), the row is *postponed*: it stays at its step, marked in doubt, and is tried again
after a growing backoff. Rows a request is still driving hold a lease that keeps the
recovery worker away; the worker claims due rows with ``FOR UPDATE SKIP LOCKED``.

A step that raises an unexpected error (a bug: neither a partner's error nor a database
outage) puts its row off the same way whoever drives it — a request, a partner's late word
or the recovery worker (:meth:`Saga._drive_or_put_off`): the lease its driver holds released,
the error kept as ``last_error``, due again after the retry back-off. A request answers the
row as it then stands (PENDING, for the recovery worker to finish), never the error.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar, Generic, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import Table, Update, bindparam, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.connectors.errors import (
    OutcomeUnknown,
    PartnerError,
    PartnerRefusal,
    PartnerUnavailable,
)
from exchange.db import direct
from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.errors import ErrorCode, ExchangeError, NotFound
from exchange.observability.logs import log_context
from exchange.observability.metrics import count_saga_fault
from exchange.observability.tracing import span
from exchange.sagas.state import MESSAGE_LENGTH, SagaState
from exchange.settings import Settings
from exchange.text import one_line
from exchange.webhooks import outbox
from exchange.webhooks.events import Event

logger = logging.getLogger("exchange.sagas")


@lru_cache(maxsize=64)
def _guarded_update(table: Table, active: tuple[str, ...], names: tuple[str, ...]) -> Update:
    """Set columns ``names`` (parameters ``new_<name>``) on row ``row_id`` if it is still at step
    ``recorded`` and in an ``active`` status; built once, so each transition only binds values."""
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"), table.c.step == bindparam("recorded"), table.c.status.in_(active))
        .values({name: bindparam(f"new_{name}", type_=table.c[name].type) for name in names})
    )


Row = TypeVar("Row", bound=SagaState)


@dataclass(frozen=True, slots=True)
class SagaPolicy:
    timezone: ZoneInfo
    lease: timedelta = timedelta(seconds=30)
    first_retry: timedelta = timedelta(seconds=1)
    longest_retry: timedelta = timedelta(minutes=5)
    give_up_after: int = 8
    """Attempts at a write in doubt that may be sent again before it is voided instead."""
    first_poll: timedelta = timedelta(minutes=1)
    longest_poll: timedelta = timedelta(hours=1)
    """How soon, and at most how long apart, a write the partner left pending is asked about."""

    @classmethod
    def for_settings(cls, settings: Settings) -> SagaPolicy:
        """The policy every saga of the gateway runs on (conversions, redemptions, status
        matches): its lease and poll back-off from ``settings``."""
        return cls(
            timezone=settings.timezone,
            lease=timedelta(seconds=settings.saga_lease_seconds),
            first_poll=timedelta(seconds=settings.pending_poll_first_seconds),
            longest_poll=timedelta(seconds=settings.pending_poll_longest_seconds),
        )

    def backoff(self, attempts: int) -> timedelta:
        return min(self.first_retry * (1 << min(attempts, 20)), self.longest_retry)

    def poll_backoff(self, polls: int) -> timedelta:
        return min(self.first_poll * (1 << min(polls, 20)), self.longest_poll)

    def start(self, now: datetime, *, step: str, status: str = "PENDING") -> dict[str, Any]:
        """The state columns of a saga row recorded at ``now`` and driven at once by the
        request that records it: the lease keeps the recovery worker away meanwhile, and the
        worker takes the row up when the lease ends, if the request died."""
        return {
            "status": status,
            "step": step,
            "in_doubt": False,
            "attempts": 0,
            "next_attempt_at": now + self.lease,
            "lease_until": now + self.lease,
            "created_at": now,
            "updated_at": now,
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """What one step decided: the next step, the status (``None``: unchanged) and why.

    ``chained``: go on to ``step`` without recording it (see the module's docstring); only for
    a transition that leaves the status alone.
    ``wait``: the partner left the write pending; record ``step`` (a waiting step) and ask
    again after the poll back-off, which grows while the row keeps waiting at that step.
    """

    step: str
    status: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    chained: bool = False
    wait: bool = False


def failure(error: PartnerError) -> tuple[str, str]:
    """A partner error as a row's ``failure_code`` and ``failure_message``."""
    return error.code.value, error.message


class NotWaitingYet(ExchangeError):
    """A partner's word on a write whose answer the exchange has not had yet (the partner
    answered "pending" and called back at once, and the call back came first): ask again."""

    code = ErrorCode.NOT_WAITING_YET

    def __init__(self, row_id: str) -> None:
        super().__init__(
            f"{row_id} is not waiting for this word yet: its write's answer has not reached the exchange; "
            "send it again in a few seconds",
            field="operation_id",
        )


class StepFault(Exception):
    """Driving a row raised an unexpected error (a bug: neither a partner's error, which puts
    the row off by itself, nor a database outage); it is the ``__cause__``. ``retry_at``: when
    the row is due again, put off as a partner's error would put it off; ``None`` if the
    driver's lease had passed to another driver meanwhile, whose row it then left alone.
    ``slug``: the saga's name in metrics and log fields (:attr:`Saga.slug`)."""

    def __init__(self, saga: str, slug: str, row_id: str, retry_at: datetime | None) -> None:
        after = (
            f"put off until {retry_at.isoformat()}"
            if retry_at is not None
            else "left to the driver that took it over meanwhile"
        )
        super().__init__(f"{saga} {row_id}: an unexpected error while driving it; {after}")
        self.saga = saga
        self.slug = slug
        self.row_id = row_id
        self.retry_at = retry_at

    def report(self, log: logging.Logger, doing: str) -> None:
        """Log the fault on ``log`` with its trace, the row named in the line's fields, as
        ``<doing> <the fault>``; count it (``exchange_saga_faults_total``)."""
        with log_context(**{f"{self.slug}_id": self.row_id}):
            log.error("%s %s", doing, self, exc_info=self.__cause__)
        count_saga_fault(self.slug)


def fault_line(error: BaseException) -> str:
    """An unexpected error as a row's ``last_error``: one line (escaped as ``exchange retrying``
    shows it), cut to fit, saying that the exchange failed, not the partner."""
    return one_line(f"internal error: {type(error).__name__}: {error}")[:MESSAGE_LENGTH]


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

    def changes(self, row: Row, step: str, transition: Transition) -> dict[str, Any]:
        """Columns of the saga's own that ``transition`` sets, besides the state columns."""
        return {}

    async def on_transition(self, session: AsyncSession, row: Row, step: str, transition: Transition) -> None:
        """Writes that commit with ``transition`` (``row``, as it was before it, is locked). They
        run in a lean unit of work first (:meth:`Database.run`): safe to begin again."""

    def event(self, row: Row, step: str, transition: Transition) -> Event | None:
        """The webhook event ``transition`` reports (``row`` as it was before it), if any: it is
        written to the outbox with the transition, on PostgreSQL in the very statement that
        records it."""
        return None

    @property
    def slug(self) -> str:
        """The saga's name in metrics, traces and log fields: ``conversion``, ``status_match``."""
        return self.label.replace(" ", "_")

    def missing(self, row_id: str) -> ExchangeError:
        """The error for an id that names no row."""
        return NotFound(f"no {self.label} has id {row_id!r}", field="id")

    # -- entry points -------------------------------------------------------------------

    async def recover(self, row_id: str) -> Row:
        """Drive one row on from wherever it stands (the recovery worker's job).

        If driving it raises an unexpected error, the row is put off and :class:`StepFault`
        raised (:meth:`_drive_or_put_off`); a database outage propagates as it is (the row
        keeps its lease)."""
        async with self.db.transaction() as session:
            row = await session.get(self.model, row_id)
            if row is None:
                raise self.missing(row_id)
            if row.status not in self.active:
                return row  # type: ignore[return-value]
            row.lease_until = self.clock.now() + self.policy.lease
            session.add(row)
        return await self._drive_or_put_off(row, recovering=True)  # type: ignore[arg-type]

    async def conclude(
        self,
        row_id: str,
        waiting: str,
        decide: Callable[[Row], Transition] | None = None,
        *,
        sent_from: Collection[str] = (),
    ) -> Row:
        """Apply a partner's late word on the write a row waits for at step ``waiting`` (a
        signed callback, a line of a result file): ``decide`` turns the row into the
        transition a poll's answer would have given; ``None``: poll now (the word only says
        that the partner's record has moved, and the record is what is taken); then drive
        the row on.

        A row no longer at ``waiting`` is returned as it stands: the word came twice, or a
        poll learnt it first. A row still at a step in ``sent_from`` (the steps the write is
        sent from) has not heard the partner answer the write yet: the word overtook that
        answer, and :class:`NotWaitingYet` asks for it again rather than drop it.
        """
        async with self.db.transaction() as session:
            row = await session.get(self.model, row_id, with_for_update=True)
            if row is None:
                raise self.missing(row_id)
            if row.status in self.active and row.step in sent_from:
                raise NotWaitingYet(row_id)
            if row.status not in self.active or row.step != waiting:
                return row  # type: ignore[return-value]
            row.lease_until = self.clock.now() + self.policy.lease
            session.add(row)
        return await self.drive(row, known=decide)  # type: ignore[arg-type]

    async def claim_due(
        self, batch: int = 20, *, due_by: datetime | None = None, skip: Collection[str] = ()
    ) -> list[str]:
        """Lease up to ``batch`` active rows whose next attempt is due by ``due_by``
        (default: now), skipping any another worker or a request holds, and those in ``skip``
        (driven already in this pass: leasing them would keep them from the next pass until
        the lease ends, however soon it comes); return their ids."""
        now = self.clock.now()
        due_by = due_by or now
        model = self.model
        due = select(model).where(col(model.status).in_(list(self.active)), col(model.next_attempt_at) <= due_by)
        if skip:
            due = due.where(col(model.id).not_in(list(skip)))  # type: ignore[attr-defined]
        async with self.db.transaction() as session:
            rows = await session.exec(
                due.order_by(col(model.next_attempt_at)).limit(batch).with_for_update(skip_locked=True)
            )
            claimed = [row for row in rows if row.lease_until is None or row.lease_until <= now]
            for row in claimed:
                row.lease_until = now + self.policy.lease
                session.add(row)
        return [row.id for row in claimed]  # type: ignore[attr-defined]

    async def drive(self, row: Row, *, known: Callable[[Row], Transition] | None = None) -> Row:
        """Drive ``row`` on for a request (or a partner's late word, :meth:`conclude`) that
        has just leased it; the row as far as it got. ``known``: as for :meth:`_steps`.

        A step's unexpected error does not reach the caller: the row is put off
        (:meth:`_drive_or_put_off`), the fault logged with its trace and counted as the
        recovery worker's are, and the row answered as it then stands: PENDING, for the
        recovery worker to finish after the retry back-off, as one whose partner's answer
        is late. A database outage propagates (the row keeps its lease until it ends)."""
        try:
            return await self._drive_or_put_off(row, recovering=False, known=known)
        except StepFault as fault:
            fault.report(logger, "driving")
            return await self.reload(fault.row_id)

    async def _drive_or_put_off(
        self, row: Row, *, recovering: bool, known: Callable[[Row], Transition] | None = None
    ) -> Row:
        """:meth:`_steps`, by the driver holding ``row``'s lease (``row.lease_until``, as its
        driver set it on taking the row). If they raise an unexpected error, the row is put
        off (:meth:`_put_off_after_fault`) and :class:`StepFault` raised from the error; a
        database outage propagates as it is."""
        row_id, lease = self._id(row), row.lease_until
        try:
            return await self._steps(row, recovering=recovering, known=known)
        except DatabaseUnavailable:
            raise
        except Exception as error:
            retry_at = await self._put_off_after_fault(row_id, lease, error)
            raise StepFault(self.label, self.slug, row_id, retry_at) from error

    async def _steps(self, row: Row, *, recovering: bool, known: Callable[[Row], Transition] | None = None) -> Row:
        """Run steps until the row is final or must wait (postponed with a backoff).

        ``known``: the first step's transition, decided already (:meth:`conclude`).
        Every log line written meanwhile names the row (``conversion_id=…``), and each step is
        a span of the current trace (the request's, or the recovery pass's)."""
        in_doubt = recovering or row.in_doubt
        recorded = row.step  # where the database has the row; ``row.step`` runs ahead on chained steps
        with log_context(**{f"{self.slug}_id": self._id(row)}):
            while row.status in self.active:
                step = row.step
                with span(
                    f"{self.label} {step}",
                    attributes={
                        "exchange.saga": self.slug,
                        "exchange.saga.id": self._id(row),
                        "exchange.saga.step": step,
                    },
                ):
                    try:
                        if known is not None:
                            transition, known = known(row), None
                        else:
                            transition = await self.attempt(row, step, in_doubt=in_doubt)
                    except (OutcomeUnknown, PartnerUnavailable) as error:
                        # Unknown, or (while settling a doubt) not reachable: ask again later.
                        return await self._postpone(row, recorded, error)
                    except PartnerRefusal as error:
                        # A refusal where the contract allows none (a reversal refused): keep the
                        # row for an operator, and keep asking, slowly.
                        logger.error(
                            "%s %s: partner refused %s at step %s", self.label, self._id(row), error.message, step
                        )
                        return await self._postpone(row, recorded, error)
                    if transition.wait:
                        return await self._wait(row, recorded, transition.step)
                    if transition.chained:
                        assert transition.status is None, "a chained transition leaves the status alone"
                        row.step, row.in_doubt, row.attempts = transition.step, False, 0
                    else:
                        row = await self._apply(row, recorded, step, transition)
                        recorded = row.step
                in_doubt = False
        return row

    # -- state changes ------------------------------------------------------------------

    @staticmethod
    def _id(row: SagaState) -> str:
        return str(row.id)  # type: ignore[attr-defined]

    async def reload(self, row_id: str) -> Row:
        async with self.db.transaction() as session:
            row = await session.get(self.model, row_id)
        assert row is not None
        return row  # type: ignore[return-value]

    async def _apply(self, row: Row, recorded: str, step: str, transition: Transition) -> Row:
        """Record ``transition`` (decided at ``step``) if the row still stands where the driver
        last ``recorded`` it, with the saga's writes; else the row as someone else left it."""
        now = self.clock.now()
        values: dict[str, Any] = {
            "step": transition.step,
            "in_doubt": False,
            "attempts": 0,
            "last_error": None,
            "updated_at": now,
        }
        if transition.status is not None:
            values["status"] = transition.status
        if transition.failure_code is not None:
            values["failure_code"] = transition.failure_code
            values["failure_message"] = (transition.failure_message or "")[:MESSAGE_LENGTH]
        if values.get("status", row.status) not in self.active:
            values["finished_at"], values["lease_until"] = now, None
        values.update(self.changes(row, step, transition))
        event = self.event(row, step, transition)

        async def record(session: AsyncSession) -> bool:
            moved = await self._move(session, row, recorded, values, event)
            if moved:
                await self.on_transition(session, row, step, transition)
            return moved

        moved = await self.db.run(record)
        if not moved:
            return await self.reload(self._id(row))
        row = self._moved(row, values)
        if row.status not in self.active:
            logger.info("%s %s finished: %s", self.label, self._id(row), row.status)
        return row

    async def _postpone(self, row: Row, recorded: str, error: PartnerError) -> Row:
        logger.warning("%s %s: %s at step %s; will ask again", self.label, self._id(row), error.message, row.step)
        now = self.clock.now()
        attempts = row.attempts + 1
        values: dict[str, Any] = {
            "step": row.step,
            "in_doubt": row.in_doubt or isinstance(error, OutcomeUnknown),
            "attempts": attempts,
            "last_error": error.message[:MESSAGE_LENGTH],
            "next_attempt_at": now + self.policy.backoff(attempts),
            "lease_until": None,
        }
        if row.step != recorded:
            # A chained step is recorded here for the first time: the row moved on. Otherwise
            # ``updated_at`` stays when the step began, which is how long staff see it failing
            # (or waiting, at a waiting step whose polls are lost), not since the latest try.
            values["updated_at"] = now
        async with self.db.transaction() as session:
            moved = await self._move(session, row, recorded, values)
        return self._moved(row, values) if moved else await self.reload(self._id(row))

    async def _put_off_after_fault(self, row_id: str, lease: datetime | None, error: Exception) -> datetime | None:
        """Put row ``row_id`` off after ``error``, if it still holds ``lease`` (the lease its
        driver set: a row whose lease ran out meanwhile may be another driver's now, and is
        left to it): its lease released, ``error`` recorded, the attempt counted, and due again
        after the retry back-off, so a row that always raises is not driven in a loop. In doubt:
        the error may have come after a partner applied the step's write. Returns when it is
        due again (``None``: not put off)."""
        model = self.model
        held = (
            col(model.id) == row_id,  # type: ignore[attr-defined]
            col(model.lease_until) == lease,
            col(model.status).in_(list(self.active)),
        )
        async with self.db.transaction() as session:
            attempts = (await session.exec(select(model.attempts).where(*held).with_for_update())).first()
            if attempts is None:
                return None
            retry_at = self.clock.now() + self.policy.backoff(attempts + 1)
            await session.exec(
                update(model)
                .where(*held)
                .values(
                    attempts=attempts + 1,
                    last_error=fault_line(error),
                    in_doubt=True,
                    next_attempt_at=retry_at,
                    lease_until=None,
                )
            )
        return retry_at

    async def _wait(self, row: Row, recorded: str, step: str) -> Row:
        """Record ``row`` waiting at ``step`` for a partner's late word; poll it after the back-off
        (``attempts`` counts the polls made at that step; ``updated_at`` stays when the wait began)."""
        now = self.clock.now()
        polls = row.attempts + 1 if recorded == step else 0
        values: dict[str, Any] = {
            "step": step,
            "in_doubt": False,
            "attempts": polls,
            "last_error": None,
            "next_attempt_at": now + self.policy.poll_backoff(polls),
            "lease_until": None,
        }
        if polls == 0:
            values["updated_at"] = now  # a poll that finds it still pending moves nothing: the wait's start stays
        async with self.db.transaction() as session:
            moved = await self._move(session, row, recorded, values)
        if moved:
            logger.info("%s %s: waiting at %s for the partner", self.label, self._id(row), step)
        return self._moved(row, values) if moved else await self.reload(self._id(row))

    async def _move(
        self, session: AsyncSession, row: Row, recorded: str, values: dict[str, Any], event: Event | None = None
    ) -> bool:
        """Set ``values`` on the row if it is still active at step ``recorded`` (which locks the
        row until ``session``'s unit of work ends), and if it moved, write ``event`` to the outbox.
        One statement; on SQLite, which cannot update inside an insert's ``WITH``, two."""
        statement = _guarded_update(self.model.__table__, tuple(self.active), tuple(values))  # type: ignore[attr-defined]
        params = {"row_id": self._id(row), "recorded": recorded} | {
            f"new_{name}": value for name, value in values.items()
        }
        if event is not None and session.get_bind().dialect.name == "postgresql":
            params |= {f"event_{name}": value for name, value in outbox.columns(event).items()}
            return (await direct.execute(session, outbox.after(statement), params)).first() is not None
        moved = (await direct.execute(session, statement, params)).rowcount == 1
        if moved:
            await outbox.emit(session, event)
        return moved

    @staticmethod
    def _moved(row: Row, values: dict[str, Any]) -> Row:
        """``row`` as the database now has it (it was moved with ``values``)."""
        for name, value in values.items():
            setattr(row, name, value)
        return row
