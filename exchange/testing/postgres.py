"""A throwaway PostgreSQL cluster from the local server binaries, for tests and benchmarks.

``initdb`` and ``pg_ctl`` refuse to run as root, so when the caller is root the server
side runs as an unprivileged user (``postgres``, else ``nobody``) through ``runuser``;
as an ordinary user it runs as that user. The cluster listens on 127.0.0.1 on a free
port, with durability turned off (it is thrown away), and trusts local connections.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from exchange.errors import ConfigurationError
from exchange.serving import free_port

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them "
    "(Debian/Ubuntu: `apt-get install postgresql`; Fedora: `dnf install postgresql-server`; "
    "macOS: `brew install postgresql@15`), put their directory on PATH or in "
    "EXCHANGE_PG_BIN, or point EXCHANGE_TEST_DATABASE_URL at a PostgreSQL you can create "
    "databases in."
)

#: Settings for a cluster whose data is disposable: fast, not durable.
THROWAWAY_SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "256MB",
    # Every test's database is created from the template through the WAL (some 10 MB each):
    # recycle it sooner than the default 1 GB, which a cluster in memory would hold.
    "max_wal_size": "256MB",
}


def find_server_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``; the newest installed version wins."""
    candidates: list[str] = []
    if configured := os.environ.get("EXCHANGE_PG_BIN"):
        candidates.append(configured)
    if on_path := shutil.which("pg_ctl"):
        candidates.append(str(Path(on_path).resolve().parent))  # symlinks lead to the install
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda path: int(Path(path).parent.name) if Path(path).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += sorted(glob.glob("/usr/pgsql-*/bin"), reverse=True)
    candidates += sorted(glob.glob("/opt/homebrew/opt/postgresql@*/bin"), reverse=True)
    for directory in candidates:
        if (Path(directory) / "initdb").is_file() and (Path(directory) / "pg_ctl").is_file():
            return Path(directory)
    raise ConfigurationError(INSTALL_HINT)


def unprivileged_user() -> str | None:
    """Who runs the server: ``None`` (the caller) unless the caller is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise ConfigurationError(
        "running as root, and neither a 'postgres' nor a 'nobody' user exists to run "
        "PostgreSQL as; create one (`useradd --system postgres`)"
    )


def as_server_user(run_as: str | None, argv: list[str]) -> list[str]:
    """``argv`` run as the server's user: through ``runuser`` when that is not the caller."""
    return argv if run_as is None else ["runuser", "-u", run_as, "--", *argv]


def server_owned_directory(prefix: str, run_as: str | None) -> Path:
    """A new temporary directory that the server's user owns."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if run_as is not None:
        account = pwd.getpwnam(run_as)
        os.chown(root, account.pw_uid, account.pw_gid)
    return root


@dataclass
class ThrowawayCluster:
    """A PostgreSQL cluster in a temporary directory; :meth:`stop` removes every trace."""

    bin_dir: Path
    root: Path
    port: int
    run_as: str | None
    settings: dict[str, str] = field(default_factory=lambda: dict(THROWAWAY_SERVER_SETTINGS))

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            as_server_user(self.run_as, list(argv)), capture_output=True, text=True, cwd=self.root, check=False
        )
        if result.returncode != 0:
            raise ConfigurationError(
                f"{Path(argv[0]).name} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}"
            )
        return result

    @classmethod
    def start(cls, **settings: str) -> ThrowawayCluster:
        """Initialise and start a cluster; ``settings`` override :data:`THROWAWAY_SERVER_SETTINGS`
        (``synchronous_commit="on"`` keeps commits through :meth:`halt`)."""
        bin_dir = find_server_binaries()
        run_as = unprivileged_user()
        root = server_owned_directory("exchange-pg-", run_as)
        cluster = cls(
            bin_dir=bin_dir,
            root=root,
            port=free_port(),
            run_as=run_as,
            settings={**THROWAWAY_SERVER_SETTINGS, **settings},
        )
        try:
            cluster._initdb()
            cluster._start_server()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    def _initdb(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "--pgdata",
            str(self.root / "data"),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )

    def _start_server(self) -> None:
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.root}",
            *(f"-c {key}={value}" for key, value in self.settings.items()),
        ]
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "--pgdata",
            str(self.root / "data"),
            "--log",
            str(self.root / "server.log"),
            "--options",
            " ".join(options),
            "--wait",
            "start",
        )

    def halt(self) -> None:
        """Stop the server at once, as a crash would (its connections break), keeping its
        data (commits acknowledged with ``synchronous_commit`` off may be lost);
        :meth:`resume` starts it again on the same port."""
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "--pgdata",
            str(self.root / "data"),
            "--mode",
            "immediate",
            "--wait",
            "stop",
        )

    def resume(self) -> None:
        self._start_server()

    def add_password_role(self, role: str, password: str) -> str:
        """A superuser ``role`` that signs in with ``password`` (SCRAM) over TCP, where every
        other role is trusted: the URL of the cluster's database for it."""
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        hba = self.root / "data" / "pg_hba.conf"
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{hba.read_text()}")
        self._run(str(self.bin_dir / "pg_ctl"), "--pgdata", str(self.root / "data"), "reload")
        # The server reads the file again when the signal reaches it: wait until it asks.
        for _ in range(100):
            try:
                psycopg.connect(f"postgresql://{role}@127.0.0.1:{self.port}/postgres", password="").close()
            except psycopg.OperationalError:
                break
            time.sleep(0.05)
        else:
            raise ConfigurationError(f"the server at port {self.port} did not reload {hba}")
        return f"postgresql://{role}:{password}@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self.halt()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
