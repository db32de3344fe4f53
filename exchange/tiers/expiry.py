"""The status-match expiry job: matches past their expiry are reverted at the target partner.

Each pass (a periodic job in every gateway process, every
``EXCHANGE_STATUS_MATCH_EXPIRY_INTERVAL_SECONDS``) turns ACTIVE matches whose ``expires_at``
has passed into UPDATING at the REVERT step — claimed with ``FOR UPDATE SKIP LOCKED``, so two
processes never take the same one — and then drives every due match (reverts, extensions and
pushes left in doubt) with the shared recovery worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from exchange.sagas.recovery import RecoveryPass, RecoveryWorker
from exchange.tiers.models import MatchStatus, MatchStep, StatusMatch
from exchange.tiers.saga import MatchSaga


@dataclass
class MatchExpiry:
    saga: MatchSaga
    batch: int = 100

    async def start_due_reverts(self) -> int:
        """Mark every ACTIVE match past its expiry for reverting; returns how many."""
        started = 0
        while True:
            now = self.saga.clock.now()
            async with self.saga.db.transaction() as session:
                due = (
                    await session.exec(
                        select(StatusMatch)
                        .where(StatusMatch.status == MatchStatus.ACTIVE, col(StatusMatch.expires_at) <= now)
                        .order_by(col(StatusMatch.expires_at))
                        .limit(self.batch)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                for match in due:
                    match.status, match.step = MatchStatus.UPDATING, MatchStep.REVERT
                    match.next_attempt_at, match.lease_until, match.updated_at = now, None, now
                    session.add(match)
            started += len(due)
            if len(due) < self.batch:
                return started

    async def run_pass(self, *, due_by: datetime | None = None) -> RecoveryPass:
        """One pass: start due reverts, then drive every match due (by ``due_by``: not only
        those due now)."""
        await self.start_due_reverts()
        return await RecoveryWorker(self.saga).run_pass(due_by=due_by)

    async def run_once(self, *, due_by: datetime | None = None) -> int:
        """:meth:`run_pass` (the gateway's periodic job); returns how many matches were driven."""
        return (await self.run_pass(due_by=due_by)).driven
