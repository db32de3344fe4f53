"""Who takes part in settlement: every program's clearing account (the coalition point's too), and
the exchange's fee and breakage accounts.

A participant is named by its program id, or :data:`EXCHANGE` for the exchange itself (program
ids are lowercase, so the name cannot clash). The exchange takes part in netting like any
partner: it is owed the fees it earned, so that the net positions of all participants sum to
exactly zero. In a partner's statement, the exchange is the counterparty of its fee lines. The
exchange also keeps the value of expired coalition points when it keeps breakage
(``coalition-breakage``): it settles as the same participant.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.ledger.accounts import AccountKind, AccountRef, ChartOfAccounts
from exchange.ledger.models import LedgerAccount

EXCHANGE = "EXCHANGE"
SETTLED_KINDS = (AccountKind.PARTNER_CLEARING, AccountKind.EXCHANGE_FEES, AccountKind.COALITION_BREAKAGE)
_EXCHANGE_KINDS = (AccountKind.EXCHANGE_FEES, AccountKind.COALITION_BREAKAGE)


def account_of(chart: ChartOfAccounts, participant: str) -> AccountRef:
    """The ledger account a participant settles through."""
    return chart.fees() if participant == EXCHANGE else chart.clearing(participant)


def participant_of(kind: str, program_id: str | None) -> str:
    return EXCHANGE if kind in _EXCHANGE_KINDS else str(program_id)


async def settled_accounts(session: AsyncSession, currency: str) -> Mapping[int, str]:
    """Every account that settles in ``currency``, by account id, with its participant."""
    rows = await session.exec(
        select(LedgerAccount.id, LedgerAccount.kind, LedgerAccount.program_id).where(
            col(LedgerAccount.unit) == currency, col(LedgerAccount.kind).in_(SETTLED_KINDS)
        )
    )
    accounts: dict[int, str] = {}
    for account_id, kind, program_id in rows:
        assert account_id is not None
        accounts[account_id] = participant_of(kind, program_id)
    return accounts
