"""Where the ledger has a partner's references in periods other than the one reconciled.

A line of a partner's file that the ledger lacks in its period (``MISSING_IN_LEDGER``) is
often a late item: the ledger posted it into the next period still open, or an earlier one.
The break report tells the partner to move such a line to that period's records, and
resolving the break by an adjustment is refused: the ledger has the item already, so an
adjustment would count it twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import bindparam, text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.money import Currency
from exchange.settlement.break_kinds import BreakKind
from exchange.settlement.participants import settled_accounts

#: The periods in which the ledger has each of ``references`` on one of ``accounts``.
_PERIODS_OF_REFERENCES = text(
    """
    SELECT DISTINCT t.reference, t.period
      FROM ledger_transaction t JOIN ledger_entry e ON e.transaction_seq = t.seq AND e.period = t.period
     WHERE t.reference IN :references AND e.account_id IN :accounts
    """
).bindparams(bindparam("references", expanding=True), bindparam("accounts", expanding=True))


async def ledger_periods(
    session: AsyncSession, *, currency: Currency, partner: str, references: Iterable[str]
) -> dict[str, list[str]]:
    """The periods in which the ledger has each of ``references`` for ``partner`` (on one of its
    own accounts, so that no other partner's reference is revealed), in order; a reference it
    has in none is absent."""
    wanted = sorted(set(references))
    if not wanted:
        return {}
    accounts = sorted(
        account for account, name in (await settled_accounts(session, currency.code)).items() if name == partner
    )
    if not accounts:
        return {}
    rows = await session.exec(  # type: ignore[call-overload]
        _PERIODS_OF_REFERENCES, params={"references": wanted, "accounts": accounts}
    )
    found: dict[str, list[str]] = {}
    for reference, period in sorted(rows.all()):
        found.setdefault(reference, []).append(period)
    return found


def elsewhere(kind: str, reference: str, period: str, periods: Mapping[str, Sequence[str]]) -> list[str]:
    """The periods other than ``period`` in which the ledger has ``reference``, of a break of
    ``kind`` that is a line the ledger lacks in ``period`` (``periods``: as
    :func:`ledger_periods` found them); none for a break of another kind."""
    if kind != BreakKind.MISSING_IN_LEDGER:
        return []
    return [other for other in periods.get(reference, ()) if other != period]
