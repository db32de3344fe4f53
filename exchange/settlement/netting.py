"""Multilateral netting of a period: who owed whom, gross, and one net position per participant.

**Attribution.** Every money transaction is a star (the ledger refuses any other when posting):
one side of it is a single leg, a *hub*. A negative leg owes, a positive leg is owed. Each leg on
the many side is attributed wholly to the hub: a hub that owes, owes each positive leg its
amount; a hub that is owed, is owed each negative leg's amount. There is no proportion and no
rounding: the parts are the legs themselves, so they add up to the whole exactly.

In SQL this is one pairing of every negative leg with every positive leg of the same transaction,
each pair worth ``least(owed by the negative leg, owed to the positive leg)``: in a star, the hub's
amount is the transaction's whole total, so the least of the two is always the spoke's own
amount. (Pairs of an account with itself, where a transaction has legs of both signs on one
account, only move money within the account and are left out of the obligations.)

**The check.** In a transaction whose two sides both have several legs, the pairs would be worth
more than the transaction moves (take the largest leg on either side: it alone pairs the whole of
the other side, and any second leg on its side adds more). So the pairs of a period are worth
exactly what its negative legs owe if, and only if, every transaction in it is a star; closing
checks that equality and refuses to close otherwise.

**Positions.** A participant's gross payable is the sum of what it owed each counterparty, its
gross receivable what each owed it; its net position is receivable − payable. Every obligation
adds to one participant what it takes from another, so the net positions sum to zero. Its
opening position is the sum of its net positions of every earlier period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.settlement.errors import SettlementInvariantBroken
from exchange.settlement.participants import settled_accounts

#: Every negative leg of a period paired with every positive leg of its transaction, in one unit.
#: The two partial covering indexes on ledger_entry serve each side in transaction order.
PAIRS = """
    SELECT n.transaction_seq, n.account_id AS debtor_account, p.account_id AS creditor_account,
           n.position AS debtor_position, p.position AS creditor_position,
           CASE WHEN -n.amount < p.amount THEN -n.amount ELSE p.amount END AS amount
      FROM ledger_entry n
      JOIN ledger_entry p ON p.transaction_seq = n.transaction_seq
     WHERE n.period = :period AND n.unit = :unit AND n.amount < 0
       AND p.period = :period AND p.unit = :unit AND p.amount > 0
"""

#: Restricts the pairing to the transactions ``first_seq`` to ``last_seq``: a period is paired in
#: several such ranges at once (see ``closing``), each a merge of two ordered index ranges.
IN_RANGE = """
       AND n.transaction_seq BETWEEN :first_seq AND :last_seq AND p.transaction_seq BETWEEN :first_seq AND :last_seq
"""
PAIRED_BY_ACCOUNTS = text(
    f"""
    SELECT pairs.debtor_account, pairs.creditor_account, sum(pairs.amount) AS amount
      FROM ({PAIRS}{IN_RANGE}) pairs
     GROUP BY pairs.debtor_account, pairs.creditor_account
    """
)
OWED_IN_RANGE = text(
    """
    SELECT coalesce(sum(-amount), 0) FROM ledger_entry
     WHERE period = :period AND unit = :unit AND amount < 0 AND transaction_seq BETWEEN :first_seq AND :last_seq
    """
)
SEQ_BOUNDS = text(
    "SELECT min(transaction_seq), max(transaction_seq) FROM ledger_entry WHERE period = :period AND unit = :unit AND amount < 0"
)


@dataclass(frozen=True, slots=True, order=True)
class Obligation:
    """``debtor`` owed ``creditor`` ``amount`` (minor units, > 0) over the period, gross."""

    debtor: str
    creditor: str
    amount: int


@dataclass(frozen=True, slots=True)
class Pairing:
    """What pairing one range of a period's transactions found: the pairs' worth by (debtor
    account, creditor account), and what the range's negative legs owe (for the check)."""

    by_accounts: Mapping[tuple[int, int], int]
    owed: int


async def ranges(session: AsyncSession, period: str, currency: str, parts: int) -> list[tuple[int, int]]:
    """The period's transactions (those with money legs) cut into at most ``parts`` ranges of
    consecutive sequence numbers, as (first, last)."""
    first, last = (await session.exec(SEQ_BOUNDS, params={"period": period, "unit": currency})).one()  # type: ignore[call-overload]
    if first is None:
        return []
    size = -(-(last - first + 1) // parts)
    return [(start, min(start + size - 1, last)) for start in range(first, last + 1, size)]


async def pair(session: AsyncSession, period: str, currency: str, span: tuple[int, int]) -> Pairing:
    """Pair the negative and positive legs of the transactions in ``span`` (first, last)."""
    parameters = {"period": period, "unit": currency, "first_seq": span[0], "last_seq": span[1]}
    rows = await session.exec(PAIRED_BY_ACCOUNTS, params=parameters)  # type: ignore[call-overload]
    by_accounts = {(debtor, creditor): int(amount) for debtor, creditor, amount in rows}
    owed = (await session.exec(OWED_IN_RANGE, params=parameters)).scalar_one()  # type: ignore[call-overload]
    return Pairing(by_accounts, int(owed))


def combine(pairings: Sequence[Pairing], accounts: Mapping[int, str], period: str, currency: str) -> list[Obligation]:
    """The period's obligations between participants, from the pairings of all its ranges.

    Refuses (:class:`SettlementInvariantBroken`) a period holding a transaction that is not a
    star (see the check in the module's docstring), or a leg on a money account that is not a
    settlement participant's.
    """
    owed = sum(pairing.owed for pairing in pairings)
    attributed = sum(amount for pairing in pairings for amount in pairing.by_accounts.values())
    if attributed != owed:
        raise SettlementInvariantBroken(
            f"period {period} holds a {currency} transaction with several legs on both sides: "
            f"its legs owe {owed}, the pairing attributes {attributed}"
        )
    totals: dict[tuple[str, str], int] = {}
    for pairing in pairings:
        for (debtor, creditor), amount in pairing.by_accounts.items():
            if debtor == creditor:
                continue
            if unknown := {debtor, creditor} - accounts.keys():
                raise SettlementInvariantBroken(
                    f"ledger accounts {sorted(unknown)} hold {currency} but are no settlement participant's"
                )
            key = (accounts[debtor], accounts[creditor])
            totals[key] = totals.get(key, 0) + amount
    return sorted(Obligation(debtor, creditor, amount) for (debtor, creditor), amount in totals.items())


async def obligations(session: AsyncSession, period: str, currency: str) -> list[Obligation]:
    """Who owed whom in ``period``, from its ledger transactions by the attribution rule, in one
    unit of work (closing pairs ranges of the period concurrently instead)."""
    pairings = [await pair(session, period, currency, span) for span in await ranges(session, period, currency, 1)]
    return combine(pairings, await settled_accounts(session, currency), period, currency)


#: A closed period's positions, from its obligations and the earlier periods' positions.
INSERT_POSITIONS = text(
    """
    INSERT INTO settlement_position (period, participant, opening, payable, receivable, net)
    SELECT :period, participant, sum(opening), sum(payable), sum(receivable), sum(receivable) - sum(payable)
      FROM (SELECT participant, net AS opening, 0 AS payable, 0 AS receivable
              FROM settlement_position WHERE period < :period
            UNION ALL
            SELECT debtor, 0, amount, 0 FROM settlement_obligation WHERE period = :period
            UNION ALL
            SELECT creditor, 0, 0, amount FROM settlement_obligation WHERE period = :period) figures
     GROUP BY participant
    """
)


@dataclass(frozen=True, slots=True)
class Payments:
    """How many payments settle a period, and how much money they move."""

    count: int
    total: int


@dataclass(frozen=True, slots=True)
class NettingSaving:
    """The payments a period needs without netting, with bilateral netting, and multilateral.

    * gross: every obligation paid as it is;
    * bilateral: each pair of participants pays only the difference of what they owed each other;
    * multilateral: each participant whose net position is not zero pays it (if negative) or is
      paid it (if positive) once, through the coalition's settlement account; the total is what
      the net debtors pay in, equal to what the net creditors are paid out.
    """

    gross: Payments
    bilateral: Payments
    multilateral: Payments

    @classmethod
    def of(cls, obligations: Sequence[Obligation], nets: Mapping[str, int]) -> NettingSaving:
        owed = {(o.debtor, o.creditor): o.amount for o in obligations}
        pairs = {tuple(sorted(key)) for key in owed}
        bilateral = [abs(owed.get((a, b), 0) - owed.get((b, a), 0)) for a, b in pairs]
        return cls(
            gross=Payments(len(owed), sum(owed.values())),
            bilateral=Payments(sum(1 for amount in bilateral if amount), sum(bilateral)),
            multilateral=Payments(sum(1 for net in nets.values() if net), sum(net for net in nets.values() if net > 0)),
        )
