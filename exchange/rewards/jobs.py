"""The redemptions job: reverses undelivered rewards and finishes redemptions left in doubt.

A periodic job in every gateway process (every ``EXCHANGE_REDEMPTION_INTERVAL_SECONDS``):
direct rewards whose delivery was not confirmed by their ``deliver_by`` start reversing,
then the shared recovery worker drives every due redemption (debits in doubt, reversals).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from exchange.rewards.redemption import RedemptionSaga
from exchange.sagas.recovery import RecoveryPass, RecoveryWorker


@dataclass
class RedemptionJob:
    saga: RedemptionSaga

    async def run_pass(self, *, due_by: datetime | None = None) -> RecoveryPass:
        """One pass (``due_by``: drive every redemption due by then, not only those due now)."""
        await self.saga.start_undelivered_reversals()
        return await RecoveryWorker(self.saga).run_pass(due_by=due_by)

    async def run_once(self, *, due_by: datetime | None = None) -> int:
        """:meth:`run_pass` (the gateway's periodic job); returns how many redemptions were driven."""
        return (await self.run_pass(due_by=due_by)).driven
