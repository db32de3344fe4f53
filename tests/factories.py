"""Factories for rows that tests need as given (members and their linked accounts, the
ledger transactions of conversions)."""

from __future__ import annotations

import uuid
from datetime import datetime

from exchange.conversions.clearing import conversion_transaction
from exchange.db.database import Database
from exchange.ledger.accounts import ChartOfAccounts
from exchange.ledger.posting import TransactionRequest
from exchange.members.models import LinkedAccount, LinkMethod, Member


async def member_with_accounts(
    db: Database, accounts: dict[str, str], now: datetime, *, member_id: str | None = None
) -> str:
    """A new member (``member_id``, or a fresh id) linked to ``accounts`` (program id → member
    ref at that program); its id."""
    member_id = member_id or f"mbr_{uuid.uuid4().hex}"
    async with db.transaction() as session:
        session.add(Member(id=member_id, created_at=now))
        await session.flush()
        session.add_all(
            LinkedAccount(
                member_id=member_id,
                program_id=program_id,
                member_ref=member_ref,
                linked_at=now,
                established_by=LinkMethod.ASSERTION,
            )
            for program_id, member_ref in accounts.items()
        )
    return member_id


def conversion(
    name: str,
    source: str,
    target: str,
    value: int,
    fee: int = 0,
    *,
    points: tuple[int, int] | None = None,
    at: datetime,
) -> TransactionRequest:
    """What a completed conversion ``name`` posts (id ``t-<name>``, in TWD): ``source`` owes
    ``value`` cents, ``target`` is owed ``value - fee``, the exchange earns ``fee``;
    ``points`` (in, out) when they are not both ``value``."""
    points_in, points_out = (value, value) if points is None else points
    return conversion_transaction(
        chart=ChartOfAccounts("TWD"),
        transaction_id=f"t-{name}",
        conversion_id=name,
        source=source,
        target=target,
        points_in=points_in,
        points_out=points_out,
        money_value_minor=value,
        fee_minor=fee,
        effective_at=at,
    )
