"""People: creating the accounts of those who sign in to the consoles, signing in and out, and
resuming sessions. The rules are in ``exchange.people``; the web front end and the command only
translate to and from this service."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import or_, update
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth import ratelimit
from exchange.auth.hashing import hash_secret, verify_nobody, verify_secret
from exchange.auth.principal import Principal
from exchange.auth.ratelimit import EVERY_ADDRESS, EVERY_ADDRESS_FACTOR
from exchange.auth.scopes import Role, Scope
from exchange.clock import Clock
from exchange.db.database import Database
from exchange.people import totp
from exchange.people.accounts import (
    PASSWORD_MAX_LENGTH,
    add_person,
    check_new_person,
    check_password,
    check_username,
    normalize_username,
)
from exchange.people.models import Person
from exchange.people.sessions import SessionTimeouts, close_session, live_session, open_session, principal_for
from exchange.settings import Settings

#: Sign-in failures are counted with the token endpoint's failures, under keys that no OAuth
#: client id has (those never hold a colon).
RATE_LIMIT_PREFIX = "person:"


def _password_matches(person: Person | None, password: str) -> bool:
    """Argon2 verification (about 50 ms of CPU: run it off the event loop). Nobody's password
    matches for an unknown username, after the same work as for a known one."""
    if person is None:
        return verify_nobody(password)
    return verify_secret(person.password_hash, password)


def rate_limit_key(username: str) -> str:
    return RATE_LIMIT_PREFIX + username


@dataclass(frozen=True)
class SignedIn:
    """A live session: who it acts as, and the token its forms and htmx requests carry.

    A member's portal session also holds, for each program whose client vouches for the member
    in it now (read from those clients on each request:
    :func:`exchange.people.portal_sign_in.live_authority`), what that client lets its members'
    tokens do (``program_scopes``): the session spends a program's points only if it vouches
    with ``member:write``."""

    principal: Principal
    csrf_token: str
    program_scopes: Mapping[str, frozenset[Scope]] = field(default_factory=dict)

    @property
    def asserted_by(self) -> frozenset[str]:
        """The programs that vouch for the member in this session."""
        return frozenset(self.program_scopes)

    def may_spend(self, program_id: str) -> bool:
        """Whether the session debits ``program_id``'s points under that program's authority."""
        return Scope.MEMBER_WRITE in self.program_scopes.get(program_id, frozenset())


@dataclass(frozen=True)
class Opened:
    """A sign-in that succeeded: the new session's id (for the cookie, and nowhere else)."""

    session_id: str
    signed_in: SignedIn


@dataclass(frozen=True)
class Refused:
    """Wrong username, password or code: one answer for all, so that it tells nothing."""


@dataclass(frozen=True)
class Locked:
    """Too many failures for this username: no attempt is judged for ``retry_after`` seconds."""

    retry_after: int


SignInOutcome = Opened | Refused | Locked


@dataclass(frozen=True)
class NewPerson:
    person: Person
    #: The ``otpauth://`` URI of the person's TOTP secret, to show them once; None without TOTP.
    totp_uri: str | None


class PeopleService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        key_secret: str,
        failure_limit: ratelimit.FailureLimit,
        address_limit: ratelimit.FailureLimit,
        timeouts: SessionTimeouts,
    ) -> None:
        self._db = db
        self._clock = clock
        self._key_secret = key_secret
        self._limit = failure_limit
        self._address_limit = address_limit
        self._attempts = ratelimit.AttemptsUnderWay()
        self._every_address_limit = ratelimit.FailureLimit(
            failures=failure_limit.failures * EVERY_ADDRESS_FACTOR, window=failure_limit.window
        )
        self.timeouts = timeouts

    @classmethod
    def for_settings(cls, settings: Settings, *, db: Database, clock: Clock) -> PeopleService:
        """Sign-in failures count against the token endpoint's limits and window."""
        window = timedelta(seconds=settings.token_failure_window)
        return cls(
            db,
            clock,
            key_secret=settings.key_encryption_secret.get_secret_value(),
            failure_limit=ratelimit.FailureLimit(failures=settings.token_failure_limit, window=window),
            address_limit=ratelimit.FailureLimit(failures=settings.token_failure_address_limit, window=window),
            timeouts=SessionTimeouts(
                idle=timedelta(seconds=settings.session_idle_seconds),
                lifetime=timedelta(seconds=settings.session_lifetime_seconds),
            ),
        )

    async def create(
        self, *, username: str, password: str, role: Role, program_id: str | None = None, with_totp: bool = False
    ) -> NewPerson:
        """A new person; with ``with_totp``, a TOTP secret too, whose URI is returned once."""
        username = check_username(username)
        check_password(password)
        password_hash = await asyncio.to_thread(hash_secret, password)
        secret = totp.new_totp_secret() if with_totp else None
        async with self._db.transaction() as session:
            person = await add_person(
                session,
                username=username,
                role=role,
                program_id=program_id,
                password_hash=password_hash,
                encrypted_totp_secret=totp.seal_secret(secret, username, self._key_secret) if secret else None,
                now=self._clock.now(),
            )
        return NewPerson(person=person, totp_uri=totp.provisioning_uri(secret, username) if secret else None)

    async def check_new(self, *, username: str, role: Role, program_id: str | None = None) -> None:
        """Refuses what :meth:`create` would refuse but the password, so that a command can say
        so before it asks for one (the checks run again when it creates the person)."""
        async with self._db.transaction() as session:
            await check_new_person(session, username=check_username(username), role=role, program_id=program_id)

    async def person(self, username: str) -> Person | None:
        """The person signing in as ``username`` (typed as people type it), if there is one."""
        async with self._db.transaction() as session:
            return await session.get(Person, normalize_username(username))

    async def sign_in(
        self,
        username: str,
        password: str,
        code: str = "",
        *,
        address: str = ratelimit.ANY_ADDRESS,
        replacing: str | None = None,
    ) -> SignInOutcome:
        """Check a person's password (and TOTP code, if they have TOTP) and open a session.

        ``replacing``: the session the browser signs in over, if it holds one; it ends as the
        new one opens (whoever signs in), as signing out would end it, so that the id the
        browser forgets is no longer anybody's session.

        Every failure counts against the username, whether or not anyone has it, twice: from
        the caller's ``address`` (:func:`ratelimit.caller_address`), where the limit locks the
        username for the rest of the window, right password or not; and from every address
        together, where :data:`EVERY_ADDRESS_FACTOR` times the limit does. Someone who knows a
        username can so lock it only from their own address, not for its owner; and guesses
        spread over many addresses are still bounded per username. Attempts made at once are
        held to both limits too (:class:`ratelimit.AttemptsUnderWay`): the rest wait their turn,
        and take turns with every replica's sign-ins as that username (:func:`ratelimit.take_turn`).
        Each failure counts once more against the caller's address over every username (and
        client id) together (:func:`ratelimit.every_id`): an unknown username costs an Argon2
        check as a known one does, and trying a new one each time reaches no other limit.
        """
        username = normalize_username(username)
        key = rate_limit_key(username)
        everywhere = self._every_address_limit

        async def standing() -> ratelimit.Standing:
            async with self._db.transaction() as session:
                return await self._standing(session, key, address)

        limits = {(key, address): self._limit.failures, (key, EVERY_ADDRESS): everywhere.failures}
        pooled = {ratelimit.every_id(address): self._address_limit.failures}
        async with self._attempts.attempt(limits, standing, pooled=pooled) as admitted:
            if admitted.retry_after is not None:
                return Locked(retry_after=admitted.retry_after)
            return await self._judge(username, password, code, address=address, replacing=replacing)

    async def _judge(
        self, username: str, password: str, code: str, *, address: str, replacing: str | None
    ) -> SignInOutcome:
        """One admitted sign-in: once it has its turn among every replica's sign-ins as that
        username (:func:`ratelimit.take_turn`) and the limits still let it in, the password and
        code checked, the session opened or the failure counted, in one unit of work that holds
        the turn throughout."""
        key = rate_limit_key(username)
        everywhere = self._every_address_limit
        async with self._db.transaction() as session:
            await ratelimit.take_turn(session, {(key, address), (key, EVERY_ADDRESS)})
            turn = await self._standing(session, key, address)
            if turn.retry_after is not None:
                return Locked(retry_after=turn.retry_after)
            now = self._clock.now()
            person = await session.get(Person, username)
            verified = len(password) <= PASSWORD_MAX_LENGTH and await asyncio.to_thread(
                _password_matches, person, password
            )
            step = None
            if verified and person is not None and person.encrypted_totp_secret is not None:
                secret = totp.open_secret(person.encrypted_totp_secret, person.username, self._key_secret)
                step = totp.matching_step(secret, code, now)
                verified = step is not None
            if verified and step is not None:
                verified = await _claim_totp_step(session, username, step)
            if person is None or not verified:
                await ratelimit.record_failure(session, key, address, self._limit, now)
                await ratelimit.record_failure(session, key, EVERY_ADDRESS, everywhere, now)
                await ratelimit.record_failure(session, ratelimit.EVERY_ID, address, self._address_limit, now)
                return Refused()
            if replacing is not None:
                await close_session(session, replacing)
            session_id, row = await open_session(session, person, now, self.timeouts)
        return Opened(session_id=session_id, signed_in=SignedIn(principal_for(row), row.csrf_token))

    async def _standing(self, session: AsyncSession, key: str, address: str) -> ratelimit.Standing:
        """How the username whose rate-limit key is ``key`` stands now, from ``address`` and
        from every address, and how ``address`` stands over every username."""
        now = self._clock.now()
        here = await ratelimit.standing(session, {key}, address, self._limit, now)
        everywhere = await ratelimit.standing(session, {key}, EVERY_ADDRESS, self._every_address_limit, now)
        return (
            here
            | everywhere
            | await ratelimit.standing(session, {ratelimit.EVERY_ID}, address, self._address_limit, now)
        )

    async def resume(self, session_id: str) -> SignedIn | None:
        """The session a cookie names, if it is live."""
        async with self._db.transaction() as session:
            row = await live_session(session, session_id, self._clock.now(), self.timeouts)
        return None if row is None else SignedIn(principal_for(row), row.csrf_token)

    async def sign_out(self, session_id: str) -> None:
        async with self._db.transaction() as session:
            await close_session(session, session_id)


async def _claim_totp_step(session: AsyncSession, username: str, step: int) -> bool:
    """Record ``step`` as the person's last code, unless it (or a later one) was used already:
    one conditional update, so two sign-ins with the same code cannot both pass."""
    result = await session.exec(
        update(Person)
        .where(
            col(Person.username) == username,
            or_(col(Person.totp_last_step).is_(None), col(Person.totp_last_step) < step),
        )
        .values(totp_last_step=step)
    )
    return bool(result.rowcount == 1)
