"""Quotes and conversions: pricing a member's conversion, executing it under the saga, reading
conversions back, and driving conversions left in doubt."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.principal import Principal
from exchange.auth.scopes import Role
from exchange.conversions import queries
from exchange.conversions.models import Conversion
from exchange.conversions.quoting import PricedQuote, Quoting
from exchange.conversions.saga import ConversionSaga, ExecuteRequest, ensure_accounts_linked, ensure_tiers_stand
from exchange.db.database import Database
from exchange.db.paging import Page
from exchange.federation.accounts import Federation
from exchange.members.service import AccountNotLinked
from exchange.pricing import quotes
from exchange.pricing.errors import QuoteTiersChanged
from exchange.pricing.models import Quote
from exchange.risk.decisions import GateRefusal, record_refusal
from exchange.sagas.recovery import EVERY_ROW, RecoveryReport, RecoveryWorker, recovery_report
from exchange.services.balances import Coverage, coverage
from exchange.services.requests import debit_authority, idempotency_key, member_of


async def standing(session: AsyncSession, quote: Quote) -> AccountNotLinked | QuoteTiersChanged | None:
    """What the saga would refuse ``quote`` for that changed since it was priced (as its
    refusal reads it, ``exchange.conversions.saga``): an account of it unlinked, or the
    member's tiers moved under its tier bonus; ``None`` while neither has."""
    try:
        await ensure_accounts_linked(session, quote)
        await ensure_tiers_stand(session, quote)
    except (AccountNotLinked, QuoteTiersChanged) as refused:
        return refused
    return None


@dataclass(frozen=True, slots=True)
class ReviewedQuote:
    """A quote beside the member's balance at its source program (:mod:`~exchange.services.balances`),
    so the member sees before converting whether it covers the points in."""

    quote: Quote
    coverage: Coverage
    converted: bool
    refusal: AccountNotLinked | QuoteTiersChanged | None = None
    """Why converting it now would be refused for what changed since it was priced: an account
    of it unlinked, or the tiers that earned its bonus (:func:`standing`); ``None`` while it
    stands, or once converted. Its time running out, the page counts itself."""

    @property
    def short(self) -> bool:
        """The balance read is below the points the quote converts, which is not converted yet:
        converting would fail at the partner's debit. (A quote converted already took its points.)"""
        return not self.converted and self.coverage.short


@dataclass
class ConversionService:
    db: Database
    saga: ConversionSaga
    quoting: Quoting
    federation: Federation

    async def create_quote(self, caller: Principal, from_program: str, to_program: str, points: int) -> PricedQuote:
        """Price converting the caller's ``points`` of ``from_program`` into ``to_program`` and
        fix the price for the quote's lifetime. The tier bonus uses the member's coalition
        level, from their partners' tiers (cached, or read live)."""
        return await self.quoting.quote(member_of(caller), from_program, to_program, points)

    async def quote(self, caller: Principal, quote_id: str) -> Quote:
        """One of the caller's own quotes (another's is not found), expired or not."""
        async with self.db.transaction() as session:
            return await quotes.member_quote(session, quote_id, member_of(caller))

    async def review(self, caller: Principal, quote: Quote) -> ReviewedQuote:
        """``quote`` (the caller's own) with the caller's balance at its source program. Not part
        of :meth:`create_quote`: pricing asks no partner for a balance, and the partner's debit
        decides in the end; this read only tells a member who asked for more than they hold."""
        async with self.db.autocommit() as session:
            converted = await queries.quote_conversion(session, quote.id) is not None
            refusal = None if converted else await standing(session, quote)
        covered = await coverage(self.federation, member_of(caller), {quote.from_program: quote.points_in})
        return ReviewedQuote(quote, covered[quote.from_program], converted, refusal)

    async def execute(self, caller: Principal, quote_id: str, key: str, *, consent: str | None) -> Conversion:
        """Run the caller's quote as a conversion, as far as it goes now; the same ``key``
        returns the same conversion. The source program's points are debited only under its
        authority: the caller's token asserted by it, or ``consent`` given through it. The saga
        reads the quote and the member's links in the statement that starts it.
        Coalition points need no partner's authority (the exchange holds them for the member),
        but a token with ``member:coalition``."""
        loaded = await self.saga.catalog.get()
        request = ExecuteRequest(
            member_id=member_of(caller),
            quote_id=quote_id,
            idempotency_key=idempotency_key(key),
            authority=debit_authority(caller, consent, loaded.exchange_held),
        )
        try:
            return await self.saga.execute(request)
        except GateRefusal as refusal:
            await record_refusal(self.db, refusal.decision)
            raise

    async def conversion(self, caller: Principal, conversion_id: str) -> Conversion:
        """A member's own conversion (another's is not found), or any for settlement staff."""
        async with self.db.transaction() as session:
            return await queries.get_conversion(
                session, conversion_id, member_id=member_of(caller) if caller.role is Role.MEMBER else None
            )

    async def conversions(self, caller: Principal, *, first: int, after: str | None) -> Page[Conversion]:
        """The caller's conversions, newest first: ``first`` of them after the cursor ``after``."""
        async with self.db.transaction() as session:
            return await queries.member_conversions(session, member_of(caller), first=first, after=after)

    async def recover(self) -> RecoveryReport:
        """Drive every PENDING conversion once, whatever its next attempt time (after a crash)."""
        return await recovery_report(self.saga, await RecoveryWorker(self.saga).run_pass(due_by=EVERY_ROW))
