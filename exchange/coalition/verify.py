"""What ``exchange ledger verify`` checks of the coalition point, in set-based SQL.

1. Every lot adds up: ``points = remaining + expired + Σ(draws taken − restored)``, and
   ``expired`` is the sum of its expiries. A lot changed by hand (say, more ``remaining``)
   breaks the first.
2. The lots' outstanding total equals the ledger's ``member-points`` balance of the point,
   allowing for sagas in flight: operations applied to the lots whose saga has not posted
   yet (per saga, the operations' net effect on the lots less the ledger's entries on that
   account under the saga's reference). With nothing in flight the allowance is zero. A saga
   whose transaction was posted into a period since archived is settled, and its entries have
   left the ledger's tables (the balance still counts them): it is left out of the allowance.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.coalition.rules import PointRules
from exchange.ledger.accounts import ChartOfAccounts
from exchange.text import counted

LOT_THAT_DOES_NOT_ADD_UP = text(
    """
    SELECT l.id, l.points, l.remaining, l.expired,
           coalesce((SELECT sum(d.points - d.restored) FROM coalition_draw d WHERE d.lot_id = l.id), 0) AS drawn,
           coalesce((SELECT sum(x.points) FROM coalition_expiry x WHERE x.lot_id = l.id), 0) AS expiries
      FROM coalition_lot l
     WHERE l.points <> l.remaining + l.expired
                       + coalesce((SELECT sum(d.points - d.restored) FROM coalition_draw d WHERE d.lot_id = l.id), 0)
        OR l.expired <> coalesce((SELECT sum(x.points) FROM coalition_expiry x WHERE x.lot_id = l.id), 0)
     ORDER BY l.id
     LIMIT 1
    """
)
OUTSTANDING = text("SELECT coalesce(sum(remaining), 0) FROM coalition_lot")
LEDGER_BALANCE = text("SELECT coalesce(sum(balance), 0) FROM ledger_account_balance WHERE code = :code")
#: Sagas whose transaction was posted into a period since archived: settled, their entries gone.
_ARCHIVED_SAGAS = """
    SELECT o.saga_id FROM coalition_operation o
      JOIN ledger_transaction_key k ON k.id IN ('conversion:' || o.saga_id, 'redemption:' || o.saga_id)
      JOIN ledger_close_anchor c ON c.period = k.period
     WHERE c.archived_at IS NOT NULL
"""
#: The operations' net effect on the lots (a reversal's is in its target's reversed_points).
OPERATIONS_EFFECT = text(
    f"""
    SELECT coalesce(sum(CASE kind WHEN 'credit' THEN points - reversed_points
                                  WHEN 'debit' THEN reversed_points - points
                                  ELSE 0 END), 0)
      FROM coalition_operation
     WHERE saga_id NOT IN ({_ARCHIVED_SAGAS})
    """
)
#: The ledger's entries on the point's member-points account under the references of sagas
#: that wrote to the point.
SAGAS_POSTED = text(
    f"""
    SELECT coalesce(sum(e.amount), 0)
      FROM ledger_entry e
      JOIN ledger_transaction t ON t.seq = e.transaction_seq
      JOIN ledger_account a ON a.id = e.account_id
     WHERE a.code = :code
       AND t.reference IN (SELECT 'conversion:' || saga_id FROM coalition_operation
                            WHERE saga_id NOT IN ({_ARCHIVED_SAGAS})
                           UNION SELECT 'redemption:' || saga_id FROM coalition_operation
                            WHERE saga_id NOT IN ({_ARCHIVED_SAGAS}))
    """
)


@dataclass(frozen=True, slots=True)
class PointCheck:
    """The point's outstanding points and liability, and the first problem found (if any)."""

    outstanding: int
    liability_minor: int
    in_flight: int
    problem: str | None


async def check_point(session: AsyncSession, rules: PointRules) -> PointCheck:
    row = (await session.exec(LOT_THAT_DOES_NOT_ADD_UP)).first()  # type: ignore[call-overload]
    outstanding = int((await session.exec(OUTSTANDING)).scalar_one())  # type: ignore[call-overload]
    code = ChartOfAccounts(rules.currency.code).member_points(rules.program_id).code
    ledger = int((await session.exec(LEDGER_BALANCE, params={"code": code})).scalar_one())  # type: ignore[call-overload]
    effect = int((await session.exec(OPERATIONS_EFFECT)).scalar_one())  # type: ignore[call-overload]
    posted = int((await session.exec(SAGAS_POSTED, params={"code": code})).scalar_one())  # type: ignore[call-overload]
    in_flight = effect - posted
    problem = None
    if row is not None:
        problem = (
            f"coalition lot {row.id} does not add up: {counted(row.points, 'point')}, {row.remaining} remaining, "
            f"{row.expired} expired ({row.expiries} by its expiries), {row.drawn} drawn"
        )
    elif outstanding != ledger + in_flight:
        problem = (
            f"coalition lots hold {counted(outstanding, 'point')} outstanding; the ledger's {code} says {ledger}"
            + (f" (and sagas in flight {in_flight:+})" if in_flight else "")
        )
    return PointCheck(outstanding, rules.value_minor(outstanding), in_flight, problem)
