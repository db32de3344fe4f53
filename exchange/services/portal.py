"""Members signing in to the portal through their partners, and their portal sessions.

The rules are in :mod:`exchange.people.portal_sign_in`; the assertion is verified by the very
code the JWT-bearer grant uses (:func:`exchange.auth.assertions.accept_assertion`), with the
portal's return URL as its audience, so an assertion made for one cannot be spent at the other.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlencode

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth import assertions, clients
from exchange.auth.errors import AssertionRejected
from exchange.auth.presented import unverified_issuer
from exchange.auth.principal import Principal
from exchange.auth.scopes import Role, Scope
from exchange.clock import Clock
from exchange.connectors.registry import ConnectorRegistry
from exchange.db.database import Database
from exchange.errors import BadUserInput
from exchange.members import service as members
from exchange.people import portal_sign_in
from exchange.people.portal_models import MemberWebSession
from exchange.people.sessions import SessionTimeouts, hash_session_id
from exchange.programs.catalog import CatalogCache
from exchange.programs.models import Program
from exchange.services.people import Opened, SignedIn

logger = logging.getLogger("exchange.portal")

#: Where partners send members back to, under the exchange's public address.
RETURN_PATH = "/portal/sign-in/return"
#: What a portal session's principal names as its client (members' requests record it).
PORTAL_CLIENT = "portal"


class SignInProblem(StrEnum):
    """Why a member coming back from their partner was not signed in."""

    #: The state is missing, not this browser's, used already or expired.
    STATE = "state"
    #: The partner sent no assertion (the member cancelled, or the partner said why).
    NO_ASSERTION = "no-assertion"
    #: The assertion does not verify, or is not the partner's the sign-in went to.
    ASSERTION = "assertion"


@dataclass(frozen=True)
class SignInFailed:
    problem: SignInProblem


@dataclass(frozen=True)
class SignInStarted:
    """Send the browser to ``url``; keep ``ticket`` in its cookie until it comes back."""

    ticket: str
    url: str


@dataclass(frozen=True)
class Joined:
    """The member signed in already, now vouched for by one more program: the same session,
    with its authorities kept, under the new ``session_id`` (for the cookie)."""

    session_id: str
    signed_in: SignedIn


SignInOutcome = Opened | Joined | SignInFailed


def member_principal(row: MemberWebSession, authority: Mapping[str, frozenset[Scope]]) -> Principal:
    """The principal a portal session acts as: a member token's, without an ``asserted_by``
    (each debit names the program it spends, which must be one of the session's), holding what
    any program that vouches for the member now (``authority``) lets its members' tokens hold; a
    debit of a program's points acts with that program's own
    (:func:`exchange.web.portal.members.acting_for`). A session that may write holds
    ``member:coalition`` too: the coalition point is the exchange's, and the portal is the
    member at the exchange itself (docs/COALITION.md)."""
    scopes: frozenset[Scope] = frozenset().union(*authority.values())
    if Scope.MEMBER_WRITE in scopes:
        scopes |= {Scope.MEMBER_COALITION}
    return Principal(
        role=Role.MEMBER,
        subject=row.member_id,
        client_id=PORTAL_CLIENT,
        scopes=scopes,
        token_id=row.id_hash,
        expires_at=row.expires_at,
        member_id=row.member_id,
    )


async def signed_in(session: AsyncSession, row: MemberWebSession) -> SignedIn | None:
    """What the live session ``row`` may do now, read from the clients that vouched for its
    member (:func:`exchange.people.portal_sign_in.live_authority`); ``None``, and the session
    ended, if none of them vouches any more (all deleted, their secrets reset, or the member's
    accounts at their programs unlinked since): it is signed out, and its member signs in again
    through a partner."""
    authority = portal_sign_in.live_authority(row, await portal_sign_in.vouching_clients(session, row))
    if not authority:
        await portal_sign_in.close_member_session(session, row.id_hash)
        return None
    return SignedIn(member_principal(row, authority), row.csrf_token, authority)


class PortalSignInService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        catalog: CatalogCache,
        connectors: ConnectorRegistry,
        exchange_url: str,
        timeouts: SessionTimeouts,
        tickets: portal_sign_in.SignInTickets,
    ) -> None:
        self._db = db
        self._tickets = tickets
        self._clock = clock
        self._catalog = catalog
        self._connectors = connectors
        self.return_url = exchange_url.rstrip("/") + RETURN_PATH
        self.timeouts = timeouts

    async def partners(self) -> list[Program]:
        """The programs whose partners sign members in to the portal, by name."""
        catalog = await self._catalog.get()
        found = [program for program in catalog.programs.values() if self._connectors.sign_in_url(program)]
        return sorted(found, key=lambda program: program.name)

    async def start(self, program_id: str, session_id: str | None, *, language: str | None = None) -> SignInStarted:
        """A sign-in through ``program_id``'s partner (one that signs members in, else not
        found), by the member of portal session ``session_id`` if they are signed in already;
        ``language``: the BCP 47 tag of the page the member came from, passed on as OpenID
        Connect's ``ui_locales`` so that the partner's page can speak it too."""
        program = (await self._catalog.get()).program(program_id, field="program")
        url = self._connectors.sign_in_url(program)
        if url is None:
            raise portal_sign_in.ProgramNotSigningIn(program_id)
        state, ticket = self._tickets.issue(program.id, session_id, self._clock.now())  # writes nothing
        query = urlencode(
            {"state": state, "redirect_uri": self.return_url} | ({"ui_locales": language} if language else {})
        )
        return SignInStarted(ticket=ticket, url=f"{url}{'&' if '?' in url else '?'}{query}")

    async def finish(self, *, state: str, ticket: str | None, assertion: str | None) -> SignInOutcome:
        """The member back from their partner with ``state`` (which must be the one the
        ``ticket`` of this browser's cookie holds) and the partner's ``assertion``.

        A member who started from a live session and comes back as its member keeps that
        session, with the program's authority added, under a new id (:class:`Joined`); anyone
        else gets a new session (:class:`Opened`).
        """
        now = self._clock.now()
        started = self._tickets.read(ticket, now) if ticket else None
        if not state or started is None or not hmac.compare_digest(state.encode(), started.state.encode()):
            return SignInFailed(SignInProblem.STATE)
        if not assertion:
            return SignInFailed(SignInProblem.NO_ASSERTION)
        program_id = started.program_id
        issuer = unverified_issuer(assertion)
        try:
            async with self._db.transaction() as session:
                client = await clients.get_client(session, issuer) if issuer else None
                if client is None or client.program_id != program_id:
                    raise AssertionRejected(f"the assertion's iss is not the client of {program_id}")
                claims = await assertions.accept_assertion(
                    session,
                    assertion,
                    issuer=client.client_id,
                    program_id=program_id,
                    audiences=[self.return_url],
                    now=now,
                )
                nonce = claims.get("nonce")
                if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), state.encode()):
                    raise AssertionRejected("the assertion's nonce is not this sign-in's state")
                member = await members.resolve_member_from_partner(session, program_id, claims["sub"], now)
                current = (
                    await portal_sign_in.live_member_session_by_hash(session, started.session_hash, now, self.timeouts)
                    if started.session_hash
                    else None
                )
                outcome: type[Opened | Joined]
                if current is not None and current.member_id == member.id:
                    outcome = Joined
                    new_id, row = await portal_sign_in.add_authority(
                        session, current, program_id, client.client_id, now, self.timeouts
                    )
                else:
                    outcome = Opened
                    if current is not None:
                        await portal_sign_in.close_member_session(session, current.id_hash)
                    new_id, row = await portal_sign_in.open_member_session(
                        session, member.id, program_id, client.client_id, now, self.timeouts
                    )
                live = await signed_in(session, row)
                if live is None:  # the client was deleted, or its secret reset, as the member came back
                    raise AssertionRejected(f"the client {client.client_id} no longer vouches for members")
                return outcome(session_id=new_id, signed_in=live)
        except BadUserInput as rejected:
            logger.warning("portal sign-in through %s refused: %s", program_id, rejected.message)
            return SignInFailed(SignInProblem.ASSERTION)

    async def resume(self, session_id: str) -> SignedIn | None:
        """The portal session a cookie names, if it is live and a client that vouched for its
        member still does, with what those clients let it do now (:func:`signed_in`)."""
        async with self._db.transaction() as session:
            row = await portal_sign_in.live_member_session(session, session_id, self._clock.now(), self.timeouts)
            return None if row is None else await signed_in(session, row)

    async def sign_out(self, session_id: str) -> None:
        async with self._db.transaction() as session:
            await portal_sign_in.close_member_session(session, hash_session_id(session_id))
