"""A partner's late word on a write it left pending: from its signed callback, or a result file;
and, for staff, every write still waiting for one.

The operation id names the saga row (``<conversion id>:credit``, ``<redemption id>:debit``);
the word applies only to a row that waits for it at that partner (a partner cannot settle
another partner's operations). A callback is taken as the partner's signal that its record
of the write has moved, not as the record itself: the row is driven on by polling the
operation's status at once (:meth:`~exchange.sagas.engine.Saga.conclude`), so what the
exchange posts or gives back always rests on what the partner's books hold, even when a
callback says otherwise (a credit called back "failed" that the record shows applied does
not give the member's debit back while they keep the credit). A result file's lines are the
partner's record, and are applied as they stand. A row that no longer waits — the word came
twice, or a poll learnt it first — is left as it is, so a duplicate is harmless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError
from sqlalchemy import Table, case, literal, select

from exchange.clock import Clock
from exchange.connectors import callbacks
from exchange.connectors.contract import Operation, OperationKind
from exchange.connectors.errors import PartnerNotConfigured
from exchange.connectors.registry import ConnectorRegistry
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.conversions.saga import ConversionSaga
from exchange.db.database import Database
from exchange.db.paging import Page
from exchange.errors import BadUserInput, NotFound
from exchange.programs.catalog import CatalogCache
from exchange.rewards.models import Redemption, RedemptionStatus, RedemptionStep
from exchange.rewards.redemption import RedemptionSaga
from exchange.sagas.doubt import SentWrite
from exchange.services.listings import oldest_first
from exchange.text import counted, json_value

CONVERSIONS: Table = Conversion.__table__  # type: ignore[attr-defined]
REDEMPTIONS: Table = Redemption.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Concluded:
    """What became of the row a partner's word was about: ``status`` and ``step`` after it."""

    saga: str
    row_id: str
    status: str
    step: str


@dataclass(frozen=True, slots=True)
class WaitingWrite:
    """A debit or credit a partner left pending (or a credit waiting for a batch partner's file)."""

    saga: str
    id: str
    program_id: str
    """The partner whose word is awaited."""
    operation_id: str
    step: str
    points: int
    waiting_since: datetime
    age: timedelta
    polls: int
    next_poll_at: datetime


#: Most rows one listing of waiting writes returns.
MAX_WAITING = 500


@dataclass
class LateOutcomes:
    db: Database
    conversions: ConversionSaga
    redemptions: RedemptionSaga
    connectors: ConnectorRegistry
    catalog: CatalogCache
    clock: Clock
    tolerance: int
    """Seconds a callback's timestamp may be from the exchange's clock."""

    async def callback(self, program_id: str, headers: Mapping[str, str], body: bytes) -> Concluded:
        """A partner's signed callback: verify it (``CallbackRefused``: forged or stale, or no
        secret to check it with), then apply the operation it carries."""
        catalog = await self.catalog.get()
        program = catalog.program(program_id, field="programId")
        try:
            secret = self.connectors.callback_secret(program)
        except PartnerNotConfigured:
            raise callbacks.CallbackRefused(
                f"the exchange holds no secret to check the callbacks of {program_id}"
            ) from None
        callbacks.verify(
            callbacks.callback_key(secret),
            headers,
            body,
            now=self.clock.now(),
            tolerance=self.tolerance,
        )
        try:
            # Read as every partner answer is (a key named twice is no certain word), then checked.
            said = json_value(body)
        except ValueError as malformed:
            raise BadUserInput(f"the callback is not JSON: {malformed}", field="body") from None
        try:
            operation = Operation.model_validate(said)
        except ValidationError as invalid:
            first = invalid.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise BadUserInput(f"the callback is not an operation: {where}: {first['msg']}", field=where) from None
        return await self.apply(program_id, operation)

    async def waiting(
        self, *, first: int = 50, after: str | None = None, program_id: str | None = None
    ) -> Page[WaitingWrite]:
        """A page of the writes waiting for a partner's word, the oldest first (``first`` of them
        after the cursor ``after``), of every partner or of ``program_id``."""
        conversions, redemptions = CONVERSIONS, REDEMPTIONS
        debit = conversions.c.step == SagaStep.AWAIT_DEBIT
        parts = [
            select(
                literal("conversion").label("saga"),
                conversions.c.id,
                case((debit, conversions.c.from_program), else_=conversions.c.to_program).label("program_id"),
                conversions.c.step,
                case((debit, conversions.c.points_in), else_=conversions.c.points_out).label("points"),
                conversions.c.updated_at,
                conversions.c.attempts,
                conversions.c.next_attempt_at,
                conversions.c.created_at,
            ).where(
                conversions.c.status == ConversionStatus.PENDING,
                conversions.c.step.in_([SagaStep.AWAIT_DEBIT, SagaStep.AWAIT_CREDIT]),
            ),
            select(
                literal("redemption").label("saga"),
                redemptions.c.id,
                redemptions.c.paying_program.label("program_id"),
                redemptions.c.step,
                redemptions.c.points,
                redemptions.c.updated_at,
                redemptions.c.attempts,
                redemptions.c.next_attempt_at,
                redemptions.c.created_at,
            ).where(redemptions.c.status == RedemptionStatus.PENDING, redemptions.c.step == RedemptionStep.AWAIT_DEBIT),
        ]
        rows = await oldest_first(
            self.db,
            parts,
            name="pendingOperations",
            first=first,
            after=after,
            most=MAX_WAITING,
            program_id=program_id,
        )
        now = self.clock.now()
        waiting = [
            WaitingWrite(
                saga=saga,
                id=row_id,
                program_id=program,
                operation_id=f"{row_id}:{'credit' if step == SagaStep.AWAIT_CREDIT else 'debit'}",
                step=step,
                points=points,
                waiting_since=since,
                age=now - since,
                polls=polls,
                next_poll_at=next_poll,
            )
            for saga, row_id, program, step, points, since, polls, next_poll, _ in rows.items
        ]
        return Page(waiting, rows.next_cursor)

    async def apply(self, program_id: str, operation: Operation) -> Concluded:
        """Apply ``operation`` (as partner ``program_id`` now has it) to the row waiting for it.

        ``NotFound`` if no conversion or redemption of that program has the operation;
        ``BadUserInput`` if the partner's operation is not the one the exchange sent.
        """
        row_id, _, suffix = operation.operation_id.rpartition(":")
        async with self.db.transaction() as session:
            conversion = await session.get(Conversion, row_id)
            redemption = None if conversion is not None else await session.get(Redemption, row_id)
        if conversion is not None and suffix == "debit" and conversion.from_program == program_id:
            _same(operation, OperationKind.DEBIT, conversion.source_ref, conversion.points_in)
            row = await self.conversions.conclude(row_id, SagaStep.AWAIT_DEBIT, sent_from=(SagaStep.DEBIT,))
            return Concluded("conversion", row_id, row.status, row.step)
        if conversion is not None and suffix == "credit" and conversion.to_program == program_id:
            _same(operation, OperationKind.CREDIT, conversion.target_ref, conversion.points_out)
            # The move from the debit to the credit is not recorded: the credit is sent from DEBIT.
            row = await self.conversions.conclude(
                row_id, SagaStep.AWAIT_CREDIT, sent_from=(SagaStep.DEBIT, SagaStep.CREDIT)
            )
            return Concluded("conversion", row_id, row.status, row.step)
        if redemption is not None and suffix == "debit" and redemption.paying_program == program_id:
            _same(operation, OperationKind.DEBIT, redemption.paying_ref, redemption.points)
            settled = await self.redemptions.conclude(
                row_id, RedemptionStep.AWAIT_DEBIT, sent_from=(RedemptionStep.DEBIT,)
            )
            return Concluded("redemption", row_id, settled.status, settled.step)
        raise NotFound(
            f"program {program_id} has no operation {operation.operation_id!r} at the exchange", field="operation_id"
        )


def _same(operation: Operation, kind: OperationKind, member_ref: str, points: int) -> None:
    """The partner's word must be about the very write the exchange sent."""
    if SentWrite(kind, member_ref, points).contradiction(operation) is not None:
        raise BadUserInput(
            f"operation {operation.operation_id} is not the {kind} of {counted(points, 'point')} the exchange sent",
            field="operation_id",
        )
