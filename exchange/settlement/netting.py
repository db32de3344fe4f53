"""Multilateral netting of a period: who owed whom, gross, and one net position per participant.

**Attribution.** Every money transaction is a star, and each of its spoke legs names the account
of its hub, the single leg on the other side (``exchange.ledger.stars``). Each spoke is attributed
wholly to its hub: a spoke leg of amount ``a`` on account ``s`` whose hub is on account ``h`` means
that ``h`` owed ``s`` ``a`` if ``a > 0``, and that ``s`` owed ``h`` ``−a`` if ``a < 0``. There is no
proportion and no rounding: the parts are the legs themselves, so they add up to the whole
exactly. (A spoke on its hub's own account moves money within one account and is left out.)

So a period's obligations are one ``GROUP BY`` of its money legs by (account, counterparty),
summing apart what each group's legs were owed and what they owed: each leg is read once, as the
bare per-account sum of the period reads it. Hub legs, which name no counterparty, group by
account alone and serve the check.

**The check.** From the same groups, closing checks that each account's hub legs moved exactly
the opposite of the spoke legs naming it as their hub. A star whose spokes name its hub passes;
summed over the period, this equality is what makes each participant's net position (from the
obligations) equal to what its legs moved. It catches what rows written around the ledger most
likely get wrong: legs naming no counterparty (a transaction inserted without the column, star or
not: its legs all count as hubs that no spoke names), a spoke naming an account that is not its
transaction's hub, a hub whose spokes do not add up to it — unless such errors in several
transactions cancel out account by account. A transaction that is not a star but whose rows
were forged to name counterparties consistently (two stars in one) leaves every net position
right, and passes. The period's total alone would check nothing: in a balanced ledger the hub
legs always sum to minus the spoke legs. Checking each leg against the legs of its own
transaction means grouping the whole ledger by transaction, which costs more than closing
itself: ``verify_ledger`` (``exchange ledger verify``) does that, and names any of the above;
closing refuses only what it can see for free.

**Positions.** A participant's gross payable is the sum of what it owed each counterparty, its
gross receivable what each owed it; its net position is receivable − payable. Every obligation
adds to one participant what it takes from another, so the net positions sum to zero. Its
opening position is the sum of its net positions of every earlier period.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import BindParameter, bindparam, text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.settlement.errors import SettlementInvariantBroken
from exchange.settlement.participants import settled_accounts

#: A period's money legs by (account, counterparty): what their legs were owed, and what they owed.
BY_COUNTERPARTY = text(
    """
    SELECT account_id, counterparty_account_id,
           sum(CASE WHEN amount > 0 THEN amount ELSE 0 END) AS owed,
           sum(CASE WHEN amount < 0 THEN -amount ELSE 0 END) AS owing
      FROM ledger_entry
     WHERE period = :period AND unit = :unit
     GROUP BY account_id, counterparty_account_id
    """
)

#: The period's spoke legs that move money between the accounts ``:accounts`` (a participant's:
#: the exchange settles through its fee and its breakage account) and another account: their own
#: spokes, and those naming one of them as their hub. (Hub legs name no counterparty and a spoke
#: on its hub's own account moves nothing between accounts: ``<>`` leaves both out.) A statement
#: using it binds ``accounts`` as an expanding parameter (:data:`ACCOUNTS`).
SPOKES_OF_ACCOUNTS = """
    SELECT e.transaction_seq, e.position, e.account_id AS spoke_account, e.counterparty_account_id AS hub_account, e.amount
      FROM ledger_entry e
     WHERE e.period = :period AND e.unit = :unit
       AND (e.account_id IN :accounts OR e.counterparty_account_id IN :accounts)
       AND e.account_id <> e.counterparty_account_id
"""
ACCOUNTS: BindParameter[list[int]] = bindparam("accounts", expanding=True)


@dataclass(frozen=True, slots=True, order=True)
class Obligation:
    """``debtor`` owed ``creditor`` ``amount`` (minor units, > 0) over the period, gross."""

    debtor: str
    creditor: str
    amount: int


@dataclass(frozen=True, slots=True)
class LegGroup:
    """A period's money legs on ``account`` naming ``counterparty`` (None: hub legs), summed:
    ``owed`` what the positive legs were owed, ``owing`` what the negative legs owed (both ≥ 0)."""

    account: int
    counterparty: int | None
    owed: int
    owing: int

    @property
    def moved(self) -> int:
        return self.owed - self.owing


def attribute(groups: Iterable[LegGroup], accounts: Mapping[int, str], period: str, currency: str) -> list[Obligation]:
    """The period's obligations between participants, from its leg groups.

    Refuses (:class:`SettlementInvariantBroken`) groups that fail the check of the module's
    docstring, or a spoke leg between money accounts that are not settlement participants'.
    """
    moved_as_hub: Counter[int] = Counter()
    moved_by_spokes: Counter[int] = Counter()
    owed: Counter[tuple[str, str]] = Counter()
    for group in groups:
        if group.counterparty is None:
            moved_as_hub[group.account] += group.moved
            continue
        moved_by_spokes[group.counterparty] += group.moved
        if group.account == group.counterparty:
            continue
        if unknown := {group.account, group.counterparty} - accounts.keys():
            raise SettlementInvariantBroken(
                f"ledger accounts {sorted(unknown)} hold {currency} but are no settlement participant's"
            )
        spoke, hub = accounts[group.account], accounts[group.counterparty]
        owed[(hub, spoke)] += group.owed
        owed[(spoke, hub)] += group.owing
    _check_hubs(moved_as_hub, moved_by_spokes, accounts, period, currency)
    return sorted(Obligation(debtor, creditor, amount) for (debtor, creditor), amount in owed.items() if amount)


def _check_hubs(
    moved_as_hub: Counter[int], moved_by_spokes: Counter[int], accounts: Mapping[int, str], period: str, currency: str
) -> None:
    """Each account's hub legs moved the opposite of the spoke legs that name it."""
    wrong = [a for a in moved_as_hub.keys() | moved_by_spokes.keys() if moved_as_hub[a] + moved_by_spokes[a]]
    if wrong:
        names = sorted(accounts.get(a, f"ledger account {a}") for a in wrong)
        raise SettlementInvariantBroken(
            f"period {period}: the {currency} hub legs of {', '.join(names)} do not balance the spoke legs "
            "naming them (a transaction that is not a star, or counterparties written around the ledger; "
            "`exchange ledger verify` names the transaction)"
        )


async def obligations(session: AsyncSession, period: str, currency: str) -> list[Obligation]:
    """Who owed whom in ``period``, from its ledger legs by the attribution rule (see :func:`attribute`)."""
    rows = await session.exec(BY_COUNTERPARTY, params={"period": period, "unit": currency})  # type: ignore[call-overload]
    groups = [LegGroup(account, counterparty, int(owed), int(owing)) for account, counterparty, owed, owing in rows]
    return attribute(groups, await settled_accounts(session, currency), period, currency)


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
