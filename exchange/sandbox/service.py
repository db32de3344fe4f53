"""The contract as both transports call it: the points system under the fault knobs."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

from exchange.connectors import batch_files
from exchange.connectors.contract import MemberAccount, Operation, OperationState, Verification
from exchange.sandbox.faults import FaultInjector
from exchange.sandbox.points import PointsSystem, Written

T = TypeVar("T")

#: How long the line ``long_result_line`` puts in a result file is: two megabytes.
LONG_LINE_CHARS = 2 << 20


async def _read(call: Awaitable[T]) -> tuple[T, bool]:
    return await call, True


async def _write(call: Awaitable[Written]) -> tuple[Written, bool]:
    written = await call
    return written, written.created


class PartnerService:
    def __init__(self, points: PointsSystem, faults: FaultInjector) -> None:
        self.points = points
        self.faults = faults

    async def account(self, member_ref: str) -> MemberAccount:
        return await self.faults.run(lambda: _read(self.points.account(member_ref)), write=False)

    async def verify(self, member_ref: str, verification: str) -> Verification:
        return await self.faults.run(lambda: _read(self.points.verify(member_ref, verification)), write=False)

    async def operation(self, operation_id: str) -> Operation | None:
        return await self.faults.run(lambda: _read(self.points.operation(operation_id)), write=False)

    async def debit(self, operation_id: str, member_ref: str, points: int) -> Written:
        return await self.faults.run(
            lambda: _write(self.points.debit(operation_id, member_ref, points)),
            write=True,
            points=points,
            misapplied=lambda: _write(self.points.debit(operation_id, member_ref, 2 * points)),
        )

    async def credit(self, operation_id: str, member_ref: str, points: int) -> Written:
        return await self.faults.run(
            lambda: _write(self.points.credit(operation_id, member_ref, points)),
            write=True,
            points=points,
            misapplied=lambda: _write(self.points.credit(operation_id, member_ref, 2 * points)),
        )

    async def reverse(self, operation_id: str, reverses: str, points: int | None) -> Written:
        return await self.faults.run(lambda: _write(self.points.reverse(operation_id, reverses, points)), write=True)

    async def take_credits_file(self, batch_id: str, lines: list[tuple[str, str, int]]) -> int:
        return await self.points.take_credits_file(
            batch_id, lines, declines=self.faults.declines, shorts=self.faults.shorts
        )

    async def batch_results(self, batch_id: str) -> list[str] | None:
        """The result file, its header first: without the points column if
        ``results_without_points`` (or for a batch taken before the sandbox kept them); less
        the last ``drop_result_lines``, and after its first line a line of two megabytes if
        ``long_result_line`` (fault knobs)."""
        results = await self.points.batch_results(batch_id)
        if results is None:
            return None
        settings = self.faults.settings
        with_points = not settings.results_without_points and all(points is not None for *_, points in results)
        lines = [
            batch_files.result_line(operation_id, OperationState(status), points if with_points else None)
            for operation_id, status, points in results
        ]
        lines = lines[: len(lines) - settings.drop_result_lines]
        if settings.long_result_line:
            lines.insert(1, "x" * LONG_LINE_CHARS + "\n")
        header = batch_files.RESULTS_HEADER if with_points else batch_files.RESULTS_HEADER_WITHOUT_POINTS
        return [header + "\n", *lines]

    async def match_tier(self, operation_id: str, member_ref: str, tier: str, expires_at: datetime) -> Written:
        return await self.faults.run(
            lambda: _write(self.points.match_tier(operation_id, member_ref, tier, expires_at)),
            write=True,
            misapplied=lambda: _write(
                self.points.match_tier(operation_id, member_ref, self.points.other_tier(tier), expires_at)
            ),
        )
