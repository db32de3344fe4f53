"""What a break's row shows: the amounts its difference is made of, and that difference."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from exchange.settlement.break_kinds import BreakKind
from exchange.settlement.reconciliation import break_difference, difference_terms


@dataclass(frozen=True)
class Row:
    kind: str
    partner_amount: int | None
    ledger_amount: int | None


#: A break of each class as reconciliation stores it (minor units), with the amounts shown.
BREAKS = [
    (Row(BreakKind.AMOUNT_MISMATCH, -2499, -2500), (-2499, -2500)),
    (Row(BreakKind.DUPLICATE, 9800, 9800), (9800, None)),  # the ledger's 98.00 is the first line's
    (Row(BreakKind.MISSING_IN_LEDGER, 500, None), (500, None)),
    (Row(BreakKind.MISSING_IN_PARTNER, None, 1200), (None, 1200)),
]


@pytest.mark.parametrize(("row", "terms"), BREAKS, ids=[row.kind for row, _ in BREAKS])
def test_a_break_shows_the_amounts_its_difference_is_made_of(row: Row, terms: tuple[int | None, int | None]) -> None:
    assert difference_terms(row) == terms
    mine, ledgers = terms
    assert break_difference(row) == (mine or 0) - (ledgers or 0), "what is shown adds up to the difference shown"
