"""Alembic, driven from code: ``exchange db upgrade`` and the start-up check use this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

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
    """Apply every migration up to ``revision`` (blocking; call it from a thread in async code)."""
    command.upgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(url: str) -> str | None:
    engine = create_engine(sync_database_url(url))
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def ensure_migrated(url: str) -> None:
    """Refuse a database whose schema is not the one this code was written for."""
    current, head = current_revision(url), head_revision()
    if current != head:
        raise ConfigurationError(
            f"the database is at migration {current or 'none'}, this code needs {head}: run `exchange db upgrade`"
        )
