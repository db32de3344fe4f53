"""A PostgreSQL failover cluster on loopback, run by pg_auto_failover, for tests.

A monitor and two data nodes, each a ``pg_autoctl`` keeper in a process group of its own:
the first node becomes the primary, the second its synchronous standby. Killing a node's
process group (:meth:`FailoverNode.kill`) is a crashed machine: the keeper goes with its
postmaster (a keeper left alive would restart a killed postmaster, and an old primary
without its keeper is never demoted). The monitor then promotes the standby (about 50 s
with pg_auto_failover's default timeouts, which the cluster keeps so tests measure what
production would see).

Like :class:`~exchange.testing.postgres.ThrowawayCluster`, the server side runs as an
unprivileged user through ``runuser`` when the caller is root, listens on 127.0.0.1 only,
keeps its sockets, configuration and state in one temporary directory, and trusts local
connections. Needs ``pg_autoctl`` and the ``pgautofailover`` extension for the server
binaries found (Debian: ``apt-get install postgresql-15-auto-failover pg-auto-failover-cli``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from exchange.errors import ConfigurationError
from exchange.serving import free_port
from exchange.testing.postgres import as_server_user, find_server_binaries, server_owned_directory, unprivileged_user

DATABASE = "exchange"
FORMATION = "default"
#: Creating the nodes takes about a minute on a busy machine; leave room for a slow one.
START_TIMEOUT_SECONDS = 240

#: Set on each data node before the standby is made. The standby's base backup waits for a
#: checkpoint that is otherwise spread over minutes. fsync only guards against the machine
#: losing power, which tests do not do: a killed node's writes are in the operating system.
#: synchronous_commit stays on: commits wait for the standby.
TEST_NODE_SETTINGS = {"checkpoint_completion_target": "0", "fsync": "off"}


def install_hint(version: str) -> str:
    return (
        f"pg_auto_failover was not found for PostgreSQL {version}: install it "
        f"(Debian/Ubuntu: `apt-get install postgresql-{version}-auto-failover pg-auto-failover-cli`) "
        "so that `pg_autoctl` is on PATH and the server has the pgautofailover extension."
    )


def find_pg_autoctl(bin_dir: Path) -> str:
    """``pg_autoctl``, once the server in ``bin_dir`` has the extension it needs."""
    pg_autoctl = shutil.which("pg_autoctl")
    if pg_autoctl is None:
        raise ConfigurationError(install_hint(bin_dir.parent.name))
    libraries = subprocess.run(
        [str(bin_dir / "pg_config"), "--pkglibdir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not (Path(libraries) / "pgautofailover.so").is_file():
        raise ConfigurationError(install_hint(bin_dir.parent.name))
    return pg_autoctl


@dataclass
class FailoverNode:
    """One ``pg_autoctl`` keeper and the PostgreSQL it runs, in a process group of its own."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    pgdata: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group: keeper, its services and the postmaster, at once; then to
        the postmaster's children, each in a session of its own. Most exit on its death, but the
        monitor's log collector and health-check worker were seen to outlive it."""
        children = self._server_children()
        if self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _server_children(self) -> list[int]:
        """The processes the node's postmaster started, read before it dies (after, they are
        the init process's children and cannot be told from any other)."""
        try:
            postmaster = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # The parent pid is the second field after the command, which is in parentheses.
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return children


@dataclass
class FailoverCluster:
    """A pg_auto_failover monitor and two data nodes; :meth:`stop` removes every trace."""

    pg_autoctl: str
    bin_dir: Path
    root: Path
    run_as: str | None
    monitor: FailoverNode | None = None
    nodes: list[FailoverNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The multi-host URL clients use: libpq tries each node and keeps the one that
        accepts writes, wherever the primary is now."""
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return f"postgresql://postgres@{hosts}/{DATABASE}?target_session_attrs=read-write&connect_timeout=5"

    @property
    def monitor_url(self) -> str:
        assert self.monitor is not None
        return f"postgresql://autoctl_node@127.0.0.1:{self.monitor.port}/pg_auto_failover?sslmode=disable"

    @classmethod
    def start(cls) -> FailoverCluster:
        """Monitor, primary, then its synchronous standby; returns once both are in place."""
        bin_dir = find_server_binaries()
        pg_autoctl = find_pg_autoctl(bin_dir)
        run_as = unprivileged_user()
        cluster = cls(pg_autoctl, bin_dir, server_owned_directory("exchange-pgaf-", run_as), run_as)
        try:
            cluster._start_monitor()
            cluster._start_node("node1")
            cluster._wait("the first node to run alone as primary", lambda: cluster.states() == {"node1": "single"})
            cluster._configure_for_tests(cluster.nodes[0])
            cluster._start_node("node2")
            cluster._wait("a primary and a synchronous secondary", cluster._replicating_synchronously)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    # -- processes ----------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        """pg_autoctl keeps its configuration and state under XDG directories, the servers
        their sockets in PG_REGRESS_SOCK_DIR, where the keepers look for them (PGHOST): all
        in the cluster's directory."""
        return {
            **os.environ,
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.root / "share"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "PG_REGRESS_SOCK_DIR": str(self.root),
            "PGHOST": str(self.root),
        }

    def _command(self, *argv: str) -> list[str]:
        return as_server_user(self.run_as, [self.pg_autoctl, *argv])

    def _run(self, *argv: str) -> str:
        result = subprocess.run(
            self._command(*argv), capture_output=True, text=True, cwd=self.root, env=self._environment(), check=False
        )
        if result.returncode != 0:
            raise ConfigurationError(f"pg_autoctl {argv[0]} {argv[1]} failed ({result.returncode}): {result.stderr}")
        return result.stdout

    def _spawn(self, name: str, port: int, *argv: str) -> FailoverNode:
        log = self.root / f"{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                self._command(*argv),
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self._environment(),
                start_new_session=True,  # its own process group, killed whole
            )
        return FailoverNode(name=name, port=port, process=process, log=log, pgdata=self.root / name)

    def _start_monitor(self) -> None:
        port = free_port()
        pgdata = str(self.root / "monitor")
        self._run(
            "create", "monitor", "--pgdata", pgdata, "--pgport", str(port), "--pgctl", str(self.bin_dir / "pg_ctl"),
            "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl",
        )  # fmt: skip
        self._run("config", "set", "--pgdata", pgdata, "postgresql.listen_addresses", "127.0.0.1")
        self.monitor = self._spawn("monitor", port, "run", "--pgdata", pgdata)
        self._wait("the monitor", lambda: self._query(self.monitor_url, "SELECT 1") is not None)

    def _start_node(self, name: str) -> None:
        """A data node that takes part in the replication quorum: while it is a healthy
        secondary, the primary's commits wait for it (synchronous replication)."""
        port = free_port()
        argv = [
            "create", "postgres", "--pgdata", str(self.root / name), "--pgport", str(port),
            "--pgctl", str(self.bin_dir / "pg_ctl"), "--hostname", "127.0.0.1", "--listen", "127.0.0.1",
            "--auth", "trust", "--no-ssl", "--name", name, "--dbname", DATABASE, "--monitor", self.monitor_url,
            "--replication-quorum", "true", "--candidate-priority", "50", "--run",
        ]  # fmt: skip
        self.nodes.append(self._spawn(name, port, *argv))

    def _configure_for_tests(self, node: FailoverNode) -> None:
        with psycopg.connect(node.url, autocommit=True) as connection:
            for name, value in TEST_NODE_SETTINGS.items():
                connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            connection.execute("SELECT pg_reload_conf()")

    # -- what the cluster says ----------------------------------------------------------

    @staticmethod
    def _query(url: str, statement: str) -> list[tuple[object, ...]] | None:
        """The rows ``statement`` gives at ``url``, or None when nothing answers there."""
        try:
            with psycopg.connect(url, connect_timeout=2, autocommit=True) as connection:
                return list(connection.execute(statement).fetchall())
        except psycopg.OperationalError:
            return None

    def states(self) -> dict[str, str]:
        """Each data node's state as the monitor last heard it (``primary``, ``secondary``,
        ``single``, ``wait_primary``, …)."""
        rows = self._query(
            self.monitor_url, f"SELECT nodename, current_group_state FROM pgautofailover.current_state('{FORMATION}')"
        )
        return {str(name): str(state) for name, state in rows or []}

    def primary(self) -> FailoverNode | None:
        """The node that accepts writes now, if one does (a standby being promoted is out of
        recovery some seconds before it accepts writes)."""
        for node in self.nodes:
            if node.alive and self._query(
                node.url, "SELECT 1 WHERE NOT current_setting('transaction_read_only')::bool"
            ):
                return node
        return None

    def synchronous_standbys(self) -> list[tuple[str, str]]:
        """``(synchronous_standby_names, sync_state)`` of the primary's standbys: the commits
        that must wait for each standby, as the primary has them."""
        primary = self.primary()
        if primary is None:
            return []
        rows = self._query(
            primary.url,
            "SELECT current_setting('synchronous_standby_names'), sync_state FROM pg_stat_replication",
        )
        return [(str(names), str(state)) for names, state in rows or []]

    def _replicating_synchronously(self) -> bool:
        if self.states() != {"node1": "primary", "node2": "secondary"}:
            return False
        return any(names and state in ("sync", "quorum") for names, state in self.synchronous_standbys())

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not ready():
            dead = [node for node in [self.monitor, *self.nodes] if node is not None and not node.alive]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {node.name}:\n{node.log.read_text()[-3000:]}" for node in [self.monitor, *self.nodes] if node
                )
                reason = f"{', '.join(node.name for node in dead)} stopped" if dead else "timed out"
                raise ConfigurationError(f"waiting for {what}: {reason}; states {self.states()}\n{logs}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Kill every keeper (and so every server) and remove the cluster's directory."""
        try:
            for node in [*self.nodes, *([self.monitor] if self.monitor else [])]:
                node.kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
