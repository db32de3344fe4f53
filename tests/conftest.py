"""Fixtures shared by every test layer: databases, on SQLite and on a real PostgreSQL.

PostgreSQL is a throwaway cluster started from the local server binaries for the session,
or the server named by EXCHANGE_TEST_DATABASE_URL. Each test that asks for a database gets
a fresh, fully migrated one of its own.
"""

from __future__ import annotations

import inspect
import itertools
import os
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import settings
from joserfc.jwk import RSAKey

from exchange.db import migrate
from exchange.db.database import Database
from exchange.errors import ConfigurationError
from exchange.keyring import crypto, lifecycle
from exchange.programs.declarations import PartnersDirectory, read_partners_directory
from exchange.testing.databases import PostgresDatabases, SqliteDatabases
from exchange.testing.postgres import ThrowawayCluster
from exchange.testing.sandboxes import SandboxFleet

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PARTNERS = REPO_ROOT / "partners"

# Property tests check correctness, not speed: no example has a deadline (Hypothesis's default,
# 200 ms, fails a test whose example a busy machine, or a garbage collection in a process two
# thousand tests old, happens to pause), and a failure prints the blob that reproduces it
# (@reproduce_failure), since the examples differ from run to run.
settings.register_profile("exchange", deadline=None, print_blob=True)
settings.load_profile("exchange")


#: How many signing keys the gateways started in the test process take in turn.
SIGNING_KEY_POOL = 8


@pytest.fixture(scope="session", autouse=True)
def pooled_signing_keys() -> Iterator[None]:
    """The gateways started in this process take their RSA signing keys in turn from a pool made
    once per run, instead of generating each: a key costs 20 to 200 ms to generate, and every
    gateway's first start on its fresh database makes two (tokens, statements). Each key still
    begins in a fresh database, and any :data:`SIGNING_KEY_POOL` keys taken in a row differ, so a
    test's gateways and its rotations have keys of their own. Gateways in processes of their own
    (the CLI, the demo) generate theirs, as in production."""
    pool: list[RSAKey] = []
    taken = itertools.count()
    lock = threading.Lock()  # the web tests' gateways run in threads

    def next_key() -> RSAKey:
        with lock:
            index = next(taken) % SIGNING_KEY_POOL
            if index == len(pool):
                pool.append(crypto.generate_key())
            return pool[index]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lifecycle, "generate_key", next_key)
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Where an asyncio test would run after a test that drives a browser, run the browser tests
    after every other test of the session, in their order; otherwise keep the order as it is.

    Playwright's synchronous API keeps its event loop marked as running in the main thread while
    its session-wide browser lives, and an asyncio test after it fails with "Cannot run the event
    loop while another loop is running". A whole run already puts the browser tests last.
    """
    drives_a_browser = [item for item in items if "browser" in getattr(item, "fixturenames", ())]
    if not drives_a_browser:
        return
    after_the_first = items[items.index(drives_a_browser[0]) :]
    if any(_runs_a_loop(item) for item in after_the_first):
        items.sort(key=lambda item: "browser" in getattr(item, "fixturenames", ()))


def _runs_a_loop(item: pytest.Item) -> bool:
    return item.get_closest_marker("asyncio") is not None or inspect.iscoroutinefunction(getattr(item, "obj", None))


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    if url := os.environ.get("EXCHANGE_TEST_DATABASE_URL"):
        yield url
        return
    try:
        cluster = ThrowawayCluster.start()
    except ConfigurationError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster.url
    finally:
        cluster.stop()


@pytest.fixture
def own_postgres_cluster() -> Iterator[ThrowawayCluster]:
    """A PostgreSQL cluster of the test's own, migrated, for a test that halts and resumes it
    (an outage); its URL names the migrated database, and its commits survive a halt."""
    try:
        cluster = ThrowawayCluster.start(synchronous_commit="on")
    except ConfigurationError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        migrate.upgrade(cluster.url)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_databases(postgres_server_url: str) -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(postgres_server_url)
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture(scope="session")
def sqlite_databases(tmp_path_factory: pytest.TempPathFactory) -> SqliteDatabases:
    return SqliteDatabases(tmp_path_factory.mktemp("sqlite"))


@pytest.fixture
def pg_database_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database."""
    url = postgres_databases.create()
    try:
        yield url
    finally:
        postgres_databases.drop(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database: the test runs once on SQLite and once on PostgreSQL."""
    databases: SqliteDatabases | PostgresDatabases = request.getfixturevalue(
        "sqlite_databases" if request.param == "sqlite" else "postgres_databases"
    )
    url = databases.create()
    try:
        yield url
    finally:
        databases.drop(url)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(database_url)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def pg_db(pg_database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(pg_database_url)
    try:
        yield database
    finally:
        await database.dispose()


class SettableClock:
    """A wall clock for sandboxes that tests move forward (token expiry, tier expiry)."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, delta: timedelta) -> None:
        self.moment += delta


@pytest.fixture(scope="session")
def sample_partners() -> PartnersDirectory:
    return read_partners_directory(SAMPLE_PARTNERS)


@pytest.fixture
def sandbox_clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
async def sandboxes(
    sample_partners: PartnersDirectory, tmp_path: Path, sandbox_clock: SettableClock
) -> AsyncIterator[SandboxFleet]:
    """A fleet that starts no sandbox until asked: ``await sandboxes.start("formosa-air")``."""
    fleet = SandboxFleet(sample_partners, tmp_path / "sandboxes", clock=sandbox_clock)
    try:
        yield fleet
    finally:
        await fleet.stop()
