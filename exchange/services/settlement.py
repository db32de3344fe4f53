"""Settlement: closing periods, statements, partners' records, breaks and sign-off, and verifying
the clearing ledger. Each operation opens its own units of work and calls the rules in
``exchange.settlement`` and ``exchange.ledger``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from joserfc.jwk import RSAKey
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.clock import Clock
from exchange.db.database import Database
from exchange.ledger.periods import SettlementCalendar
from exchange.ledger.posting import Ledger
from exchange.ledger.verify import Verification, verify_ledger
from exchange.money import Currency
from exchange.programs.service import get_coalition
from exchange.settings import Settings
from exchange.settlement import closing, reconciliation, signoff, statements
from exchange.settlement.breaks import ResolveRequest, list_breaks, resolve_break
from exchange.settlement.closing import PeriodReport
from exchange.settlement.keys import Rotation, StatementKeys
from exchange.settlement.models import (
    BreakKind,
    BreakResolution,
    Reconciliation,
    ReconciliationBreak,
    SettlementPosition,
)


@dataclass(frozen=True)
class ReconciliationView:
    reconciliation: Reconciliation
    unresolved: int
    currency: Currency


@dataclass(frozen=True)
class BreakView:
    row: ReconciliationBreak
    resolution: BreakResolution | None
    partner: str
    currency: Currency


@dataclass(frozen=True)
class PositionView:
    position: SettlementPosition
    currency: Currency


async def settlement_currency(session: AsyncSession) -> Currency:
    return (await get_coalition(session)).settings.currency


@dataclass
class SettlementService:
    db: Database
    ledger: Ledger
    clock: Clock
    keys: StatementKeys
    issuer: str

    @classmethod
    def for_settings(cls, settings: Settings, *, db: Database, clock: Clock) -> SettlementService:
        return cls(
            db=db,
            ledger=Ledger.for_settings(settings, clock),
            clock=clock,
            keys=StatementKeys.for_settings(settings, db=db, clock=clock),
            issuer=settings.issuer_url,
        )

    @property
    def calendar(self) -> SettlementCalendar:
        return self.ledger.calendar

    def previous_period(self) -> str:
        """The period that ended last, by the settlement calendar and this service's clock."""
        return self.calendar.latest_over(self.clock.now())

    async def close(self, period: str, *, by: str) -> PeriodReport:
        period = self.calendar.parse(period)  # before any unit of work: a bad name changes nothing
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
        return await closing.close_period(self.db, self.calendar, self.clock, currency, period, by=by)

    async def period(self, period: str) -> PeriodReport:
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            return await closing.period_report(session, period, await settlement_currency(session))

    async def statement(self, participant: str, period: str) -> statements.Statement:
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            return await statements.build_statement(
                session,
                issuer=self.issuer,
                calendar=self.calendar,
                currency=await settlement_currency(session),
                participant=participant,
                period=period,
            )

    async def signing_key(self) -> RSAKey:
        """The key statements are signed with now: the active statement-signing key."""
        return await self.keys.signing_key()

    async def ensure_signing_key(self) -> None:
        """An active statement-signing key exists (made on the first start)."""
        async with self.db.transaction() as session:
            await self.keys.ensure_active(session)

    async def rotate_key(self) -> Rotation:
        """Make a new statement-signing key active; the old one stays published for the
        statement retention period."""
        async with self.db.transaction() as session:
            return await self.keys.rotate(session)

    async def import_records(self, partner: str, period: str, source: BinaryIO, *, by: str) -> ReconciliationView:
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            imported = await reconciliation.import_records(
                session,
                currency=await settlement_currency(session),
                partner=partner,
                period=period,
                source=source,
                actor=by,
                now=self.clock.now(),
            )
            return ReconciliationView(imported, imported.breaks, await settlement_currency(session))

    async def reconciliation(self, partner: str, period: str) -> ReconciliationView:
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            current = await reconciliation.get_reconciliation(session, partner, period)
            unresolved = await reconciliation.unresolved_breaks(session, current.id)
            return ReconciliationView(current, unresolved, await settlement_currency(session))

    async def breaks(
        self,
        of: Reconciliation,
        *,
        kind: BreakKind | None = None,
        unresolved_only: bool = False,
        first: int = 100,
        after: int | None = None,
    ) -> list[BreakView]:
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
            rows = await list_breaks(
                session, of.id, kind=kind, unresolved_only=unresolved_only, first=first, after=after
            )
        return [BreakView(row, resolution, of.partner, currency) for row, resolution in rows]

    async def resolve(self, request: ResolveRequest) -> BreakView:
        async with self.db.transaction() as session:
            currency = await settlement_currency(session)
            row, resolution, partner = await resolve_break(session, self.ledger, currency, request, self.clock.now())
        return BreakView(row, resolution, partner, currency)

    async def verify_ledger(self) -> Verification:
        """Recompute everything the ledger claims; the first problem, if any."""
        async with self.db.transaction() as session:
            return await verify_ledger(session)

    async def sign_off(self, partner: str, period: str, *, by: str, note: str | None) -> PositionView:
        period = self.calendar.parse(period)
        async with self.db.transaction() as session:
            position = await signoff.sign_off(session, partner, period, actor=by, note=note, now=self.clock.now())
            return PositionView(position, await settlement_currency(session))
