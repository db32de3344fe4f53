"""Credits for batch-mode partners: the day's credits file, and applying its result file.

A conversion whose target partner takes credits by file (``[connector] mode = "batch"``) waits
at ``AWAIT_CREDIT`` without calling the partner. A pass of :class:`CreditBatches`, for each
such partner:

1. **assembles** a batch: one ``INSERT … SELECT`` puts every waiting credit that is in no
   batch yet into a new one (a conversion is in one batch at most: its primary key);
2. **sends** it: the credits file is streamed to the partner (``PUT /batches/{id}/credits``)
   page by page from the database, never held whole; the partner takes a batch once, by its
   id, so a file sent again after a lost answer changes nothing;
3. **collects** the result file (``GET /batches/{id}/results``) as it arrives: each line
   settles its conversion through the saga (:meth:`~exchange.sagas.engine.Saga.conclude`) —
   applied: posted and COMPLETED; failed: the debit reversed. Lines the file leaves out are
   made due at once, so the recovery worker asks the partner about each (its operation
   status), as it would for a callback that never came.

A line whose points are not those the credits file sent (a partner that credited 100 of
1000) settles nothing by itself: the exchange asks the partner about that credit at once, as
it asks about a credit in doubt, so the partner's record decides and a credit it made
otherwise than sent is undone (the saga's "contradicted"), never posted at the exchange's
amount. A line about no credit of the batch, or about a credit an earlier line gave, refuses
the file there, as a malformed line does: the lines before it settled, the batch's other
credits waiting (and polled) until the partner serves a file without it.

Every step can run again (in another process, after a crash): the batch row records how far
it got, and settling a conversion twice changes nothing. A partner that fails a step (down, or
answering a file the exchange refuses) holds back only its own batches, until the next pass: the
other partners' go on in the same pass, and the pass names the one that failed and why.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Table, exists, insert, literal, select, update
from sqlmodel import col
from sqlmodel import select as select_rows

from exchange.clock import Clock
from exchange.connectors import batch_files
from exchange.connectors.batch_files import ResultLine
from exchange.connectors.connector import Call
from exchange.connectors.contract import OperationState
from exchange.connectors.errors import PartnerError, PartnerProtocolError
from exchange.conversions.models import (
    Conversion,
    ConversionStatus,
    CreditBatch,
    CreditBatchLine,
    CreditBatchStatus,
    SagaStep,
    credit_operation,
)
from exchange.conversions.saga import ConversionSaga, in_batches
from exchange.db.database import Database
from exchange.observability.metrics import count_batch_result_mismatch
from exchange.programs.catalog import CatalogCache

logger = logging.getLogger("exchange.conversions.batches")

CONVERSIONS: Table = Conversion.__table__  # type: ignore[attr-defined]
LINES: Table = CreditBatchLine.__table__  # type: ignore[attr-defined]
BATCHES: Table = CreditBatch.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class BatchPass:
    """What one pass did: batches sent, result lines applied, lines whose points were not those
    sent (their credits asked about instead), lines the results left out, and the partners whose
    batches wait for the next pass, with why."""

    sent: int = 0
    applied: int = 0
    mismatched: int = 0
    missing: int = 0
    failed: Mapping[str, str] = field(default_factory=dict)


@dataclass
class CreditBatches:
    db: Database
    saga: ConversionSaga
    catalog: CatalogCache
    clock: Clock
    page: int = 500
    """Credits read from the database per query while a file is streamed."""

    async def run_once(self) -> BatchPass:
        """Assemble, send and collect for every batch-mode partner."""
        sent = applied = mismatched = missing = 0
        failed: dict[str, str] = {}
        catalog = await self.catalog.get()
        for program in catalog.programs.values():
            if not in_batches(program):
                continue
            try:
                await self.assemble(program.id)
                for batch in await self._unsettled(program.id):
                    if batch.status == CreditBatchStatus.ASSEMBLED:
                        await self._send(batch)
                        sent += 1
                    got, asked, left_out = await self._collect(batch)
                    applied, mismatched, missing = applied + got, mismatched + asked, missing + left_out
            except PartnerError as error:
                logger.warning("credit batches for %s wait for the next pass: %s", program.id, error.message)
                failed[program.id] = error.message
        return BatchPass(sent, applied, mismatched, missing, failed)

    async def assemble(self, program_id: str) -> CreditBatch | None:
        """A new batch of every credit to ``program_id`` waiting for a file; ``None`` if none."""
        waiting = (
            select(CONVERSIONS.c.id)
            .where(
                CONVERSIONS.c.to_program == program_id,
                CONVERSIONS.c.status == ConversionStatus.PENDING,
                CONVERSIONS.c.step == SagaStep.AWAIT_CREDIT,
            )
            .where(~exists().where(LINES.c.conversion_id == CONVERSIONS.c.id))
        )
        now = self.clock.now()
        async with self.db.transaction() as session:
            if not (await session.exec(select(waiting.exists()))).scalar():  # type: ignore[call-overload]
                return None
            batch = CreditBatch(
                id=str(uuid.uuid4()), program_id=program_id, status=CreditBatchStatus.ASSEMBLED, created_at=now
            )
            session.add(batch)
            await session.flush()
            added = await session.exec(
                insert(LINES).from_select(["conversion_id", "batch_id"], waiting.add_columns(literal(batch.id)))
            )
            batch.lines = added.rowcount
            session.add(batch)
        logger.info("credit batch %s for %s: %d credits", batch.id, program_id, batch.lines)
        return batch

    async def _unsettled(self, program_id: str) -> list[CreditBatch]:
        async with self.db.transaction() as session:
            rows = await session.exec(
                select_rows(CreditBatch)
                .where(
                    col(CreditBatch.program_id) == program_id,
                    col(CreditBatch.status) != CreditBatchStatus.SETTLED,
                )
                .order_by(col(CreditBatch.created_at))
            )
            return list(rows)

    async def _send(self, batch: CreditBatch) -> None:
        connector = self.saga.connector_for((await self.catalog.get()).program(batch.program_id))
        await connector.send_credits(batch.id, lambda: self._credits_file(batch.id))
        async with self.db.transaction() as session:
            await session.exec(
                update(BATCHES)
                .where(BATCHES.c.id == batch.id, BATCHES.c.status == CreditBatchStatus.ASSEMBLED)
                .values(status=CreditBatchStatus.SENT, sent_at=self.clock.now())
            )
        batch.status = CreditBatchStatus.SENT

    async def _credits_file(self, batch_id: str) -> AsyncIterator[bytes]:
        """The file, a page of lines at a time (keyset-paged by conversion id, each page its
        own short read)."""
        yield (batch_files.CREDITS_HEADER + "\n").encode()
        after = ""
        while True:
            async with self.db.transaction() as session:
                rows = (
                    await session.exec(
                        select(CONVERSIONS.c.id, CONVERSIONS.c.target_ref, CONVERSIONS.c.points_out)  # type: ignore[call-overload]
                        .join(LINES, LINES.c.conversion_id == CONVERSIONS.c.id)
                        .where(LINES.c.batch_id == batch_id, LINES.c.conversion_id > after)
                        .order_by(LINES.c.conversion_id)
                        .limit(self.page)
                    )
                ).all()
            if not rows:
                return
            yield "".join(
                batch_files.credit_line(credit_operation(cid), ref, points) for cid, ref, points in rows
            ).encode()
            after = rows[-1][0]

    async def _collect(self, batch: CreditBatch) -> tuple[int, int, int]:
        """Apply the batch's result file if the partner has it; returns (lines applied, lines
        whose points were not those sent, lines left out)."""
        connector = self.saga.connector_for((await self.catalog.get()).program(batch.program_id))
        applied = mismatched = 0
        first_lines: dict[str, int] = {}  # as many as the batch's credits: a line of another is refused
        async for line in connector.credit_results(batch.id):
            conversion_id = self._credit_of(batch, line, first_lines)
            credit = await self._credit_sent(batch.id, conversion_id)
            if credit is None:
                raise self._refused(batch, line, f"operation_id: {line.operation_id} is not a credit of this batch")
            first_lines[conversion_id] = line.number
            sent, waiting = credit
            if line.points is None or line.points == sent:
                await self._settle(conversion_id, line.status)
                applied += 1
                continue
            # Not the credit sent: its line is no outcome. The partner's record decides, as for
            # a credit in doubt: one it credited otherwise is undone (saga, "contradicted").
            mismatched += 1
            if waiting:  # (a file read again finds it settled: asked about once, counted once)
                logger.warning(
                    "credit batch %s: line %d says %s credited %d points, the exchange sent %d; asking the partner",
                    batch.id,
                    line.number,
                    line.operation_id,
                    line.points,
                    sent,
                )
                count_batch_result_mismatch()
                await self.saga.conclude(conversion_id, SagaStep.AWAIT_CREDIT)
        if not first_lines:
            return 0, 0, 0  # no result file yet: ask again at the next pass
        now = self.clock.now()
        async with self.db.transaction() as session:
            # Credits the file left out: the recovery worker asks the partner about each, now.
            left_out = await session.exec(
                update(CONVERSIONS)
                .where(
                    CONVERSIONS.c.id.in_(select(LINES.c.conversion_id).where(LINES.c.batch_id == batch.id)),
                    CONVERSIONS.c.status == ConversionStatus.PENDING,
                    CONVERSIONS.c.step == SagaStep.AWAIT_CREDIT,
                )
                .values(next_attempt_at=now)
            )
            await session.exec(
                update(BATCHES)
                .where(BATCHES.c.id == batch.id)
                .values(status=CreditBatchStatus.SETTLED, results=len(first_lines), settled_at=now)
            )
        if left_out.rowcount:
            logger.warning(
                "credit batch %s: the result file left out %d credits; asking about each", batch.id, left_out.rowcount
            )
        return applied, mismatched, left_out.rowcount

    def _credit_of(self, batch: CreditBatch, line: ResultLine, first_lines: Mapping[str, int]) -> str:
        """The conversion whose credit ``line`` is about; refused if it names no credit or one
        an earlier line gave already (which of two outcomes would be the partner's?)."""
        conversion_id, _, suffix = line.operation_id.rpartition(":")
        if suffix != "credit":
            raise self._refused(batch, line, f"operation_id: {line.operation_id} is not a credit of this batch")
        if (first := first_lines.get(conversion_id)) is not None:
            raise self._refused(batch, line, f"operation_id: {line.operation_id} was given on line {first} already")
        return conversion_id

    @staticmethod
    def _refused(batch: CreditBatch, line: ResultLine, reason: str) -> PartnerProtocolError:
        """The result file refused at ``line``, as a malformed line is: the lines before it
        settled, the rest of the batch waiting (their credits polled) for a file without it."""
        return PartnerProtocolError(
            f"partner {batch.program_id}: {Call.CREDIT_RESULTS.value}: line {line.number}: {reason}",
            program_id=batch.program_id,
            call=Call.CREDIT_RESULTS.value,
            operation_id=batch.id,
        )

    async def _settle(self, conversion_id: str, state: OperationState) -> None:
        outcome = self.saga.credit_outcome(state)
        await self.saga.conclude(conversion_id, SagaStep.AWAIT_CREDIT, lambda _: outcome)

    async def _credit_sent(self, batch_id: str, conversion_id: str) -> tuple[int, bool] | None:
        """The points the batch's credits file sent for ``conversion_id`` and whether its
        conversion still waits for the outcome; ``None`` if the file sent it no credit."""
        async with self.db.transaction() as session:
            row = (
                await session.exec(
                    select(CONVERSIONS.c.points_out, CONVERSIONS.c.status, CONVERSIONS.c.step)  # type: ignore[call-overload]
                    .join(LINES, LINES.c.conversion_id == CONVERSIONS.c.id)
                    .where(LINES.c.conversion_id == conversion_id, LINES.c.batch_id == batch_id)
                )
            ).first()
        if row is None:
            return None
        points, status, step = row
        return int(points), status == ConversionStatus.PENDING and step == SagaStep.AWAIT_CREDIT
