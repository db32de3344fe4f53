"""Unlinking a member's account at a program: the link goes, the records stay.

The rules, in the order they are checked (a refusal changes nothing):

- Only the member's own account, named by program and ``member_ref``; any other — another
  member's, one that never existed — is not found alike, so nobody learns whose accounts are
  linked by trying.
- An account unlinked already (the member's link to it ended, and it is not linked again) is
  answered with that unlink, saying so: unlinking is idempotent.
- The coalition point's account is the exchange's own for every member: it stays
  (``COALITION_ACCOUNT``).
- The account of a program the caller signed in through stays while that sign-in lasts: that
  partner vouches for the member in it, and a member must keep an account to sign in with
  (``SIGNED_IN_THROUGH``).
- An account a saga is still moving points or tiers in — a conversion from or into it, a
  redemption paid with it, a status match from or into it, whose saga has a step left (pending,
  held for review, in doubt, reversing, updating) — stays until the saga is done
  (``SAGA_IN_PROGRESS``): its member should see where it ends while the account is theirs.

Unlinking records the link in ``unlinked_account``, deletes it, revokes the member's unused
consents to debit the program (:func:`exchange.members.consents.revoke`: none outlives the
account it was given for, to debit one linked there next), and moves both of the member's
activity markers in the same unit of work, so the federated view and its caches (keyed by
member and program, not by account) drop it at once and a later link asks the partner afresh.
Sagas keep the account they used on their own rows, so the ledger and every history keep every
past movement. The link row is locked first (``FOR UPDATE``): a conversion or a redemption
records from the account under a share lock on it, and a status match locks both
accounts it matches from and into, so an unlink and any of them take turns, and the one that comes second sees what
the first left (the saga, or no account).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import and_, or_, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.conversions.models import Conversion
from exchange.errors import ErrorCode, ExchangeError, NotFound
from exchange.members import consents
from exchange.members.models import LinkedAccount, LinkMethod, Member, UnlinkedAccount
from exchange.rewards.models import Redemption
from exchange.sagas.state import DONE
from exchange.tiers.models import StatusMatch


class Rule(StrEnum):
    """Which rule refused an unlink (``extensions.rule``)."""

    COALITION_ACCOUNT = "COALITION_ACCOUNT"
    SIGNED_IN_THROUGH = "SIGNED_IN_THROUGH"
    SAGA_IN_PROGRESS = "SAGA_IN_PROGRESS"


class UnlinkRefused(ExchangeError):
    """The account stays linked, for the reason :attr:`rule` names."""

    code = ErrorCode.UNLINK_REFUSED

    def __init__(self, message: str, rule: Rule, **details: str) -> None:
        super().__init__(message, field="programId", rule=rule.value, **details)
        self.rule = rule


class LinkNotFound(NotFound):
    def __init__(self, program_id: str, member_ref: str) -> None:
        super().__init__(f"you have no account {member_ref!r} at {program_id} to unlink", field="memberRef")


@dataclass(frozen=True, slots=True)
class Unlinked:
    """The unlink that ended the link, and whether it was made before this request."""

    record: UnlinkedAccount
    already: bool


@dataclass(frozen=True, slots=True)
class _Saga:
    """A saga table, as this rule reads it: its rows that move points or tiers at an account."""

    kind: str
    model: type[SQLModel]
    accounts: tuple[tuple[str, str], ...]
    """(program column, member_ref column) of each account a row may touch."""

    def touching(self, program_id: str, member_ref: str) -> ColumnElement[bool]:
        table = self.model.__table__  # type: ignore[attr-defined]
        return or_(
            *(and_(table.c[program] == program_id, table.c[ref] == member_ref) for program, ref in self.accounts)
        )


_SAGAS = (
    _Saga("conversion", Conversion, (("from_program", "source_ref"), ("to_program", "target_ref"))),
    _Saga("redemption", Redemption, (("paying_program", "paying_ref"),)),
    _Saga("status match", StatusMatch, (("from_program", "source_ref"), ("to_program", "target_ref"))),
)


async def unlink(
    session: AsyncSession,
    member_id: str,
    program_id: str,
    member_ref: str,
    now: datetime,
    *,
    signed_in_through: Collection[str],
) -> Unlinked:
    """Unlink the member's account ``member_ref`` at ``program_id`` by the module's rules, in the
    caller's unit of work; ``signed_in_through`` are the programs that vouch for the member in
    the caller's sign-in."""
    link = (
        await session.exec(
            select(LinkedAccount)
            .where(LinkedAccount.member_id == member_id, LinkedAccount.program_id == program_id)
            .with_for_update()
        )
    ).first()
    if link is None or link.member_ref != member_ref:
        return Unlinked(await _last_unlink(session, member_id, program_id, member_ref), already=True)
    await _check(session, link, signed_in_through)
    record = UnlinkedAccount(
        id=str(uuid.uuid4()),
        member_id=member_id,
        program_id=program_id,
        member_ref=member_ref,
        linked_at=link.linked_at,
        established_by=link.established_by,
        holder_name=link.holder_name,
        unlinked_at=now,
    )
    session.add(record)
    await session.delete(link)
    await consents.revoke(session, member_id=member_id, program=program_id, now=now)
    await session.exec(
        update(Member)
        .where(col(Member.id) == member_id)
        .values(activity=col(Member.activity) + 1, tier_activity=col(Member.tier_activity) + 1)
    )
    return Unlinked(record, already=False)


async def _last_unlink(session: AsyncSession, member_id: str, program_id: str, member_ref: str) -> UnlinkedAccount:
    """The member's latest unlink of the account (it is not linked to them now)."""
    record = (
        await session.exec(
            select(UnlinkedAccount)
            .where(
                UnlinkedAccount.member_id == member_id,
                UnlinkedAccount.program_id == program_id,
                UnlinkedAccount.member_ref == member_ref,
            )
            .order_by(col(UnlinkedAccount.unlinked_at).desc())
            .limit(1)
        )
    ).first()
    if record is None:
        raise LinkNotFound(program_id, member_ref)
    return record


def standing_rule(link: LinkedAccount, signed_in_through: Collection[str]) -> Rule | None:
    """The rule that keeps ``link`` linked whatever its sagas (``None``: none does): what a page
    knows before anyone asks to unlink."""
    if link.established_by == LinkMethod.COALITION:
        return Rule.COALITION_ACCOUNT
    if link.program_id in signed_in_through:
        return Rule.SIGNED_IN_THROUGH
    return None


async def _check(session: AsyncSession, link: LinkedAccount, signed_in_through: Collection[str]) -> None:
    rule = standing_rule(link, signed_in_through)
    if rule is Rule.COALITION_ACCOUNT:
        raise UnlinkRefused("your account at the coalition point is the exchange's own and stays linked", rule)
    if rule is Rule.SIGNED_IN_THROUGH:
        raise UnlinkRefused(
            f"you signed in through {link.program_id}, so its account stays linked: sign in through another "
            "of your programs to unlink it",
            rule,
        )
    for saga in _SAGAS:
        table = saga.model.__table__  # type: ignore[attr-defined]
        unfinished = (
            await session.exec(
                select(table.c.id)
                .where(
                    table.c.member_id == link.member_id,
                    table.c.step != DONE,
                    saga.touching(link.program_id, link.member_ref),
                )
                .order_by(table.c.created_at)
                .limit(1)
            )
        ).first()
        if unfinished is not None:
            raise UnlinkRefused(
                f"your {saga.kind} {unfinished} is still in progress at this account: unlink it once that "
                f"{saga.kind} has finished",
                Rule.SAGA_IN_PROGRESS,
                saga=saga.kind,
                sagaId=str(unfinished),
            )
