"""A program's figures for one period, read from the clearing ledger in a few set-based queries.

Every figure is a ``GROUP BY`` (or a conditional ``sum``) over ``ledger_entry``, joined to its
account and transaction; no entry is ever read into Python. The queries are plain SQL that
PostgreSQL and SQLite run alike. Entries are counted in the period they were *posted into*
(``ledger_entry.period``), as closing and statements count them, so the books tie out to the
period's statement; an entry that arrived late for a closed period counts in the next one.

Points legs (``points-issued``, ``points-redeemed``, ``member-points`` of the program) say how
many points moved; the program's ``partner-clearing`` legs say what money moved. A movement is
classed by its business reference, which a reversal keeps: ``conversion:…`` or
``redemption:…`` (a reward); anything else (adjustments, later kinds) is ``other``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.errors import BadUserInput
from exchange.ledger.accounts import AccountKind
from exchange.ledger.models import LedgerCloseAnchor
from exchange.ledger.outstanding import archived_periods, held_through, known_at
from exchange.settlement.errors import PeriodArchived

CONVERSION = "conversion"
REWARD = "reward"
OTHER = "other"

_CATEGORY = f"""CASE WHEN t.reference LIKE 'conversion:%' THEN '{CONVERSION}'
                     WHEN t.reference LIKE 'redemption:%' THEN '{REWARD}'
                     ELSE '{OTHER}' END"""

#: Points the program issued and redeemed in the period, by account, category and whether the
#: transaction reverses another. Amounts keep the ledger's sign (credits negative).
_POINTS = text(
    f"""
    SELECT a.kind AS account_kind, {_CATEGORY} AS category, t.reverses IS NOT NULL AS reversal,
           sum(e.amount) AS amount
      FROM ledger_entry e
      JOIN ledger_account a ON a.id = e.account_id
      JOIN ledger_transaction t ON t.seq = e.transaction_seq
     WHERE a.program_id = :program AND e.period = :period AND a.kind IN (:issued, :redeemed)
     GROUP BY a.kind, {_CATEGORY}, t.reverses IS NOT NULL
    """
)

#: The program's clearing money in the period: all of it, the part of transactions that redeemed
#: its points, the part of transactions that issued them, and the part of redemptions of rewards
#: it published that its own points did not pay for (debit +: owed to it).
_MONEY = text(
    """
    SELECT coalesce(sum(e.amount), 0) AS net,
           coalesce(sum(CASE WHEN EXISTS (SELECT 1 FROM ledger_entry r
                                           WHERE r.transaction_seq = e.transaction_seq AND r.account_id = :redeemed)
                             THEN e.amount ELSE 0 END), 0) AS for_redeemed,
           coalesce(sum(CASE WHEN EXISTS (SELECT 1 FROM ledger_entry i
                                           WHERE i.transaction_seq = e.transaction_seq AND i.account_id = :issued)
                             THEN e.amount ELSE 0 END), 0) AS for_issued,
           coalesce(sum(CASE WHEN t.reference LIKE 'redemption:%'
                              AND NOT EXISTS (SELECT 1 FROM ledger_entry r
                                               WHERE r.transaction_seq = e.transaction_seq AND r.account_id = :redeemed)
                             THEN e.amount ELSE 0 END), 0) AS for_rewards
      FROM ledger_entry e JOIN ledger_transaction t ON t.seq = e.transaction_seq
     WHERE e.account_id = :clearing AND e.period = :period
    """
)


class OutstandingNotKept(BadUserInput):
    """Archived periods on both sides of the period: the ledger keeps what archived periods moved
    only all together, so what was outstanding at the period's end is not known."""

    def __init__(self, period: str, before: Sequence[str], after: Sequence[str]) -> None:
        super().__init__(
            f"the books of {period} cannot say what was outstanding at its end: periods before it "
            f"({', '.join(before)}) and after it ({', '.join(after)}) are archived, and the ledger keeps what "
            "archived periods moved only all together",
            field="period",
            period=period,
        )


_ACCOUNTS = text("SELECT kind, id FROM ledger_account WHERE program_id = :program")

#: No account has this id (ids are positive): stands in for an account not opened yet.
NO_ACCOUNT = 0


async def program_accounts(session: AsyncSession, program_id: str) -> dict[str, int]:
    """The ids of the program's ledger accounts, by kind (absent: not opened yet)."""
    found = await session.exec(_ACCOUNTS, params={"program": program_id})  # type: ignore[call-overload]
    return dict(found.all())


@dataclass(frozen=True, slots=True)
class LedgerFigures:
    """What the ledger says of one program in one period; points are whole points, money in
    minor units of the settlement currency."""

    issued: int
    """Points the program issued to its members on the exchange's instruction (conversions in)."""
    converted_out: int
    """Its members' points it took back for conversions out of the program."""
    redeemed_for_rewards: int
    """Its members' points it took back to pay for rewards, net of reversals."""
    reversed: int
    """Of the points taken back, those given back by reversals (already netted above)."""
    other_points: int
    """Points issued (+) or taken back (−) by anything else (adjustments)."""
    outstanding: int
    """Net points the exchange has moved into the program's members' accounts since the
    beginning, up to the period's end: issued less taken back (negative when more left than came in)."""
    money_net: int
    """The program's whole clearing movement in the period (+ owed to it): its statement's net."""
    money_for_redeemed: int
    """Of that, the part of transactions that took back its points (negative: it paid)."""
    money_for_issued: int
    """Of that, the part of transactions that issued its points (positive: it was paid)."""
    money_for_rewards: int
    """Of that, the part of redemptions of rewards it published, paid with other programs' points
    (positive: it was owed their price), net of reversals."""

    @property
    def money_other(self) -> int:
        """The rest of :attr:`money_net`: adjustments, coalition points' breakage, anything that
        neither issued nor took back its points nor paid for its rewards; so the money figures
        add up to the net."""
        return self.money_net - self.money_for_issued - self.money_for_redeemed - self.money_for_rewards

    @property
    def redeemed(self) -> int:
        """Every point taken back through the exchange, net of reversals."""
        return self.converted_out + self.redeemed_for_rewards


async def points_outstanding(session: AsyncSession, program_id: str, account: int, period: str) -> int:
    """The net points moved into ``account`` up to ``period``'s end
    (:func:`~exchange.ledger.outstanding.held_through`); :class:`OutstandingNotKept` when archived
    periods on both sides of it leave that unknown."""
    archived = await archived_periods(session)
    if not known_at(period, archived):
        raise OutstandingNotKept(period, [p for p in archived if p < period], [p for p in archived if p > period])
    return await held_through(session, program_id, account, period, archived)


async def ledger_figures(session: AsyncSession, program_id: str, period: str) -> LedgerFigures:
    """The program's figures for ``period``: a few small set-based queries.

    An archived period's entries have left the ledger (``exchange ledger archive``): its own
    figures cannot be read any more (``PeriodArchived``), and a later period's ``outstanding``
    adds what the archived periods moved. Archived periods both before and after ``period``
    leave its ``outstanding`` unknown (:class:`OutstandingNotKept`)."""
    anchor = await session.get(LedgerCloseAnchor, period)
    if anchor is not None and anchor.archived_at is not None:
        raise PeriodArchived(period)
    accounts = await program_accounts(session, program_id)

    def account(kind: AccountKind) -> int:
        return int(accounts.get(kind.value, NO_ACCOUNT))

    points: dict[tuple[str, str, bool], int] = {}
    rows = await session.exec(  # type: ignore[call-overload]
        _POINTS,
        params={
            "program": program_id,
            "period": period,
            "issued": AccountKind.POINTS_ISSUED.value,
            "redeemed": AccountKind.POINTS_REDEEMED.value,
        },
    )
    for account_kind, category, reversal, amount in rows.all():  # at most 2 × 3 × 2 groups
        points[(account_kind, category, bool(reversal))] = int(amount)

    def moved(account_kind: AccountKind, *categories: str, reversal: bool | None = None) -> int:
        return sum(
            amount
            for (kind, category, is_reversal), amount in points.items()
            if kind == account_kind.value and category in categories and reversal in (None, is_reversal)
        )

    issued, redeemed = AccountKind.POINTS_ISSUED, AccountKind.POINTS_REDEEMED
    money = (
        await session.exec(  # type: ignore[call-overload]
            _MONEY,
            params={
                "clearing": account(AccountKind.PARTNER_CLEARING),
                "redeemed": account(redeemed),
                "issued": account(issued),
                "period": period,
            },
        )
    ).one()
    outstanding = await points_outstanding(session, program_id, account(AccountKind.MEMBER_POINTS), period)
    return LedgerFigures(
        issued=-moved(issued, CONVERSION, REWARD),
        converted_out=moved(redeemed, CONVERSION),
        redeemed_for_rewards=moved(redeemed, REWARD),
        reversed=-moved(redeemed, CONVERSION, REWARD, reversal=True),
        other_points=-moved(issued, OTHER) - moved(redeemed, OTHER),
        outstanding=outstanding,
        money_net=int(money.net),
        money_for_redeemed=int(money.for_redeemed),
        money_for_issued=int(money.for_issued),
        money_for_rewards=int(money.for_rewards),
    )
