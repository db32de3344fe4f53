"""The ledger's chart of accounts and the units amounts are kept in.

Every amount is an integer in its account's unit: minor units of the settlement currency
(``TWD`` amounts in cents) for money, whole points for a program's points (unit
``PTS:<program-id>``). Sign convention: a positive amount is a debit, a negative one a
credit; every transaction's amounts sum to zero per unit. For money, a positive balance is
what the holder is owed, a negative one what it owes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

POINTS_UNIT_PREFIX = "PTS:"


class AccountKind(StrEnum):
    PARTNER_CLEARING = "partner-clearing"
    """What a partner is owed (+) or owes (−) the coalition, in money."""
    EXCHANGE_FEES = "exchange-fees"
    """What the exchange has earned in fees, in money."""
    MEMBER_POINTS = "member-points"
    """Members' points at a program, as moved by the exchange (debits and credits at the partner)."""
    POINTS_ISSUED = "points-issued"
    """Points a program issued to its members on the exchange's instruction."""
    POINTS_REDEEMED = "points-redeemed"
    """Points a program took back from its members on the exchange's instruction."""
    POINTS_EXPIRED = "points-expired"
    """Coalition points that lapsed unspent (the expiry job); their value is breakage."""
    COALITION_BREAKAGE = "coalition-breakage"
    """What the operator keeps of expired coalition points' value, in money, when it keeps breakage."""


PROGRAM_KINDS = frozenset(
    {
        AccountKind.PARTNER_CLEARING,
        AccountKind.MEMBER_POINTS,
        AccountKind.POINTS_ISSUED,
        AccountKind.POINTS_REDEEMED,
        AccountKind.POINTS_EXPIRED,
    }
)
POINT_KINDS = frozenset(
    {AccountKind.MEMBER_POINTS, AccountKind.POINTS_ISSUED, AccountKind.POINTS_REDEEMED, AccountKind.POINTS_EXPIRED}
)


def points_unit(program_id: str) -> str:
    return f"{POINTS_UNIT_PREFIX}{program_id}"


@dataclass(frozen=True, slots=True, order=True)
class AccountRef:
    """Names one ledger account; its ``code`` is the account's stable key."""

    kind: AccountKind
    program_id: str | None
    unit: str

    def __post_init__(self) -> None:
        if (self.kind in PROGRAM_KINDS) != (self.program_id is not None):
            raise ValueError(f"{self.kind} accounts {'need' if self.kind in PROGRAM_KINDS else 'take no'} program")

    @property
    def code(self) -> str:
        return self.kind.value if self.program_id is None else f"{self.kind.value}:{self.program_id}"


@dataclass(frozen=True, slots=True)
class ChartOfAccounts:
    """Builds account references for a coalition that settles in ``currency``."""

    currency: str

    def clearing(self, program_id: str) -> AccountRef:
        return AccountRef(AccountKind.PARTNER_CLEARING, program_id, self.currency)

    def fees(self) -> AccountRef:
        return AccountRef(AccountKind.EXCHANGE_FEES, None, self.currency)

    def member_points(self, program_id: str) -> AccountRef:
        return AccountRef(AccountKind.MEMBER_POINTS, program_id, points_unit(program_id))

    def issued(self, program_id: str) -> AccountRef:
        return AccountRef(AccountKind.POINTS_ISSUED, program_id, points_unit(program_id))

    def redeemed(self, program_id: str) -> AccountRef:
        return AccountRef(AccountKind.POINTS_REDEEMED, program_id, points_unit(program_id))

    def expired(self, program_id: str) -> AccountRef:
        return AccountRef(AccountKind.POINTS_EXPIRED, program_id, points_unit(program_id))

    def breakage(self) -> AccountRef:
        return AccountRef(AccountKind.COALITION_BREAKAGE, None, self.currency)
