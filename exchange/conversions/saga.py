"""The conversion saga: move points between two partners without losing or creating any.

1. **Record** the conversion PENDING under the member's idempotency key, with the quote's
   amounts and the limits it reserves (one unit of work; a repeat of the key returns it).
2. **Debit** the member at the source partner (operation ``<id>:debit``).
3. **Credit** the member at the target partner (operation ``<id>:credit``).
4. **Post** the clearing transaction to the ledger and mark the conversion COMPLETED.

A definite failure of the debit ends FAILED with nothing posted; a definite failure of the
credit reverses the debit (``<id>:reverse-debit``) and ends REVERSED. Limits come back in
both cases. When a call's outcome is unknown (timeout, dropped connection, 5xx, a crash
of this process), the conversion stays PENDING and *in doubt*; the recovery worker asks
the partner for the operation's status and drives it on:

* a debit in doubt that the partner applied goes on to the credit; one it never got is
  voided (a reversal naming it, so it can never apply later) and the conversion FAILS;
* a credit in doubt that was applied goes on to posting; one the partner never got is
  sent again (same id, so it applies at most once), and after ``give_up_after`` tries it
  is voided and the debit reversed.

Partner calls happen outside database transactions; every state change is one short unit
of work that checks the step it expects, so a request and the recovery worker can never
both move one conversion. A lease keeps the worker away from conversions a request is
still driving.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import Operation, OperationState
from exchange.connectors.errors import OutcomeUnknown, PartnerError, PartnerRefusal, PartnerUnavailable
from exchange.connectors.registry import ConnectorRegistry
from exchange.conversions.clearing import conversion_transaction
from exchange.conversions.errors import ConversionNotFound, QuoteAlreadyExecuted
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.db.database import Database
from exchange.errors import ErrorCode, IdempotencyConflict
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger
from exchange.pricing import limits, quotes, rates
from exchange.programs import service as programs
from exchange.programs.models import Program
from exchange.settings import Settings

logger = logging.getLogger("exchange.conversions")

ConnectorFor = Callable[[Program], PartnerConnector]


@dataclass(frozen=True, slots=True)
class SagaPolicy:
    timezone: ZoneInfo
    lease: timedelta = timedelta(seconds=30)
    first_retry: timedelta = timedelta(seconds=1)
    longest_retry: timedelta = timedelta(minutes=5)
    give_up_after: int = 8
    """Attempts at a credit in doubt before it is voided and the debit reversed."""

    def backoff(self, attempts: int) -> timedelta:
        return min(self.first_retry * 2 ** min(attempts, 20), self.longest_retry)


@dataclass(frozen=True, slots=True)
class Transition:
    """What one step decided: the next step (or a final status) and why."""

    step: SagaStep
    status: ConversionStatus = ConversionStatus.PENDING
    failure_code: str | None = None
    failure_message: str | None = None
    release_limits: bool = False


@dataclass(frozen=True, slots=True)
class ExecuteRequest:
    member_id: str
    quote_id: str
    idempotency_key: str
    source_ref: str
    target_ref: str


def _failure(error: PartnerError) -> tuple[str, str]:
    return error.code.value, error.message


@dataclass
class ConversionSaga:
    db: Database
    connector_for: ConnectorFor
    ledger: Ledger
    clock: Clock
    policy: SagaPolicy

    @classmethod
    def for_settings(
        cls, settings: Settings, *, db: Database, connectors: ConnectorRegistry, clock: Clock
    ) -> ConversionSaga:
        """The saga as the gateway and ``exchange recover`` run it."""
        return cls(
            db=db,
            connector_for=connectors.for_program,
            ledger=Ledger.for_settings(settings, clock),
            clock=clock,
            policy=SagaPolicy(timezone=settings.timezone),
        )

    # -- entry points -------------------------------------------------------------------

    async def execute(self, request: ExecuteRequest) -> Conversion:
        """Run a quote as a conversion, as far as it goes now; the same key returns the same one."""
        conversion, created = await self._record(request)
        if not created:
            return conversion
        return await self._drive(conversion, recovering=False)

    async def recover(self, conversion_id: str) -> Conversion:
        """Drive one PENDING conversion on from wherever it stands (the recovery worker's job)."""
        async with self.db.transaction() as session:
            conversion = await session.get(Conversion, conversion_id)
            if conversion is None:
                raise ConversionNotFound(conversion_id)
            if conversion.status != ConversionStatus.PENDING:
                return conversion
            conversion.lease_until = self.clock.now() + self.policy.lease
            session.add(conversion)
        return await self._drive(conversion, recovering=True)

    async def claim_due(self, batch: int = 20, *, due_by: datetime | None = None) -> list[str]:
        """Lease up to ``batch`` PENDING conversions whose next attempt is due by ``due_by``
        (default: now), skipping any another worker or a request holds; return their ids."""
        now = self.clock.now()
        due_by = due_by or now
        async with self.db.transaction() as session:
            rows = await session.exec(
                select(Conversion)
                .where(
                    Conversion.status == ConversionStatus.PENDING,
                    col(Conversion.next_attempt_at) <= due_by,
                )
                .order_by(col(Conversion.next_attempt_at))
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            claimed = [row for row in rows if row.lease_until is None or row.lease_until <= now]
            for conversion in claimed:
                conversion.lease_until = now + self.policy.lease
                session.add(conversion)
        return [conversion.id for conversion in claimed]

    # -- step 1: record -----------------------------------------------------------------

    async def _record(self, request: ExecuteRequest) -> tuple[Conversion, bool]:
        try:
            async with self.db.transaction() as session:
                return await self._record_in(session, request)
        except IntegrityError:
            # Another request inserted the same key between our look and our insert.
            async with self.db.transaction() as session:
                existing = await self._by_key(session, request.member_id, request.idempotency_key)
            if existing is None:
                raise
            return self._same_request(existing, request), False

    @staticmethod
    def _same_request(existing: Conversion, request: ExecuteRequest) -> Conversion:
        if existing.quote_id != request.quote_id:
            raise IdempotencyConflict(
                f"idempotency key {request.idempotency_key!r} was used for quote {existing.quote_id}",
                field="idempotencyKey",
            )
        return existing

    @staticmethod
    async def _by_key(session: AsyncSession, member_id: str, key: str) -> Conversion | None:
        return (
            await session.exec(
                select(Conversion).where(Conversion.member_id == member_id, Conversion.idempotency_key == key)
            )
        ).first()

    async def _record_in(self, session: AsyncSession, request: ExecuteRequest) -> tuple[Conversion, bool]:
        now = self.clock.now()
        # Locking the quote first queues every execution of it, so they see each other.
        quote = await quotes.member_quote(session, request.quote_id, request.member_id, lock=True)
        existing = await self._by_key(session, request.member_id, request.idempotency_key)
        if existing is not None:
            return self._same_request(existing, request), False
        earlier = (await session.exec(select(Conversion).where(Conversion.quote_id == quote.id))).first()
        if earlier is not None:
            raise QuoteAlreadyExecuted(quote.id, earlier.id)
        quotes.ensure_open(quote, now)
        source = await programs.get_program(session, quote.from_program)
        target = await programs.get_program(session, quote.to_program)
        version = await session.get(rates.RateVersion, quote.rate_version_id)
        assert version is not None
        usages = limits.conversion_usages(
            member_id=request.member_id, source=source, target=target, version=version,
            points_in=quote.points_in, points_out=quote.points_out, at=now, timezone=self.policy.timezone,
        )
        await limits.reserve(session, usages)
        conversion = Conversion(
            id=str(uuid.uuid4()),
            member_id=request.member_id,
            idempotency_key=request.idempotency_key,
            quote_id=quote.id,
            rate_version_id=quote.rate_version_id,
            from_program=quote.from_program,
            to_program=quote.to_program,
            source_ref=request.source_ref,
            target_ref=request.target_ref,
            points_in=quote.points_in,
            points_out=quote.points_out,
            currency=quote.currency,
            money_value_minor=quote.money_value_minor,
            fee_minor=quote.fee_minor,
            status=ConversionStatus.PENDING,
            step=SagaStep.DEBIT,
            usages=[asdict(usage) for usage in usages],
            next_attempt_at=now + self.policy.lease,
            lease_until=now + self.policy.lease,
            created_at=now,
            updated_at=now,
        )
        session.add(conversion)
        await session.flush()
        return conversion, True

    # -- driving the steps --------------------------------------------------------------

    async def _drive(self, conversion: Conversion, *, recovering: bool) -> Conversion:
        in_doubt = recovering or conversion.in_doubt
        while conversion.status == ConversionStatus.PENDING:
            step = SagaStep(conversion.step)
            try:
                if step is SagaStep.POST:
                    return await self._post(conversion)
                transition = await self._attempt(conversion, step, in_doubt=in_doubt)
            except (OutcomeUnknown, PartnerUnavailable) as error:
                # Unknown, or (while settling a doubt) not reachable: ask again later.
                return await self._postpone(conversion, step, error)
            except PartnerRefusal as error:
                # A refusal where the contract allows none (a reversal refused): keep the
                # conversion PENDING for an operator, and keep asking, slowly.
                logger.error("conversion %s: partner refused %s at step %s", conversion.id, error.message, step)
                return await self._postpone(conversion, step, error)
            conversion = await self._apply(conversion, step, transition)
            in_doubt = False
        return conversion

    async def _attempt(self, conversion: Conversion, step: SagaStep, *, in_doubt: bool) -> Transition:
        async with self.db.transaction() as session:
            source = await programs.get_program(session, conversion.from_program)
            target = await programs.get_program(session, conversion.to_program)
        if step is SagaStep.DEBIT:
            connector = self.connector_for(source)
            return await (self._settle_debit(conversion, connector) if in_doubt else self._debit(conversion, connector))
        if step is SagaStep.CREDIT:
            connector = self.connector_for(target)
            return await (self._settle_credit(conversion, connector) if in_doubt else self._credit(conversion, connector))
        if step is SagaStep.REVERSE_DEBIT:
            await self.connector_for(source).reverse(conversion.reverse_debit_operation, conversion.debit_operation)
            return Transition(SagaStep.DONE, ConversionStatus.REVERSED, release_limits=True)
        raise AssertionError(f"no attempt for step {step}")

    async def _debit(self, conversion: Conversion, source: PartnerConnector) -> Transition:
        try:
            await source.debit(conversion.debit_operation, conversion.source_ref, conversion.points_in)
        except (PartnerRefusal, PartnerUnavailable) as error:
            code, message = _failure(error)
            return Transition(SagaStep.DONE, ConversionStatus.FAILED, code, message, release_limits=True)
        return Transition(SagaStep.CREDIT)

    async def _settle_debit(self, conversion: Conversion, source: PartnerConnector) -> Transition:
        operation = await source.operation_status(conversion.debit_operation)
        if operation is None or operation.status is not OperationState.APPLIED:
            reversal = await source.reverse(conversion.reverse_debit_operation, conversion.debit_operation)
            return self._after_voiding_debit(reversal)
        return Transition(SagaStep.CREDIT)

    @staticmethod
    def _after_voiding_debit(reversal: Operation) -> Transition:
        target = reversal.target
        if target is not None and target.status is OperationState.VOIDED:
            return Transition(
                SagaStep.DONE, ConversionStatus.FAILED, ErrorCode.PARTNER_UNAVAILABLE.value,
                "the source partner did not confirm the debit in time; it was voided",
                release_limits=True,
            )
        return Transition(
            SagaStep.DONE, ConversionStatus.REVERSED, ErrorCode.PARTNER_UNAVAILABLE.value,
            "the source partner confirmed the debit too late; it was reversed",
            release_limits=True,
        )

    async def _credit(self, conversion: Conversion, target: PartnerConnector) -> Transition:
        try:
            await target.credit(conversion.credit_operation, conversion.target_ref, conversion.points_out)
        except (PartnerRefusal, PartnerUnavailable) as error:
            code, message = _failure(error)
            return Transition(SagaStep.REVERSE_DEBIT, failure_code=code, failure_message=message)
        return Transition(SagaStep.POST)

    async def _settle_credit(self, conversion: Conversion, target: PartnerConnector) -> Transition:
        operation = await target.operation_status(conversion.credit_operation)
        if operation is not None and operation.status is OperationState.APPLIED:
            return Transition(SagaStep.POST)
        if operation is None and conversion.attempts < self.policy.give_up_after:
            return await self._credit(conversion, target)
        if operation is None:
            await target.reverse(conversion.void_credit_operation, conversion.credit_operation)
        return Transition(
            SagaStep.REVERSE_DEBIT,
            failure_code=ErrorCode.PARTNER_UNAVAILABLE.value,
            failure_message="the target partner did not confirm the credit; it was voided",
        )

    async def _post(self, conversion: Conversion) -> Conversion:
        async with self.db.transaction() as session:
            current = await self._locked(session, conversion.id, SagaStep.POST)
            if current is None:
                return await self._reload(conversion.id)
            settings = (await programs.get_coalition(session)).settings
            chart = ChartOfAccounts(settings.settlement_currency)
            now = self.clock.now()
            await self.ledger.post(
                session,
                conversion_transaction(
                    chart=chart,
                    transaction_id=current.ledger_transaction_id,
                    conversion_id=current.id,
                    source=current.from_program,
                    target=current.to_program,
                    points_in=current.points_in,
                    points_out=current.points_out,
                    money_value_minor=current.money_value_minor,
                    fee_minor=current.fee_minor,
                    effective_at=current.created_at,
                ),
            )
            current.status, current.step = ConversionStatus.COMPLETED, SagaStep.DONE
            current.in_doubt, current.lease_until = False, None
            current.updated_at = current.finished_at = now
            session.add(current)
        return current

    # -- state changes ------------------------------------------------------------------

    async def _locked(self, session: AsyncSession, conversion_id: str, step: SagaStep) -> Conversion | None:
        """The conversion, locked, if it is still PENDING at ``step`` (else someone moved it)."""
        conversion = (
            await session.exec(select(Conversion).where(Conversion.id == conversion_id).with_for_update())
        ).one()
        if conversion.status != ConversionStatus.PENDING or conversion.step != step:
            return None
        return conversion

    async def _reload(self, conversion_id: str) -> Conversion:
        async with self.db.transaction() as session:
            conversion = await session.get(Conversion, conversion_id)
        assert conversion is not None
        return conversion

    async def _apply(self, conversion: Conversion, step: SagaStep, transition: Transition) -> Conversion:
        async with self.db.transaction() as session:
            current = await self._locked(session, conversion.id, step)
            if current is None:
                return await self._reload(conversion.id)
            now = self.clock.now()
            current.step, current.status = transition.step, transition.status
            current.in_doubt, current.attempts = False, 0
            if transition.failure_code is not None:
                current.failure_code = transition.failure_code
                current.failure_message = (transition.failure_message or "")[:500]
            if transition.release_limits:
                await limits.release(session, [limits.Usage(**usage) for usage in current.usages])
            if transition.status != ConversionStatus.PENDING:
                current.finished_at, current.lease_until = now, None
            current.updated_at = now
            session.add(current)
        return current

    async def _postpone(self, conversion: Conversion, step: SagaStep, error: PartnerError) -> Conversion:
        logger.warning("conversion %s: %s at step %s; will ask again", conversion.id, error.message, step)
        async with self.db.transaction() as session:
            current = await self._locked(session, conversion.id, step)
            if current is None:
                return await self._reload(conversion.id)
            now = self.clock.now()
            current.in_doubt = current.in_doubt or isinstance(error, OutcomeUnknown)
            current.attempts += 1
            current.next_attempt_at = now + self.policy.backoff(current.attempts)
            current.lease_until = None
            current.updated_at = now
            session.add(current)
        return current
