"""The files a batch-mode partner and the exchange trade: the day's credits, and the results.

Both are CSV (``text/csv``, UTF-8, a header line, ``\\n`` line ends). Operation ids and member
refs never hold a comma or a quote (``OPERATION_ID_PATTERN``, ``MEMBER_REF_PATTERN``), so a
line is its fields joined by commas, with no quoting. The exchange writes the credits file
and reads the results file one line at a time; both sides use this module.

- credits: ``operation_id,member_ref,points``
- results: ``operation_id,status,points`` with status ``applied`` or ``failed`` and the points
  of the credit as the partner recorded it; or, as partners wrote it before the points column,
  ``operation_id,status``. The header says which: every line has its columns.

A result line whose points are not those sent is not taken as the credit's outcome: the
exchange asks the partner about that credit (:mod:`exchange.conversions.batches`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from exchange.connectors.contract import (
    MAX_POINTS,
    MEMBER_REF_PATTERN,
    OPERATION_ID_PATTERN,
    OperationState,
)
from exchange.connectors.errors import clipped
from exchange.text import ascii_digits

MEDIA_TYPE = "text/csv"
CREDITS_HEADER = "operation_id,member_ref,points"
RESULTS_HEADER = "operation_id,status,points"
#: The result file's header as partners wrote it before the points column: still read.
RESULTS_HEADER_WITHOUT_POINTS = "operation_id,status"
#: The longest line either file may hold (a credits line is at most 128 + 128 + 10 characters
#: and two commas): a longer one is refused as soon as it is, read no further.
MAX_LINE_CHARS = 1024
#: The results a line may give: what the partner did with that credit.
RESULT_STATES = (OperationState.APPLIED, OperationState.FAILED)

_OPERATION_ID = re.compile(OPERATION_ID_PATTERN)
_MEMBER_REF = re.compile(MEMBER_REF_PATTERN)


class MalformedLine(ValueError):
    """A line that is not what the file's header says, with its 1-based line number."""

    def __init__(self, number: int, reason: str) -> None:
        super().__init__(f"line {number}: {reason}")
        self.number = number
        self.reason = reason


def credit_line(operation_id: str, member_ref: str, points: int) -> str:
    return f"{operation_id},{member_ref},{points}\n"


@dataclass(frozen=True, slots=True)
class ResultLine:
    """One line of a result file: what the partner did with a credit, and at which line."""

    operation_id: str
    status: OperationState
    points: int | None
    """The credit's points as the partner recorded it; ``None`` in a file without the column."""
    number: int


def result_line(operation_id: str, status: OperationState, points: int | None = None) -> str:
    """A result line; without ``points``, for a file with :data:`RESULTS_HEADER_WITHOUT_POINTS`."""
    if points is None:
        return f"{operation_id},{status.value}\n"
    return f"{operation_id},{status.value},{points}\n"


def parse_credit(line: str, number: int) -> tuple[str, str, int]:
    fields = line.rstrip("\r\n").split(",")
    if len(fields) != 3 or not _OPERATION_ID.match(fields[0]) or not _MEMBER_REF.match(fields[1]):
        raise MalformedLine(number, f"expected {CREDITS_HEADER}")
    points = ascii_digits(fields[2])
    if points is None or not 0 < points <= MAX_POINTS:
        raise MalformedLine(number, f"points must be a whole number from 1 to {MAX_POINTS}")
    return fields[0], fields[1], points


def results_columns(header: str, number: int = 1) -> int:
    """How many columns a result file has, by its header line: 3 (with points) or 2."""
    if header == RESULTS_HEADER:
        return 3
    if header == RESULTS_HEADER_WITHOUT_POINTS:
        return 2
    raise MalformedLine(number, f"expected {RESULTS_HEADER} (or {RESULTS_HEADER_WITHOUT_POINTS})")


def parse_result(line: str, number: int, columns: int = 3) -> ResultLine:
    """A line of a result file whose header gave ``columns`` (:func:`results_columns`)."""
    header = RESULTS_HEADER if columns == 3 else RESULTS_HEADER_WITHOUT_POINTS
    fields = line.rstrip("\r\n").split(",")
    if len(fields) != columns or not _OPERATION_ID.match(fields[0]):
        raise MalformedLine(number, f"expected {header}")
    if fields[1] not in {state.value for state in RESULT_STATES}:
        raise MalformedLine(number, "status: must be applied or failed")
    points = None
    if columns == 3:
        points = ascii_digits(fields[2])
        if points is None or not 0 < points <= MAX_POINTS:
            raise MalformedLine(
                number,
                f"points: must be a whole number from 1 to {MAX_POINTS} in ASCII digits alone "
                f"(no sign, point or space), got {clipped(fields[2], 40)!r}",
            )
    return ResultLine(fields[0], OperationState(fields[1]), points, number)
