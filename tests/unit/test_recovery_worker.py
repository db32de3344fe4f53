"""What a recovery pass reports of rows it could not finish: an unexpected error is a fault
(listed, counted); a database outage is not (the row keeps its lease and is taken later)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import ClassVar

from exchange.db.availability import DatabaseUnavailable
from exchange.observability.metrics import SAGA_FAULTS
from exchange.sagas.recovery import RecoveryPass, RecoveryWorker


class Rows:
    """A saga whose due rows fail as ``failures`` says (the others are driven)."""

    label: ClassVar[str] = "conversion"

    def __init__(self, failures: dict[str, Exception]) -> None:
        self.failures = failures
        self.due = ["a", "b", "c"]

    async def claim_due(
        self, batch: int = 20, *, due_by: datetime | None = None, skip: Collection[str] = ()
    ) -> list[str]:
        return [row for row in self.due if row not in skip][:batch]

    async def recover(self, row_id: str) -> None:
        if row_id in self.failures:
            raise self.failures[row_id]

    @property
    def slug(self) -> str:
        return "test_recovery_worker"


def faults() -> float:
    return SAGA_FAULTS.labels("test_recovery_worker")._value.get()


async def test_a_row_that_meets_a_database_outage_is_not_reported_as_a_fault() -> None:
    before = faults()
    report = await RecoveryWorker(Rows({"b": DatabaseUnavailable()})).run_pass()
    assert report == RecoveryPass(driven=3, faulted=())
    assert faults() == before


async def test_a_row_whose_recovery_raises_unexpectedly_is_reported_and_counted() -> None:
    before = faults()
    report = await RecoveryWorker(Rows({"c": RuntimeError("a bug")})).run_pass()
    assert report == RecoveryPass(driven=3, faulted=("c",))
    assert faults() == before + 1
