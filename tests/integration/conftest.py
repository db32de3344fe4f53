"""Integration tests' figures: what a test measured (``record_property``) is printed at the
end of the run, so CI's log shows it whether the test passed or failed."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [report for outcome in ("passed", "failed") for report in terminalreporter.stats.get(outcome, [])]
    measured = [(report.nodeid, name, value) for report in reports for name, value in report.user_properties]
    if measured:
        terminalreporter.section("measured")
        for nodeid, name, value in measured:
            terminalreporter.write_line(f"{nodeid}: {name}: {value}")
