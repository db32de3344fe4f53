"""How a reconciliation's line compares, and how staff resolve a break: the names the break
tables store, apart from the tables, so that the command line offers them as choices without
importing the models (``exchange --help`` would wait for SQLModel)."""

from __future__ import annotations

from enum import StrEnum


class BreakKind(StrEnum):
    """How one line of a partner's records, or one reference of the ledger, compares."""

    MATCHED = "MATCHED"
    MISSING_IN_LEDGER = "MISSING_IN_LEDGER"
    MISSING_IN_PARTNER = "MISSING_IN_PARTNER"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    DUPLICATE = "DUPLICATE"


class Resolution(StrEnum):
    ACCEPT_LEDGER = "ACCEPT_LEDGER"
    """The ledger's figure stands; nothing is posted."""
    ADJUST = "ADJUST"
    """A balanced adjustment is posted into the next open period."""
