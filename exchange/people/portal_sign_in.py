"""Members signing in to the portal through a partner: the sign-ins under way and the sessions.

The front-channel flow (partners/CONTRACT.md, "Signing members in to the portal"): the portal
sends the browser to the partner's sign-in page with a random ``state`` (kept here only as its
SHA-256, for a few minutes, used once) and its return URL; the partner authenticates the
member and sends the browser back with the state and a signed assertion whose ``nonce`` is the
state. A session records the member and the programs that vouched for them in it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.errors import NotFound
from exchange.people.portal_models import MemberWebSession, PortalSignIn
from exchange.people.sessions import (
    SessionTimeouts,
    close_session_row,
    hash_session_id,
    live_session_row,
    open_session_row,
)

#: How long a member has to sign in at their partner and come back.
SIGN_IN_LIFETIME = timedelta(minutes=10)


class ProgramNotSigningIn(NotFound):
    def __init__(self, program_id: str) -> None:
        super().__init__(f"program {program_id} does not sign members in to the portal", field="program")


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


async def begin_sign_in(session: AsyncSession, program_id: str, session_id: str | None, now: datetime) -> str:
    """A new sign-in through ``program_id`` (by the member of portal session ``session_id``, if
    signed in): its state, for the browser's cookie and the partner's round trip, shown once.
    Sign-ins left unfinished are dropped on the way."""
    await session.exec(delete(PortalSignIn).where(col(PortalSignIn.expires_at) <= now))
    state = secrets.token_urlsafe(32)
    session.add(
        PortalSignIn(
            state_hash=_state_hash(state),
            program_id=program_id,
            session_hash=hash_session_id(session_id) if session_id else None,
            expires_at=now + SIGN_IN_LIFETIME,
        )
    )
    await session.flush()
    return state


async def claim_sign_in(session: AsyncSession, state: str, now: datetime) -> PortalSignIn | None:
    """The live sign-in with ``state``, ended (a state is used once); ``None`` for a state
    never issued, used already or expired."""
    row = await session.get(PortalSignIn, _state_hash(state))
    if row is None:
        return None
    await session.exec(delete(PortalSignIn).where(col(PortalSignIn.state_hash) == row.state_hash))
    return row if row.expires_at > now else None


async def open_member_session(
    session: AsyncSession, member_id: str, program_id: str, now: datetime, timeouts: SessionTimeouts
) -> tuple[str, MemberWebSession]:
    """A new session for ``member_id``, vouched for by ``program_id``: its id (for the cookie,
    shown once) and its row."""
    return await open_session_row(
        session, MemberWebSession, now, timeouts, member_id=member_id, asserted_by=[program_id]
    )


async def live_member_session(
    session: AsyncSession, session_id: str, now: datetime, timeouts: SessionTimeouts
) -> MemberWebSession | None:
    """The session ``session_id`` names if it is not over (noting that it was seen now)."""
    return await live_member_session_by_hash(session, hash_session_id(session_id), now, timeouts)


async def live_member_session_by_hash(
    session: AsyncSession, id_hash: str, now: datetime, timeouts: SessionTimeouts
) -> MemberWebSession | None:
    return await live_session_row(session, MemberWebSession, id_hash, now, timeouts)


async def add_authority(
    session: AsyncSession, row: MemberWebSession, program_id: str, now: datetime, timeouts: SessionTimeouts
) -> tuple[str, MemberWebSession]:
    """``program_id`` vouched for the session's member too: its points may be spent now. The
    session goes on under a new id (and CSRF token), as after any sign-in, and the old id ends:
    a session that gains the power to spend must not be reachable by an id that was seen, or
    planted, before."""
    new_id, renewed = await open_session_row(
        session,
        MemberWebSession,
        now,
        timeouts,
        member_id=row.member_id,
        asserted_by=sorted({*row.asserted_by, program_id}),
    )
    await close_member_session(session, row.id_hash)
    return new_id, renewed


async def close_member_session(session: AsyncSession, id_hash: str) -> None:
    await close_session_row(session, MemberWebSession, id_hash)
