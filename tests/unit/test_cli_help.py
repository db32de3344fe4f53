"""`exchange --help` and every command's `--help` read alike: each command says what it does
with a verb, every option says what it is for, and the same option takes the same values."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from exchange.cli import main
from tests.conftest import REPO_ROOT

PARTNERS = REPO_ROOT / "partners"


def leaf_commands(command: click.Command = main, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    """Every command that runs something, with its command line after `exchange`."""
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from leaf_commands(sub, (*path, name))
    else:
        yield " ".join(path), command


COMMANDS = list(leaf_commands())


@pytest.mark.parametrize(("line", "command"), COMMANDS, ids=[line for line, _ in COMMANDS])
def test_every_command_says_what_it_does_with_a_verb(line: str, command: click.Command) -> None:
    first_word = command.get_short_help_str(200).split()[0]
    assert first_word[0].isupper() and first_word not in {"The", "A", "An", "Its", "Every"}, (
        f"`exchange {line}`: its help begins {first_word!r}, not with what it does"
    )


@pytest.mark.parametrize(("line", "command"), COMMANDS, ids=[line for line, _ in COMMANDS])
def test_every_option_says_what_it_is_for(line: str, command: click.Command) -> None:
    silent = [param.opts[0] for param in command.params if isinstance(param, click.Option) and not param.help]
    assert silent == [], f"`exchange {line}`: options without help: {silent}"


def test_every_listing_takes_first_from_1_to_500() -> None:
    listings = [
        (line, param.type)
        for line, command in COMMANDS
        for param in command.params
        if isinstance(param, click.Option) and "--first" in param.opts
    ]
    assert len(listings) >= 6
    for line, kind in listings:
        assert isinstance(kind, click.IntRange) and (kind.min, kind.max) == (1, 500), f"exchange {line} --first: {kind}"


@pytest.mark.parametrize(
    "argv",
    [["retrying"], ["pending"], ["webhooks", "deliveries", "sub"], ["webhooks", "log", "sub"], ["risk", "held"]],
)
def test_a_first_out_of_range_is_refused_naming_the_option_before_anything_runs(argv: list[str]) -> None:
    result = CliRunner().invoke(main, [*argv, "--first", "0"], env={"EXCHANGE_DATABASE_URL": "sqlite:///nowhere/x.db"})
    assert result.exit_code == 2
    assert "Invalid value for '--first': 0 is not in the range 1<=x<=500." in result.output


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["clients", "create", "--role", "bogus"],
            "Invalid value for '--role': 'bogus' is not one of 'settlement', 'admin'. "
            "(see 'exchange clients create --help')",
        ),
        (
            ["serve", "--wrokers", "2"],
            "No such option '--wrokers'. Did you mean '--workers'? (see 'exchange serve --help')",
        ),
        (["serve", "--workers"], "Option '--workers' requires an argument. (see 'exchange serve --help')"),
        (["sandbox", "serve"], "Missing option '--partner'. (see 'exchange sandbox serve --help')"),
        (["settle", "close"], "give PERIOD or --previous, one of the two (see 'exchange settle close --help')"),
        (
            ["setle", "close"],
            "No such command 'setle'. (Did you mean one of: 'serve', 'settle'?) (see 'exchange --help')",
        ),
        (["--verbose"], "No such option '--verbose'. (see 'exchange --help')"),
        (["clients", "create", "--role", "a\nb"], "Invalid value for '--role': 'a\\nb' is not one of"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_option_and_the_rule(argv: list[str], line: str) -> None:
    """Not click's three (the usage, a hint, the error): one line, status 2, whether click
    refused the arguments as it read them or the command refused them as it ran; a value's own
    line break cannot make it two."""
    result = CliRunner().invoke(
        main, argv, prog_name="exchange", env={"EXCHANGE_DATABASE_URL": "sqlite:///nowhere/x.db"}
    )
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(f"Error: {line}") and result.stderr.count("\n") == 1, result.stderr


def test_a_group_named_alone_still_shows_its_help() -> None:
    result = CliRunner().invoke(main, ["settle"])
    assert result.exit_code == 2 and "Commands:" in result.output and "close" in result.output


def test_every_command_takes_its_period_as_an_argument() -> None:
    """`exchange settle close 2026-11`, `exchange books P 2026-11`, `exchange ledger archive
    2026-11`: a period is never an option of one command and an argument of the next."""
    takers = {
        line: param
        for line, command in COMMANDS
        for param in command.params
        if param.name == "period" or "--period" in getattr(param, "opts", [])
    }
    assert len(takers) >= 8
    options = [line for line, param in takers.items() if not isinstance(param, click.Argument)]
    assert options == [], f"these take the period as an option: {options}"


def test_exit_status_1_names_every_command_that_exits_1() -> None:
    """`exchange --help` and README say which commands exit 1 (rather than 2, a refusal):
    a scheduler or a script tells "ran, found something wrong" from "refused" by it."""
    exiting = [
        line
        for line, command in COMMANDS
        if command.callback is not None and "sys.exit(1)" in inspect.getsource(inspect.unwrap(command.callback))
    ]
    assert exiting
    help_text = CliRunner().invoke(main, ["--help"]).output
    status_1 = " ".join(help_text.split("\n    1  ")[1].split("\n    2  ")[0].split())
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    readme_1 = readme.split("and 1 only when ")[1].split("(`exchange --help` lists them)")[0]
    for line in exiting:
        assert f"`exchange {line}`" in status_1, f"exchange --help does not say that `exchange {line}` exits 1"
        assert f"`exchange {line}`" in readme_1, f"README does not say that `exchange {line}` exits 1"


@pytest.mark.parametrize(
    ("argv", "refusal"),
    [
        (["serve", "--port", "70000"], "Invalid value for '--port': 70000 is not in the range 0<=x<=65535."),
        (["demo", "--port", "99999"], "Invalid value for '--port': 99999 is not in the range 0<=x<=65535."),
        (
            ["sandbox", "serve", "--partner", "formosa-air", "--port", "-1"],
            "Invalid value for '--port': -1 is not in the range 0<=x<=65535.",
        ),
        (["serve", "--workers", "0"], "Invalid value for '--workers': 0 is not in the range x>=1."),
    ],
)
def test_a_port_or_worker_count_out_of_range_is_refused_naming_the_option(argv: list[str], refusal: str) -> None:
    """Not as the EXCHANGE_PORT setting the value would have reached, which the caller never
    set; and no gateway starts with no worker."""
    result = CliRunner().invoke(main, argv, env={"EXCHANGE_DATABASE_URL": "sqlite:///nowhere/x.db"})
    assert result.exit_code == 2
    assert refusal in result.output


def test_every_option_naming_a_partners_program_is_partner() -> None:
    """The same thing has one name on every command; `--program` is only an old name, hidden."""
    shown = [
        f"exchange {line} {option}"
        for line, command in COMMANDS
        for param in command.params
        if isinstance(param, click.Option) and not param.hidden
        for option in param.opts
        if option == "--program"
    ]
    assert shown == []


@pytest.mark.parametrize("argv", [["pending"], ["retrying"], ["sandbox", "serve"]])
def test_the_old_program_option_is_hidden(argv: list[str]) -> None:
    shown = CliRunner().invoke(main, [*argv, "--help"]).output
    assert ("--partner" in shown, "--program" in shown) == (True, False)


def test_the_old_program_option_still_works_with_one_warning_line() -> None:
    result = CliRunner().invoke(main, ["sandbox", "serve", "--program", "nope", "--partners-dir", str(PARTNERS)])
    warning = "warning: --program is deprecated and will be removed; use --partner (same value)\n"
    assert (result.exit_code, result.stderr.startswith(warning)) == (2, True), result.stderr
    assert "no program 'nope' in" in result.stderr and "choose one of formosa-air, " in result.stderr


@pytest.mark.parametrize(
    "argv", [["--partner", "nope", "--program", "nope"], ["--program", "nope", "--partner", "nope"]]
)
def test_the_old_and_new_option_names_together_are_refused(argv: list[str]) -> None:
    result = CliRunner().invoke(main, ["sandbox", "serve", *argv, "--partners-dir", str(PARTNERS)])
    assert (result.exit_code, "give --partner only" in result.stderr) == (2, True), result.stderr


def test_a_required_option_given_by_neither_name_is_missing() -> None:
    result = CliRunner().invoke(main, ["sandbox", "serve", "--partners-dir", str(PARTNERS)])
    assert (result.exit_code, "Missing option '--partner'" in result.stderr) == (2, True), result.stderr


def test_the_top_level_help_names_an_existing_command_for_each_common_task() -> None:
    """A newcomer reading `exchange --help` finds what to run to start, reset the demo, issue a
    client, rotate a key and close a month; every command it names exists."""
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    tasks = result.output.split("Which command for which task:")[1].split("Exit status:")[0]
    for task in ("try it all on this machine", "give a partner API access", "rotate a signing key", "close last month"):
        assert task in tasks, f"`exchange --help` does not say which command does: {task}"
    assert "to reset" in tasks and "remove .demo" in tasks
    # A month is archived only once the coalition point is signed off too, and no partner sends its records.
    assert "exchange settle reconcile-point PERIOD" in " ".join(tasks.split())
    named = re.findall(r"exchange ((?:[a-z][a-z-]* ?)+)", tasks)
    assert len(named) >= 10
    for words in named:
        command: click.Command = main
        for word in words.split():
            assert isinstance(command, click.Group) and word in command.commands, f"no command `exchange {words}`"
            command = command.commands[word]
            if not isinstance(command, click.Group):
                break
        assert not isinstance(command, click.Group), f"`exchange {words}` names a group, not a command"


def test_the_demos_help_says_how_to_reset_it() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert "to reset the demo, stop it and remove DATA_DIR" in " ".join(result.output.split())


#: What takes most of a second to import, and no command needs to read its arguments.
HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "pydantic_settings", "uvicorn", "starlette", "strawberry", "psycopg")


@pytest.mark.parametrize("argv", [["--help"], ["settle", "resolve", "--help"], ["settle", "close", "--period"]])
def test_help_and_a_mistyped_option_answer_without_the_heavy_imports(argv: list[str]) -> None:
    """`exchange --help` took 0.8 s, importing everything every command uses: each command
    imports what it uses when it runs."""
    loaded = f"""
import sys
from exchange.entry import main
try:
    main()
except SystemExit:
    pass
print(sorted(name for name in sys.modules if name.split(".")[0] in {HEAVY!r}))
"""
    result = subprocess.run(
        [sys.executable, "-c", loaded, *argv], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.stdout.splitlines()[-1] == "[]", result.stdout + result.stderr
