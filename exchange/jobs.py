"""Periodic background jobs that run inside ``exchange serve`` (every gateway process).

Each job must be safe to run in many processes at once (they claim work with row locks or
leases); a failing pass is logged and the job tries again at its next interval. A pass that
meets a database outage (a failover) is expected: one line, no trace, and the next pass
finishes what it left. A database that refuses the exchange's credentials is logged as an error:
no pass will get through until an operator corrects the setting. Either is said once when a job
first meets it, not at every pass it lasts (an outage would otherwise log a line per job, per
pass, in every process), and once more when a pass gets through again.
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
        kept_out_by: str | None = None  # why the last passes could not reach the database
        passes_kept_out = 0
        while True:
            try:
                await self.run_once()
            except DatabaseUnavailable as outage:  # DatabaseRefused among them
                reason = outage.message if isinstance(outage, DatabaseRefused) else "the database is unavailable"
                if reason != kept_out_by:
                    logger.log(
                        logging.ERROR if isinstance(outage, DatabaseRefused) else logging.WARNING,
                        "background job %s: %s; trying again every %s s",
                        self.name,
                        reason,
                        self.interval,
                    )
                kept_out_by = reason
                passes_kept_out += 1
            except Exception:
                logger.exception("background job %s failed; next pass in %s s", self.name, self.interval)
            else:
                if passes_kept_out:
                    logger.info(
                        "background job %s: the database is back after %d passes kept out", self.name, passes_kept_out
                    )
                kept_out_by, passes_kept_out = None, 0
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
