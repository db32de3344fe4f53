"""A background job says once that the database keeps it out, not at every pass, and once that
it is back: an outage would otherwise log a line per job, per pass, in every process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from exchange.db.availability import DatabaseRefused, DatabaseUnavailable
from exchange.jobs import PeriodicJob


async def test_an_outage_is_logged_when_it_starts_changes_and_ends(caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[Exception | None] = [
        DatabaseUnavailable(),
        DatabaseUnavailable(),
        DatabaseUnavailable(),
        DatabaseRefused(),
        DatabaseRefused(),
        None,
        None,
        DatabaseUnavailable(),
    ]
    finished = asyncio.Event()

    async def run_once() -> None:
        if not outcomes:
            finished.set()
            await asyncio.Event().wait()  # until cancelled
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    caplog.set_level(logging.INFO, logger="exchange.jobs")
    task = asyncio.create_task(PeriodicJob("probe", 0.001, run_once).run_forever())
    try:
        await asyncio.wait_for(finished.wait(), 10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    said = [(record.levelno, record.getMessage()) for record in caplog.records if record.name == "exchange.jobs"]
    assert said == [
        (logging.WARNING, "background job probe: the database is unavailable; trying again every 0.001 s"),
        (logging.ERROR, f"background job probe: {DatabaseRefused().message}; trying again every 0.001 s"),
        (logging.INFO, "background job probe: the database is back after 5 passes kept out"),
        (logging.WARNING, "background job probe: the database is unavailable; trying again every 0.001 s"),
    ]
