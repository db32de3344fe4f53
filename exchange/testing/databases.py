"""Fresh, migrated databases for each test, cloned from one migrated template.

Migrating once and cloning is what keeps a suite of hundreds of database tests fast while
every test still starts from an empty, fully migrated schema of its own.
"""

from __future__ import annotations

import itertools
import shutil
import uuid
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from exchange.db import migrate


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


class PostgresDatabases:
    """Creates databases on a server from a migrated template; drops them after use."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.prefix = f"exchange_test_{uuid.uuid4().hex[:8]}"
        self.template = f"{self.prefix}_template"
        self._counter = itertools.count()
        self._created: list[str] = []
        self._admin(f'CREATE DATABASE "{self.template}"')
        migrate.upgrade(_with_database(server_url, self.template))

    def _admin(self, statement: str) -> None:
        conninfo = make_url(self.server_url).set(drivername="postgresql")
        with psycopg.connect(conninfo.render_as_string(hide_password=False), autocommit=True) as conn:
            conn.execute(statement)

    def create(self) -> str:
        """A new migrated database; returns its URL."""
        return self._create(f'TEMPLATE "{self.template}"')

    def create_empty(self) -> str:
        """A new database with no schema (not migrated); returns its URL."""
        return self._create("TEMPLATE template0")

    def _create(self, template: str) -> str:
        name = f"{self.prefix}_{next(self._counter)}"
        self._admin(f'CREATE DATABASE "{name}" {template}')
        self._created.append(name)
        return _with_database(self.server_url, name)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.remove(str(name))

    def drop_all(self) -> None:
        for name in [*self._created, self.template]:
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._created.clear()


class SqliteDatabases:
    """Copies of one migrated SQLite file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.template = directory / "template.db"
        self._counter = itertools.count()
        migrate.upgrade(f"sqlite:///{self.template}")

    def create(self) -> str:
        path = self.directory / f"test_{next(self._counter)}.db"
        shutil.copyfile(self.template, path)
        return f"sqlite:///{path}"

    def drop(self, url: str) -> None:
        path = Path(make_url(url).database or "")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
