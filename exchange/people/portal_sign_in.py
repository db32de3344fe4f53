"""Members signing in to the portal through a partner: the sign-ins under way and the sessions.

The front-channel flow (partners/CONTRACT.md, "Signing members in to the portal"): the portal
sends the browser to the partner's sign-in page with a random ``state`` and its return URL; the
partner authenticates the member and sends the browser back with the state and a signed
assertion whose ``nonce`` is the state. A session records the member and, for each program that
vouched for them in it, the client whose assertion did; what it may do through the program is
read from that client on every request (:func:`live_authority`).

A sign-in under way is kept by the browser, not the database: a :class:`SignInTicket` in a
cookie, signed by the exchange (HMAC under a key derived from ``EXCHANGE_KEY_ENCRYPTION_SECRET``)
and good for a few minutes, so that anyone may start as many sign-ins as they like without
writing a row. The ticket binds the state to the browser that started it (the state the partner
posts back must be the ticket's); a state is spent once because the assertion that must carry it
as its nonce is (its ``jti`` is recorded), and the browser's ticket is dropped on its return
(by a post that carries its state: any site may post to the return page, and one without the
state leaves the sign-in under way).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import and_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.models import OAuthClient
from exchange.auth.scopes import ROLE_SCOPES, Role, Scope, StoredScopes
from exchange.errors import NotFound
from exchange.members.models import LinkedAccount
from exchange.people.portal_models import MemberWebSession
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


@dataclass(frozen=True)
class SignInTicket:
    """A sign-in sent to a partner's sign-in page and not back yet, as the browser keeps it."""

    state: str
    program_id: str
    #: The portal session (its id's SHA-256) that started the sign-in, if the member was signed
    #: in already: the partner's post back brings no strict cookie, so the ticket remembers it.
    session_hash: str | None
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SignInTickets:
    """Issues and reads :class:`SignInTicket` cookies: ``<payload>.<HMAC-SHA256>``, base64url."""

    def __init__(self, secret: str) -> None:
        self._key = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"coalition-exchange portal sign-in").derive(
            secret.encode()
        )

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, program_id: str, session_id: str | None, now: datetime) -> tuple[str, str]:
        """A new sign-in through ``program_id`` (by the member of portal session ``session_id``,
        if signed in): ``(state, ticket)``, the state for the partner's round trip and the
        ticket for the browser's cookie."""
        state = secrets.token_urlsafe(32)
        content = {
            "state": state,
            "program": program_id,
            "session": hash_session_id(session_id) if session_id else None,
            "expires": int((now + SIGN_IN_LIFETIME).timestamp()),
        }
        payload = _b64(json.dumps(content, separators=(",", ":")).encode())
        return state, f"{payload}.{self._mac(payload)}"

    def read(self, ticket: str, now: datetime) -> SignInTicket | None:
        """The sign-in ``ticket`` holds, if this exchange issued it and it has not expired."""
        payload, _, mac = ticket.partition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        content = json.loads(_unb64(payload))  # the exchange's own writing: its MAC verified
        expires_at = datetime.fromtimestamp(content["expires"], UTC)
        if expires_at <= now:
            return None
        return SignInTicket(content["state"], content["program"], content["session"], expires_at)


async def open_member_session(
    session: AsyncSession, member_id: str, program_id: str, client_id: str, now: datetime, timeouts: SessionTimeouts
) -> tuple[str, MemberWebSession]:
    """A new session for ``member_id``, vouched for by ``program_id`` through its client
    ``client_id`` (the assertion's ``iss``): its id (for the cookie, shown once) and its row."""
    return await open_session_row(
        session,
        MemberWebSession,
        now,
        timeouts,
        member_id=member_id,
        vouchers={program_id: voucher(client_id, now)},
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
    session: AsyncSession,
    row: MemberWebSession,
    program_id: str,
    client_id: str,
    now: datetime,
    timeouts: SessionTimeouts,
) -> tuple[str, MemberWebSession]:
    """``program_id`` vouched for the session's member too, through its client ``client_id``
    (replacing what an earlier sign-in through it recorded): its points may be spent now, if
    that client's member scopes allow. The session goes on under a new id (and CSRF token), as
    after any sign-in, and the old id ends: a session that gains the power to spend must not be
    reachable by an id that was seen, or planted, before."""
    new_id, renewed = await open_session_row(
        session,
        MemberWebSession,
        now,
        timeouts,
        member_id=row.member_id,
        vouchers={**row.vouchers, program_id: voucher(client_id, now)},
    )
    await close_member_session(session, row.id_hash)
    return new_id, renewed


async def close_member_session(session: AsyncSession, id_hash: str) -> None:
    await close_session_row(session, MemberWebSession, id_hash)


# -- what a session may do through each program: read from its clients, live ----------------


def voucher(client_id: str, now: datetime) -> dict[str, str]:
    """What a session keeps of a program's sign-in: the client whose assertion vouched, and when."""
    return {"client_id": client_id, "at": now.isoformat()}


@dataclass(frozen=True, slots=True)
class VouchingClient:
    """A client that vouched for a session's member, as it is now, and when the member's account
    at its program was linked (``None``: it is not linked now)."""

    client: OAuthClient
    linked_at: datetime | None


async def vouching_clients(session: AsyncSession, row: MemberWebSession) -> dict[str, VouchingClient]:
    """The clients that vouched for the session's member, as they are now (by id; one that
    has been deleted is missing), with the member's accounts at their programs: one statement
    for all of the session's programs."""
    client_ids = {entry["client_id"] for entry in row.vouchers.values()}
    found = await session.exec(
        select(OAuthClient, LinkedAccount.linked_at)
        .outerjoin(
            LinkedAccount,
            and_(
                col(LinkedAccount.member_id) == row.member_id,
                col(LinkedAccount.program_id) == col(OAuthClient.program_id),
            ),
        )
        .where(col(OAuthClient.client_id).in_(client_ids))
    )
    return {client.client_id: VouchingClient(client, linked_at) for client, linked_at in found}


def still_vouches(vouching: VouchingClient, vouched_at: datetime) -> bool:
    """Whether a client that vouched for a member at ``vouched_at`` still does, by the rules a
    member token it obtained then lives by (:class:`~exchange.auth.tokens.TokenVerifier`): it
    must not have had its secret reset since (the secret may have leaked; a deleted client,
    revoked, is not found at all), and the member's account at its program must still be linked,
    by the link that stood then (unlinked, through any channel, the program no longer vouches; a
    link made again later does not bring its authority back). A client made after the sign-in
    under the same id is another client and does not vouch either. A sign-in at the very instant
    of a reset stands, as a token issued in the reset's second does."""
    client = vouching.client
    if client.created_at > vouched_at:
        return False
    if vouching.linked_at is None or vouching.linked_at > vouched_at:
        return False
    return client.secret_set_at is None or client.secret_set_at <= vouched_at


def live_authority(row: MemberWebSession, clients: Mapping[str, VouchingClient]) -> dict[str, frozenset[Scope]]:
    """What the session may do now through each program that vouched for its member: what the
    member tokens of the client that vouched may carry now (its member scopes, read on each
    request: narrowed to ``member:read``, the session only reads through it from the next page
    on; widened back, it writes again). A program whose client no longer vouches
    (:func:`still_vouches`) is left out: the session no longer holds its authority at all."""
    authority: dict[str, frozenset[Scope]] = {}
    for program_id, entry in row.vouchers.items():
        vouching = clients.get(entry["client_id"])
        if vouching is not None and still_vouches(vouching, datetime.fromisoformat(entry["at"])):
            authority[program_id] = frozenset(StoredScopes(vouching.client.member_scope)) & ROLE_SCOPES[Role.MEMBER]
    return authority
