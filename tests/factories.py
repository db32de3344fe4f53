"""Factories for rows that tests need as given (members and their linked accounts)."""

from __future__ import annotations

import uuid
from datetime import datetime

from exchange.db.database import Database
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
