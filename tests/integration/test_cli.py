"""The `exchange` command, run as a user runs it."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from exchange.cli import main
from exchange.db import migrate
from exchange.serving import KEPT_PORTS, free_port
from tests.conftest import REPO_ROOT, SAMPLE_PARTNERS
from tests.test_repository import graphql_blocks
from tests.unit.test_declarations import use_secret_files
from tests.web import portal_flows

EXCHANGE = str(Path(sys.executable).with_name("exchange"))


def run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXCHANGE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


def run_here(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """:func:`run`'s answer from the same command run in this process, for tests that run
    many: a new process spends about 3 s importing the exchange, this one has it already.

    The command runs on a thread of its own, since it calls ``asyncio.run`` and the test's
    loop is running; an exception it does not turn into an exit status is raised here.
    """
    runner = CliRunner(env={**os.environ, **(env or {})})
    with ThreadPoolExecutor(max_workers=1) as thread:
        result = thread.submit(runner.invoke, main, list(argv), prog_name="exchange").result()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess([EXCHANGE, *argv], result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {"EXCHANGE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}


def test_help_names_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    exit_statuses = result.stdout.split("Exit status:")[1].split("Options:")[0]
    assert [line.split()[0] for line in exit_statuses.splitlines() if line[4:5].isdigit()] == [
        "0",
        "1",
        "2",
        "130",
        "141",
    ]
    for command in (
        "serve",
        "demo",
        "db",
        "partners",
        "schema",
        "sandbox",
        "clients",
        "keys",
        "recover",
        "pending",
        "retrying",
        "batches",
        "ledger",
        "settle",
        "coalition",
        "people",
        "webhooks",
    ):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE), command
    for group, command in (
        ("db", "upgrade"),
        ("partners", "load"),
        ("schema", "export"),
        ("sandbox", "serve"),
        ("clients", "create"),
        ("keys", "rotate"),
        ("settle", "close"),
        ("settle", "reconcile"),
        ("settle", "statement"),
        ("settle", "breaks"),
        ("settle", "resolve"),
        ("settle", "sign-off"),
        ("people", "create"),
        ("batches", "run"),
        ("webhooks", "create"),
        ("webhooks", "replay"),
        ("webhooks", "deliver"),
        ("coalition", "expire"),
    ):
        assert command in run(group, "--help").stdout


def test_upgrade_then_load(sqlite_env: dict[str, str], database_url: str) -> None:
    env = {"EXCHANGE_DATABASE_URL": database_url}
    upgraded = run("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("database at migration ")
    loaded = run("partners", "load", "--dir", str(SAMPLE_PARTNERS), env=env)
    assert loaded.returncode == 0, loaded.stderr
    # Six partners' programs and the coalition point: 7 × 6 pairs.
    assert "7 created, 0 updated, 0 unchanged; 42 rate versions started" in loaded.stdout
    again = run("partners", "load", "--dir", str(SAMPLE_PARTNERS), env=env)
    assert "0 created, 0 updated, 7 unchanged; 0 rate versions started" in again.stdout


def test_a_broken_program_file_is_one_line_naming_file_and_field(sqlite_env: dict[str, str], tmp_path: Path) -> None:
    partners = tmp_path / "partners"
    shutil.copytree(SAMPLE_PARTNERS, partners)
    path = partners / "fresh-mart.toml"
    path.write_text(path.read_text().replace('point_value = "0.1"', 'point_value = "-1"'))
    assert run("db", "upgrade", env=sqlite_env).returncode == 0
    result = run("partners", "load", "--dir", str(partners), env=sqlite_env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: {path}: point_value: must be greater than 0")
    assert result.stdout == ""


def test_a_production_load_refuses_inline_secrets_and_reads_secret_files(
    sqlite_env: dict[str, str], tmp_path: Path
) -> None:
    partners = tmp_path / "partners"
    shutil.copytree(SAMPLE_PARTNERS, partners)
    production = {**sqlite_env, "EXCHANGE_ENVIRONMENT": "production"}
    assert run("db", "upgrade", env=production).returncode == 0
    inline = run("partners", "load", "--dir", str(partners), env=production)
    assert inline.returncode == 2 and inline.stderr.count("\n") == 1
    assert inline.stderr.startswith(
        f"Error: {partners / 'formosa-air.toml'}: connector.oauth.client_secret: an inline secret is refused"
    )

    files = use_secret_files(partners, tmp_path / "secrets")
    files["tune-stream"].write_text("")
    empty = run("partners", "load", "--dir", str(partners), env=production)
    assert empty.returncode == 2
    assert empty.stderr == (
        f"Error: {partners / 'tune-stream.toml'}: connector.oauth.client_secret_file: {files['tune-stream']}: is empty\n"
    )

    files["tune-stream"].write_text("file-secret-tune-stream\n")
    loaded = run("partners", "load", "--dir", str(partners), env=production)
    assert loaded.returncode == 0, loaded.stderr
    assert "7 created" in loaded.stdout  # six partners' programs and the coalition point


def test_loading_into_an_unmigrated_database_says_what_to_run(sqlite_env: dict[str, str]) -> None:
    result = run("partners", "load", "--dir", str(SAMPLE_PARTNERS), env=sqlite_env)
    assert result.returncode == 2
    assert "run `exchange db upgrade`" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_unmigrated_database(sqlite_env: dict[str, str]) -> None:
    result = run("serve", "--port", "0", env=sqlite_env)
    assert result.returncode == 2
    assert "run `exchange db upgrade`" in result.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_serve_names_a_port_in_use_in_one_line(sqlite_env: dict[str, str], taken_port: int) -> None:
    assert run("db", "upgrade", env=sqlite_env).returncode == 0
    for workers in ("1", "2"):
        result = run("serve", "--port", str(taken_port), "--workers", workers, env=sqlite_env)
        assert result.returncode == 2
        assert result.stderr == (
            f"Error: the gateway cannot listen on 127.0.0.1:{taken_port}: the address is already in use; "
            "stop what listens there or choose another port (--port, or EXCHANGE_PORT)\n"
        )


def test_demo_on_a_port_in_use_stops_before_building_anything(
    tmp_path: Path, partners_on_free_ports: Path, taken_port: int
) -> None:
    data = tmp_path / "demo"
    result = run(
        "demo", "--port", str(taken_port), "--data-dir", str(data), "--partners-dir", str(partners_on_free_ports)
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: the gateway cannot listen on 127.0.0.1:{taken_port}: the address is already in use; "
        "stop what listens there (another demo?) or choose another port with --port\n"
    )
    assert "Traceback" not in result.stderr
    assert not data.exists()


def test_demo_with_a_sandbox_port_in_use_stops_before_building_anything(
    tmp_path: Path, partners_on_free_ports: Path, taken_port: int
) -> None:
    """A second demo given another --port: the first one's sandboxes hold their ports."""
    declaration = partners_on_free_ports / "formosa-air.toml"
    declaration.write_text(re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{taken_port}", declaration.read_text()))
    data = tmp_path / "demo"
    result = run("demo", "--port", "0", "--data-dir", str(data), "--partners-dir", str(partners_on_free_ports))
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: sandbox formosa-air (the port of its connector.base_url in {partners_on_free_ports}) cannot listen "
        f"on 127.0.0.1:{taken_port}: the address is already in use; stop what listens there: another demo's "
        "sandboxes hold these ports, so stop that demo first\n"
    )
    assert not data.exists()


def test_demo_with_a_data_dir_it_cannot_create_says_to_choose_another(
    tmp_path: Path, partners_on_free_ports: Path
) -> None:
    (tmp_path / "file").write_text("")
    result = run(
        "demo",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "file" / "demo"),
        "--partners-dir",
        str(partners_on_free_ports),
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: the demo cannot create its data directory {tmp_path / 'file' / 'demo'}: Not a directory; "
        "choose another with --data-dir\n"
    )


def test_upgrade_into_a_missing_directory_says_to_create_it(tmp_path: Path) -> None:
    result = run("db", "upgrade", env={"EXCHANGE_DATABASE_URL": f"sqlite:///{tmp_path / 'missing' / 'x.db'}"})
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: cannot write the database at sqlite:///{tmp_path / 'missing' / 'x.db'}: the directory "
        f"{tmp_path / 'missing'} does not exist: create it, or point EXCHANGE_DATABASE_URL at the database you meant\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_upgrade_to_a_revision_no_migration_has_is_one_line_creating_nothing(tmp_path: Path) -> None:
    """Alembic found out once connected: an SQLite file created, then a traceback."""
    env = {"EXCHANGE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    for revision in ("nope", "", "0"):
        result = run_here("db", "upgrade", "--revision", revision, env=env)
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == (
            f"Error: no migration has the revision {revision!r}: give head (the latest) or one of 0001 to "
            f"{migrate.head_revision()}\n"
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite+aiosqlite://"])
def test_an_sqlite_url_naming_no_file_is_refused_even_by_upgrade(url: str) -> None:
    """`db upgrade` migrated a database in memory, said "database at migration None", exit 0,
    and every command after it found no migration."""
    for argv in (["db", "upgrade"], ["ledger", "verify"]):
        result = run_here(*argv, env={"EXCHANGE_DATABASE_URL": url})
        assert (result.returncode, result.stdout) == (2, ""), argv
        assert result.stderr == (
            f"Error: the database URL {migrate.display_url(url)} names no file: SQLite keeps its database in memory, "
            "gone when the command ends; name a file in EXCHANGE_DATABASE_URL, such as sqlite:///exchange.db\n"
        )


def test_an_sqlite_url_naming_a_directory_says_to_name_a_file_in_it(tmp_path: Path) -> None:
    """Not SQLite's "unable to open database file", told as a server that may be down."""
    for argv in (["db", "upgrade"], ["ledger", "verify"]):
        result = run_here(*argv, env={"EXCHANGE_DATABASE_URL": f"sqlite:///{tmp_path}"})
        assert (result.returncode, result.stdout) == (2, ""), argv
        assert result.stderr == (
            f"Error: the database URL sqlite:///{tmp_path} names a directory, not a file; name a file in "
            f"EXCHANGE_DATABASE_URL, such as sqlite:///{tmp_path / 'exchange.db'}\n"
        )
    assert list(tmp_path.iterdir()) == []


def _database_commands() -> list[list[str]]:
    """Every command that needs the database, with made-up values for what it requires."""

    def argv(command: click.Command, path: list[str]) -> list[list[str]]:
        if isinstance(command, click.Group):
            return [line for name, sub in command.commands.items() for line in argv(sub, [*path, name])]
        if not getattr(command, "needs_database", False):
            return []
        line = list(path)
        for param in command.params:
            value = param.type.choices[0] if isinstance(param.type, click.Choice) else "2024-01"
            if isinstance(param, click.Argument):
                line.append("-" if isinstance(param.type, click.File) else value)
            elif param.required:
                line += [param.opts[0], value]
        return [line]

    return argv(main, [])


def test_every_command_without_its_database_refuses_creating_nothing(tmp_path: Path) -> None:
    commands = _database_commands()
    assert ["ledger", "verify"] in commands and ["serve"] in commands
    env = {**os.environ, "EXCHANGE_DATABASE_URL": "sqlite:///data/exchange.db"}
    processes = [
        subprocess.Popen(
            [EXCHANGE, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for argv in commands
    ]
    for argv, process in zip(commands, processes, strict=True):
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 2, (argv, stderr)
        assert stderr.startswith("Error: no database at sqlite:///data/exchange.db "), (argv, stderr)
    assert list(tmp_path.iterdir()) == []


def test_a_command_in_an_empty_directory_names_the_database_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXCHANGE_DATABASE_URL", raising=False)
    result = run("ledger", "verify", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: no database at sqlite:///exchange.db ({tmp_path / 'exchange.db'} does not exist): "
        "run `exchange db upgrade` to create it, or point EXCHANGE_DATABASE_URL at the database you meant\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["ledger", "verify"], ["db", "upgrade"]])
def test_a_postgresql_database_that_does_not_exist_is_named_with_its_password_masked(
    postgres_server_url: str, tmp_path: Path, argv: list[str]
) -> None:
    server = make_url(postgres_server_url)
    password = server.password or "never-printed"
    url = server.set(database="exchange_no_such_database", password=password).render_as_string(hide_password=False)
    result = run(*argv, env={"EXCHANGE_DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: cannot open the database at postgresql://")
    assert ":***@" in result.stderr and "/exchange_no_such_database (" in result.stderr
    assert str(password) not in result.stderr
    assert "refused the credentials (or the database name) in EXCHANGE_DATABASE_URL" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["settle", "close", "2024-01"], ["db", "upgrade"]])
def test_an_unreachable_postgresql_server_is_one_line_naming_it(argv: list[str]) -> None:
    port = free_port()
    url = f"postgresql://exchange:secret@127.0.0.1:{port}/exchange"
    result = run_here(*argv, env={"EXCHANGE_DATABASE_URL": url})
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"Error: cannot open the database at postgresql://exchange:***@127.0.0.1:{port}/exchange ("
    )
    assert "secret" not in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_an_unmigrated_postgresql_database_says_to_upgrade(postgres_server_url: str) -> None:
    url = make_url(postgres_server_url).set(database="postgres").render_as_string(hide_password=False)
    result = run("keys", "rotate", env={"EXCHANGE_DATABASE_URL": url})
    assert result.returncode == 2
    assert "/postgres is at migration none, this code needs " in result.stderr
    assert "run `exchange db upgrade`, or point EXCHANGE_DATABASE_URL at the database you meant" in result.stderr


def test_a_bad_setting_names_its_variable(sqlite_env: dict[str, str]) -> None:
    result = run("db", "upgrade", env={**sqlite_env, "EXCHANGE_PORT": "eighty"})
    assert result.returncode == 2
    assert result.stderr.startswith("Error: EXCHANGE_PORT: ")
    mysql = run("ledger", "verify", env={**sqlite_env, "EXCHANGE_DATABASE_URL": "mysql://u@h/db"})
    assert (mysql.returncode, mysql.stderr) == (
        2,
        "Error: EXCHANGE_DATABASE_URL: the exchange runs on PostgreSQL (postgresql://user:password@host/database) "
        "or SQLite (sqlite:///file.db), not mysql://\n",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["settle", "statement", "--partner", "formosa-air", "--output", "{file}", "2026-11"],
        ["settle", "reconcile-point", "--keep", "{file}", "2026-11"],
        ["schema", "export", "--output", "{file}"],
    ],
)
def test_a_file_to_write_in_a_directory_that_does_not_exist_is_refused_before_anything_runs(
    tmp_path: Path, sqlite_env: dict[str, str], argv: list[str]
) -> None:
    """Refused as the option is read, naming it: not a traceback once the work is done."""
    missing = tmp_path / "missing"
    option = argv[argv.index("{file}") - 1]
    result = run_here(*(arg.replace("{file}", str(missing / "out")) for arg in argv), env=sqlite_env)
    assert result.returncode == 2
    command = " ".join(itertools.takewhile(lambda arg: not arg.startswith("-"), argv))
    assert result.stderr == (
        f"Error: Invalid value for '{option}': '{missing / 'out'}': its directory {missing} does not exist"
        f" (see 'exchange {command} --help')\n"
    )
    assert list(tmp_path.iterdir()) == []  # not even the database


@pytest.mark.parametrize("command", ["pending", "retrying"])
def test_a_listing_of_a_partner_that_does_not_exist_is_refused(sqlite_env: dict[str, str], command: str) -> None:
    """Not "0 waiting", which reads as though nothing waited for the partner meant."""
    assert run_here("db", "upgrade", env=sqlite_env).returncode == 0
    assert run_here("partners", "load", "--dir", str(SAMPLE_PARTNERS), env=sqlite_env).returncode == 0
    result = run_here(command, "--partner", "fresh-mrt", env=sqlite_env)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "Error: no program has id 'fresh-mrt'; the programs are coalition, formosa-air, fresh-mart, happy-card, "
        "harbor-bank, tune-stream, wallet-pay\n"
    )


def test_ctrl_c_before_a_command_finishes_is_one_line_and_exit_status_130(
    sqlite_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not click's "Aborted!" and 1, which `exchange --help` gives to a ledger that does not add up."""
    assert run_here("db", "upgrade", env=sqlite_env).returncode == 0

    def pressed_ctrl_c(work: object) -> None:
        raise KeyboardInterrupt  # what SIGINT's default handler raises in the command's work

    monkeypatch.setattr("exchange.cli.with_services", pressed_ctrl_c)
    result = run_here("ledger", "verify", env=sqlite_env)
    assert (result.returncode, result.stdout) == (130, "")
    assert result.stderr == "Error: interrupted (Ctrl-C) before the command finished\n"


#: Run before the command: it stops the import of MODULE (once the command imports it) until the
#: test has sent SIGINT, which the wait on standard input receives.
PAUSED_IMPORT = """
import sys

class Pause:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            sys.meta_path.remove(self)
            print("importing", name, flush=True)
            sys.stdin.readline()
        return None

sys.meta_path.insert(0, Pause())
"""


def installed_command(before: str = "") -> list[str]:
    """The `exchange` command as pyproject.toml declares it, run as its installed script runs it
    (the script in the virtual environment is written at install time, from an older checkout
    maybe), after the code ``before``."""
    target = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]["exchange"]
    module, function = target.split(":")
    return [sys.executable, "-c", f"{before}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())"]


def test_ctrl_c_while_the_command_is_still_importing_is_the_same_line_and_130() -> None:
    """Before the command's own handling exists: Python printed a traceback."""
    process = subprocess.Popen(
        [*installed_command(PAUSED_IMPORT.format(module="click")), "--help"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == "importing click\n"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert (process.returncode, stdout, stderr) == (
        130,
        "",
        "Error: interrupted (Ctrl-C) before the command finished\n",
    )


def test_output_whose_reader_stopped_early_ends_the_command_silently_with_141(sqlite_env: dict[str, str]) -> None:
    """`exchange … | head`: as a command SIGPIPE ends, not click's 1, which `exchange --help`
    gives to a ledger that does not add up."""
    assert run_here("db", "upgrade", env=sqlite_env).returncode == 0
    for argv in (["schema", "export"], ["ledger", "verify"]):  # one large write, one short line
        read, write = os.pipe()
        os.close(read)  # the reader has gone before the command writes
        try:
            process = subprocess.run(
                [EXCHANGE, *argv],
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **sqlite_env},
                timeout=120,
                check=False,
            )
        finally:
            os.close(write)
        assert (process.returncode, process.stderr) == (141, ""), argv


@pytest.fixture
def partners_on_free_ports(tmp_path: Path) -> Path:
    """The sample programs, their sandboxes moved off 8701..8706 (another run may hold them), to
    ports kept for servers that start again on the same port: a demo restarted on them must find
    them free, and the servers other tests start meanwhile never choose from there."""
    partners = tmp_path / "partners"
    shutil.copytree(SAMPLE_PARTNERS, partners)
    chosen: set[int] = set()
    for path in partners.glob("*.toml"):
        text = path.read_text()
        for port in set(re.findall(r"127\.0\.0\.1:(\d+)", text)):
            while (moved := free_port(KEPT_PORTS)) in chosen:
                pass
            chosen.add(moved)
            text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{moved}")
        path.write_text(text)
    return partners


def test_sandbox_serve_on_a_port_taken_says_so_and_creates_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_here(
            "sandbox", "serve", "--partner", "tune-stream", "--port", str(port), "--data-dir", str(tmp_path / "sb")
        )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"Error: sandbox tune-stream cannot listen on 127.0.0.1:{port}: the address is already in use; "
        "stop what listens there or choose another port with --port\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_sandbox_serve_with_a_data_dir_it_cannot_create_says_to_choose_another(tmp_path: Path) -> None:
    """Not the traceback of the mkdir its store made."""
    (tmp_path / "file").write_text("")
    result = run_here(
        "sandbox", "serve", "--partner", "tune-stream", "--port", "0", "--data-dir", str(tmp_path / "file" / "sb")
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"Error: sandbox tune-stream cannot create its data directory {tmp_path / 'file' / 'sb'}: Not a directory; "
        "choose another with --data-dir\n"
    )


async def test_sandbox_serve_runs_a_partner_until_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            EXCHANGE,
            "sandbox",
            "serve",
            "--partner",
            "tune-stream",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--partners-dir",
            str(SAMPLE_PARTNERS),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), timeout=60)
        url = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
        assert url is not None, line
        async with httpx.AsyncClient(timeout=30) as client:
            info = (await client.get(url.group(1) + "/_sandbox")).json()
        assert info["program"] == "tune-stream"
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert (tmp_path / "tune-stream.sqlite3").exists()


def test_sandbox_serve_names_an_unknown_program() -> None:
    result = run("sandbox", "serve", "--partner", "nope", "--partners-dir", str(SAMPLE_PARTNERS))
    assert result.returncode == 2
    assert "no program 'nope'" in result.stderr


@pytest.mark.parametrize(
    ("argv", "named_by"),
    [
        ("partners load --dir {missing}", "--dir or EXCHANGE_PARTNERS_DIR"),
        ("sandbox serve --partner fresh-mart --partners-dir {missing}", "--partners-dir or EXCHANGE_PARTNERS_DIR"),
        # The demo reads its option only: its default, partners/, stands for the variable.
        ("demo --port 0 --data-dir {data} --partners-dir {missing}", "--partners-dir"),
    ],
    ids=["partners load", "sandbox serve", "demo"],
)
def test_a_missing_partners_directory_names_the_commands_option(
    tmp_path: Path, sqlite_env: dict[str, str], argv: str, named_by: str
) -> None:
    assert run_here("db", "upgrade", env=sqlite_env).returncode == 0  # `partners load` checks its database first
    missing = tmp_path / "partners"
    result = run_here(*argv.format(missing=missing, data=tmp_path / "data").split(), env=sqlite_env)
    assert result.returncode == 2
    assert result.stderr.endswith(
        f"Error: {missing}: is not a directory: the program declarations are read from it (run where it is,"
        f" or name another with {named_by})\n"
    )


def test_ledger_verify_passes_then_names_a_tampered_transaction(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    env = {"EXCHANGE_DATABASE_URL": url}
    assert run("db", "upgrade", env=env).returncode == 0
    script = (
        "import asyncio\n"
        "from datetime import UTC, datetime\nfrom zoneinfo import ZoneInfo\n"
        "from exchange.db.database import Database\nfrom exchange.ledger.posting import Ledger\n"
        "from exchange.testing.clock import FrozenClock\nfrom tests.integration.test_ledger import payment\n"
        "async def main():\n"
        f"    db = Database.from_url({url!r})\n"
        "    ledger = Ledger(timezone=ZoneInfo('Asia/Taipei'), clock=FrozenClock(datetime.now(UTC)))\n"
        "    async with db.transaction() as session:\n"
        "        for n in range(3):\n"
        "            await ledger.post(session, payment(f't{n}'))\n"
        "    await db.dispose()\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).resolve().parents[2])
    verified = run("ledger", "verify", env=env)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("ledger verified: 3 transactions, 3 accounts, ")
    connection = sqlite3.connect(tmp_path / "ledger.db")
    connection.execute("DROP TRIGGER ledger_transaction_no_update")
    connection.execute("UPDATE ledger_transaction SET reference = 'forged' WHERE seq = 2")
    connection.commit()
    connection.close()
    failed = run("ledger", "verify", env=env)
    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        "ledger verification failed: transaction 't1' (seq 2): "
        "its content does not match its hash (changed after posting)"
    )


@pytest.fixture
def migrated_env(database_url: str) -> dict[str, str]:
    env = {"EXCHANGE_DATABASE_URL": database_url}
    assert run_here("db", "upgrade", env=env).returncode == 0
    assert run_here("partners", "load", "--dir", str(SAMPLE_PARTNERS), env=env).returncode == 0
    return env


def test_clients_create_prints_the_secret_once_and_as_json_for_scripts(migrated_env: dict[str, str]) -> None:
    text = run("clients", "create", "--partner", "formosa-air", env=migrated_env)
    assert text.returncode == 0, text.stderr
    assert re.search(r"^client_id:\s+formosa-air-\w+$", text.stdout, re.MULTILINE)
    assert re.search(r"^client_secret:\s+\S{40,}$", text.stdout, re.MULTILINE)
    assert (
        "role: partner for program formosa-air; scopes: partner:read partner:write; "
        "member scopes: member:coalition member:read member:write"
    ) in text.stdout
    reporting = run(
        "clients", "create", "--partner", "formosa-air", "--scopes", "partner:read", env=migrated_env
    ).stdout
    assert "scopes: partner:read; member scopes: member:read\n" in reporting
    chosen = run(
        "clients",
        "create",
        "--partner",
        "formosa-air",
        "--scopes",
        "partner:read",
        "--member-scopes",
        "member:read,member:write",
        env=migrated_env,
    ).stdout
    assert "scopes: partner:read; member scopes: member:read member:write\n" in chosen

    scripted = run(
        "clients", "create", "--role", "settlement", "--scopes", "settlement:read", "--json", env=migrated_env
    )
    assert scripted.returncode == 0, scripted.stderr
    document = json.loads(scripted.stdout)
    assert set(document) == {"client_id", "client_secret"} and document["client_id"].startswith("settlement-")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--partner", "no-such-program"], "no program has id 'no-such-program'"),
        (["--role", "admin", "--partner", "formosa-air"], "exactly one of --partner"),
        ([], "exactly one of --partner"),
        (["--role", "admin", "--scopes", "partner:read"], "the admin role cannot hold partner:read"),
        (["--role", "admin", "--scopes", "everything"], "unknown scope everything"),
        (["--role", "admin", "--member-scopes", "member:read"], "only a partner's client obtains member tokens"),
        (["--partner", "formosa-air", "--member-scopes", "partner:read"], "member tokens cannot hold partner:read"),
    ],
)
def test_impossible_clients_are_refused_in_one_line(
    migrated_env: dict[str, str], argv: list[str], message: str
) -> None:
    result = run_here("clients", "create", *argv, env=migrated_env)
    assert result.returncode == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_keys_rotate_names_the_new_key_and_what_stays_published(migrated_env: dict[str, str]) -> None:
    first = run("keys", "rotate", env=migrated_env)
    assert first.returncode == 0, first.stderr
    new_kid = re.search(r"^active signing key: (\S+)$", first.stdout, re.MULTILINE)
    assert new_kid is not None
    second = run("keys", "rotate", env=migrated_env)
    assert f"retired key {new_kid.group(1)} stays published until " in second.stdout
    assert new_kid.group(1) in second.stdout.splitlines()[-1]


def test_keys_rotate_compromised_withdraws_the_old_token_key_at_once(migrated_env: dict[str, str]) -> None:
    """``--compromised`` used to be refused for token keys: a leaked key went on verifying (its
    tokens, forged ones too) for an hour after its rotation."""
    first = run("keys", "rotate", env=migrated_env)
    old_kid = re.search(r"^active signing key: (\S+)$", first.stdout, re.MULTILINE)
    assert old_kid is not None
    urgent = run("keys", "rotate", "--compromised", env=migrated_env)
    assert urgent.returncode == 0, urgent.stderr
    assert f"retired key {old_kid.group(1)} is withdrawn, with any retired before it" in urgent.stdout
    assert old_kid.group(1) not in urgent.stdout.splitlines()[-1], "no longer published"


class Demo:
    """``exchange demo`` as a user runs it; ``banner`` is what it printed up to the prompt."""

    def __init__(self, data_dir: Path, cwd: Path, partners: Path) -> None:
        self.process = subprocess.Popen(
            [EXCHANGE, "demo", "--port", "0", "--data-dir", str(data_dir), "--partners-dir", str(partners)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
        )
        self.data_dir = data_dir
        self.banner: list[str] = []

    async def started(self) -> Demo:
        assert self.process.stdout is not None
        while not any("Stop it with Ctrl-C" in line for line in self.banner):
            # Before its banner the demo plays last month, quietly: minutes on a busy machine.
            line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout=300)
            assert line, "the demo exited early:\n" + "".join(self.banner)
            self.banner.append(line)
        return self

    def find(self, pattern: str) -> str:
        match = re.search(pattern, "".join(self.banner))
        assert match is not None, pattern
        return match.group(1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def demo_data(tmp_path: Path, partners_on_free_ports: Path) -> Iterator[Callable[[], Demo]]:
    demos: list[Demo] = []

    def start() -> Demo:
        demos.append(Demo(tmp_path / "demo", tmp_path, partners_on_free_ports))
        return demos[-1]

    try:
        yield start
    finally:
        for demo in demos:
            if demo.process.poll() is None:
                demo.stop()


async def test_demo_serves_the_six_partners_and_the_coalition_point_with_working_credentials(
    demo_data: Callable[[], Demo], tmp_path: Path
) -> None:
    demo = await demo_data().started()
    # Before its banner, a line per slow step, the first at once: a first start takes a while.
    steps = [line for line in demo.banner if line.startswith("demo: ")]
    expected = [
        "demo: starting in ",
        "demo: migrating its database, ",
        "demo: loaded 7 programs from ",
        "demo: starting 6 sandbox partners",
        "demo: playing last month",
        "demo: built ",
        "demo: creating the console's sample sign-ins",
        "demo: starting the gateway",
    ]
    assert [line[: len(step)] for line, step in zip(steps, expected, strict=False)] == expected, steps
    assert "the gateway's addresses are printed once it answers" in steps[0]
    # The planted failures warn once each, not once each recovery round (it read as a loop).
    warned = [
        re.sub(r"; retrying in [0-9.]+s$", "", line.strip())
        for line in demo.banner
        if " failed (" in line or "; will ask again" in line
    ]
    assert warned and len(warned) == len(set(warned)), warned
    assert "of those warnings left out" in next(step for step in steps if step.startswith("demo: built ")), steps
    # As README shows: the other commands reach the demo's database by its URL, relative to
    # where the demo runs (its data dir is tmp_path / "demo").
    verified = run("ledger", "verify", env={"EXCHANGE_DATABASE_URL": "sqlite:///demo/exchange.db"}, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    url = demo.find(r"GraphiQL \(open in a browser\): (http://127\.0\.0\.1:\d+/graphql)")
    path = Path(demo.find(r"OAuth clients and member tokens: (\S+)"))
    assert path.stat().st_mode & 0o777 == 0o600
    credentials = json.loads(path.read_text())
    assert set(credentials["clients"]) == {
        "formosa-air",
        "fresh-mart",
        "happy-card",
        "harbor-bank",
        "tune-stream",
        "wallet-pay",
        "settlement",
        "admin",
    }
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(url, json={"query": "{ programs { id kind } }"})
        kinds = [program["kind"] for program in response.json()["data"]["programs"]]
        assert sorted(kinds) == ["COALITION", *["PARTNER"] * 6]  # six partners and the coalition point
        admin = credentials["clients"]["admin"]
        token = await client.post(
            credentials["token_endpoint"],
            data={"grant_type": "client_credentials"},
            auth=(admin["client_id"], admin["client_secret"]),
        )
        listed = await client.post(
            url,
            json={"query": "{ clients { clientId } }"},
            headers={"authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert len(listed.json()["data"]["clients"]) == 8
        for name in ("alice", "bob"):
            member = credentials["members"][name]
            assert set(member["tokens"]) == {"wallet-pay", "formosa-air"}, "a ready token per asserting partner"
            for program, token in member["tokens"].items():
                me = await client.post(
                    url,
                    json={"query": "{ viewer { assertedBy } me { id linkedAccounts { memberRef program { id } } } }"},
                    headers={"authorization": f"Bearer {token}"},
                )
                assert me.json()["data"] == {
                    "viewer": {"assertedBy": program},
                    "me": {
                        "id": member["member_id"],
                        "linkedAccounts": [
                            # the coalition point's account every member has (its ref: the member's id)
                            {"memberRef": member["member_id"], "program": {"id": "coalition"}},
                            # and the demo's last month linked them at every partner
                            *(
                                {"memberRef": name, "program": {"id": program_id}}
                                for program_id in sorted(set(credentials["clients"]) - {"settlement", "admin"})
                            ),
                        ],
                    },
                }
        partners = dict(
            re.findall(r"^\s+([a-z-]+)\s+(?:rest|graphql)\s+(http://\S+)$", "".join(demo.banner), re.MULTILINE)
        )
        assert set(partners) == set(credentials["clients"]) - {"settlement", "admin"}
        members = (await client.get(partners["tune-stream"] + "/_sandbox/members")).json()
        assert [m["member_ref"] for m in members["members"]] == ["alice", "bob", "carol", "dave", "erin", "frank"]
        await readme_member_token_and_status_match(client, url, tmp_path, demo.data_dir)
    # The banner's settle commands work as printed, from a shell that never activated .venv; on
    # a port of its own, the demo's issuer goes with them (statements name it).
    close = demo.find(
        r"\n    (EXCHANGE_DATABASE_URL=\S+ EXCHANGE_ISSUER=http://127\.0\.0\.1:\d+ \S+ settle close \S+)\n"
    )
    closed = subprocess.run(
        close, shell=True, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=120, check=False
    )
    assert closed.returncode == 0, closed.stderr
    assert ": CLOSED" in closed.stdout
    period = re.search(r"period (\d{4}-\d{2}): CLOSED", closed.stdout)
    assert period is not None, closed.stdout
    await documents_graphql_blocks_answer(url, credentials, period.group(1))


async def documents_graphql_blocks_answer(url: str, credentials: dict[str, Any], period: str) -> None:
    """Every ```graphql block of README, partners/ and docs/ runs against the demo, as the token
    it is written for, and answers without an error: a partner's client-credentials token for
    the program it names (``partnerId``, ``programId``), a member token the debited program
    asserted for ``authorizeDebit``; ``$period`` is the demo's closed last month and ``$csv`` a
    records file of no records."""
    variables = {"period": period, "csv": "reference,amount\n"}
    blocks = graphql_blocks()
    assert len(blocks) >= 7, blocks
    async with httpx.AsyncClient(timeout=60) as client:
        for name, block in blocks:
            query = block.replace("<your program id>", "formosa-air")
            debited = re.search(r'authorizeDebit\(programId: "([a-z-]+)"', query)
            if debited:
                token = credentials["members"]["alice"]["tokens"][debited.group(1)]
            else:
                named = re.search(r'(?:partnerId|programId): "([a-z-]+)"', query)
                assert named is not None, (name, query)
                partner = credentials["clients"][named.group(1)]
                answered = await client.post(
                    credentials["token_endpoint"],
                    data={"grant_type": "client_credentials"},
                    auth=(partner["client_id"], partner["client_secret"]),
                )
                token = answered.json()["access_token"]
            used = {name: value for name, value in variables.items() if f"${name}" in query}
            response = await client.post(
                url, json={"query": query, "variables": used}, headers={"authorization": f"Bearer {token}"}
            )
            answer = response.json()
            assert "errors" not in answer and all(answer["data"].values()), (name, query, answer)


def readme_block(after: str, language: str) -> str:
    """The first ```language block of README.md after the line that begins with ``after``."""
    readme = (REPO_ROOT / "README.md").read_text()
    found = re.search(rf"^{re.escape(after)}.*?^```{language}\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert found is not None, (after, language)
    return found.group(1)


async def readme_member_token_and_status_match(client: httpx.AsyncClient, url: str, cwd: Path, data_dir: Path) -> None:
    """README's `member_token.py`, run as written from where the demo runs (its `.demo`), gives
    erin a token formosa-air asserted; README's status match with it is granted, then too soon."""
    script = cwd / "member_token.py"
    script.write_text(readme_block("demo's credentials file holds each partner's", "python"))
    (cwd / ".demo").symlink_to(data_dir)
    printed = subprocess.run(
        [sys.executable, str(script), "formosa-air", "erin"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )
    assert printed.returncode == 0, printed.stderr
    headers = {"authorization": f"Bearer {printed.stdout.strip()}"}
    preview, request = (
        json.loads(body)
        for body in re.findall(r"'(\{\"query\": .*?\})'", readme_block("With the demo running, erin", "sh"))
    )
    previewed = (await client.post(url, json=preview, headers=headers)).json()["data"]["statusMatchPreview"]
    assert (previewed["outcome"], previewed["tier"]) == ("GRANTED", {"name": "Premium", "level": 1})
    matched = (await client.post(url, json=request, headers=headers)).json()["data"]["requestStatusMatch"]
    assert (matched["status"], matched["tier"]) == ("ACTIVE", {"name": "Premium", "level": 1})
    again = (await client.post(url, json=request, headers=headers)).json()
    assert again["errors"][0]["extensions"]["code"] == "MATCH_TOO_SOON"


async def test_the_demo_restarts_on_its_data_with_fresh_credentials_and_the_same_members(
    demo_data: Callable[[], Demo],
) -> None:
    first = await demo_data().started()
    path = Path(first.find(r"OAuth clients and member tokens: (\S+)"))
    before = json.loads(path.read_text())
    first.stop()
    second = await demo_data().started()
    after = json.loads(path.read_text())
    assert after["members"]["alice"]["member_id"] == before["members"]["alice"]["member_id"]
    assert after["clients"]["admin"]["client_id"] == before["clients"]["admin"]["client_id"]
    assert after["clients"]["admin"]["client_secret"] != before["clients"]["admin"]["client_secret"]
    admin = after["clients"]["admin"]
    async with httpx.AsyncClient(timeout=30) as client:
        token = await client.post(
            after["token_endpoint"],
            data={"grant_type": "client_credentials"},
            auth=(admin["client_id"], admin["client_secret"]),
        )
        listed = await client.post(
            after["graphql"],
            json={"query": "{ clients { clientId } }"},
            headers={"authorization": f"Bearer {token.json()['access_token']}"},
        )
    assert len(listed.json()["data"]["clients"]) == 8, "no client piles up across restarts"
    second.stop()


def test_recover_reports_what_it_drove(migrated_env: dict[str, str]) -> None:
    result = run("recover", env=migrated_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "0 conversions driven; 0 still pending",
        "0 redemptions driven; 0 still pending",
        "0 status matches driven; 0 still pending",
        "0 holds expired unreviewed; 0 still held for review",
        "0 settlement periods left closing finished",
    ]


async def test_in_the_demo_alice_signs_in_to_the_portal_at_a_sandbox_with_her_pin(
    demo_data: Callable[[], Demo],
) -> None:
    demo = await demo_data().started()
    portal = demo.find(r"Member portal \(open in a browser\): (http://127\.0\.0\.1:\d+/portal/)")

    def sign_in() -> str:
        with httpx.Client(base_url=portal.removesuffix("/portal/"), timeout=30) as client:
            portal_flows.sign_in(client, "wallet-pay", "alice", pin="1111")
            return client.get("/portal/").text

    home = await asyncio.to_thread(sign_in)
    assert 'id="account-wallet-pay"' in home and 'id="account-formosa-air"' in home
    assert "You signed in with Wallet Pay Points" in home


def test_coalition_expire_is_idempotent_and_verify_shows_the_points_liability(migrated_env: dict[str, str]) -> None:
    for _ in range(2):
        expired = run_here("coalition", "expire", env=migrated_env)
        assert expired.returncode == 0, expired.stderr
        assert expired.stdout.strip() == "0 coalition points expired from 0 lots in 0 ledger transactions"
    verified = run("ledger", "verify", env=migrated_env)
    assert verified.returncode == 0, verified.stderr
    assert "the coalition point (coalition): 0 points outstanding, liability 0.00 TWD" in verified.stdout
