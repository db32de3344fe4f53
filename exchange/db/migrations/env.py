"""Alembic environment: runs migrations on a blocking connection to the exchange's database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import exchange.tables  # noqa: F401  (registers every table on SQLModel.metadata)
from exchange.ledger.partitions import compared

#: pg_advisory_lock key of migrating ("EXCHMIGR"). Upgrades started together (a migration Job
#: retried beside its first run, two deploy pipelines) take turns: the next reads the revision
#: once the one before has committed, and finds nothing left to do. Without it, all but one
#: raced the first's CREATE TABLE and failed half-way with a unique violation's trace.
MIGRATION_LOCK = 0x45584348_4D494752

url = context.config.attributes["database_url"]
engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:  # closed at the end, which ends the session and its lock
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()  # end the autobegun transaction so Alembic's own one commits
    else:
        connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
        connection.commit()  # the lock is the session's: it outlasts this transaction and Alembic's
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=compared,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
