"""Periodic background jobs that run inside ``exchange serve`` (every gateway process).

Each job must be safe to run in many processes at once (they claim work with row locks or
leases); a failing pass is logged and the job tries again at its next interval. A pass that
meets a database outage (a failover) is expected: one line, no trace, and the next pass
finishes what it left. A database that refuses the exchange's credentials is logged as an error:
no pass will get through until an operator corrects the setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from exchange.db.availability import DatabaseRefused, DatabaseUnavailable

logger = logging.getLogger("exchange.jobs")


@dataclass(frozen=True, slots=True)
class PeriodicJob:
    name: str
    interval: float
    run_once: Callable[[], Awaitable[object]]

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except DatabaseRefused as refused:
                logger.error("background job %s: %s; next pass in %s s", self.name, refused.message, self.interval)
            except DatabaseUnavailable:
                logger.warning(
                    "background job %s: the database is unavailable; next pass in %s s", self.name, self.interval
                )
            except Exception:
                logger.exception("background job %s failed; next pass in %s s", self.name, self.interval)
            await asyncio.sleep(self.interval)


class BackgroundJobs:
    """Starts jobs as tasks of the running loop; :meth:`stop` cancels and awaits them."""

    def __init__(self, jobs: Sequence[PeriodicJob]) -> None:
        self.jobs = [job for job in jobs if job.interval > 0]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(job.run_forever(), name=job.name) for job in self.jobs]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
