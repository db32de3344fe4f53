"""Migrations: they build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import exchange.tables  # noqa: F401
from exchange.db import migrate
from exchange.ledger.partitions import compared


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_engine(migrate.sync_database_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": compared})
            differences = compare_metadata(context, SQLModel.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_a_fresh_database_is_at_the_head_revision(database_url: str) -> None:
    assert migrate.current_revision(database_url) == migrate.head_revision()
    migrate.ensure_migrated(database_url)
