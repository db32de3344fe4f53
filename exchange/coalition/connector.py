"""The coalition point's connector: the partner contract, served by the exchange's own tables.

:class:`CoalitionConnector` implements :class:`~exchange.connectors.connector.PartnerConnector`
over :mod:`exchange.coalition.lots`, so the conversion and redemption sagas move coalition
points exactly as they move a partner's: the same operation ids, the same replays, the same
refusals (a :class:`~exchange.coalition.errors.CoalitionRefusal` becomes the
:class:`~exchange.connectors.errors.PartnerRefusal` that code maps to). Each call is one unit
of work on the exchange's database; nothing leaves the process, so no outcome is ever unknown
but for a database outage, which the sagas treat like any failure to reach a partner.

A credit's lot records the program that funded it: ``funder`` names it from the operation's
saga (the conversion's source program), wired in by the application.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.coalition import errors, lots
from exchange.coalition.errors import CoalitionRefusal
from exchange.coalition.models import CoalitionOperation
from exchange.coalition.rules import point_rules
from exchange.connectors import batch_files
from exchange.connectors.connector import Call, check_member_ref, check_operation_id, check_points
from exchange.connectors.contract import (
    ContractCode,
    ExpiringPoints,
    MemberAccount,
    Operation,
    Verification,
)
from exchange.connectors.errors import REFUSALS, InvalidRequest
from exchange.db.database import Database
from exchange.programs.catalog import CatalogCache

#: The program that funded a credit, from its saga's id (``None``: the operator).
Funder = Callable[[AsyncSession, str], Awaitable[str | None]]


class CoalitionConnector:
    """:class:`PartnerConnector` of the coalition point ``program_id``."""

    def __init__(self, program_id: str, db: Database, clock: Clock, funder: Funder, catalog: CatalogCache) -> None:
        self.program_id = program_id
        self.db = db
        self.clock = clock
        self.funder = funder
        self.catalog = catalog

    async def aclose(self) -> None:
        """Nothing to close: the database belongs to the application."""

    def _refused(self, call: Call, refusal: CoalitionRefusal, operation_id: str | None) -> Exception:
        kind = REFUSALS[ContractCode(refusal.reason)]
        return kind(
            refusal.detail, program_id=self.program_id, call=call.value, operation_id=operation_id, facts=refusal.facts
        )

    async def account(self, member_ref: str) -> MemberAccount:
        """The member's lots in one statement; the point's tier and zone from the catalog."""
        check_member_ref(member_ref)
        now = self.clock.now()
        catalog = await self.catalog.get()
        expiring = await lots.holdings(self.db, member_ref, now)
        if expiring is None:
            raise self._refused(Call.ACCOUNT, errors.unknown_member(member_ref), None)
        # The point has one tier, the ladder's entry level: every member holds it.
        [tier] = catalog.tier_levels[self.program_id]
        zone = ZoneInfo(str(catalog.coalition.point_timezone))
        return MemberAccount(
            member_ref=member_ref,
            balance=sum(lot.points for lot in expiring),
            tier=tier,
            # The contract's date is the last day the points are good: the day before the instant.
            expiring=tuple(
                ExpiringPoints(
                    points=lot.points,
                    expires_on=(lot.expires_at - timedelta(microseconds=1)).astimezone(zone).date(),
                )
                for lot in expiring
            ),
        )

    async def verify_member(self, member_ref: str, verification: str) -> Verification:
        """No value proves an account at the point: every member has one already."""
        check_member_ref(member_ref)
        return Verification(member_ref=member_ref, verified=False)

    async def debit(self, operation_id: str, member_ref: str, points: int) -> Operation:
        check_operation_id(operation_id)
        check_member_ref(member_ref)
        check_points(points)
        now = self.clock.now()
        return await self._write(
            Call.DEBIT,
            operation_id,
            lambda session: lots.debit(
                session, operation_id=operation_id, member_ref=member_ref, points=points, now=now
            ),
        )

    async def credit(self, operation_id: str, member_ref: str, points: int) -> Operation:
        check_operation_id(operation_id)
        check_member_ref(member_ref)
        check_points(points)
        now = self.clock.now()

        async def credit(session: AsyncSession) -> lots.Recorded:
            rules = await point_rules(session)
            funded_by = await self.funder(session, lots.saga_of(operation_id))
            return await lots.credit(
                session,
                rules,
                operation_id=operation_id,
                member_ref=member_ref,
                points=points,
                funded_by=funded_by,
                now=now,
            )

        return await self._write(Call.CREDIT, operation_id, credit)

    async def reverse(self, operation_id: str, reverses: str, points: int | None = None) -> Operation:
        check_operation_id(operation_id)
        check_operation_id(reverses, "reverses")
        if points is not None:
            check_points(points)
        now = self.clock.now()

        async def reverse(session: AsyncSession) -> lots.Recorded:
            rules = await point_rules(session)
            return await lots.reverse(
                session, rules, operation_id=operation_id, reverses=reverses, points=points, now=now
            )

        return await self._write(Call.REVERSE, operation_id, reverse)

    async def match_tier(self, operation_id: str, member_ref: str, tier: str, expires_at: datetime) -> Operation:
        raise InvalidRequest(
            "the coalition point has no tiers to match", program_id=self.program_id, call=Call.MATCH_TIER.value
        )

    async def send_credits(self, batch_id: str, lines: Callable[[], AsyncIterator[bytes]]) -> None:
        raise self._no_batches(Call.CREDIT)

    def credit_results(self, batch_id: str) -> AsyncIterator[batch_files.ResultLine]:
        raise self._no_batches(Call.CREDIT)

    def _no_batches(self, call: Call) -> InvalidRequest:
        return InvalidRequest(
            "the coalition point credits at once, never by file", program_id=self.program_id, call=call.value
        )

    async def operation_status(self, operation_id: str) -> Operation | None:
        check_operation_id(operation_id)
        async with self.db.transaction() as session:
            recorded = await lots.operation(session, operation_id)
        return None if recorded is None else _wire(recorded.operation, recorded.target)

    async def _write(
        self, call: Call, operation_id: str, write: Callable[[AsyncSession], Awaitable[lots.Recorded]]
    ) -> Operation:
        try:
            async with self.db.transaction() as session:
                recorded = await write(session)
        except CoalitionRefusal as refusal:
            raise self._refused(call, refusal, operation_id) from None
        return _wire(recorded.operation, recorded.target)


def _wire(operation: CoalitionOperation, target: CoalitionOperation | None = None) -> Operation:
    """An operation as a partner's answer would carry it."""
    fields: dict[str, Any] = {
        "operation_id": operation.operation_id,
        "kind": operation.kind,
        "status": operation.status,
        "created_at": operation.created_at,
    }
    if operation.kind is not None:
        fields |= {
            "member_ref": operation.member_ref,
            "points": operation.points,
            "reversed_points": operation.reversed_points,
            "reverses": operation.reverses,
        }
    if target is not None:
        fields["target"] = _wire(target)
    return Operation.model_validate(fields)
