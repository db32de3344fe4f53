"""Every money transaction is a star, and each of its spoke legs names the hub's account.

**The shape.** In every money unit (any unit but a program's points, ``PTS:…``), one side of a
transaction is a single leg: one debtor paying one or several creditors, or several debtors
paying one creditor. Posting refuses any other shape (:func:`hub_positions`). That is what
makes a transaction say who owes whom without any rounding: each leg on the many side is owed
by (or owes) the single leg, wholly (see ``exchange.settlement.netting``). Points are not
settled between partners, so their legs may take any shape.

**The hub.** In each money unit of a transaction, the *hub* is the negative leg if there is
exactly one negative leg, else the one positive leg. So with one leg on each side the negative
leg is the hub; either choice gives the same obligation (the negative leg's account owes the
positive leg's), but the rule has to be fixed for it to be recomputed. Every other leg of that
unit is a *spoke*, and in a star it has the sign opposite to the hub's.

**The counterparty.** ``ledger_entry.counterparty_account_id`` is, on every spoke leg, the hub's
account; it is NULL on a hub leg and on every points leg. A spoke on the hub's own account names
its own account: it moves money within one account, and settlement leaves it out of the
obligations.

The column says nothing the legs do not: it is stored (denormalised) so that closing a period
reads each leg once, grouped by account and counterparty, instead of pairing every leg with the
other legs of its transaction. Posting writes it (:func:`hub_positions`); the migration that
added it computed it for earlier rows with this same rule in SQL (as :data:`EXPECTED` does);
``verify_ledger`` recomputes it (:data:`COUNTERPARTY_PROBLEM`). It is not part of a
transaction's hash, which covers what the client asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import text

from exchange.ledger.accounts import POINTS_UNIT_PREFIX
from exchange.ledger.errors import UnbalancedTransaction

if TYPE_CHECKING:
    from exchange.ledger.posting import Leg, TransactionRequest


def _money_sides(legs: Sequence[Leg]) -> dict[str, tuple[list[int], list[int]]]:
    """Per money unit, the indexes in ``legs`` of its negative legs and of its positive legs."""
    sides: dict[str, tuple[list[int], list[int]]] = {}
    for index, leg in enumerate(legs):
        unit = leg.account.unit
        if not unit.startswith(POINTS_UNIT_PREFIX):
            sides.setdefault(unit, ([], []))[leg.amount > 0].append(index)
    return sides


def hub_positions(request: TransactionRequest) -> list[int | None]:
    """Each leg's hub, as the hub leg's index in ``request.legs`` (None on a hub leg and on a
    points leg), by the rule of the module's docstring. Refuses (:class:`UnbalancedTransaction`)
    a request with several legs on both sides of a money unit: nothing says who owes whom there."""
    hubs: dict[str, int] = {}
    for unit, (negatives, positives) in _money_sides(request.legs).items():
        if len(negatives) > 1 and len(positives) > 1:
            raise UnbalancedTransaction(
                f"transaction {request.id!r} has {len(negatives)} credit and {len(positives)} debit legs in {unit}: "
                "one side must be a single leg, so that it says who owes whom",
                field="legs",
            )
        hubs[unit] = negatives[0] if len(negatives) == 1 else positives[0]
    # A points leg has no hub: its default index is its own, as a hub's is.
    return [
        None if (hub := hubs.get(leg.account.unit, index)) == index else hub for index, leg in enumerate(request.legs)
    ]


#: Every leg beside the counterparty its transaction's legs give it (``expected``), with how many
#: negative and positive legs its unit has in its transaction and whether that makes a money
#: transaction that is not a star (whose legs have no counterparty to give). Window functions
#: over each transaction's legs of one unit read the legs once and join nothing, whatever the
#: planner's statistics (a join of the legs with an aggregate of themselves can become a nested
#: loop over the whole ledger). With one negative leg, it is the hub and every positive leg names
#: it; with several, the one positive leg is the hub and every negative leg names it.
EXPECTED = f"""
    SELECT transaction_seq, position, unit, counterparty_account_id AS stored, negatives, positives,
           unit NOT LIKE '{POINTS_UNIT_PREFIX}%' AND negatives > 1 AND positives > 1 AS not_a_star,
           CASE WHEN unit LIKE '{POINTS_UNIT_PREFIX}%' THEN NULL
                WHEN negatives = 1 AND amount > 0 THEN negative_account
                WHEN negatives > 1 AND positives = 1 AND amount < 0 THEN positive_account
           END AS expected
      FROM (SELECT transaction_seq, position, unit, amount, counterparty_account_id,
                   sum(CASE WHEN amount < 0 THEN 1 ELSE 0 END) OVER legs AS negatives,
                   sum(CASE WHEN amount > 0 THEN 1 ELSE 0 END) OVER legs AS positives,
                   max(CASE WHEN amount < 0 THEN account_id END) OVER legs AS negative_account,
                   max(CASE WHEN amount > 0 THEN account_id END) OVER legs AS positive_account
              FROM ledger_entry
            WINDOW legs AS (PARTITION BY transaction_seq, unit)) sides
"""
#: The first leg (by sequence and position) of a money transaction that is not a star, or whose
#: stored counterparty is not the one its legs give (account ids are positive: 0 stands for NULL).
COUNTERPARTY_PROBLEM = text(
    f"""
    SELECT t.seq, t.id, p.position, p.unit, p.negatives, p.positives, p.not_a_star, p.stored, p.expected
      FROM (SELECT * FROM ({EXPECTED}) x
             WHERE x.not_a_star OR coalesce(x.stored, 0) <> coalesce(x.expected, 0)
             ORDER BY x.transaction_seq, x.position
             LIMIT 1) p
      JOIN ledger_transaction t ON t.seq = p.transaction_seq
    """
)
