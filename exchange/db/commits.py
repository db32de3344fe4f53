"""Work that must happen only once a unit of work has committed.

A unit of work keeps its pending actions in its ``info``; two listeners registered once, on
every session, run them at the commit or drop them at a rollback (a lean unit of work runs
its own: :class:`~exchange.db.direct.LeanUnit`). (Registering a one-shot listener on each
session instead costs about a tenth of a millisecond a time, on every posting.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

_PENDING = "exchange_after_commit"


def after_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Run ``action`` once ``session``'s unit of work commits (never, if it rolls back)."""
    session.info.setdefault(_PENDING, []).append(action)


def run_pending(info: dict[Any, Any]) -> None:
    """Run the actions a unit of work whose ``info`` this is left for its commit, which it made."""
    for action in info.pop(_PENDING, ()):
        action()


@event.listens_for(Session, "after_commit")
def _run_pending(session: Session) -> None:
    run_pending(session.info)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)
