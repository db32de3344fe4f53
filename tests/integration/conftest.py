"""Integration tests' figures: what a test measured (``record_property``) is printed at the
end of the run, so CI's log shows it whether the test passed or failed; and the database of the
tests that halt their server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from exchange.db.database import Database
from exchange.testing.postgres import ThrowawayCluster


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [report for outcome in ("passed", "failed") for report in terminalreporter.stats.get(outcome, [])]
    measured = [(report.nodeid, name, value) for report in reports for name, value in report.user_properties]
    if measured:
        terminalreporter.section("measured")
        for nodeid, name, value in measured:
            terminalreporter.write_line(f"{nodeid}: {name}: {value}")


@pytest.fixture
async def outage_db(own_postgres_cluster: ThrowawayCluster) -> AsyncIterator[Database]:
    """A database handle on the test's own cluster, which the test halts and resumes (an outage)."""
    database = Database.from_url(own_postgres_cluster.url)
    try:
        yield database
    finally:
        await database.dispose()
