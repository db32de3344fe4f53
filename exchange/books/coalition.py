"""A partner program's side of the coalition point over one period: what it funded, what was
spent with it, what of what it funded is outstanding or expired, and the breakage to expect.

Two sources, each read set-based:

* the **ledger** says what moved in the period (entries posted into it): coalition points
  *funded* by the program are the point's ``points-issued`` legs of transactions that took the
  program's own points back (its members converted them into the point); coalition points
  *spent at* the program are the point's ``points-redeemed`` legs of transactions that moved the
  program's clearing money (converted into its points, or paying for its rewards; net of
  reversals, which negate both);
* the **lots** (``coalition_lot``, funded by the program) say what of what it funded is still
  held, and what expired: outstanding at the period's end is the lots earned before it, less
  what debits drew from them before it (points a reversal restored count as never drawn), less
  what expired before it.

**Breakage estimate.** ``expired ÷ matured``: over every lot of the point (all funders) whose
expiry fell in the twelve months before the period, the points that lapsed (a matured lot's
unspent remainder counts as lapsed: it can no longer be spent) divided by the points those
lots held. Applied to the points of the lots *this program funded* that mature in the period,
rounded half-even to whole points. No lot matured in the trailing twelve months: no estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import bindparam, text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.books.figures import NO_ACCOUNT, program_accounts
from exchange.db.types import UTCDateTime
from exchange.ledger.accounts import AccountKind
from exchange.money import rate_shown

_MOVED = text(
    """
    SELECT coalesce(-sum(CASE WHEN e.account_id = :point_issued AND EXISTS (
                                   SELECT 1 FROM ledger_entry r
                                    WHERE r.transaction_seq = e.transaction_seq AND r.account_id = :redeemed)
                              THEN e.amount ELSE 0 END), 0) AS funded,
           coalesce(sum(CASE WHEN e.account_id = :point_redeemed AND EXISTS (
                                   SELECT 1 FROM ledger_entry c
                                    WHERE c.transaction_seq = e.transaction_seq AND c.account_id = :clearing)
                             THEN e.amount ELSE 0 END), 0) AS spent_at
      FROM ledger_entry e
     WHERE e.account_id IN (:point_issued, :point_redeemed) AND e.period = :period
    """
)

_LOTS = text(
    """
    SELECT coalesce(sum(CASE WHEN l.earned_at < :ends THEN l.points ELSE 0 END), 0) AS earned,
           coalesce(sum(CASE WHEN l.expires_at >= :starts AND l.expires_at < :ends THEN l.points ELSE 0 END), 0)
             AS maturing
      FROM coalition_lot l
     WHERE l.program_id = :point AND l.funded_by = :program
    """
).bindparams(bindparam("starts", type_=UTCDateTime()), bindparam("ends", type_=UTCDateTime()))

_DRAWN = text(
    """
    SELECT coalesce(sum(d.points - d.restored), 0)
      FROM coalition_draw d
      JOIN coalition_lot l ON l.id = d.lot_id
      JOIN coalition_operation o ON o.operation_id = d.operation_id
     WHERE l.program_id = :point AND l.funded_by = :program AND o.created_at < :ends
    """
).bindparams(bindparam("ends", type_=UTCDateTime()))

_EXPIRED = text(
    """
    SELECT coalesce(sum(CASE WHEN x.expired_at < :ends THEN x.points ELSE 0 END), 0) AS to_date,
           coalesce(sum(CASE WHEN x.expired_at >= :starts AND x.expired_at < :ends THEN x.points ELSE 0 END), 0)
             AS in_period
      FROM coalition_expiry x
      JOIN coalition_lot l ON l.id = x.lot_id
     WHERE l.program_id = :point AND l.funded_by = :program
    """
).bindparams(bindparam("starts", type_=UTCDateTime()), bindparam("ends", type_=UTCDateTime()))

_MATURED = text(
    """
    SELECT coalesce(sum(l.expired + l.remaining), 0) AS lapsed, coalesce(sum(l.points), 0) AS matured
      FROM coalition_lot l
     WHERE l.program_id = :point AND l.expires_at >= :since AND l.expires_at < :starts
    """
).bindparams(bindparam("since", type_=UTCDateTime()), bindparam("starts", type_=UTCDateTime()))


@dataclass(frozen=True, slots=True)
class CoalitionFigures:
    """The program's coalition figures, in whole coalition points."""

    point_id: str
    funded: int
    """Coalition points its members converted its points into, in the period."""
    spent_at: int
    """Coalition points spent with it in the period (converted into its points, or paying for its
    rewards), net of reversals."""
    outstanding: int
    """Of the coalition points it ever funded, those members still held at the period's end."""
    breakage: int
    """Of those it funded, the points that expired in the period."""
    breakage_to_date: int
    """Of those it funded, every point that expired up to the period's end."""
    maturing: int
    """Points of the lots it funded whose expiry falls in the period."""
    expiry_rate: Fraction | None
    """Expired ÷ matured over the twelve months before the period (all funders); None if none matured."""

    @property
    def estimated_breakage(self) -> int | None:
        """``expiry_rate × maturing``, half-even to whole points."""
        return None if self.expiry_rate is None else round(self.expiry_rate * self.maturing)

    @property
    def expiry_rate_shown(self) -> Decimal | None:
        """The expiry rate as the books show it (GraphQL, the CSV, the page): by ``ROUND_RATE``."""
        return None if self.expiry_rate is None else rate_shown(self.expiry_rate)


async def coalition_figures(
    session: AsyncSession,
    *,
    program_id: str,
    point_id: str,
    period: str,
    starts: datetime,
    ends: datetime,
    since: datetime,
) -> CoalitionFigures:
    """``program_id``'s coalition figures for ``period`` (``starts``–``ends``); ``since`` is the
    start of the twelve months before it, which the expiry rate looks back over."""
    own, point = await program_accounts(session, program_id), await program_accounts(session, point_id)
    moved = (
        await session.exec(  # type: ignore[call-overload]
            _MOVED,
            params={
                "point_issued": point.get(AccountKind.POINTS_ISSUED.value, NO_ACCOUNT),
                "point_redeemed": point.get(AccountKind.POINTS_REDEEMED.value, NO_ACCOUNT),
                "redeemed": own.get(AccountKind.POINTS_REDEEMED.value, NO_ACCOUNT),
                "clearing": own.get(AccountKind.PARTNER_CLEARING.value, NO_ACCOUNT),
                "period": period,
            },
        )
    ).one()
    window = {"point": point_id, "program": program_id, "starts": starts, "ends": ends}
    lots = (await session.exec(_LOTS, params=window)).one()  # type: ignore[call-overload]
    drawn = (await session.exec(_DRAWN, params=window)).scalar_one()  # type: ignore[call-overload]
    expired = (await session.exec(_EXPIRED, params=window)).one()  # type: ignore[call-overload]
    matured = (
        await session.exec(_MATURED, params={"point": point_id, "since": since, "starts": starts})  # type: ignore[call-overload]
    ).one()
    return CoalitionFigures(
        point_id=point_id,
        funded=int(moved.funded),
        spent_at=int(moved.spent_at),
        outstanding=int(lots.earned) - int(drawn) - int(expired.to_date),
        breakage=int(expired.in_period),
        breakage_to_date=int(expired.to_date),
        maturing=int(lots.maturing),
        expiry_rate=Fraction(int(matured.lapsed), int(matured.matured)) if matured.matured else None,
    )
