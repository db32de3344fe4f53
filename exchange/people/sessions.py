"""Server-side sessions of signed-in people.

The browser holds a random session id (256 bits) in a cookie; the table holds its SHA-256, so
neither a copy of the table nor its backups can be replayed as cookies. A session ends at its
absolute expiry, after ``idle`` without a request, or when its person signs out.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, or_, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.principal import Principal
from exchange.auth.scopes import ROLE_SCOPES, Role
from exchange.people.models import Person, WebSession
from exchange.people.portal_models import MemberWebSession

#: The most often a session's ``last_seen_at`` is written: a write per request would be dear,
#: and the idle timeout need not be kept to the second.
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionTimeouts:
    idle: timedelta
    lifetime: timedelta

    @property
    def touch_interval(self) -> timedelta:
        return min(TOUCH_INTERVAL, self.idle / 10)


#: A browser session's row: a person's in the console, a member's in the portal.
SessionRow = TypeVar("SessionRow", WebSession, MemberWebSession)


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def is_over(row: WebSession | MemberWebSession, now: datetime, timeouts: SessionTimeouts) -> bool:
    return now >= row.expires_at or now - row.last_seen_at >= timeouts.idle


def principal_for(row: WebSession) -> Principal:
    """The principal a session acts as: its person's role (with all the role's scopes) and
    program. ``client_id`` is what services record as the actor: ``console:<username>``."""
    role = Role(row.role)
    return Principal(
        role=role,
        subject=row.username,
        client_id=f"console:{row.username}",
        scopes=ROLE_SCOPES[role],
        token_id=row.id_hash,
        expires_at=row.expires_at,
        program_id=row.program_id,
    )


async def open_session(
    session: AsyncSession, person: Person, now: datetime, timeouts: SessionTimeouts
) -> tuple[str, WebSession]:
    """A new session for ``person``: its id (for the cookie, shown once) and its row."""
    return await open_session_row(
        session, WebSession, now, timeouts, username=person.username, role=person.role, program_id=person.program_id
    )


async def live_session(
    session: AsyncSession, session_id: str, now: datetime, timeouts: SessionTimeouts
) -> WebSession | None:
    """The session ``session_id`` names if it is not over (noting that it was seen now)."""
    return await live_session_row(session, WebSession, hash_session_id(session_id), now, timeouts)


async def close_session(session: AsyncSession, session_id: str) -> None:
    await close_session_row(session, WebSession, hash_session_id(session_id))


# -- what a person's (console) and a member's (portal) sessions have in common ----------


async def open_session_row(
    session: AsyncSession, model: type[SessionRow], now: datetime, timeouts: SessionTimeouts, **owner: Any
) -> tuple[str, SessionRow]:
    """A new session of ``model`` for its ``owner`` columns: its id (for the cookie, shown
    once) and its row. Sessions of ``model`` that are over, anybody's, are deleted on the way,
    so the table holds live ones."""
    await session.exec(
        delete(model).where(or_(col(model.expires_at) <= now, col(model.last_seen_at) <= now - timeouts.idle))
    )
    session_id = secrets.token_urlsafe(32)
    row = model(
        id_hash=hash_session_id(session_id),
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timeouts.lifetime,
        **owner,
    )
    session.add(row)
    await session.flush()
    return session_id, row


async def live_session_row(
    session: AsyncSession, model: type[SessionRow], id_hash: str, now: datetime, timeouts: SessionTimeouts
) -> SessionRow | None:
    """The session of ``model`` whose id hashes to ``id_hash``, if it is not over (noting that
    it was seen now; one that is over is deleted)."""
    row = await session.get(model, id_hash)
    if row is None:
        return None
    if is_over(row, now, timeouts):
        await close_session_row(session, model, id_hash)
        return None
    if now - row.last_seen_at >= timeouts.touch_interval:
        await session.exec(update(model).where(col(model.id_hash) == id_hash).values(last_seen_at=now))
    return row


async def close_session_row(session: AsyncSession, model: type[SessionRow], id_hash: str) -> None:
    await session.exec(delete(model).where(col(model.id_hash) == id_hash))
