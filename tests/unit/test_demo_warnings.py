"""The demo's month build logs each planted failure's warnings once, not once a recovery round."""

from __future__ import annotations

import logging
import uuid

import pytest

from exchange.demo import repeats_left_out


def test_a_warning_repeated_with_another_delay_is_logged_once_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    retries = logging.getLogger("exchange.connectors")
    sagas = logging.getLogger("exchange.sagas")
    template = "partner %s: %s %s: attempt %d failed (%s); retrying in %.3fs"
    with caplog.at_level(logging.WARNING), repeats_left_out() as repeats:
        for delay in (0.065, 0.139, 0.073):  # a round of recovery each, at the same instant
            retries.warning(template, "wallet-pay", "credit", "c1:credit", 1, "the partner answered 500", delay)
            # The saga's id is a UUID on one path and its text on another: the same warning.
            saga_id = uuid.UUID(int=1) if delay < 0.07 else str(uuid.UUID(int=1))
            sagas.warning("%s %s: %s at step %s; will ask again", "conversion", saga_id, "answered 500", "CREDIT")
        retries.warning(template, "fresh-mart", "debit", "c2:debit", 1, "the partner answered 500", 0.068)
        retries.warning(template, "wallet-pay", "credit", "c1:credit", 2, "the partner answered 500", 0.108)
    said = [record.getMessage() for record in caplog.records]
    assert said == [
        "partner wallet-pay: credit c1:credit: attempt 1 failed (the partner answered 500); retrying in 0.065s",
        "conversion 00000000-0000-0000-0000-000000000001: answered 500 at step CREDIT; will ask again",
        "partner fresh-mart: debit c2:debit: attempt 1 failed (the partner answered 500); retrying in 0.068s",
        "partner wallet-pay: credit c1:credit: attempt 2 failed (the partner answered 500); retrying in 0.108s",
    ]
    assert repeats.left_out == 4


def test_outside_the_demos_month_build_every_warning_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    retries = logging.getLogger("exchange.connectors")
    with repeats_left_out():
        pass
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            retries.warning("partner %s: attempt %d failed", "wallet-pay", 1)
    assert len(caplog.records) == 2
