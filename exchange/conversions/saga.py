"""The conversion saga: move points between two partners without losing or creating any.

1. **Record** the conversion PENDING under the member's idempotency key, with the quote's
   amounts and the limits it reserves (one unit of work; a repeat of the key returns it).
   The source program's points are debited only under its authority
   (:mod:`exchange.members.authority`): a token it asserted, or a consent given through it,
   used in this same unit of work.
2. **Debit** the member at the source partner (operation ``<id>:debit``).
3. **Credit** the member at the target partner (operation ``<id>:credit``); the clearing
   transaction is posted to the ledger in the same unit of work that marks the conversion
   COMPLETED, so a conversion is COMPLETED if and only if it is posted.

A definite failure of the debit ends FAILED with nothing posted; a definite failure of the
credit reverses the debit (``<id>:reverse-debit``) and ends REVERSED. Limits come back in
both cases. When a call's outcome is unknown (timeout, dropped connection, 5xx, a crash
of this process), the conversion stays PENDING and *in doubt*; the recovery worker asks
the partner for the operation's status and drives it on:

* a debit in doubt that the partner applied goes on to the credit; one it never got is
  voided (a reversal naming it, so it can never apply later) and the conversion FAILS;
* a credit in doubt that was applied is posted and COMPLETED; one the partner never got is
  sent again (same id, so it applies at most once), and after ``give_up_after`` tries it
  is voided and the debit reversed.

The steps run on the shared saga driver (:mod:`exchange.sagas.engine`): partner calls
happen outside database transactions; every state change is one short unit of work that
checks the step it expects, so a request and the recovery worker can never both move one
conversion. A lease keeps the worker away from conversions a request is still driving.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import OperationState
from exchange.connectors.errors import PartnerRefusal, PartnerUnavailable
from exchange.connectors.registry import ConnectorRegistry
from exchange.conversions.clearing import conversion_transaction
from exchange.conversions.errors import ConversionNotFound, QuoteAlreadyExecuted
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.db.database import Database
from exchange.errors import ErrorCode, ExchangeError, IdempotencyConflict
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger
from exchange.members.authority import DebitAuthority, require_authority
from exchange.members.consents import authorize_debit
from exchange.pricing import limits, quotes, rates
from exchange.programs.catalog import Catalog, CatalogCache
from exchange.programs.models import Program
from exchange.sagas.doubt import MemberDebit
from exchange.sagas.engine import Saga, SagaPolicy, Transition, failure
from exchange.sagas.idempotency import record_once
from exchange.settings import Settings

ConnectorFor = Callable[[Program], PartnerConnector]

#: The credit went through: post the clearing transaction with the move to COMPLETED.
_CREDITED = Transition(SagaStep.DONE, ConversionStatus.COMPLETED)

#: Final statuses that give back the limits a conversion reserved.
_RELEASES_LIMITS = (ConversionStatus.FAILED, ConversionStatus.REVERSED)


@dataclass(frozen=True, slots=True)
class ExecuteRequest:
    """``authority``: under whose authority the source program's points are debited."""

    member_id: str
    quote_id: str
    idempotency_key: str
    source_ref: str
    target_ref: str
    authority: DebitAuthority


@dataclass
class ConversionSaga(Saga[Conversion]):
    model = Conversion
    active = (ConversionStatus.PENDING,)
    label = "conversion"

    db: Database
    connector_for: ConnectorFor
    catalog: CatalogCache
    ledger: Ledger
    clock: Clock
    policy: SagaPolicy

    @classmethod
    def for_settings(
        cls, settings: Settings, *, db: Database, connectors: ConnectorRegistry, catalog: CatalogCache, clock: Clock
    ) -> ConversionSaga:
        """The saga as the gateway and ``exchange recover`` run it."""
        return cls(
            db=db,
            connector_for=connectors.for_program,
            catalog=catalog,
            ledger=Ledger.for_settings(settings, clock),
            clock=clock,
            policy=SagaPolicy(timezone=settings.timezone),
        )

    def missing(self, row_id: str) -> ExchangeError:
        return ConversionNotFound(row_id)

    # -- entry point --------------------------------------------------------------------

    async def execute(self, request: ExecuteRequest) -> Conversion:
        """Run a quote as a conversion, as far as it goes now; the same key returns the same one."""
        conversion, created = await self._record(request)
        if not created:
            return conversion
        return await self.drive(conversion, recovering=False)

    # -- step 1: record -----------------------------------------------------------------

    async def _record(self, request: ExecuteRequest) -> tuple[Conversion, bool]:
        catalog = await self.catalog.get()
        return await record_once(
            self.db,
            lambda session: self._record_in(session, request, catalog),
            lambda session: self._by_key(session, request.member_id, request.idempotency_key),
            lambda existing: self._same_request(existing, request),
        )

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

    async def _record_in(
        self, session: AsyncSession, request: ExecuteRequest, catalog: Catalog
    ) -> tuple[Conversion, bool]:
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
        require_authority(request.authority, quote.from_program, field="quoteId")
        source, target = catalog.program(quote.from_program), catalog.program(quote.to_program)
        version = await session.get(rates.RateVersion, quote.rate_version_id)
        assert version is not None
        usages = limits.conversion_usages(
            member_id=request.member_id,
            source=source,
            target=target,
            version=version,
            points_in=quote.points_in,
            points_out=quote.points_out,
            at=now,
            timezone=self.policy.timezone,
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
        # Used last, in this unit of work: whatever refuses the conversion leaves it unused.
        await authorize_debit(
            session,
            request.authority,
            member_id=request.member_id,
            program=quote.from_program,
            points=quote.points_in,
            used_for=f"conversion:{conversion.id}",
            now=now,
            field="quoteId",
        )
        return conversion, True

    # -- the steps ----------------------------------------------------------------------

    async def attempt(self, conversion: Conversion, step: str, *, in_doubt: bool) -> Transition:
        catalog = await self.catalog.get()
        source, target = catalog.program(conversion.from_program), catalog.program(conversion.to_program)
        if step == SagaStep.DEBIT:
            debit = MemberDebit(
                self.connector_for(source),
                conversion.debit_operation,
                conversion.reverse_debit_operation,
                conversion.source_ref,
                conversion.points_in,
                then=SagaStep.CREDIT,
                done=SagaStep.DONE,
                failed=ConversionStatus.FAILED,
                reversed=ConversionStatus.REVERSED,
                partner="source",
            )
            return await debit.attempt(in_doubt=in_doubt)
        if step == SagaStep.CREDIT:
            connector = self.connector_for(target)
            return await (
                self._settle_credit(conversion, connector) if in_doubt else self._credit(conversion, connector)
            )
        if step == SagaStep.REVERSE_DEBIT:
            await self.connector_for(source).reverse(conversion.reverse_debit_operation, conversion.debit_operation)
            return Transition(SagaStep.DONE, ConversionStatus.REVERSED)
        raise AssertionError(f"no attempt for step {step}")

    async def _credit(self, conversion: Conversion, target: PartnerConnector) -> Transition:
        try:
            await target.credit(conversion.credit_operation, conversion.target_ref, conversion.points_out)
        except (PartnerRefusal, PartnerUnavailable) as error:
            code, message = failure(error)
            return Transition(SagaStep.REVERSE_DEBIT, failure_code=code, failure_message=message)
        return _CREDITED

    async def _settle_credit(self, conversion: Conversion, target: PartnerConnector) -> Transition:
        operation = await target.operation_status(conversion.credit_operation)
        if operation is not None and operation.status is OperationState.APPLIED:
            return _CREDITED
        if operation is None and conversion.attempts < self.policy.give_up_after:
            return await self._credit(conversion, target)
        if operation is None:
            await target.reverse(conversion.void_credit_operation, conversion.credit_operation)
        return Transition(
            SagaStep.REVERSE_DEBIT,
            failure_code=ErrorCode.PARTNER_UNAVAILABLE.value,
            failure_message="the target partner did not confirm the credit; it was voided",
        )

    async def on_transition(
        self, session: AsyncSession, conversion: Conversion, step: str, transition: Transition
    ) -> None:
        if transition.status == ConversionStatus.COMPLETED:
            await self._post(session, conversion)
        if transition.status in _RELEASES_LIMITS:
            await limits.release(session, [limits.Usage(**usage) for usage in conversion.usages])

    async def _post(self, session: AsyncSession, conversion: Conversion) -> None:
        chart = ChartOfAccounts(conversion.currency)
        await self.ledger.post(
            session,
            conversion_transaction(
                chart=chart,
                transaction_id=conversion.ledger_transaction_id,
                conversion_id=conversion.id,
                source=conversion.from_program,
                target=conversion.to_program,
                points_in=conversion.points_in,
                points_out=conversion.points_out,
                money_value_minor=conversion.money_value_minor,
                fee_minor=conversion.fee_minor,
                effective_at=conversion.created_at,
            ),
        )
