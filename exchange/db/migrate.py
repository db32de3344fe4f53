"""Alembic, driven from code: ``exchange db upgrade`` and the start-up check use this."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from exchange.db.availability import refused_by_configuration
from exchange.errors import ConfigurationError
from exchange.settings import normalize_database_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def sync_database_url(url: str) -> str:
    """The blocking-driver twin of an async URL; migrations run outside the event loop."""
    url = normalize_database_url(url)
    if url.startswith("sqlite+aiosqlite"):
        return "sqlite" + url.removeprefix("sqlite+aiosqlite")
    return url


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not a main option: ConfigParser would read "%" in passwords.
    config.attributes["database_url"] = sync_database_url(url)
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (blocking; call it from a thread in async code).

    A server that cannot be reached, or refuses the credentials, is refused first as
    :func:`ensure_migrated` refuses it: one line naming the database, not the driver's message."""
    ensure_known(revision)
    ensure_a_file(url)
    ensure_writable_folder(url)
    revision_or_refusal(url, then="")
    command.upgrade(alembic_config(url), revision)


def ensure_known(revision: str) -> None:
    """Refuse a target no migration has before the database is opened: alembic finds out only
    once connected (an SQLite file created, its version table in it), then raises a traceback."""
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        if revision.strip():  # alembic asserts that a revision is not empty
            scripts.get_revisions(revision)
            return
    except CommandError:
        pass
    raise ConfigurationError(
        f"no migration has the revision {revision!r}: give head (the latest) or one of "
        f"{scripts.get_base()} to {scripts.get_current_head()}"
    )


def ensure_a_file(url: str) -> None:
    """Refuse an SQLite URL that names no file to keep the database in: one in memory ends with
    its connection (``db upgrade`` migrated it, said so, and it was gone), and SQLite cannot open
    a directory (its "unable to open database file" read as a server that is down)."""
    if not url.startswith("sqlite"):
        return
    database = make_url(url).database
    if not database or database == ":memory:":
        problem, example = (
            "names no file: SQLite keeps its database in memory, gone when the command ends",
            "exchange.db",
        )
    elif Path(database).is_dir():
        problem, example = "names a directory, not a file", str(Path(database).absolute() / "exchange.db")
    else:
        return
    raise ConfigurationError(
        f"the database URL {display_url(url)} {problem}; name a file in EXCHANGE_DATABASE_URL, "
        f"such as sqlite:///{example}"
    )


def ensure_writable_folder(url: str) -> None:
    """Refuse an SQLite file whose directory is missing or read-only, naming it: SQLite writes
    the file and its journal there, and says only "unable to open database file"."""
    path = sqlite_file(url)
    if path is None:
        return
    folder = path.absolute().parent
    if not folder.is_dir():
        problem = "does not exist: create it"
    elif not os.access(folder, os.W_OK):
        problem = "is not writable: make it writable"
    else:
        return
    raise ConfigurationError(
        f"cannot write the database at {display_url(url)}: the directory {folder} {problem}, "
        "or point EXCHANGE_DATABASE_URL at the database you meant"
    )


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    engine = create_engine(sync_database_url(url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


#: The drivers the settings name in a URL (``normalize_database_url``), which nobody types.
_WRITTEN_SCHEMES = {"sqlite+aiosqlite": "sqlite", "postgresql+psycopg": "postgresql"}


def display_url(url: str) -> str:
    """``url`` as it may be printed: written as a person writes it in EXCHANGE_DATABASE_URL
    (``sqlite:///exchange.db``, not the ``sqlite+aiosqlite://`` the settings hold), with its
    password, if it has one, masked."""
    scheme, separator, rest = url.partition("://")
    written = f"{_WRITTEN_SCHEMES.get(scheme, scheme)}{separator}{rest}"
    return make_url(written).render_as_string(hide_password=True) if make_url(url).password else written


def sqlite_file(url: str) -> Path | None:
    """The file an SQLite URL names (relative to the working directory), or None: not SQLite,
    in memory, or a ``file:`` URI that SQLite resolves itself. Only an SQLite URL is parsed:
    a PostgreSQL URL naming several hosts (a failover pair) is not one SQLAlchemy can parse."""
    if not url.startswith("sqlite"):
        return None
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    if parsed.query.get("uri") == "true":
        return None
    return Path(parsed.database)


def revision_or_refusal(url: str, *, then: str) -> str | None:
    """The database's migration, or :class:`ConfigurationError` in one line naming it (never its
    password) when its server cannot be reached (``then``: what to do once it is up) or refuses
    the credentials or the database name."""
    try:
        return current_revision(url)
    except DBAPIError as exc:
        shown = display_url(url)
        reason = "; ".join(" ".join(line.split()) for line in str(exc.orig).splitlines() if line.strip())
        if refused_by_configuration(exc):
            raise ConfigurationError(
                f"cannot open the database at {shown} ({reason}): the database refused the credentials "
                "(or the database name) in EXCHANGE_DATABASE_URL: correct the user, password or database "
                "name there (creating the database first if it does not exist yet)"
            ) from None
        raise ConfigurationError(
            f"cannot open the database at {shown} ({reason}): check that its server is up, "
            f"{then}or point EXCHANGE_DATABASE_URL at the database you meant"
        ) from None


def ensure_migrated(url: str) -> None:
    """Refuse a database that is missing, unreachable, refuses the configured credentials, or is
    not at the schema this code was written for, naming it (never its password) and saying what
    to do.

    Creates nothing: SQLite would create an empty file on connecting, so a missing file is
    refused before any connection.
    """
    ensure_a_file(url)
    shown = display_url(url)
    otherwise = "or point EXCHANGE_DATABASE_URL at the database you meant"
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise ConfigurationError(
            f"no database at {shown} ({path.absolute()} does not exist): "
            f"run `exchange db upgrade` to create it, {otherwise}"
        )
    current = revision_or_refusal(url, then="then run `exchange db upgrade`, ")
    head = head_revision()
    if current != head:
        raise ConfigurationError(
            f"the database at {shown} is at migration {current or 'none'}, this code needs {head}: "
            f"run `exchange db upgrade`, {otherwise}"
        )
