"""People's accounts, sign-in and sessions, on SQLite and PostgreSQL; and `exchange people create`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from sqlmodel import select

from exchange.auth.ratelimit import EVERY_ADDRESS_FACTOR, FailureLimit
from exchange.auth.scopes import ROLE_SCOPES, Role
from exchange.db.database import Database
from exchange.errors import BadUserInput, ExchangeError
from exchange.people import totp
from exchange.people.models import Person, WebSession
from exchange.people.sessions import SessionTimeouts, hash_session_id
from exchange.services import people as people_service
from exchange.services.container import load_partners_directory
from exchange.services.people import Locked, Opened, PeopleService, Refused
from exchange.settings import Settings
from tests.clocks import MovableClock
from tests.conftest import SAMPLE_PARTNERS

KEY_SECRET = "a key-encryption secret for the people tests"
PASSWORD = "correct horse battery staple"
LIMIT = FailureLimit(failures=3, window=timedelta(seconds=60))
ADDRESS_LIMIT = FailureLimit(failures=5, window=LIMIT.window)
TIMEOUTS = SessionTimeouts(idle=timedelta(minutes=30), lifetime=timedelta(hours=12))


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(datetime(2026, 12, 1, 12, 0, 10, tzinfo=UTC))


@pytest.fixture
async def people(database_url: str, db: Database, clock: MovableClock) -> AsyncIterator[PeopleService]:
    await load_partners_directory(Settings(database_url=database_url, partners_dir=SAMPLE_PARTNERS))
    yield PeopleService(
        db, clock, key_secret=KEY_SECRET, failure_limit=LIMIT, address_limit=ADDRESS_LIMIT, timeouts=TIMEOUTS
    )


async def test_a_person_is_stored_with_a_password_hash_and_a_sealed_totp_secret(
    people: PeopleService, db: Database
) -> None:
    created = await people.create(username=" Alice ", password=PASSWORD, role=Role.SETTLEMENT, with_totp=True)
    assert created.person.username == "alice"
    assert created.totp_uri is not None
    secret = pyotp.parse_uri(created.totp_uri).secret
    async with db.transaction() as session:
        row = await session.get(Person, "alice")
    assert row is not None and row.role == "settlement" and row.program_id is None
    assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
    assert row.encrypted_totp_secret is not None and secret not in row.encrypted_totp_secret
    plain = await people.create(username="bob", password=PASSWORD, role=Role.ADMIN)
    assert plain.totp_uri is None and plain.person.encrypted_totp_secret is None


@pytest.mark.parametrize(
    ("username", "password", "role", "program_id", "field"),
    [
        ("", PASSWORD, Role.ADMIN, None, "username"),
        ("has space", PASSWORD, Role.ADMIN, None, "username"),
        ("x" * 49, PASSWORD, Role.ADMIN, None, "username"),
        ("carol", "too short", Role.ADMIN, None, "password"),
        ("carol", PASSWORD, Role.PARTNER, None, "partner"),
        ("carol", PASSWORD, Role.SETTLEMENT, "formosa-air", "partner"),
        ("carol", PASSWORD, Role.PARTNER, "no-such-program", "partner"),
        ("carol", PASSWORD, Role.MEMBER, None, "role"),
    ],
)
async def test_impossible_people_are_refused_naming_the_field(
    people: PeopleService, db: Database, username: str, password: str, role: Role, program_id: str | None, field: str
) -> None:
    with pytest.raises(ExchangeError) as refused:
        await people.create(username=username, password=password, role=role, program_id=program_id)
    assert refused.value.field == field
    async with db.transaction() as session:
        assert (await session.exec(select(Person))).all() == []


@pytest.mark.parametrize(
    ("role", "program_id", "says"),
    [
        (Role.PARTNER, None, "a partner's staff member works for one program: name it (--partner)"),
        (Role.SETTLEMENT, "formosa-air", "settlement staff work for every program (leave --partner out, or make them"),
    ],
)
async def test_a_program_missing_or_out_of_place_is_refused_saying_which(
    people: PeopleService, role: Role, program_id: str | None, says: str
) -> None:
    """`exchange people create --role partner` without --partner (or another role with it) said
    only "a partner's staff member, and only they, names the program", whichever it was."""
    with pytest.raises(BadUserInput) as refused:
        await people.create(username="carol", password=PASSWORD, role=role, program_id=program_id)
    assert says in str(refused.value)


async def test_a_username_is_taken_once(people: PeopleService) -> None:
    await people.create(username="dave", password=PASSWORD, role=Role.ADMIN)
    with pytest.raises(BadUserInput, match="already a person named 'dave'"):
        await people.create(username="DAVE", password=PASSWORD, role=Role.SETTLEMENT)


async def test_signing_in_opens_a_session_acting_as_the_persons_role_and_program(
    people: PeopleService, db: Database, clock: MovableClock
) -> None:
    await people.create(username="erin", password=PASSWORD, role=Role.PARTNER, program_id="formosa-air")
    outcome = await people.sign_in("Erin", PASSWORD)
    assert isinstance(outcome, Opened)
    principal = outcome.signed_in.principal
    assert (principal.role, principal.program_id, principal.subject) == (Role.PARTNER, "formosa-air", "erin")
    assert principal.scopes == ROLE_SCOPES[Role.PARTNER]
    assert principal.client_id == "console:erin"
    assert principal.expires_at == clock.now() + TIMEOUTS.lifetime
    async with db.transaction() as session:
        rows = (await session.exec(select(WebSession))).all()
    assert [row.id_hash for row in rows] == [hash_session_id(outcome.session_id)]
    assert outcome.session_id not in rows[0].id_hash and len(outcome.session_id) >= 43
    resumed = await people.resume(outcome.session_id)
    assert resumed == outcome.signed_in


async def test_a_wrong_password_or_an_unknown_username_is_refused_alike_and_counted(
    people: PeopleService, clock: MovableClock
) -> None:
    await people.create(username="frank", password=PASSWORD, role=Role.ADMIN)
    assert isinstance(await people.sign_in("frank", "wrong password!!"), Refused)
    assert isinstance(await people.sign_in("nobody", PASSWORD), Refused)
    assert isinstance(await people.sign_in("frank", PASSWORD), Opened)


async def test_after_the_limit_a_username_is_locked_even_with_the_right_password_until_the_window_closes(
    people: PeopleService, clock: MovableClock
) -> None:
    await people.create(username="grace", password=PASSWORD, role=Role.ADMIN)
    await people.create(username="heidi", password=PASSWORD, role=Role.ADMIN)
    for _ in range(LIMIT.failures):
        assert isinstance(await people.sign_in("grace", "wrong password!!"), Refused)
    clock.advance(timedelta(seconds=20))
    locked = await people.sign_in("GRACE", PASSWORD)
    assert isinstance(locked, Locked) and locked.retry_after == 40
    assert isinstance(await people.sign_in("heidi", PASSWORD), Opened), "another username is not locked"
    clock.advance(timedelta(seconds=40))
    assert isinstance(await people.sign_in("grace", PASSWORD), Opened)


async def test_failures_from_one_address_lock_the_username_there_and_not_for_its_owner_elsewhere(
    people: PeopleService, clock: MovableClock
) -> None:
    """Whoever knows a username can lock it only from their own address; failures spread over
    many addresses lock it everywhere at ten times the limit."""
    await people.create(username="kate", password=PASSWORD, role=Role.SETTLEMENT)
    for _ in range(LIMIT.failures):
        assert isinstance(await people.sign_in("kate", "wrong password!!", address="198.51.100.7"), Refused)
    assert isinstance(await people.sign_in("kate", PASSWORD, address="198.51.100.7"), Locked)
    assert isinstance(await people.sign_in("kate", PASSWORD, address="203.0.113.5"), Opened), "its owner signs in"
    everywhere = EVERY_ADDRESS_FACTOR * LIMIT.failures
    for n in range(everywhere - LIMIT.failures):  # one failure from each of many addresses
        assert isinstance(await people.sign_in("kate", "wrong password!!", address=f"198.51.100.{10 + n}"), Refused)
    spread = await people.sign_in("kate", PASSWORD, address="203.0.113.5")
    assert isinstance(spread, Locked), "ten times the limit, from every address together"
    clock.advance(LIMIT.window)
    assert isinstance(await people.sign_in("kate", PASSWORD, address="203.0.113.5"), Opened)


async def test_a_caller_trying_a_new_username_each_time_is_locked_out_at_the_address_limit(
    people: PeopleService, clock: MovableClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counted per username alone, each new username was a first failure, and each cost an
    Argon2 check (an unknown username as much as a known one, so that the time does not tell
    which exist): one address made the gateway hash as often as it asked."""
    judged: list[str] = []
    matches = people_service._password_matches

    def counted(person: Person | None, password: str) -> bool:
        judged.append(password)
        return matches(person, password)

    monkeypatch.setattr(people_service, "_password_matches", counted)
    await people.create(username="olga", password=PASSWORD, role=Role.ADMIN)
    tries = [
        await people.sign_in(f"nobody-{n}", PASSWORD, address="198.51.100.9") for n in range(3 * ADDRESS_LIMIT.failures)
    ]
    assert [type(outcome) for outcome in tries] == [Refused] * ADDRESS_LIMIT.failures + [Locked] * (
        2 * ADDRESS_LIMIT.failures
    )
    burst = [
        people.sign_in(f"someone-{n}", PASSWORD, address="198.51.100.10") for n in range(3 * ADDRESS_LIMIT.failures)
    ]
    assert Counter(type(outcome) for outcome in await asyncio.gather(*burst)) == {
        Refused: ADDRESS_LIMIT.failures,
        Locked: 2 * ADDRESS_LIMIT.failures,
    }
    assert len(judged) == 2 * ADDRESS_LIMIT.failures
    assert isinstance(await people.sign_in("olga", PASSWORD, address="198.51.100.9"), Locked), "right or not"
    assert isinstance(await people.sign_in("olga", PASSWORD, address="203.0.113.5"), Opened), "from elsewhere"
    clock.advance(ADDRESS_LIMIT.window)
    assert isinstance(await people.sign_in("olga", PASSWORD, address="198.51.100.9"), Opened)


async def test_guesses_sent_at_once_are_judged_no_more_often_than_one_by_one(people: PeopleService) -> None:
    """Every guess of a burst used to pass the limit's check before the first had failed."""
    await people.create(username="leon", password=PASSWORD, role=Role.ADMIN)
    guesses = [people.sign_in("leon", f"guess number {n}", address="198.51.100.7") for n in range(4 * LIMIT.failures)]
    outcomes = Counter(type(outcome) for outcome in await asyncio.gather(*guesses))
    assert outcomes == {Refused: LIMIT.failures, Locked: 3 * LIMIT.failures}
    spread = [
        people.sign_in("leon", f"guess number {n}", address=f"203.0.113.{n}")
        for n in range(2 * EVERY_ADDRESS_FACTOR * LIMIT.failures)
    ]
    outcomes = Counter(type(outcome) for outcome in await asyncio.gather(*spread))
    assert outcomes[Refused] == (EVERY_ADDRESS_FACTOR - 1) * LIMIT.failures, "ten times the limit in all"


async def test_guesses_spread_over_two_replicas_are_judged_no_more_often_than_on_one(
    pg_database_url: str, clock: MovableClock
) -> None:
    """Each replica held a burst to the limit by itself: two replicas judged twice as many."""
    replicas = [Database.from_url(pg_database_url) for _ in range(2)]
    try:
        one, two = (
            PeopleService(
                db, clock, key_secret=KEY_SECRET, failure_limit=LIMIT, address_limit=ADDRESS_LIMIT, timeouts=TIMEOUTS
            )
            for db in replicas
        )
        await one.create(username="nina", password=PASSWORD, role=Role.ADMIN)
        guesses = [
            people.sign_in("nina", f"guess number {n}", address="198.51.100.7")
            for n in range(4 * LIMIT.failures)
            for people in (one, two)
        ]
        outcomes = Counter(type(outcome) for outcome in await asyncio.gather(*guesses))
        assert outcomes == {Refused: LIMIT.failures, Locked: 7 * LIMIT.failures}
        assert isinstance(await two.sign_in("nina", PASSWORD, address="198.51.100.7"), Locked)
    finally:
        for db in replicas:
            await db.dispose()


async def test_a_person_signing_in_from_several_tabs_at_once_is_let_in_each_time(people: PeopleService) -> None:
    await people.create(username="mona", password=PASSWORD, role=Role.ADMIN)
    tabs = [people.sign_in("mona", PASSWORD, address="198.51.100.7") for _ in range(2 * LIMIT.failures)]
    assert all(isinstance(outcome, Opened) for outcome in await asyncio.gather(*tabs))


async def test_with_totp_the_current_code_is_needed_and_used_once(people: PeopleService, clock: MovableClock) -> None:
    created = await people.create(username="ivan", password=PASSWORD, role=Role.SETTLEMENT, with_totp=True)
    assert created.totp_uri is not None
    secret = pyotp.parse_uri(created.totp_uri).secret
    code = totp.code_at(secret, clock.now())
    assert isinstance(await people.sign_in("ivan", PASSWORD), Refused), "no code"
    assert isinstance(await people.sign_in("ivan", PASSWORD, "000000" if code != "000000" else "111111"), Refused)
    assert isinstance(await people.sign_in("ivan", PASSWORD, code), Opened)
    clock.advance(timedelta(seconds=5))
    assert isinstance(await people.sign_in("ivan", PASSWORD, code), Refused), "a used code is not accepted again"
    clock.advance(LIMIT.window)
    assert isinstance(await people.sign_in("ivan", PASSWORD, totp.code_at(secret, clock.now())), Opened)


async def test_a_session_ends_when_idle_for_too_long(people: PeopleService, db: Database, clock: MovableClock) -> None:
    await people.create(username="judy", password=PASSWORD, role=Role.ADMIN)
    opened = await people.sign_in("judy", PASSWORD)
    assert isinstance(opened, Opened)
    clock.advance(TIMEOUTS.idle - timedelta(seconds=1))
    assert await people.resume(opened.session_id) is not None, "a request keeps it alive"
    clock.advance(TIMEOUTS.idle - timedelta(seconds=1))
    assert await people.resume(opened.session_id) is not None
    clock.advance(TIMEOUTS.idle)
    assert await people.resume(opened.session_id) is None
    async with db.transaction() as session:
        assert (await session.exec(select(WebSession))).all() == []


async def test_a_busy_session_ends_at_its_absolute_expiry(people: PeopleService, clock: MovableClock) -> None:
    await people.create(username="ken", password=PASSWORD, role=Role.ADMIN)
    opened = await people.sign_in("ken", PASSWORD)
    assert isinstance(opened, Opened)
    while clock.now() + TIMEOUTS.idle / 2 < opened.signed_in.principal.expires_at:
        clock.advance(TIMEOUTS.idle / 2)
        assert await people.resume(opened.session_id) is not None
    clock.advance(TIMEOUTS.idle / 2)
    assert await people.resume(opened.session_id) is None


async def test_signing_out_deletes_the_session(people: PeopleService, db: Database) -> None:
    await people.create(username="leo", password=PASSWORD, role=Role.ADMIN)
    first, second = await people.sign_in("leo", PASSWORD), await people.sign_in("leo", PASSWORD)
    assert isinstance(first, Opened) and isinstance(second, Opened)
    await people.sign_out(first.session_id)
    assert await people.resume(first.session_id) is None
    assert await people.resume(second.session_id) is not None, "only that session ends"
    assert await people.resume("made-up") is None


EXCHANGE = str(Path(sys.executable).with_name("exchange"))


def exchange_command(*argv: str, stdin: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXCHANGE, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "EXCHANGE_DATABASE_URL": database_url, "EXCHANGE_PARTNERS_DIR": str(SAMPLE_PARTNERS)},
        check=False,
    )


def test_the_cli_creates_people_with_the_password_from_standard_input(pg_database_url: str) -> None:
    assert exchange_command("partners", "load", stdin="", database_url=pg_database_url).returncode == 0
    created = exchange_command(
        "people", "create", "--username", "mia", "--role", "partner", "--partner", "formosa-air", "--totp",
        stdin=PASSWORD + "\n",
        database_url=pg_database_url,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    assert "created mia: role partner for program formosa-air" in created.stdout
    assert "otpauth://totp/Coalition%20points%20exchange:mia?secret=" in created.stdout
    assert PASSWORD not in created.stdout + created.stderr
    short = exchange_command(
        "people", "create", "--username", "ned", "--role", "admin", stdin="short\n", database_url=pg_database_url
    )
    assert short.returncode == 2 and "a password is 12 to 256 characters long" in short.stderr
    unread = exchange_command(
        "people", "create", "--username", "ned", "--role", "admin", stdin="", database_url=pg_database_url
    )
    assert (unread.returncode, unread.stderr) == (
        2,
        "Error: no password was read: standard input was empty (pipe the password in as its first line)\n",
    )
    # Everything but the password is refused before the password is asked for (typed twice, at a terminal).
    for argv, says in (
        (("--username", "ned", "--role", "partner"), "a partner's staff member works for one program: name it"),
        (("--username", "MIA", "--role", "admin"), "there is already a person named 'mia'"),
    ):
        refused = exchange_command("people", "create", *argv, stdin="", database_url=pg_database_url)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
    on_argv = exchange_command(
        "people", "create", "--username", "ned", "--role", "admin", "--password", PASSWORD,
        stdin="", database_url=pg_database_url,
    )  # fmt: skip
    assert on_argv.returncode == 2 and "No such option '--password'" in on_argv.stderr
