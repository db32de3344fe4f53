"""Settlement: closing periods, statements, partners' records, breaks and sign-off, and verifying
the clearing ledger. Each operation opens its own units of work and calls the rules in
``exchange.settlement`` and ``exchange.ledger``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from joserfc.jwk import RSAKey
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.coalition.rules import declared_point, point_rules
from exchange.coalition.verify import check_point
from exchange.db.availability import DatabaseUnavailable
from exchange.db.database import Database
from exchange.db.paging import Page
from exchange.errors import ExchangeError
from exchange.ledger.errors import PeriodNotOver
from exchange.ledger.models import SettlementPeriod
from exchange.ledger.partitions import ensure_partitions
from exchange.ledger.periods import (
    PeriodStatus,
    SettlementCalendar,
    last_closed_period,
    refuse_if_nothing_to_close,
)
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import Verification, verify_ledger
from exchange.money import Currency
from exchange.observability.metrics import count_recovered_closes
from exchange.programs.service import get_coalition
from exchange.services.coalition import PointStanding
from exchange.settings import DEFAULT_SETTLEMENT_JOB_STALE_SECONDS, Settings
from exchange.settlement import (
    break_report,
    closing,
    issued,
    jobs,
    other_periods,
    overview,
    point_records,
    reconciliation,
    signoff,
    statements,
)
from exchange.settlement.archive import Archive, archive_period
from exchange.settlement.break_kinds import BreakKind
from exchange.settlement.breaks import (
    Adjusted,
    BulkResolveRequest,
    ResolveRequest,
    list_breaks,
    resolution_trail,
    resolve_break,
    resolve_breaks,
)
from exchange.settlement.closing import PeriodReport
from exchange.settlement.errors import RECORDS_FIELD, JobNotFound
from exchange.settlement.keys import Rotation, StatementKeys
from exchange.settlement.models import (
    BreakResolution,
    IssuedStatement,
    Reconciliation,
    ReconciliationBreak,
    RecordsSource,
    SettlementJob,
    SettlementPosition,
)
from exchange.settlement.overview import PartnerPeriod
from exchange.settlement.positions import position_of
from exchange.settlement.reconciliation import Totals as ReconciliationTotals
from exchange.settlement.records import BLOCK_BYTES, ByteSource

logger = logging.getLogger("exchange.settlement.jobs")

#: Who finishes a close left unfinished (``exchange recover``); a period's ``closed_by`` keeps
#: whoever started closing it.
RECOVERY = "exchange recover"
#: The closing job's last step: its statements, issued once the period is CLOSED.
ISSUING_STATEMENTS = "issuing statements"
#: How many of a statement's lines a CSV download reads at a time (:meth:`SettlementService.statement_csv`).
CSV_PAGE = 1000

Read = TypeVar("Read")


@dataclass(frozen=True)
class LedgerCheck:
    """``exchange ledger verify``: the ledger's own checks, and the coalition point's (if declared)."""

    verification: Verification
    point: PointStanding | None

    @property
    def problem(self) -> str | None:
        """The first problem: the ledger's, else the point's."""
        if self.verification.problem is not None:
            return str(self.verification.problem)
        return None if self.point is None else self.point.check.problem


@dataclass(frozen=True)
class ReconciliationView:
    reconciliation: Reconciliation
    unresolved: int
    currency: Currency
    totals: ReconciliationTotals
    """The file's total against the statement's net for the period."""


@dataclass(frozen=True)
class BreakView:
    row: ReconciliationBreak
    resolution: BreakResolution | None
    partner: str
    currency: Currency
    next_step: break_report.NextStep
    """What the partner does next about it, as its break report says."""

    @property
    def difference(self) -> int:
        """What it puts between the file's total and the statement's net (minor units)."""
        return reconciliation.break_difference(self.row)

    @property
    def terms(self) -> tuple[int | None, int | None]:
        """The partner's and the ledger's amounts its difference is made of (minor units)."""
        return reconciliation.difference_terms(self.row)


@dataclass(frozen=True)
class ResolvedBreaks:
    resolved: int
    """Breaks the request resolved."""
    unchanged: int
    """Breaks it named that were already resolved the same way."""
    reconciliation: ReconciliationView
    adjusted: Adjusted | None = None
    """ADJUST: the adjustments it posted, their total and the period they went into."""


@dataclass(frozen=True)
class PositionView:
    position: SettlementPosition
    currency: Currency


async def settlement_currency(session: AsyncSession) -> Currency:
    return (await get_coalition(session)).settings.currency


async def reconciliation_view(session: AsyncSession, of: Reconciliation, unresolved: int) -> ReconciliationView:
    return ReconciliationView(
        of, unresolved, await settlement_currency(session), await reconciliation.totals(session, of)
    )


@dataclass(frozen=True)
class UnfinishedCloses:
    """What a recovery pass (``exchange recover``, a gateway's job) did with the periods a closer
    left unfinished: ``finished`` closed by this pass (CLOSING before it); ``issued`` CLOSED
    before it, by a closer that stopped while issuing their statements, each with the
    participants whose statement this pass issued; ``closed_meanwhile`` finished by another
    closer (another gateway's pass, or a closer it waited behind; this pass may have issued
    some of their statements beside it); ``refused`` still unfinished,
    each with the reason closing it was refused."""

    finished: list[str]
    refused: list[tuple[str, str]]
    closed_meanwhile: list[str] = field(default_factory=list)
    issued: list[tuple[str, list[str]]] = field(default_factory=list)


@dataclass
class SettlementService:
    db: Database
    ledger: Ledger
    clock: Clock
    keys: StatementKeys
    issuer: str
    stale_after: timedelta = timedelta(seconds=DEFAULT_SETTLEMENT_JOB_STALE_SECONDS)
    """How long a job runner may be silent before another takes its job (``settlement.jobs``)."""
    pause: Callable[[float], Awaitable[None]] = asyncio.sleep
    """Waits the given seconds between two heartbeats of a running job (tests step it)."""
    _interrupted: dict[str, datetime] = field(default_factory=dict, init=False, repr=False)
    """This runner's job runs that lost the database and are not back in the queue yet: job id,
    when the run was taken."""

    @classmethod
    def for_settings(cls, settings: Settings, *, db: Database, clock: Clock) -> SettlementService:
        return cls(
            db=db,
            ledger=Ledger.for_settings(settings, clock),
            clock=clock,
            keys=StatementKeys.for_settings(settings, db=db, clock=clock),
            issuer=settings.issuer_url,
            stale_after=timedelta(seconds=settings.settlement_job_stale_seconds),
        )

    @property
    def calendar(self) -> SettlementCalendar:
        return self.ledger.calendar

    def previous_period(self) -> str:
        """The period that ended last, by the settlement calendar and this service's clock."""
        return self.calendar.latest_over(self.clock.now())

    async def close(self, period: str, *, by: str, progress: closing.Progress | None = None) -> PeriodReport:
        """Close ``period`` (``settlement.closing``), then issue every participant's statement
        (``settlement.issued``) not issued yet, each in a unit of work of its own; the period's
        figures as they stand then (every statement issued), naming the statements this call
        issued (``issued_now``)."""
        period = self.calendar.parse(period)  # before any unit of work: a bad name changes nothing
        progress = progress or closing.no_progress
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
        signer = await self._signer(currency)  # before closing: a database without a key gets one first
        report = await closing.close_period(
            self.db, self.calendar, self.clock, currency, period, by=by, progress=progress
        )
        await progress(95, ISSUING_STATEMENTS)
        issued_now = []
        for participant in report.not_issued:
            async with self.db.transaction() as session:
                if await issued.issue(session, signer, participant, period, self.clock.now()):
                    issued_now.append(participant)
        async with self.db.transaction() as session:
            return replace(
                await closing.period_report(session, period, currency),
                closed_now=report.closed_now,
                issued_now=issued_now,
            )

    async def finish_unfinished_closes(self, *, grace: timedelta | None = None) -> UnfinishedCloses:
        """Finish closing every period a closer left unfinished (CLOSING, or CLOSED with
        statements not issued), oldest first, by closing it again (which finishes what was left,
        statements included): after a crash of `exchange settle close`, of a ``closePeriod``
        request or of a console job that was not taken again. ``exchange recover`` finishes
        every such period; a gateway's job (``grace``) only those whose closing started more
        than ``grace`` ago, whose closer is taken to have died. A closer still at work is safe
        to meet either way: one closer at a time holds the period's row, and the later one finds
        it CLOSED; a statement is stored once, and one issuer waits for the other's; so several
        gateways finishing one period close it, and issue each statement, once."""
        started_before = None if grace is None else self.clock.now() - grace
        periods = await closing.left_unfinished(self.db, started_before=started_before)
        done = UnfinishedCloses([], [])
        for period, status in periods:
            try:
                report = await self.close(period, by=RECOVERY)  # the closer recorded when it started stays
            except DatabaseUnavailable:
                raise
            except ExchangeError as error:
                logger.error("period %s was left closing and closing it was refused: %s", period, error)
                done.refused.append((period, str(error)))
            else:
                if report.closed_now:
                    done.finished.append(period)
                elif status is PeriodStatus.CLOSED and report.issued_now:
                    done.issued.append((period, list(report.issued_now)))
                else:
                    done.closed_meanwhile.append(period)
        if done.finished:
            logger.warning("finished closing %s, left CLOSING by a closer that stopped", ", ".join(done.finished))
            count_recovered_closes(len(done.finished))
        for period, participants in done.issued:
            logger.warning(
                "issued the statements of %s a closer that stopped left unissued: %s", period, ", ".join(participants)
            )
        return done

    async def request_close(self, period: str, *, by: str) -> SettlementJob:
        """Queue closing ``period`` for the gateway's job runner (see ``settlement.jobs``), or
        return the job already queued or running for it. A period that is not over, or that
        counts as closed without closing, is refused now; what only closing can find out (an
        earlier period still open) fails the job."""
        period = self.calendar.parse(period)
        now = self.clock.now()
        if now < self.calendar.ends_at(period):
            raise PeriodNotOver(period, self.calendar.ends_at(period))
        async with self.db.transaction() as session:
            row = await session.get(SettlementPeriod, period)
            refuse_if_nothing_to_close(period, row, await last_closed_period(session))
            return await jobs.enqueue_close(session, period, by=by, now=now)

    async def job(self, job_id: str) -> SettlementJob:
        async with self.db.transaction() as session:
            found = await session.get(SettlementJob, job_id)
        if found is None:
            raise JobNotFound(job_id)
        return found

    async def closing_job(self, period: str) -> SettlementJob | None:
        """The job queued or running to close ``period``, if any."""
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            return await jobs.active_job(session, jobs.CLOSE_PERIOD, period)

    async def recent_jobs(self) -> Sequence[SettlementJob]:
        async with self.db.transaction() as session:
            return await jobs.recent_jobs(session)

    async def run_next_job(self) -> bool:
        """Run the oldest queued settlement job, if any, recording its progress; whether one ran.

        A refusal (an earlier period still open, …) fails the job with its reason. The database
        going away stops the job (``DatabaseUnavailable`` propagates) and puts it back in the
        queue at once if the database answers again, else first thing at this runner's next
        pass: a runner's pass takes it again, and staff never see a dead run as running. A runner
        stopped (its gateway's SIGTERM cancels the pass) puts its job back in the queue before it
        goes, for another gateway's next pass; it left it RUNNING, with nobody running it, until its
        heartbeat was stale. (A runner that dies leaves its job RUNNING until then.)
        """
        await self._requeue_interrupted()
        now = self.clock.now()
        if not await jobs.any_to_take(self.db, now, self.stale_after):
            return False  # the usual pass: one read, no unit of work
        async with self.db.transaction() as session:
            job = await jobs.claim(session, now, self.stale_after)
        if job is None:
            return False
        assert job.started_at is not None  # set by the claim
        try:
            await self._run_job(job)
        except (DatabaseUnavailable, asyncio.CancelledError):
            self._interrupted[job.id] = job.started_at
            await self._requeue_interrupted()
            raise
        return True

    async def _requeue_interrupted(self) -> None:
        """Put back in the queue the runs this runner gave up on: the database went away, or the
        runner was stopped."""
        for job_id, started_at in list(self._interrupted.items()):
            async with self.db.transaction() as session:
                requeued = await jobs.requeue(session, job_id, started_at)
            del self._interrupted[job_id]
            if requeued:
                logger.warning("settlement job %s was interrupted and is queued again", job_id)

    async def _run_job(self, job: SettlementJob) -> None:
        """Run ``job``, taken by this runner, and record how it ended (not if the database went away)."""

        async def progress(percent: int, step: str) -> None:
            async with self.db.transaction() as session:
                await jobs.record_progress(session, job.id, percent, step, self.clock.now())

        try:
            async with self._beating(job):
                await self.close(job.subject, by=job.requested_by, progress=progress)
        except DatabaseUnavailable:  # an ExchangeError too, but not a refusal: the job is taken again
            raise
        except ExchangeError as refused:
            error: str | None = str(refused)
        except Exception:
            async with self.db.transaction() as session:
                await jobs.finish(session, job.id, self.clock.now(), error="an unexpected error: see the gateway's log")
            raise
        else:
            error = None
        async with self.db.transaction() as session:
            await jobs.finish(session, job.id, self.clock.now(), error=error)

    @contextlib.asynccontextmanager
    async def _beating(self, job: SettlementJob) -> AsyncIterator[None]:
        """Beat ``job``'s heartbeat while the block runs: a step of the close may take longer
        than the stale time (a month's netting, a statement of a million lines), and another
        runner must not take a live run."""
        beating = asyncio.create_task(self._beat(job), name=f"settlement job {job.id} heartbeat")
        try:
            yield
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    async def _beat(self, job: SettlementJob) -> None:
        """Record every :func:`jobs.heartbeat_every` that this runner's run of ``job`` is alive,
        until cancelled, or until the run is not this runner's any more. A beat that finds the
        database away is skipped: the close meets the outage too, and the next beat tries again."""
        assert job.started_at is not None  # set by the claim
        every = jobs.heartbeat_every(self.stale_after).total_seconds()
        while True:
            await self.pause(every)
            try:
                async with self.db.transaction() as session:
                    ours = await jobs.heartbeat(session, job.id, job.started_at, self.clock.now())
            except DatabaseUnavailable:
                continue
            if not ours:
                logger.error("settlement job %s was taken by another runner while this one still ran it", job.id)
                return

    async def run_jobs(self) -> None:
        """Run queued settlement jobs until none is left (the gateway's periodic pass)."""
        while await self.run_next_job():
            pass

    async def period(self, period: str) -> PeriodReport:
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            return await closing.period_report(session, period, await settlement_currency(session))

    async def statement_lines(
        self, participant: str, period: str, *, first: int, after: str | None
    ) -> Page[statements.StatementLine]:
        """``first`` lines of the participant's issued statement of ``period``, in its order,
        after the cursor ``after`` (a page's ``nextCursor``)."""
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
            return await issued.line_page(session, participant, period, currency, first=first, after=after)

    async def statement_lines_after(
        self, participant: str, period: str, *, number: int, first: int
    ) -> list[statements.StatementLine]:
        """``first`` lines of the participant's issued statement of ``period`` after its
        ``number``-th (0: from the first)."""
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
            return await issued.lines_after(session, participant, period, currency, number=number, first=first)

    async def statement_line_count(self, participant: str, period: str) -> int:
        """How many lines the participant's issued statement of ``period`` has."""
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            return await issued.line_count(session, participant, period)

    async def statement_csv(self, participant: str, period: str, *, page: int = CSV_PAGE) -> AsyncIterator[str]:
        """The participant's statement of the closed ``period`` as issued, as CSV
        (:func:`~exchange.settlement.statements.csv_pieces`), a piece at a time: its head read
        now (a statement not found or not closed is refused here, before any of it), then its
        lines ``page`` at a time by their numbers, each page in a unit of work of its own, so
        that a busy month's statement streams to a slow reader without its document, all its
        lines or a database connection held meanwhile. An issued statement's lines never
        change, so the pages add up to its document's lines whatever runs between them."""
        period = self.calendar.parse(period)

        async def head(session: AsyncSession, _currency: Currency) -> dict[str, Any] | None:
            return await issued.stored_head(session, participant, period)

        found, _ = await self._read_issued(participant, period, head)
        return statements.csv_pieces(found, self._line_pages(participant, period, page))

    async def _line_pages(self, participant: str, period: str, page: int) -> AsyncIterator[list[dict[str, Any]]]:
        number = 0
        while True:
            async with self.db.transaction() as session:
                lines = await issued.line_documents(session, participant, period, number=number, first=page)
            if lines:
                yield lines
            if len(lines) < page:
                return
            number += page

    async def statement_figures(self, participant: str, period: str) -> issued.IssuedFigures:
        """The participant's statement of the closed ``period`` as issued (see
        ``settlement.issued``: the same document and signature at every download; a period
        closed before statements were stored has its statement issued now, once), its figures
        read from its document but for its lines: what a page shows, with a page of
        its lines (:meth:`statement_lines`), without reading a busy month's document whole."""
        period = self.calendar.parse(period)

        async def figures(session: AsyncSession, currency: Currency) -> issued.IssuedFigures | None:
            return await issued.stored_figures(session, participant, period, calendar=self.calendar, currency=currency)

        found, _ = await self._read_issued(participant, period, figures)
        return found

    async def issued_statement(self, participant: str, period: str) -> IssuedStatement:
        """What :meth:`statement_figures` reads its figures from: the stored document and signature,
        as every download serves them, without reading the document (a busy month's holds
        many thousands of lines)."""
        row, _ = await self._issued(participant, period)
        return row

    async def _issued(self, participant: str, period: str) -> tuple[IssuedStatement, Currency]:
        """The participant's stored statement of ``period``, issued first if it is not yet, and
        the settlement currency."""
        period = self.calendar.parse(period)

        async def row(session: AsyncSession, _currency: Currency) -> IssuedStatement | None:
            return await issued.stored(session, participant, period)

        return await self._read_issued(participant, period, row)

    async def _read_issued(
        self, participant: str, period: str, read: Callable[[AsyncSession, Currency], Awaitable[Read | None]]
    ) -> tuple[Read, Currency]:
        """What ``read`` finds of the participant's stored statement of ``period`` (None: none is
        stored), issuing it first if it is not yet, and the settlement currency. A statement is
        issued at the close, so this is one unit of work but for a period closed before
        statements were stored, whose statement is issued at its first reading."""
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
            found = await read(session, currency)
        if found is None:
            signer = await self._signer(currency)
            async with self.db.transaction() as session:
                await issued.issue(session, signer, participant, period, self.clock.now())
                found = await read(session, currency)
        assert found is not None
        return found, currency

    async def ledger_lines(self, participant: str, period: str) -> list[statements.StatementLine]:
        """The participant's lines of ``period`` as its statement shows them, whether or not the
        period has closed: before closing, what the ledger holds so far."""
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            return await statements.statement_lines(
                session, currency=await settlement_currency(session), participant=participant, period=period
            )

    async def partner_periods(self, partner: str, *, first: int = 24) -> Sequence[PartnerPeriod]:
        """The partner's latest closed periods: its position and its reconciliation's state."""
        async with self.db.transaction() as session:
            return await overview.partner_periods(session, partner, first=first)

    async def signing_key(self) -> RSAKey:
        """The key statements are signed with now, made first if there is none yet: a period
        closed (its statements issued) from the CLI on a database no gateway has started on."""
        async with self.db.transaction() as session:  # closings and first downloads are rare: read afresh
            await self.keys.ensure_active(session)
            await self.keys.refresh(session)
        return await self.keys.signing_key()

    async def _signer(self, currency: Currency) -> issued.Signer:
        """What issuing a statement in ``currency`` needs, signing with the key that signs now."""
        return issued.Signer(self.issuer, self.calendar, currency, await self.signing_key())

    async def ensure_signing_key(self) -> None:
        """An active statement-signing key exists (made on the first start)."""
        async with self.db.transaction() as session:
            await self.keys.ensure_active(session)

    async def ensure_partitions(self) -> None:
        """The current and the next period have their ledger partitions (PostgreSQL; see
        ``ledger.partitions``): made at the gateway's start, before their first posting."""
        current = self.calendar.period_of(self.clock.now())
        async with self.db.transaction() as session:
            await ensure_partitions(session, [current, self.calendar.next(current)])

    async def rotate_key(self, *, compromised: bool = False) -> Rotation:
        """Make a new statement-signing key active and published; it signs once verifiers'
        cached key sets hold it, or at once if the old key is ``compromised``. The old one
        stays published for the statement retention period."""
        async with self.db.transaction() as session:
            return await self.keys.rotate(session, compromised=compromised)

    async def import_records(self, partner: str, period: str, source: ByteSource, *, by: str) -> ReconciliationView:
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            imported = await reconciliation.import_records(
                session,
                currency=await settlement_currency(session),
                partner=partner,
                period=period,
                source=source,
                actor=by,
                records_source=RecordsSource.PARTNER_FILE,
                records_field=RECORDS_FIELD,
                now=self.clock.now(),
            )
            return await reconciliation_view(
                session, imported, await reconciliation.unresolved_breaks(session, imported.id)
            )

    async def import_point_records(self, period: str, *, by: str, keep: Path | None = None) -> ReconciliationView:
        """Import the coalition point's records of the closed ``period``, written from the
        exchange's own book of the point (``settlement.point_records``), as a partner's file is
        imported: one unit of work, ``by`` recorded as the importer and the book as the file's
        source. ``keep`` also writes the file imported there, once imported. ``NOT_FOUND`` when no point is declared."""
        period = self.calendar.parse(period)
        starts, ends = self.calendar.starts_at(period), self.calendar.ends_at(period)
        async with self.db.transaction() as session:
            rules = await point_rules(session)
            # Spilled to disk past a few blocks: a month of the point is not held in memory.
            with tempfile.SpooledTemporaryFile(max_size=4 * BLOCK_BYTES) as written:
                await point_records.records(session, rules, point_records.Month(period, starts, ends), written)
                written.seek(0)
                imported = await reconciliation.import_records(
                    session,
                    currency=rules.currency,
                    partner=rules.program_id,
                    period=period,
                    source=written,
                    actor=by,
                    records_source=RecordsSource.COALITION_BOOK,
                    records_field=None,  # written from the book for the period asked: no input of the caller's
                    now=self.clock.now(),
                )
                # Kept only once imported: a refused import (a period the point took no part in,
                # one signed off) leaves no file, nor overwrites one, that looks like its records.
                if keep is not None:
                    written.seek(0)
                    with keep.open("wb") as copy:
                        shutil.copyfileobj(written, copy)
            return await reconciliation_view(
                session, imported, await reconciliation.unresolved_breaks(session, imported.id)
            )

    async def reconciliation(self, partner: str, period: str) -> ReconciliationView:
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            current = await reconciliation.get_reconciliation(session, partner, period)
            unresolved = await reconciliation.unresolved_breaks(session, current.id)
            return await reconciliation_view(session, current, unresolved)

    async def breaks(
        self,
        of: Reconciliation,
        *,
        kind: BreakKind | None = None,
        counterparty: str | None = None,
        unresolved_only: bool = False,
        first: int = 100,
        after: int | None = None,
    ) -> list[BreakView]:
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
            rows = await list_breaks(
                session,
                of.id,
                kind=kind,
                counterparty=counterparty,
                unresolved_only=unresolved_only,
                first=first,
                after=after,
            )
            periods = await self._ledger_periods(session, currency, of, [row for row, _ in rows])
        return [
            BreakView(
                row,
                resolution,
                of.partner,
                currency,
                break_report.next_step(
                    row.kind,
                    resolution,
                    other_periods.elsewhere(row.kind, row.reference, of.period, periods),
                    book=of.of_the_book,
                ),
            )
            for row, resolution in rows
        ]

    async def _ledger_periods(
        self, session: AsyncSession, currency: Currency, of: Reconciliation, rows: list[ReconciliationBreak]
    ) -> dict[str, list[str]]:
        """Where the ledger has the references of ``rows`` that it lacks in the period."""
        missing = (row.reference for row in rows if row.kind == BreakKind.MISSING_IN_LEDGER)
        return await other_periods.ledger_periods(session, currency=currency, partner=of.partner, references=missing)

    async def break_report(
        self,
        of: Reconciliation,
        *,
        page: int = 1000,
        say: Callable[[break_report.NextStep], str] = break_report.in_english,
    ) -> AsyncIterator[str]:
        """The reconciliation's break report as CSV text (``settlement.break_report``): the byte
        order mark and header, then every break, ``page`` at a time, each page read in a unit of
        work of its own so that a large report streams instead of sitting in memory. ``say``
        says each break's next step (a page downloads it in its reader's language)."""
        yield break_report.csv_text((), header=True)
        after: int | None = None
        while True:
            async with self.db.transaction() as session:
                currency = await settlement_currency(session)
                rows = await list_breaks(session, of.id, first=page, after=after)
                periods = await self._ledger_periods(session, currency, of, [row for row, _ in rows])
            yield break_report.csv_text(
                break_report.break_row(
                    of.partner, of.period, currency, row, resolution, periods, say, book=of.of_the_book
                )
                for row, resolution in rows
            )
            if len(rows) < page:
                return
            after = rows[-1][0].id

    async def trail(self, of: Reconciliation, *, first: int = 50) -> list[BreakView]:
        """The latest resolutions of the reconciliation's breaks: who, when, why."""
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
            rows = await resolution_trail(session, of.id, first=first)
        return [
            BreakView(
                row,
                resolution,
                of.partner,
                currency,
                break_report.next_step(row.kind, resolution, book=of.of_the_book),
            )
            for row, resolution in rows
        ]

    async def periods(self, *, first: int = 24) -> list[closing.ListedPeriod]:
        """The latest periods that are closing or closed, newest first."""
        async with self.db.transaction() as session:
            return await closing.recent_periods(session, first)

    async def resolve(self, request: ResolveRequest) -> BreakView:
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
            row, resolution, partner = await resolve_break(session, self.ledger, currency, request, self.clock.now())
            of = await session.get(Reconciliation, row.reconciliation_id)
        book = of is not None and of.of_the_book
        return BreakView(row, resolution, partner, currency, break_report.next_step(row.kind, resolution, book=book))

    async def resolve_many(self, request: BulkResolveRequest) -> ResolvedBreaks:
        """Resolve a selection of a partner's breaks in one unit of work: all, or none."""
        request = replace(request, period=self.calendar.parse(request.period))
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
            done = await resolve_breaks(session, self.ledger, currency, request, self.clock.now())
            view = await reconciliation_view(session, done.reconciliation, done.unresolved)
        return ResolvedBreaks(done.resolved, done.unchanged, view, done.adjusted)

    async def archive(self, period: str, *, export: Path | None) -> Archive:
        """Detach a closed, signed-off period's ledger rows for archive (see ``settlement.archive``)."""
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
        signer = await self._signer(currency)
        async with self.db.transaction() as session:
            return await archive_period(session, signer, period, now=self.clock.now(), export=export)

    async def verify_ledger(self) -> LedgerCheck:
        """Recompute everything the ledger claims, then check the coalition point's lots against
        it (docs/COALITION.md); the first problem, if any, and the point's liability."""
        async with self.db.transaction() as session:
            verification = await verify_ledger(session)
            rules = await declared_point(session)
            point = None if rules is None else PointStanding(rules, await check_point(session, rules))
        return LedgerCheck(verification, point)

    async def position(self, participant: str, period: str) -> PositionView:
        """A participant's position in a closed period, and its sign-off."""
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            return PositionView(await position_of(session, participant, period), await settlement_currency(session))

    async def sign_off(
        self, partner: str, period: str, *, by: str, note: str | None, seen: str | None = None
    ) -> PositionView:
        """Sign off the partner's period; ``seen``: the reconciliation a page's form showed
        (see ``settlement.signoff``)."""
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            position = await signoff.sign_off(
                session, partner, period, actor=by, note=note, now=self.clock.now(), seen=seen
            )
            return PositionView(position, await settlement_currency(session))
