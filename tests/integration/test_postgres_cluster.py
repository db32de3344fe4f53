"""The throwaway PostgreSQL cluster: it starts as root (through runuser) and as an ordinary user."""

from __future__ import annotations

import multiprocessing
import os
import pwd

import psycopg
import pytest

from exchange.errors import ConfigurationError
from exchange.testing import postgres
from exchange.testing.postgres import ThrowawayCluster


def start_cluster_as(account: pwd.struct_passwd, results: multiprocessing.Queue[object]) -> None:
    """In a forked child: become ``account`` for good, then start and query a cluster."""
    try:
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
        os.environ["HOME"] = account.pw_dir
        cluster = ThrowawayCluster.start()
        try:
            with psycopg.connect(cluster.url) as connection:
                row = connection.execute("select current_user").fetchone()
            results.put((os.getuid(), cluster.run_as, row[0] if row else None))
        finally:
            cluster.stop()
        results.put(cluster.root.exists())
    except BaseException as exc:  # report anything to the parent, which asserts
        results.put(repr(exc))


def test_cluster_starts_for_the_current_user() -> None:
    cluster = ThrowawayCluster.start()
    try:
        assert (cluster.run_as is None) == (os.geteuid() != 0)
        with psycopg.connect(cluster.url) as connection:
            settings = dict(
                connection.execute(
                    "select name, setting from pg_settings where name in ('fsync', 'listen_addresses')"
                ).fetchall()
            )
        assert settings == {"fsync": "off", "listen_addresses": "127.0.0.1"}
    finally:
        cluster.stop()
    assert not cluster.root.exists()


def test_cluster_runs_the_server_as_an_unprivileged_user_when_root() -> None:
    """As root the server runs through runuser; as an ordinary user, as that user.

    Run as root, this test also starts a cluster from a process that has become the
    ordinary ``postgres`` user, so both paths are exercised in one run.
    """
    if os.geteuid() != 0:
        assert postgres.unprivileged_user() is None
        return
    user = postgres.unprivileged_user()
    assert user in ("postgres", "nobody")
    account = pwd.getpwnam(user)
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[object] = context.Queue()
    child = context.Process(target=start_cluster_as, args=(account, results))
    child.start()
    first, second = results.get(timeout=120), results.get(timeout=60)
    child.join(timeout=30)
    assert first == (account.pw_uid, None, "postgres")
    assert second is False


def test_missing_binaries_fail_with_install_instructions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXCHANGE_PG_BIN", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(postgres.glob, "glob", lambda pattern: [])
    with pytest.raises(ConfigurationError) as caught:
        postgres.find_server_binaries()
    assert "apt-get install postgresql" in str(caught.value)
    assert "EXCHANGE_TEST_DATABASE_URL" in str(caught.value)
