"""The coalition point: expiring what is due, what a member has expiring, and the point's
outstanding liability. Conversions into and out of it, and rewards paid with it, are the
ordinary conversion and redemption services: the point has a connector like any partner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from exchange.auth.principal import Principal
from exchange.clock import Clock
from exchange.coalition import lots
from exchange.coalition.expiry import expire_batch
from exchange.coalition.rules import PointRules, declared_point
from exchange.coalition.verify import PointCheck, check_point
from exchange.db.database import Database
from exchange.ledger.posting import Ledger
from exchange.services.requests import member_of

#: Lots a batch of the expiry job locks and posts in one unit of work.
EXPIRY_BATCH = 500


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    lots: int
    points: int
    transactions: int


@dataclass(frozen=True, slots=True)
class PointStanding:
    """The point's rules and what ``exchange ledger verify`` found of it: outstanding points,
    their liability (``ROUND_MONEY``), sagas in flight, and the first problem (if any)."""

    rules: PointRules
    check: PointCheck


@dataclass
class CoalitionService:
    db: Database
    ledger: Ledger
    clock: Clock
    batch: int = EXPIRY_BATCH

    async def expire(self, *, now: datetime | None = None) -> ExpiryReport:
        """Expire every lot due by ``now`` (default: the clock's now), a batch per unit of work,
        and post the breakage; running it again expires nothing more. A no-op when the
        coalition declares no point."""
        at = now or self.clock.now()
        expired = ExpiryReport(0, 0, 0)
        while True:
            async with self.db.transaction() as session:
                rules = await declared_point(session)
                if rules is None:
                    return expired
                batch = await expire_batch(session, rules, self.ledger, now=at, limit=self.batch)
            if batch.transaction_id is None:
                return expired
            expired = ExpiryReport(expired.lots + batch.lots, expired.points + batch.points, expired.transactions + 1)

    async def run_once(self) -> ExpiryReport:
        """The periodic job's pass (``coalition-expiry``)."""
        return await self.expire()

    async def expiring_points(self, caller: Principal) -> Sequence[lots.ExpiringLots]:
        """The caller's coalition points by the instant they expire, soonest first."""
        member_id = member_of(caller)
        return await lots.holdings(self.db, member_id, self.clock.now()) or []

    async def standing(self) -> PointStanding | None:
        """The point's outstanding points, liability and checks; ``None`` when none is declared."""
        async with self.db.transaction() as session:
            rules = await declared_point(session)
            return None if rules is None else PointStanding(rules, await check_point(session, rules))
