"""Members: who they are to the exchange, and which partner accounts they have linked.

The exchange knows a member by its own id; each partner knows them by their ``member_ref``
there. A partner vouching for a member it has authenticated (a signed assertion) is enough
to create the member and link that account: :func:`resolve_member_from_partner`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Table, bindparam, delete, insert, literal
from sqlalchemy import select as select_columns  # sqlmodel's select() is typed for up to four columns
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.connectors.contract import MEMBER_REF_PATTERN
from exchange.db import dialects
from exchange.db.grouping import grouped, pages_by_parent
from exchange.db.types import UTCDateTime
from exchange.errors import BadUserInput, Forbidden, NotFound
from exchange.members.models import (
    MEMBER_REF_MAX_LENGTH,
    LinkedAccount,
    LinkMethod,
    Member,
)
from exchange.programs.models import CoalitionSettings


class InvalidMemberRef(BadUserInput):
    def __init__(self, reason: str) -> None:
        super().__init__(f"member_ref {reason}", field="memberRef")


class MemberNotFound(NotFound):
    def __init__(self, member_id: str) -> None:
        super().__init__(f"no member has id {member_id!r}", field="id")


class MemberNotLinked(Forbidden):
    """Asked by a partner about a member who has no account at its program.

    Also what a partner hears about an id that does not exist, so that it cannot probe
    which member ids exist elsewhere.
    """

    def __init__(self) -> None:
        super().__init__("no member with this id has an account at your program", field="id")


LINKS: Table = LinkedAccount.__table__  # type: ignore[attr-defined]
_MEMBER_REF = re.compile(MEMBER_REF_PATTERN)


def new_member_id() -> str:
    return f"mbr_{uuid.uuid4().hex}"


def check_member_ref(member_ref: str) -> str:
    """A partner's id for its member, as partners/CONTRACT.md allows it (1 to 128 of
    ``A–Z a–z 0–9 . _ : @ + -``, not ``.`` or ``..`` alone): the connectors send a partner no other."""
    if not member_ref or len(member_ref) > MEMBER_REF_MAX_LENGTH:
        raise InvalidMemberRef(f"must be 1 to {MEMBER_REF_MAX_LENGTH} characters")
    if member_ref in (".", ".."):
        raise InvalidMemberRef(f"cannot be {member_ref} alone, which an address reads as a directory, not a name")
    if not _MEMBER_REF.fullmatch(member_ref):
        raise InvalidMemberRef("must be letters A-Z a-z, digits and . _ : @ + - only")
    return member_ref


async def find_linked_account(session: AsyncSession, program_id: str, member_ref: str) -> LinkedAccount | None:
    statement = select(LinkedAccount).where(
        LinkedAccount.program_id == program_id, LinkedAccount.member_ref == member_ref
    )
    return (await session.exec(statement)).first()


async def resolve_member_from_partner(
    session: AsyncSession,
    program_id: str,
    member_ref: str,
    now: datetime,
    *,
    method: LinkMethod = LinkMethod.ASSERTION,
) -> Member:
    """The member whose account at ``program_id`` is ``member_ref``, created if new.

    The partner vouches for the member, so a new ``(program, member_ref)`` creates a member
    and links that account. Safe under concurrency: when two first requests for the same
    account race, the second's insert yields to the first's link (the unique key decides)
    and its own fresh member row is removed again.
    """
    check_member_ref(member_ref)
    if (account := await find_linked_account(session, program_id, member_ref)) is not None:
        return await get_member(session, account.member_id)
    member_id = new_member_id()
    await session.exec(insert(Member).values(id=member_id, created_at=now))
    linked = await session.exec(
        dialects.insert(session, LinkedAccount)
        .values(
            member_id=member_id,
            program_id=program_id,
            member_ref=member_ref,
            linked_at=now,
            established_by=method.value,
        )
        .on_conflict_do_nothing(index_elements=["program_id", "member_ref"])
        .returning(col(LinkedAccount.member_id))
    )
    if linked.first() is None:
        await session.exec(delete(Member).where(col(Member.id) == member_id))
        winner = await find_linked_account(session, program_id, member_ref)
        assert winner is not None, "the conflicting link must exist"
        member_id = winner.member_id
    else:
        await link_coalition_accounts(session, now, member_id=member_id)
    return await get_member(session, member_id)


async def link_coalition_accounts(session: AsyncSession, now: datetime, *, member_id: str | None = None) -> None:
    """Open the member's account at the coalition point (every member's, without ``member_id``),
    if a point is declared; set-based, and a no-op for accounts that exist.

    The exchange keeps the point itself, so the account needs no partner's word: its
    ``member_ref`` is the member's own id.
    """
    point = (
        select(CoalitionSettings.point_program_id)
        .where(col(CoalitionSettings.point_program_id).is_not(None))
        .scalar_subquery()
    )
    members = select_columns(
        col(Member.id), point, col(Member.id), literal(now, UTCDateTime()), literal(LinkMethod.COALITION.value)
    ).where(point.is_not(None))
    if member_id is not None:
        members = members.where(col(Member.id) == member_id)
    await session.exec(
        dialects.insert(session, LINKS)
        .from_select(["member_id", "program_id", "member_ref", "linked_at", "established_by"], members)
        .on_conflict_do_nothing()
    )


_MEMBER_WITH_ACCOUNTS = (
    select(Member, LinkedAccount)
    .outerjoin(LinkedAccount, col(LinkedAccount.member_id) == col(Member.id))
    .where(Member.id == bindparam("member_id"))
    .order_by(col(LinkedAccount.program_id))
)


async def member_with_accounts(session: AsyncSession, member_id: str) -> tuple[Member, list[LinkedAccount]]:
    """A member and their linked accounts (by program id), in one query."""
    rows = (await session.exec(_MEMBER_WITH_ACCOUNTS, params={"member_id": member_id})).all()
    if not rows:
        raise MemberNotFound(member_id)
    return rows[0][0], [account for _, account in rows if account is not None]


async def get_member(session: AsyncSession, member_id: str) -> Member:
    member = await session.get(Member, member_id)
    if member is None:
        raise MemberNotFound(member_id)
    return member


async def linked_accounts(session: AsyncSession, member_ids: Iterable[str]) -> dict[str, list[LinkedAccount]]:
    """Each member's linked accounts, by program id, in one query."""
    rows = await session.exec(
        select(LinkedAccount)
        .where(col(LinkedAccount.member_id).in_(list(member_ids)))
        .order_by(col(LinkedAccount.member_id), col(LinkedAccount.program_id))
    )
    return grouped(rows, lambda account: account.member_id)


async def get_member_linked_to(
    session: AsyncSession, member_id: str, program_id: str
) -> tuple[Member, list[LinkedAccount]]:
    """A member with their accounts, for a partner: only if linked to ``program_id``."""
    member = await session.get(Member, member_id)
    accounts = (await linked_accounts(session, [member_id])).get(member_id, [])
    if member is None or all(account.program_id != program_id for account in accounts):
        raise MemberNotLinked()
    return member, accounts


async def accounts_at_programs(
    session: AsyncSession, program_ids: Iterable[str], *, first: int, after: str | None = None
) -> dict[str, list[LinkedAccount]]:
    """Each program's linked accounts by ``member_ref``, ``first`` of them after ``after``, in
    one query (each program's page read by index up to its limit: a program's members are
    many, a page few)."""
    if not 1 <= first <= 500:
        raise BadUserInput("first must be between 1 and 500", field="first")
    return await pages_by_parent(
        session,
        LinkedAccount,
        col(LinkedAccount.program_id),
        col(LinkedAccount.member_ref),
        program_ids,
        first=first,
        after=after,
    )


class AccountLinkedElsewhere(BadUserInput):
    def __init__(self) -> None:
        super().__init__("this account is linked to another member of the exchange", field="memberRef")


class AlreadyLinked(BadUserInput):
    def __init__(self, program_id: str, member_ref: str) -> None:
        super().__init__(
            f"you already linked your {program_id} account {member_ref!r}", field="programId", memberRef=member_ref
        )


async def link_account(
    session: AsyncSession,
    member_id: str,
    program_id: str,
    member_ref: str,
    now: datetime,
    *,
    method: LinkMethod,
    holder_name: str | None = None,
) -> LinkedAccount:
    """Link the member's account ``member_ref`` at ``program_id``; the same link again is a no-op.

    A member has one account per program, and an account belongs to one member.
    ``holder_name`` is the member's name as the partner reported it (the risk gates compare it).
    """
    check_member_ref(member_ref)
    await session.exec(
        dialects.insert(session, LinkedAccount)
        .values(
            member_id=member_id,
            program_id=program_id,
            member_ref=member_ref,
            linked_at=now,
            established_by=method.value,
            holder_name=holder_name,
        )
        .on_conflict_do_nothing()
    )
    mine = await session.get(LinkedAccount, (member_id, program_id))
    if mine is not None and mine.member_ref == member_ref:
        return mine
    if mine is not None:
        raise AlreadyLinked(program_id, mine.member_ref)
    raise AccountLinkedElsewhere()


class AccountNotLinked(BadUserInput):
    def __init__(self, program_id: str, field: str) -> None:
        super().__init__(f"link your {program_id} account first (linkAccount)", field=field)
        self.program_id = program_id


async def member_refs_at(session: AsyncSession, member_id: str, fields: dict[str, str]) -> dict[str, str]:
    """The member's ids at the programs ``fields`` names (in one query), by program; a clear error
    naming the program's field (``fields[program]``) for the first one not linked."""
    rows = await session.exec(
        select(LinkedAccount).where(
            LinkedAccount.member_id == member_id, col(LinkedAccount.program_id).in_(list(fields))
        )
    )
    return refs_at(rows, fields)


def refs_at(links: Iterable[LinkedAccount], fields: dict[str, str]) -> dict[str, str]:
    """:func:`member_refs_at` over links already read."""
    refs = {link.program_id: link.member_ref for link in links if link.program_id in fields}
    for program_id, field in fields.items():
        if program_id not in refs:
            raise AccountNotLinked(program_id, field)
    return refs
