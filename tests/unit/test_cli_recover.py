"""`exchange recover` says which rows failed with an unexpected error, and exits 1 for them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from click.testing import CliRunner

from exchange.cli import main
from exchange.sagas.recovery import RecoveryReport
from exchange.services.container import Recovery
from exchange.services.holds import HoldExpiry
from exchange.services.settlement import UnfinishedCloses


@pytest.fixture(autouse=True)
def migrated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database the command checks before it runs: taken as migrated (no database is used)."""
    monkeypatch.setattr("exchange.db.migrate.ensure_migrated", lambda url: None)


def recovered(*reports: RecoveryReport) -> Callable[[Callable[[Any], Awaitable[Any]]], Recovery]:
    """What `with_services` gives the command: a pass that left ``reports``."""
    return lambda work: Recovery(sagas=list(reports), holds=HoldExpiry(0, 0), closes=UnfinishedCloses([], []))


def test_rows_that_failed_unexpectedly_are_named_on_their_own_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        "exchange.cli.with_services",
        recovered(
            RecoveryReport("conversion", 3, 2, 0, None, faulted=("c1", "c2")),
            RecoveryReport("redemption", 0, 0, 0, None),
            RecoveryReport("status match", 1, 1, 0, None, faulted=("m1",)),
        ),
    )
    result = CliRunner().invoke(main, ["recover"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:3] == [
        "3 conversions driven; 2 still pending",
        "0 redemptions driven; 0 still pending",
        "1 status match driven; 1 still pending",
    ]
    assert result.stderr.splitlines() == [
        "2 conversions failed with an unexpected error (see the log), put off to be tried again: c1, c2",
        "1 status match failed with an unexpected error (see the log), put off to be tried again: m1",
    ]


def test_a_pass_without_such_rows_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("exchange.cli.with_services", recovered(RecoveryReport("conversion", 1, 0, 0, None)))
    result = CliRunner().invoke(main, ["recover"])
    assert (result.exit_code, result.stderr) == (0, "")
