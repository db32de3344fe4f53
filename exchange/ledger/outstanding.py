"""Each program's outstanding points at the end of each closed period: the net points the
exchange moved into its members' accounts (``member-points``) over that period and every
earlier one, recorded by the closing (``outstanding_points``), so that a later period's figure
is the latest record plus the entries of the periods since, never every entry from the
beginning. Nothing more is posted into a closed period, so a record stays true.

Archived periods' entries have left the ledger (``exchange ledger archive``) and the ledger
keeps what they moved only all together (``ledger_archived_balance``): a figure is known only
when the archived periods all lie before the period or all after it; the caller checks.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import dialects
from exchange.ledger.accounts import AccountKind
from exchange.ledger.models import OutstandingPoints

#: The net points moved into the account after the period ``:since`` (``''``: from the
#: beginning), up to the period's end, as the ledger still holds them: archived periods'
#: entries are not among them.
_HELD = text(
    "SELECT coalesce(sum(e.amount), 0) FROM ledger_entry e "
    "WHERE e.account_id = :account AND e.period <= :period AND e.period > :since"
)
#: The program's outstanding points recorded at the latest closing up to the period.
_RECORDED = text(
    "SELECT period, points FROM outstanding_points WHERE program_id = :program AND period <= :period "
    "ORDER BY period DESC LIMIT 1"
)
#: What the archived periods' entries moved on an account, all of them together.
_ARCHIVED_MOVED = text("SELECT coalesce(sum(balance), 0) FROM ledger_archived_balance WHERE account_id = :account")
_ARCHIVED_PERIODS = text("SELECT period FROM ledger_close_anchor WHERE archived_at IS NOT NULL ORDER BY period")
_MEMBER_POINTS_ACCOUNTS = text(f"SELECT program_id, id FROM ledger_account WHERE kind = '{AccountKind.MEMBER_POINTS}'")


async def archived_periods(session: AsyncSession) -> list[str]:
    """The periods whose entries have left the ledger, in order."""
    return list((await session.exec(_ARCHIVED_PERIODS)).scalars().all())  # type: ignore[call-overload]


def known_at(period: str, archived: Sequence[str]) -> bool:
    """Whether what was outstanding at ``period``'s end can be known: not with archived periods
    both before it and after it."""
    return not (any(p < period for p in archived) and any(p > period for p in archived))


async def held_through(
    session: AsyncSession, program_id: str, account: int, period: str, archived: Sequence[str]
) -> int:
    """The net points moved into ``account`` (``program_id``'s ``member-points``) up to
    ``period``'s end, which ``archived`` (:func:`archived_periods`) lets be known (:func:`known_at`):
    the latest record up to it and the ledger's entries since; before any record, the entries
    from the beginning and what the archived periods, all before it, moved.

    A record holds the archived periods before it; one archived after it (archived before the
    records were kept) is counted only by the entries from the beginning, so that record is
    passed over."""
    recorded = (await session.exec(_RECORDED, params={"program": program_id, "period": period})).first()  # type: ignore[call-overload]
    if recorded is not None and not any(recorded.period < p <= period for p in archived):
        since, base = recorded.period, int(recorded.points)
    else:
        since, base = "", 0
        if any(p < period for p in archived):
            base = int((await session.exec(_ARCHIVED_MOVED, params={"account": account})).scalar_one())  # type: ignore[call-overload]
    held = await session.exec(_HELD, params={"account": account, "period": period, "since": since})  # type: ignore[call-overload]
    return base + int(held.scalar_one())


async def record_outstanding(session: AsyncSession, period: str) -> None:
    """Record every program's outstanding points at the end of ``period``, at its closing (once:
    a closing finished again records nothing new). When archived periods lie on both sides of it
    (it is not known) nothing is recorded, and later figures sum the entries from the beginning."""
    archived = await archived_periods(session)
    if not known_at(period, archived):
        return
    accounts = (await session.exec(_MEMBER_POINTS_ACCOUNTS)).all()  # type: ignore[call-overload]
    for program_id, account in accounts:  # one per program
        points = await held_through(session, program_id, account, period, archived)
        await session.exec(
            dialects.insert(session, OutstandingPoints.__table__)  # type: ignore[attr-defined]
            .values(program_id=program_id, period=period, points=points)
            .on_conflict_do_nothing()
        )
