"""The conversion saga: move points between two partners without losing or creating any.

1. **Record** the conversion PENDING under the member's idempotency key, with the quote's
   amounts, and reserve the limits it counts against (one unit of work; a repeat of the key
   returns it). The source program's points are debited only under its authority
   (:mod:`exchange.members.authority`): a token it asserted, or a consent given through it,
   used in this same unit of work. The source program's risk gates (:mod:`exchange.risk.gates`)
   screen it there too: a refusal records nothing, and a hold leaves it HELD, its saga
   waiting until staff approve it (it goes on from the debit) or reject it (FAILED).
2. **Debit** the member at the source partner (operation ``<id>:debit``).
3. **Credit** the member at the target partner (operation ``<id>:credit``); the clearing
   transaction is posted to the ledger in the same unit of work that marks the conversion
   COMPLETED, so a conversion is COMPLETED if and only if it is posted.

A conversion its quote routed through the coalition point (:mod:`exchange.pricing.routes`)
runs the same steps: the member is debited at A and credited at B, and never holds coalition
points in between; it posts two clearing transactions, one per leg, in that same unit of work.

The move from the debit to the credit is not recorded on its own (a chained transition): a
crash between them leaves the conversion at DEBIT, and recovery asks the source partner,
finds the debit applied, and sends the credit — the same operation id, which the target
partner applies at most once, whether or not the first one reached it.

A partner may answer the debit or the credit "accepted, pending" (partners/CONTRACT.md,
"Partners that answer later"): the conversion then waits, PENDING, at ``AWAIT_DEBIT`` or
``AWAIT_CREDIT`` — for hours or days, holding no worker — until the partner's signed
callback (:mod:`exchange.services.late`) or a poll of the operation's status with
back-off (the recovery worker) brings the outcome: applied goes on as above; failed ends
FAILED (a debit) or reverses the debit (a credit). A batch-mode target is not called at
all: its credits wait at ``AWAIT_CREDIT`` for the day's credits file
(:mod:`exchange.conversions.batches`), whose result file settles them the same way.

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

A credit answered with a record that moved nothing (``failed``, ``voided``: a repeat after the
target declined it, or a partner breaking the contract) is a definite failure, not a success.
A partner whose record of the debit or the credit (its answer to the write, or its status) is
not the write sent (another amount or member, or a part reversed on its own: its bug, or a
lie) is not trusted: the write is reversed whole, the debit too if it was the credit, and
the conversion ends REVERSED with ``PARTNER_CONTRADICTED``. A target that refuses that
reversal because the member has spent the credited points leaves the credit standing: the
conversion is posted as it was sent and ends COMPLETED, still with ``PARTNER_CONTRADICTED``
(logged as an error): the member has the points they converted, the target's position is
owed what the exchange sent, and what the target credited beyond it is its own error, which
its records file shows as a break for staff to settle at reconciliation.

The steps run on the shared saga driver (:mod:`exchange.sagas.engine`): partner calls
happen outside database transactions; every state change is one short unit of work that
checks the step it expects, so a request and the recovery worker can never both move one
conversion. A lease keeps the worker away from conversions a request is still driving.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import NoReturn

from sqlalchemy import Table, and_, bindparam, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import Operation, OperationKind, OperationState
from exchange.connectors.errors import InsufficientPoints, PartnerRefusal, PartnerUnavailable
from exchange.connectors.registry import ConnectorRegistry
from exchange.conversions import gates
from exchange.conversions.clearing import conversion_transaction
from exchange.conversions.errors import ConversionNotFound, QuoteAlreadyExecuted
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.db import dialects
from exchange.db.database import Database
from exchange.errors import ErrorCode, ExchangeError
from exchange.idempotency import claiming, record_once
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import Ledger
from exchange.members import service as members
from exchange.members.authority import DebitAuthority, require_authority
from exchange.members.consents import authorize_debit
from exchange.members.models import LinkedAccount, Member
from exchange.pricing import limits, quotes, routes
from exchange.pricing.models import Quote
from exchange.programs.catalog import CatalogCache
from exchange.programs.models import Program
from exchange.risk.gates import Gates
from exchange.risk.policy import RiskPolicy
from exchange.sagas.doubt import (
    CONTRADICTED,
    WRITE_CONTRADICTED,
    WRITE_STANDS,
    WRITE_UNCONFIRMED,
    MemberDebit,
    SentWrite,
    late_answer,
    reverse_whole,
    undo_contradiction,
)
from exchange.sagas.engine import Saga, SagaPolicy, Transition, failure
from exchange.settings import Settings
from exchange.webhooks.events import Event, conversion_finished

logger = logging.getLogger("exchange.sagas")

ConnectorFor = Callable[[Program], PartnerConnector]

#: The credit went through: post the clearing transaction with the move to COMPLETED.
_CREDITED = Transition(SagaStep.DONE, ConversionStatus.COMPLETED)

#: The target partner left the credit pending (or it waits for a credits file).
_CREDIT_PENDING = Transition(SagaStep.AWAIT_CREDIT, wait=True)

#: The target recorded another credit than the one sent, and it was reversed: reverse the debit.
_CREDIT_CONTRADICTED = Transition(
    SagaStep.REVERSE_DEBIT,
    failure_code=CONTRADICTED,
    failure_message=WRITE_CONTRADICTED.format(partner="target", write="credit"),
)

#: Final statuses that give back the limits a conversion reserved.
_RELEASES_LIMITS = (ConversionStatus.FAILED, ConversionStatus.REVERSED)

CONVERSIONS: Table = Conversion.__table__  # type: ignore[attr-defined]
QUOTES: Table = Quote.__table__  # type: ignore[attr-defined]
LINKS: Table = LinkedAccount.__table__  # type: ignore[attr-defined]
MEMBERS: Table = Member.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ExecuteRequest:
    """``authority``: under whose authority the source program's points are debited."""

    member_id: str
    quote_id: str
    idempotency_key: str
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
    gates: Gates
    """The risk gates, counting every way points leave an account."""

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        *,
        db: Database,
        connectors: ConnectorRegistry,
        catalog: CatalogCache,
        clock: Clock,
        gates: Gates,
    ) -> ConversionSaga:
        """The saga as the gateway and ``exchange recover`` run it."""
        return cls(
            db=db,
            connector_for=connectors.for_program,
            catalog=catalog,
            ledger=Ledger.for_settings(settings, clock),
            clock=clock,
            policy=SagaPolicy.for_settings(settings),
            gates=gates,
        )

    def missing(self, row_id: str) -> ExchangeError:
        return ConversionNotFound(row_id)

    # -- entry point --------------------------------------------------------------------

    async def execute(self, request: ExecuteRequest) -> Conversion:
        """Run a quote as a conversion, as far as it goes now; the same key returns the same one."""
        conversion, created = await self._record(request)
        if not created:
            return conversion
        return await self.drive(conversion)

    # -- step 1: record -----------------------------------------------------------------

    async def _record(self, request: ExecuteRequest) -> tuple[Conversion, bool]:
        """Two statements: the conversion inserted straight from the member's open quote and
        their accounts at both programs (an ``INSERT … SELECT`` that does nothing for a key or a
        quote already used), then the quote's limit counters reserved: a lean unit of work
        (:meth:`Database.run`) unless a gate, a consent or a refusal needs a session."""
        now = self.clock.now()
        state = self.policy.start(now, step=SagaStep.DEBIT)
        catalog = await self.catalog.get()
        conversion_id = str(uuid.uuid4())

        async def record(session: AsyncSession) -> tuple[Conversion, bool]:
            conversion, created = await record_once(
                session,
                Conversion,
                _from_quote(session.get_bind().dialect.name),
                params={
                    "new_id": conversion_id,
                    "new_key": request.idempotency_key,
                    "quote_id": request.quote_id,
                    "member_id": request.member_id,
                    "now": now,
                    **{f"new_{name}": value for name, value in state.items()},
                },
                member_id=request.member_id,
                key=request.idempotency_key,
                same=lambda existing: existing.quote_id == request.quote_id,
            )
            if conversion is None:
                await _refusal(session, request, now)
            if created:
                require_authority(request.authority, conversion.from_program, field="quoteId")
                source = catalog.program(conversion.from_program)
                await self.gates.screen(session, conversion, gates.outflow(conversion), RiskPolicy.of(source.risk), now)
                await limits.reserve(session, [limits.Usage(**usage) for usage in conversion.usages])
                # Used last, in this unit of work: whatever refuses the conversion leaves it unused.
                await authorize_debit(
                    session,
                    request.authority,
                    member_id=request.member_id,
                    program=conversion.from_program,
                    points=conversion.points_in,
                    used_for=f"conversion:{conversion.id}",
                    now=now,
                    field="quoteId",
                )
            return conversion, created

        return await self.db.run(record)

    # -- the steps ----------------------------------------------------------------------

    async def attempt(self, conversion: Conversion, step: str, *, in_doubt: bool) -> Transition:
        catalog = await self.catalog.get()
        source, target = catalog.program(conversion.from_program), catalog.program(conversion.to_program)
        if step == SagaStep.DEBIT:
            return await self.debit(conversion, self.connector_for(source)).attempt(in_doubt=in_doubt)
        if step == SagaStep.AWAIT_DEBIT:
            return await self.debit(conversion, self.connector_for(source)).poll()
        if step == SagaStep.CREDIT:
            if in_batches(target):
                return _CREDIT_PENDING  # never sent alone: the credits file carries it (conversions.batches)
            if in_doubt:
                return await self._settle_credit(conversion, self.connector_for(target))
            return await self._credit(conversion, self.connector_for(target))
        if step == SagaStep.AWAIT_CREDIT:
            connector = self.connector_for(target)
            operation = await connector.operation_status(conversion.credit_operation)
            if contradicted := await self._credit_contradicted(conversion, connector, operation):
                return contradicted
            return self.credit_outcome(None if operation is None else operation.status)
        if step == SagaStep.REVERSE_DEBIT:
            await reverse_whole(
                self.connector_for(source), conversion.reverse_debit_operation, conversion.debit_operation
            )
            return Transition(SagaStep.DONE, ConversionStatus.REVERSED)
        raise AssertionError(f"no attempt for step {step}")

    @staticmethod
    def debit(conversion: Conversion, source: PartnerConnector) -> MemberDebit:
        """The conversion's debit at the source partner, as a saga step."""
        return MemberDebit(
            source,
            conversion.debit_operation,
            conversion.reverse_debit_operation,
            conversion.source_ref,
            conversion.points_in,
            then=SagaStep.CREDIT,
            done=SagaStep.DONE,
            failed=ConversionStatus.FAILED,
            reversed=ConversionStatus.REVERSED,
            partner="source",
            waiting=SagaStep.AWAIT_DEBIT,
        )

    @staticmethod
    def credit_outcome(state: OperationState | None) -> Transition:
        """The target partner's word on a credit it left pending (or that waits for a file):
        none yet (it may not have the file), still pending, applied, or not applied at all —
        then the debit is reversed."""
        return late_answer(
            state,
            waiting=_CREDIT_PENDING,
            applied=_CREDITED,
            refused=Transition(SagaStep.REVERSE_DEBIT),
            partner="target",
            write="credit",
        )

    async def _credit(self, conversion: Conversion, target: PartnerConnector) -> Transition:
        try:
            operation = await target.credit(conversion.credit_operation, conversion.target_ref, conversion.points_out)
        except (PartnerRefusal, PartnerUnavailable) as error:
            code, message = failure(error)
            return Transition(SagaStep.REVERSE_DEBIT, failure_code=code, failure_message=message)
        # The answer is the target's record: a repeat of the credit returns it as it now stands
        # (failed, say, after it was accepted pending), and a partner may answer a state the
        # contract gives no first answer (voided, failed). Only ``applied`` as sent is posted.
        if contradicted := await self._credit_contradicted(conversion, target, operation):
            return contradicted
        return self.credit_outcome(operation.status)

    async def _settle_credit(self, conversion: Conversion, target: PartnerConnector) -> Transition:
        operation = await target.operation_status(conversion.credit_operation)
        if contradicted := await self._credit_contradicted(conversion, target, operation):
            return contradicted
        if operation is not None and operation.status in (
            OperationState.APPLIED,
            OperationState.PENDING,
            OperationState.FAILED,
        ):
            return self.credit_outcome(operation.status)
        if operation is None and conversion.attempts < self.policy.give_up_after:
            return await self._credit(conversion, target)
        if operation is None:
            await target.reverse(conversion.void_credit_operation, conversion.credit_operation)
        return Transition(
            SagaStep.REVERSE_DEBIT,
            failure_code=ErrorCode.PARTNER_UNAVAILABLE.value,
            failure_message=WRITE_UNCONFIRMED.format(partner="target", write="credit"),
        )

    @staticmethod
    async def _credit_contradicted(
        conversion: Conversion, target: PartnerConnector, operation: Operation | None
    ) -> Transition | None:
        """Where the conversion goes if the target's record of the credit is another write than
        the one sent: reversed whole (:func:`~exchange.sagas.doubt.undo_contradiction`), on to
        reverse the debit; or, if the target refuses the reversal because the member has spent
        the credited points, posted as sent (see the module's docstring). ``None``: no
        contradiction."""
        sent = SentWrite(OperationKind.CREDIT, conversion.target_ref, conversion.points_out)
        try:
            undone = await undo_contradiction(
                target, operation, conversion.credit_operation, sent, conversion.void_credit_operation
            )
        except InsufficientPoints as refusal:
            assert operation is not None  # a reversal is asked only of a record that contradicts
            message = WRITE_STANDS.format(
                partner="target", write="credit", contradiction=sent.contradiction(operation), refusal=refusal.message
            )
            logger.error("conversion %s: %s", conversion.id, message)
            return Transition(SagaStep.DONE, ConversionStatus.COMPLETED, CONTRADICTED, message)
        return _CREDIT_CONTRADICTED if undone else None

    async def on_transition(
        self, session: AsyncSession, conversion: Conversion, step: str, transition: Transition
    ) -> None:
        if transition.status == ConversionStatus.COMPLETED:
            await self._post(session, conversion)
        if transition.status in _RELEASES_LIMITS:
            await limits.release(session, [limits.Usage(**usage) for usage in conversion.usages])

    def event(self, conversion: Conversion, step: str, transition: Transition) -> Event | None:
        return conversion_finished(conversion, transition, self.clock.now())

    async def _post(self, session: AsyncSession, conversion: Conversion) -> None:
        """One clearing transaction per leg, in one batch: a conversion through the coalition
        point posts A → coalition and coalition → B, so each partner's position and the
        coalition's are right, and the member holds no coalition point after it."""
        chart = ChartOfAccounts(conversion.currency)
        await self.ledger.post_many(
            session,
            [
                conversion_transaction(
                    chart=chart,
                    transaction_id=transaction_id,
                    conversion_id=conversion.id,
                    source=leg["from_program"],
                    target=leg["to_program"],
                    points_in=leg["points_in"],
                    points_out=leg["points_out"],
                    money_value_minor=leg["money_value_minor"],
                    fee_minor=leg["fee_minor"],
                    effective_at=conversion.created_at,
                )
                for transaction_id, leg in zip(
                    conversion.ledger_transaction_ids, routes.legs_of(conversion), strict=True
                )
            ],
        )


def in_batches(program: Program) -> bool:
    """Whether the program's partner takes credits as a daily file (``[connector] mode``); read
    from the stored settings as they are, which the coalition point's internal connector has no
    mode in."""
    return program.connector.get("mode") == "batch"


#: The state columns a conversion starts with (``SagaPolicy.start``).
_STATE = ("status", "step", "in_doubt", "attempts", "next_attempt_at", "lease_until", "created_at", "updated_at")


@lru_cache(maxsize=2)
def _from_quote(dialect: str) -> dialects.Insert:
    """The conversion of quote ``quote_id`` by member ``member_id``, inserted from the quote
    and the member's accounts at both programs (share-locked) if it is still open at ``now``
    and the tiers its tier bonus was priced on still stand (``quotes.ensure_tiers_stand``);
    built once."""
    quote, source, target, member = QUOTES, LINKS.alias("source"), LINKS.alias("target"), MEMBERS
    values = {
        "id": bindparam("new_id", type_=CONVERSIONS.c.id.type),
        "member_id": quote.c.member_id,
        "idempotency_key": bindparam("new_key", type_=CONVERSIONS.c.idempotency_key.type),
        "quote_id": quote.c.id,
        "rate_version_id": quote.c.rate_version_id,
        "from_program": quote.c.from_program,
        "to_program": quote.c.to_program,
        "source_ref": source.c.member_ref,
        "target_ref": target.c.member_ref,
        **{
            name: quote.c[name]
            for name in ("points_in", "points_out", "currency", "money_value_minor", "fee_minor", "usages", "route")
        },
        **{name: bindparam(f"new_{name}", type_=CONVERSIONS.c[name].type) for name in _STATE},
    }
    rows = (
        select(*values.values())
        .select_from(
            quote.join(
                source, and_(source.c.member_id == quote.c.member_id, source.c.program_id == quote.c.from_program)
            )
            .join(target, and_(target.c.member_id == quote.c.member_id, target.c.program_id == quote.c.to_program))
            .join(member, member.c.id == quote.c.member_id)
        )
        .where(
            quote.c.id == bindparam("quote_id", type_=quote.c.id.type),
            quote.c.member_id == bindparam("member_id", type_=quote.c.member_id.type),
            quote.c.expires_at > bindparam("now", type_=quote.c.expires_at.type),
            quote.c.usages.is_not(None),
            or_(
                quote.c.tier_bonus_percent == Decimal(0),
                quote.c.tier_activity.is_(None),
                quote.c.tier_activity == member.c.tier_activity,
            ),
        )
        # The member's accounts are read under a key-share lock (the weakest that a delete
        # waits for), so an unlink of either waits for this unit of work and then sees the
        # conversion (exchange.unlinking).
        .with_for_update(read=True, key_share=True, of=[source, target])
    )
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(CONVERSIONS)
    return claiming(insert.from_select(list(values), rows))


async def _refusal(session: AsyncSession, request: ExecuteRequest, now: datetime) -> NoReturn:
    """Why a quote made no conversion (its key being free): not the member's, not linked,
    executed already, expired, or priced on tiers that have changed since."""
    quote = await quotes.member_quote(session, request.quote_id, request.member_id)
    await ensure_accounts_linked(session, quote)
    earlier = (await session.exec(select(CONVERSIONS.c.id).where(CONVERSIONS.c.quote_id == quote.id))).first()  # type: ignore[call-overload]
    if earlier is not None:
        raise QuoteAlreadyExecuted(quote.id, earlier[0])
    quotes.ensure_open(quote, now)
    await ensure_tiers_stand(session, quote)
    raise AssertionError(f"quote {quote.id} made no conversion, for no reason known")


async def ensure_accounts_linked(session: AsyncSession, quote: Quote) -> None:
    """Refuse (``AccountNotLinked``, naming ``quoteId``) a quote an account of which the member
    has unlinked since it was priced."""
    await members.member_refs_at(session, quote.member_id, {quote.from_program: "quoteId", quote.to_program: "quoteId"})


async def ensure_tiers_stand(session: AsyncSession, quote: Quote) -> None:
    """Refuse (``QuoteTiersChanged``) a quote whose tier bonus rests on tiers that have changed
    since it was priced (:func:`~exchange.pricing.quotes.ensure_tiers_stand`)."""
    tiers = select(MEMBERS.c.tier_activity).where(MEMBERS.c.id == quote.member_id)
    quotes.ensure_tiers_stand(quote, (await session.exec(tiers)).one()[0])  # type: ignore[call-overload]
