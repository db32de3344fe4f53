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

PAIRED_BY_ACCOUNTS = text(
    f"""
    SELECT pairs.debtor_account, pairs.creditor_account, sum(pairs.amount) AS amount
      FROM ({PAIRS}) pairs
     GROUP BY pairs.debtor_account, pairs.creditor_account
    """
)
OWED_IN_PERIOD = text(
    "SELECT coalesce(sum(-amount), 0) FROM ledger_entry WHERE period = :period AND unit = :unit AND amount < 0"
)


@dataclass(frozen=True, slots=True, order=True)
class Obligation:
    """``debtor`` owed ``creditor`` ``amount`` (minor units, > 0) over the period, gross."""

    debtor: str
    creditor: str
    amount: int


async def obligations(session: AsyncSession, period: str, currency: str) -> list[Obligation]:
    """Who owed whom in ``period``, computed from its ledger transactions by the attribution rule.

    Refuses (:class:`SettlementInvariantBroken`) a period holding a transaction that is not a
    star, or a leg on a money account that is not a settlement participant's.
    """
    parameters = {"period": period, "unit": currency}
    accounts = await settled_accounts(session, currency)
    paired: dict[tuple[str, str], int] = {}
    paired_total = 0
    for debtor_account, creditor_account, amount in await session.exec(PAIRED_BY_ACCOUNTS, params=parameters):  # type: ignore[call-overload]
        paired_total += int(amount)
        if debtor_account == creditor_account:
            continue
        unknown = {debtor_account, creditor_account} - accounts.keys()
        if unknown:
            raise SettlementInvariantBroken(
                f"ledger accounts {sorted(unknown)} hold {currency} but are no settlement participant's"
            )
        key = (accounts[debtor_account], accounts[creditor_account])
        paired[key] = paired.get(key, 0) + int(amount)
    owed = int((await session.exec(OWED_IN_PERIOD, params=parameters)).scalar_one())  # type: ignore[call-overload]
    if paired_total != owed:
        raise SettlementInvariantBroken(
            f"period {period} holds a {currency} transaction with several legs on both sides: "
            f"its legs owe {owed}, the pairing attributes {paired_total}"
        )
    return sorted(Obligation(debtor, creditor, amount) for (debtor, creditor), amount in paired.items())


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
