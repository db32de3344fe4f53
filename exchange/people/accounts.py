"""People's accounts: who may be one, what a username and a password must be."""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.auth.scopes import Role
from exchange.errors import BadUserInput
from exchange.people.models import Person
from exchange.programs import service as programs

#: The roles a person can have; members reach the portal through their partner instead.
PERSON_ROLES: tuple[Role, ...] = (Role.SETTLEMENT, Role.ADMIN, Role.PARTNER)

#: Lowercase letters, digits and ``. _ @ -``, starting with a letter or digit: an email address
#: fits, and nothing that reads as another name once lowercased or trimmed.
USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,47}")
USERNAME_MAX_LENGTH = 48
#: NIST SP 800-63B asks for at least 8 and room for long passphrases; staff get 12.
PASSWORD_MIN_LENGTH = 12
#: Long enough for any passphrase, short enough that hashing one is never a cost to worry about.
PASSWORD_MAX_LENGTH = 256


def normalize_username(text: str) -> str:
    """The username as stored: people may type it with capitals or stray spaces."""
    return text.strip().lower()


def check_username(text: str) -> str:
    """The normalized username, or a ``BadUserInput`` on ``username`` saying what is wrong."""
    username = normalize_username(text)
    if not USERNAME.fullmatch(username):
        raise BadUserInput(
            f"a username is 1 to {USERNAME_MAX_LENGTH} lowercase letters, digits and . _ @ -, "
            "starting with a letter or digit",
            field="username",
        )
    return username


def check_password(password: str) -> None:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise BadUserInput(
            f"a password is {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters long", field="password"
        )


async def check_new_person(session: AsyncSession, *, username: str, role: Role, program_id: str | None) -> None:
    """Refuses a new person whose role cannot sign in to the consoles, whose program does not go
    with the role (a partner's staff member, and only they, names an existing program), or whose
    (normalized) ``username`` is taken: all that :func:`add_person` checks but the password."""
    if role not in PERSON_ROLES:
        raise BadUserInput(
            f"a person's role is one of {', '.join(PERSON_ROLES)}; members sign in through their partner",
            field="role",
        )
    if role is Role.PARTNER and program_id is None:
        raise BadUserInput("a partner's staff member works for one program: name it (--partner)", field="partner")
    if role is not Role.PARTNER and program_id is not None:
        raise BadUserInput(
            f"only a partner's staff member names a program: {role.value} staff work for every program"
            " (leave --partner out, or make them --role partner)",
            field="partner",
        )
    if program_id is not None:
        await programs.get_program(session, program_id, field="partner")
    if await session.get(Person, username) is not None:
        raise BadUserInput(f"there is already a person named {username!r}", field="username")


async def add_person(
    session: AsyncSession,
    *,
    username: str,
    role: Role,
    program_id: str | None,
    password_hash: str,
    encrypted_totp_secret: str | None,
    now: datetime,
) -> Person:
    """A new person (:func:`check_new_person`)."""
    await check_new_person(session, username=username, role=role, program_id=program_id)
    person = Person(
        username=username,
        role=role.value,
        program_id=program_id,
        password_hash=password_hash,
        encrypted_totp_secret=encrypted_totp_secret,
        created_at=now,
    )
    session.add(person)
    await session.flush()
    return person
