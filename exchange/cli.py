"""The ``exchange`` command: serve the gateway, run the demo, migrate, load partners, export the
schema, create OAuth clients, rotate token- and statement-signing keys, settle periods, and
manage webhook subscriptions.

Each command imports what it uses when it runs: what this module imports itself is what every
command needs to parse its arguments, so that ``--help`` and a mistyped option answer at once
(pydantic, SQLAlchemy, uvicorn and the models take most of a second to import).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ParamSpec, TypeVar

import click

from exchange.auth.scopes import Role, Scope, parse_scopes
from exchange.errors import INTERRUPTED, INTERRUPTED_STATUS, ConfigurationError, ExchangeError
from exchange.settlement.break_kinds import BreakKind, Resolution
from exchange.text import counted, one_line

if TYPE_CHECKING:
    from exchange.conversions.models import Conversion
    from exchange.rewards.models import Redemption
    from exchange.services.container import Services
    from exchange.services.settlement import BreakView, ReconciliationView
    from exchange.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")

#: How many rows a listing's ``--first`` may ask for: what every listing service takes (1 to
#: 500), checked as the option is read so that a wrong value names ``--first``.
FIRST = click.IntRange(1, 500)

#: A TCP port to listen on (0: any free one), checked as the option is read so that a wrong
#: value names the option rather than the EXCHANGE_PORT setting it would otherwise reach.
PORT = click.IntRange(0, 65535)

#: How long ``serve``'s workers may take to answer uvicorn's health check (see ``serve``).
WORKER_HEALTHCHECK_SECONDS = 60


class OutputFile(click.Path):
    """A file a command writes, refused as the option is read (so before the command opens the
    database or changes anything) when its directory does not exist or cannot be written:
    click checks only a file that exists already, and the write would otherwise fail at the
    end, with a traceback."""

    def __init__(self) -> None:
        super().__init__(dir_okay=False, writable=True, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(os.fsdecode(super().convert(value, param, ctx)))
        directory = path.absolute().parent
        if not directory.is_dir():
            self.fail(f"'{path}': its directory {directory} does not exist", param, ctx)
        if not os.access(directory, os.W_OK):
            self.fail(f"'{path}': its directory {directory} is not writable", param, ctx)
        return path


class CommandFailed(click.ClickException):
    """A failure the user can act on: one line on stderr, exit status 2."""

    exit_code = 2

    def format_message(self) -> str:
        return self.message


class RenamedOption(click.Option):
    """An option that its old, hidden name (:func:`old_name`) may have given a value already:
    then it is not missing, even when required."""

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        by_old_name = ctx.params.get(str(self.name))
        if by_old_name is not None:
            if not self.value_is_missing(value):
                raise click.UsageError(f"give {self.opts[0]} only: its old name gave it too", ctx)
            return by_old_name
        return super().process_value(ctx, value)


def old_name(old: str, new: str, name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``old``, hidden, still giving the value of ``new`` (an option of ``cls=RenamedOption``
    whose parameter is ``name``), with one line on stderr saying to use ``new``: scripts written
    before the rename keep working while they are changed."""

    def given_as_new(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is None:
            return
        if ctx.params.get(name) is not None:
            raise click.UsageError(f"give {new} only: {old} is its old name", ctx)
        click.echo(f"warning: {old} is deprecated and will be removed; use {new} (same value)", err=True)
        ctx.params[name] = value

    return click.option(
        old,
        f"{name}_by_old_name",
        hidden=True,
        expose_value=False,
        callback=given_as_new,
        help=f"The old name of {new}, deprecated.",
    )


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with command-line options on top."""
    from pydantic import ValidationError

    from exchange.settings import Settings

    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "EXCHANGE_" + "_".join(str(part) for part in first["loc"]).upper()
        raise CommandFailed(f"{name}: {str(first['msg']).removeprefix('Value error, ')}") from None


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into one readable line instead of a traceback."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from sqlalchemy.exc import OperationalError

        from exchange.db.availability import refused_by_configuration

        try:
            return command(*args, **kwargs)
        except (ExchangeError, ConfigurationError) as exc:
            raise CommandFailed(str(exc)) from None
        except OperationalError as exc:
            if refused_by_configuration(exc):
                raise CommandFailed(
                    f"the database refused the credentials (or the database name) in EXCHANGE_DATABASE_URL: {exc.orig}"
                ) from None
            raise CommandFailed(f"cannot use the database: {exc.orig}") from None

    return wrapper


def run_async(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run ``coroutine`` in an event loop of uvicorn's choosing, as ``exchange serve`` runs the
    gateway: uvloop where it is installed. The demo and the sandbox partners serve in this loop,
    and asyncio's own spends about a fifth more of their CPU on each request."""
    import asyncio

    from uvicorn.loops.auto import auto_loop_factory

    with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
        return runner.run(coroutine)


def usage_refusal(error: click.UsageError, command_path: str) -> CommandFailed:
    """A usage error as one line: click's message (which names the option and the rule it
    breaks) and where the command's help is, instead of click's three (the usage line, a hint,
    then the error). Exit status 2, as every refusal."""
    return CommandFailed(f"{one_line(error.format_message())} (see '{command_path} --help')")


class OneLineUsage(click.Command):
    """A command whose arguments, refused as they are read, are refused in one line
    (:func:`usage_refusal`); :class:`Group` does the same for its commands' own."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise  # a group named alone shows its help
        except click.UsageError as error:
            path = " ".join(part for part in (parent.command_path if parent else "", info_name or "") if part)
            raise usage_refusal(error, error.ctx.command_path if error.ctx else path) from None


class Command(OneLineUsage):
    """A command that refuses to run unless EXCHANGE_DATABASE_URL names a migrated database.

    Deny by default: every command needs the database unless declared with
    ``needs_database=False`` (those that create it, or use none). The check runs after the
    arguments are parsed (so --help and usage errors come first) and before the command
    does anything, and it creates nothing.
    """

    def __init__(self, *args: Any, needs_database: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.needs_database = needs_database

    def invoke(self, ctx: click.Context) -> Any:
        if self.needs_database:
            from exchange.db import migrate

            try:
                migrate.ensure_migrated(load_settings().database_url)
            except ConfigurationError as exc:
                raise CommandFailed(str(exc)) from None
        return super().invoke(ctx)


class Interrupted(click.ClickException):
    """Ctrl-C before the command finished: one line and exit status 130, as a shell reports a
    command SIGINT ended, instead of click's "Aborted!" and 1, which means what `exchange --help`
    says it means."""

    exit_code = INTERRUPTED_STATUS

    def __init__(self) -> None:
        super().__init__(INTERRUPTED)


class Group(OneLineUsage, click.Group):
    """A command group whose commands, and subgroups' commands, are ``Command``s; a usage error
    a command raises as it runs is one line too (:func:`usage_refusal`)."""

    command_class = Command
    group_class = type

    def invoke(self, ctx: click.Context) -> Any:
        try:
            done = super().invoke(ctx)
            sys.stdout.flush()  # what is still buffered meets a closed pipe here, not unseen at exit
            return done
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as error:
            raise usage_refusal(error, (error.ctx or ctx).command_path) from None
        except KeyboardInterrupt:
            raise Interrupted() from None
        except BrokenPipeError:
            # What read standard output stopped early (`exchange … | head`): end silently, as a
            # command SIGPIPE ends, with the status a shell reports for one (128 + 13), not
            # click's 1, which means what `exchange --help` says it means.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)


def with_services(work: Callable[[Services], Awaitable[R]]) -> R:
    """Run ``work`` on the application services of the database the environment names, and
    close them afterwards."""
    from exchange.services.container import open_services

    async def run() -> R:
        async with open_services(load_settings()) as services:
            return await work(services)

    return run_async(run())


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """The coalition points exchange.

    Partners' loyalty programs, joined: federated balances, conversions between programs,
    tier matching, cross-partner redemptions, and a double-entry clearing ledger settled
    every month. Settings come from EXCHANGE_* environment variables (see README.md).

    \b
    Which command for which task:
      try it all on this machine   exchange demo (it keeps its state in .demo; to reset
                                   it, stop it and remove .demo)
      run it on a database         exchange db upgrade, exchange partners load, exchange serve
      give a partner API access    exchange clients create --partner P
      let staff sign in            exchange people create
      rotate a signing key         exchange keys rotate (--statements for statements)
      close last month             exchange settle close --previous; then, per partner,
                                   exchange settle reconcile, exchange settle resolve,
                                   exchange settle sign-off; the coalition point's
                                   records come from exchange settle reconcile-point
                                   PERIOD, then resolve and sign off as for a partner
      finish what a crash left     exchange recover

    \b
    Exit status:
      0  done
      1  `exchange ledger verify` found the ledger does not add up (it names the first
         bad transaction or lot), `exchange batches run` held back a partner's
         batches for the next run (it names the partner and why), or driving a saga in
         `exchange recover` raised an unexpected error (it names the rows)
      2  refused: a wrong option or argument, a bad setting, a database missing or not
         migrated, or a request the exchange refuses (a period not closed, breaks
         unresolved, ...); one line on standard error says why
    130  interrupted by Ctrl-C before it finished
    141  what read its output stopped early (`| head`); it ends silently
    """


@main.command()
@click.option("--host", help="Address to bind (default: EXCHANGE_HOST or 127.0.0.1).")
@click.option("--port", type=PORT, help="Port to bind, 0 for any free one (default: EXCHANGE_PORT or 8000).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@reports_errors
def serve(host: str | None, port: int | None, workers: int) -> None:
    """Serve the GraphQL gateway on an already-migrated database.

    GraphQL (and GraphiQL in a browser) is at /graphql; /healthz and /readyz answer
    load balancers; /metrics answers Prometheus (not through a proxy). The access log
    (standard output) names each request's path and query parameters, never their values;
    EXCHANGE_LOG_FORMAT chooses text or JSON lines.
    """
    import uvicorn

    from exchange.access_log import uvicorn_log_config
    from exchange.serving import ensure_free, listening_socket
    from exchange.web.security import gateway_protocol

    settings = load_settings(host=host, port=port)
    if settings.port == 0:  # any free one, chosen now as the demo chooses: the issuer URL names it
        with listening_socket(settings.host, 0, name="the gateway") as probe:
            settings = load_settings(host=settings.host, port=probe.getsockname()[1])
    settings.check_for_production()
    from exchange.observability.tracing import chosen_exporter

    # Refused here, once, in one line, rather than by each worker in turn with a trace.
    chosen_exporter(os.environ)
    with_services(lambda services: services.ensure_signing_keys())
    ensure_free(  # one line, before any worker starts
        settings.host,
        settings.port,
        name="the gateway",
        remedy="stop what listens there or choose another port (--port, or EXCHANGE_PORT)",
    )
    # The app factory (in every worker process) reads its settings from the environment:
    # hand the command-line options on that way, or the issuer would name the default port.
    os.environ["EXCHANGE_HOST"], os.environ["EXCHANGE_PORT"] = settings.host, str(settings.port)
    with metrics_directory(workers):
        uvicorn.run(
            "exchange.app:create_app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_level=settings.log_level,
            log_config=uvicorn_log_config(settings.chosen_log_format, settings.log_level),
            proxy_headers=True,
            http=gateway_protocol(secure=settings.served_over_https),
            limit_concurrency=settings.max_connections,
            # uvicorn kills a worker that does not answer its health check within this time, and
            # starts another. Its default (5 s) is shorter than a worker's start-up (imports, app)
            # on a busy machine: each replacement was killed in turn, and the gateway spent its CPU
            # starting workers instead of serving.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )


@contextmanager
def metrics_directory(workers: int) -> Iterator[None]:
    """For several workers, the directory where each records its metrics for /metrics to add up
    (prometheus-client's multiprocess mode, told by PROMETHEUS_MULTIPROC_DIR, which the workers
    inherit): the one that variable names, emptied of an earlier run's files, or a new temporary
    one, removed afterwards. One worker keeps its metrics in memory."""
    if workers <= 1:
        yield
        return
    from exchange.observability.metrics import MULTIPROCESS_DIRECTORY

    given = os.environ.get(MULTIPROCESS_DIRECTORY)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    with tempfile.TemporaryDirectory(prefix="exchange-metrics-") as directory:
        os.environ[MULTIPROCESS_DIRECTORY] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIRECTORY]


@main.command(needs_database=False)
@click.option("--port", type=PORT, default=8000, show_default=True, help="Gateway port (0: any free one).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".demo"),
    show_default=True,
    help="Where the demo keeps its state: its SQLite database, the sandbox partners' (sandboxes/),"
    " credentials.json and last month's partner file.",
)
@click.option(
    "--partners-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("partners"),
    show_default=True,
    help="Program declarations to load.",
)
@reports_errors
def demo(port: int, data_dir: Path, partners_dir: Path) -> None:
    """Run the whole exchange on this machine with sample data.

    Migrates an embedded SQLite database in DATA_DIR, loads the sample programs from
    PARTNERS_DIR, starts a sandbox partner for every program whose connector points at
    loopback (on the port its base_url names, its state in DATA_DIR/sandboxes), starts the
    gateway on 127.0.0.1, writes sample OAuth credentials and ready member tokens to
    DATA_DIR/credentials.json, and prints where to point a browser. Stop it with Ctrl-C.

    Everything it makes stays in DATA_DIR, and a restart goes on with it (last month is
    played once, fresh member tokens are written): to reset the demo, stop it and remove
    DATA_DIR.
    """
    click.echo(
        f"demo: starting in {data_dir}; a first start takes up to a minute or two (it migrates a database and "
        "plays last month); the gateway's addresses are printed once it answers"
    )
    from exchange.demo import run_demo  # after the line above: importing the whole exchange takes seconds
    from exchange.serving import free_port

    settings = load_settings(
        database_url=f"sqlite:///{(data_dir / 'exchange.db').resolve()}",
        partners_dir=partners_dir,
        host="127.0.0.1",
        # Port 0 is resolved now, not by the server: the port is part of the issuer URL.
        port=port or free_port(),
    )
    run_async(run_demo(settings, data_dir))


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade", needs_database=False)
@click.option("--revision", default="head", show_default=True, help="Target migration.")
@reports_errors
def db_upgrade(revision: str) -> None:
    """Create or migrate the database named by EXCHANGE_DATABASE_URL."""
    from exchange.db import migrate

    settings = load_settings()
    migrate.upgrade(settings.database_url, revision)
    click.echo(f"database at migration {migrate.current_revision(settings.database_url)}")


@main.group()
def partners() -> None:
    """Partner program declarations (partners/*.toml)."""


@partners.command("load")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    help="Directory of declarations (default: EXCHANGE_PARTNERS_DIR or partners/).",
)
@reports_errors
def partners_load(directory: Path | None) -> None:
    """Validate every declaration, then create or update the programs in the database.

    Nothing is loaded unless every file is valid; the first problem is reported as
    FILE: FIELD: REASON.
    """
    from exchange.services.container import load_partners_directory

    settings = load_settings(partners_dir=directory)
    loaded = run_async(load_partners_directory(settings, named_by="--dir or EXCHANGE_PARTNERS_DIR"))
    report = loaded.programs
    click.echo(
        f"loaded {settings.partners_dir}: {len(report.created)} created, "
        f"{len(report.updated)} updated, {len(report.unchanged)} unchanged; "
        f"{counted(loaded.rate_versions_started, 'rate version')} started"
    )


@main.command()
@reports_errors
def recover() -> None:
    """Drive every saga left mid-way on now, once: what the gateway's background jobs do.

    Use it after a crash, or with the jobs' intervals at 0 (EXCHANGE_RECOVERY_INTERVAL_SECONDS,
    EXCHANGE_REDEMPTION_INTERVAL_SECONDS, EXCHANGE_STATUS_MATCH_EXPIRY_INTERVAL_SECONDS). It
    asks each partner for the status of operations whose outcome is unknown and finishes
    conversions, redemptions and status matches (undelivered rewards start reversing, expired
    matches reverting, as the jobs do); one it cannot settle yet stays pending. A row a
    gateway process is still driving is left to it until its lease ends
    (EXCHANGE_SAGA_LEASE_SECONDS, 30 s by default): after a crash the process is dead, and the
    report says when its rows can be taken up. One line per kind: conversions, redemptions,
    status matches; then the holds whose review time has passed end unreviewed, as the
    hold-expiry job ends them, on a line with the holds left for staff; last, the settlement
    periods a crashed close left CLOSING are closed (statements issued), on a line naming them,
    and so are the statements a close cut while issuing them left unissued.

    A row whose driving raised an unexpected error (a bug, logged with its trace) is put off
    until its retry back-off, its error kept (`exchange retrying` shows it once it keeps
    failing); each kind with such rows has a line on standard error naming them, and the
    command exits 1 after the pass.
    """
    recovery = with_services(lambda services: services.recover())
    for report in recovery.sagas:
        leased = ""
        if report.leased and report.leased_until is not None:
            leased = (
                f", {report.leased} of them in the hands of a gateway process until "
                f"{report.leased_until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
                " (if that process died, run this again after that)"
            )
        noun = counted(report.driven, report.saga)
        click.echo(f"{noun} driven; {report.pending} still pending{leased}")
        if report.faulted:
            click.echo(
                f"{counted(len(report.faulted), report.saga)} failed with an unexpected error "
                f"(see the log), put off to be tried again: {', '.join(report.faulted)}",
                err=True,
            )
    holds = recovery.holds
    click.echo(f"{counted(holds.expired, 'hold')} expired unreviewed; {holds.held} still held for review")
    closes = recovery.closes
    finished = f": {', '.join(closes.finished)}" if closes.finished else ""
    refused = "".join(f"; {period} still closing: {reason}" for period, reason in closes.refused)
    issued = "".join(
        f"; {period} closed with statements left unissued, now issued: {', '.join(map(_statement_of, participants))}"
        for period, participants in closes.issued
    )
    click.echo(f"{counted(len(closes.finished), 'settlement period')} left closing finished{finished}{issued}{refused}")
    if any(report.faulted for report in recovery.sagas):
        sys.exit(1)


@main.command()
@reports_errors
def prune() -> None:
    """Delete what is past its keeping, once: what the gateway's retention job does.

    Quotes never executed go a week after they expired; ended webhook deliveries, their
    attempts and their events after EXCHANGE_WEBHOOK_RETENTION_DAYS; removed assertion keys and
    deleted webhook subscriptions 30 days after their removal (a subscription once its log is
    gone), and webhook replays made with an idempotency key 30 days after they were made.
    Nothing that moved points or money is pruned.
    """
    pruned = with_services(lambda services: services.retention.run_once())
    click.echo(f"pruned {pruned}")


@main.command()
@click.option("--partner", "program", cls=RenamedOption, help="Only the writes waiting for this partner (program id).")
@old_name("--program", "--partner", "program")
@click.option("--first", type=FIRST, default=50, show_default=True, help="How many, oldest first.")
@reports_errors
def pending(program: str | None, first: int) -> None:
    """List the debits and credits waiting for a partner's late word, oldest first.

    A partner that answered "accepted, pending" (or a batch partner whose credits file is
    not yet answered) settles them later, by callback or result file; meanwhile the
    exchange polls it with back-off. Each line: saga, id, program, operation, points,
    waiting since, for how long, polls so far, next poll.
    """
    waiting = with_services(lambda services: services.late.waiting(first=first, program_id=program)).items
    for write in waiting:
        click.echo(
            f"{write.saga}\t{write.id}\t{write.program_id}\t{write.operation_id}\t{write.points}\t"
            f"{write.waiting_since.isoformat()}\t{_duration(write.age)}\t{write.polls}\t{write.next_poll_at.isoformat()}"
        )
    click.echo(f"{len(waiting)} waiting", err=True)


@main.command()
@click.option("--partner", "program", cls=RenamedOption, help="Only the steps that ask this partner (program id).")
@old_name("--program", "--partner", "program")
@click.option(
    "--first", type=FIRST, default=50, show_default=True, help="How many, the oldest first (by when each was made)."
)
@reports_errors
def retrying(program: str | None, first: int) -> None:
    """List the conversions, redemptions and status matches a partner keeps failing.

    A step the partner cannot be reached for, leaves unanswered, or refuses where the contract
    allows no refusal (a reversal refused) is asked again with back-off, and nothing moves
    until the partner answers otherwise: take these up with the partner. Each line: saga, id,
    program, status, step, attempts, failing since, for how long, next attempt, last error
    (its unprintable characters, a partner's line break say, written as escapes).
    """
    failing = with_services(lambda services: services.retrying.listed(first=first, program_id=program)).items
    for row in failing:
        click.echo(
            f"{row.saga}\t{row.id}\t{row.program_id}\t{row.status}\t{row.step}\t{row.attempts}\t"
            f"{row.since.isoformat()}\t{_duration(row.age)}\t{row.next_attempt_at.isoformat()}\t"
            f"{one_line(row.last_error)}"
        )
    click.echo(f"{len(failing)} retrying", err=True)


def _duration(age: timedelta) -> str:
    """``2d03h04m``, ``03h04m`` or ``4m05s``: how long something has waited."""
    seconds = int(age.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    return f"{hours:02d}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


@main.group()
def batches() -> None:
    """Credits files for batch-mode partners."""


@batches.command("run")
@reports_errors
def batches_run() -> None:
    """Send batch-mode partners the credits waiting for them and apply the result files they
    have answered, once: what the gateway's job does every EXCHANGE_BATCH_INTERVAL_SECONDS.
    Run it from a daily scheduler to send the day's file. A partner that fails (down, or
    answering a file the exchange refuses) holds back only its own batches: the others go on, and
    the command names it and why and exits 1; its batches wait for the next run."""
    done = with_services(lambda services: services.batches.run_once())
    click.echo(
        f"{counted(done.sent, 'file')} sent; {counted(done.applied, 'result')} applied; "
        f"{done.mismatched} with other points than sent, asked about; {done.missing} left out, to be polled"
    )
    for program_id, why in done.failed.items():
        click.echo(f"{program_id}: its batches wait for the next run: {why}", err=True)
    if done.failed:
        sys.exit(1)


@main.group()
def ledger() -> None:
    """The clearing ledger."""


@ledger.command("verify")
@reports_errors
def ledger_verify() -> None:
    """Recompute every transaction's sums, every shard's hash chains, the close anchors and every
    account balance, and check the coalition point's lots against the ledger (printing its
    outstanding liability).

    Exits 1, naming the first bad transaction (or lot), if anything is off. An archived period's
    chains are checked against the heads its close anchor recorded.
    """
    checked = with_services(lambda services: services.settlement.verify_ledger())
    if checked.problem is not None:
        click.echo(f"ledger verification failed: {checked.problem}", err=True)
        sys.exit(1)
    verification = checked.verification
    click.echo(
        f"ledger verified: {counted(verification.transactions, 'transaction')}, "
        f"{counted(verification.accounts, 'account')}, {counted(verification.chains, 'chain')}, "
        f"last close anchor {verification.head_hash}"
    )
    if checked.point is not None:
        rules, point = checked.point.rules, checked.point.check
        click.echo(
            f"the coalition point ({rules.program_id}): {counted(point.outstanding, 'point')} outstanding, liability "
            f"{rules.currency.from_minor(point.liability_minor)} {rules.currency.code} (lots agree with the ledger)"
        )


@main.group()
def coalition() -> None:
    """The coalition point the exchange issues (docs/COALITION.md)."""


@coalition.command("expire")
@reports_errors
def coalition_expire() -> None:
    """Expire the coalition points whose lots are due now and post their breakage to the ledger.

    Idempotent: a second run expires nothing more. The gateway runs the same pass every
    EXCHANGE_COALITION_EXPIRY_INTERVAL_SECONDS.
    """
    report = with_services(lambda services: services.coalition.expire())
    click.echo(
        f"{counted(report.points, 'coalition point')} expired from {counted(report.lots, 'lot')} "
        f"in {counted(report.transactions, 'ledger transaction')}"
    )


@ledger.command("archive")
@click.option(
    "--export",
    type=click.Path(file_okay=False, path_type=Path),
    help=(
        "Directory to write the period's transactions and legs to (CSV), before they are detached"
        " (a period archived already: from its detached tables, until they are dropped)."
    ),
)
@click.argument("period")
@reports_errors
def ledger_archive(export: Path | None, period: str) -> None:
    """Detach the ledger partitions of PERIOD (YYYY-MM; PostgreSQL), exporting them first if asked.

    PERIOD is a closed period every partner has signed off. Every statement of the period not
    issued yet is issued first (it is built from those rows). Its rows leave the ledger's tables
    as tables of their own (dump them, then drop them); `exchange ledger verify` then checks the
    period against its close anchor.
    """
    archive = with_services(lambda services: services.settlement.archive(period, export=export))
    click.echo(
        f"period {archive.period} archived at {archive.archived_at.isoformat()}: "
        f"{counted(archive.transactions, 'transaction')}, "
        f"close anchor {archive.anchor_hash}"
    )
    for path in archive.exported:
        click.echo(f"  exported {path}")


@main.group()
def settle() -> None:
    """Monthly settlement: close periods, reconcile partners' records, issue statements."""


def _operator() -> str:
    """Who a command acts as, as recorded with what it changes."""
    import getpass

    return f"cli:{getpass.getuser()}"


def _period_or_previous(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """PERIOD or --previous, exactly one: checked while parsing (by whichever of the two click
    takes second), so that the mistake is reported before anything opens the database."""
    given = {**ctx.params, str(param.name): value}
    if {"period", "previous"} <= given.keys() and given["previous"] == (given["period"] is not None):
        raise click.UsageError("give PERIOD or --previous, one of the two", ctx)
    return value


@settle.command("close")
@click.option(
    "--previous",
    is_flag=True,
    callback=_period_or_previous,
    help="Close the period that ended last (in EXCHANGE_SETTLEMENT_TIMEZONE) instead of naming one.",
)
@click.argument("period", required=False, callback=_period_or_previous)
@reports_errors
def settle_close(previous: bool, period: str | None) -> None:
    """Close PERIOD (YYYY-MM), or with --previous the period that ended last, and print every
    participant's position, what netting saves and the coalition point's liability.

    The period must be over (in EXCHANGE_SETTLEMENT_TIMEZONE) and every earlier period with
    postings closed. Closing a closed period prints its figures again and changes nothing, so
    a monthly job may run --previous whatever the period length; but if a closing was cut while
    it issued the statements, it issues those left unissued, and says so on a line of its own.
    """
    report = with_services(
        lambda services: services.settlement.close(period or services.settlement.previous_period(), by=_operator())
    )
    money = report.currency.from_minor
    click.echo(f"period {report.period}: {report.status}")
    if report.issued_now and not report.closed_now:
        click.echo(
            f"closed already; issued {counted(len(report.issued_now), 'statement')} left unissued by a closing "
            f"cut while issuing them: {', '.join(map(_statement_of, report.issued_now))}"
        )
    code = report.currency.code
    # In the consoles' and the statements' order: receivable, payable, net.
    headings = (f"{name} ({code})" for name in ("opening", "receivable", "payable", "net", "closing"))
    click.echo(f"{'participant':<20} " + " ".join(f"{heading:>16}" for heading in headings))
    for p in report.positions:
        click.echo(
            f"{p.participant:<20} {money(p.opening):>16} {money(p.receivable):>16} {money(p.payable):>16} "
            f"{money(p.net):>16} {money(p.opening + p.net):>16}"
        )
    click.echo(f"net positions sum to {money(sum(p.net for p in report.positions))} {report.currency.code}")
    if (saving := report.saving) is not None:
        for name, payments in (
            ("gross", saving.gross),
            ("bilateral", saving.bilateral),
            ("multilateral", saving.multilateral),
        ):
            click.echo(
                f"payments {name + ':':<14} {payments.count:>8} moving {money(payments.total):>16} {report.currency.code}"
            )
    if (liability := report.coalition_liability) is not None:
        click.echo(
            f"the coalition point ({liability.program_id}) at the period's end: {counted(liability.points, 'point')} outstanding "
            f"× {liability.point_value} {report.currency.code} = liability {money(liability.liability_minor)} "
            f"{report.currency.code} (half-even to the minor unit)"
        )


IMPORTED_BY_HELP = "Who is recorded as having imported them (default: cli:<your user name>)."


@settle.command("reconcile")
@click.option("--partner", required=True, help="The partner's program id.")
@click.option("--as", "actor", help=IMPORTED_BY_HELP)
@click.argument("period")
@click.argument("file", type=click.File("rb"))
@reports_errors
def settle_reconcile(partner: str, actor: str | None, period: str, file: BinaryIO) -> None:
    """Import a partner's records of the closed PERIOD from FILE (CSV, `-` for standard
    input) and print how its lines compared with the ledger.

    The file streams through, whatever its size; a malformed line stops the import with its
    number and the reason, and nothing is imported. The format is in partners/SETTLEMENT.md,
    "Your records (CSV)".
    """
    view = with_services(lambda services: services.settlement.import_records(partner, period, file, by=_actor(actor)))
    _print_reconciliation(view)


@settle.command("reconcile-point")
@click.option(
    "--keep",
    type=OutputFile(),
    help="Also write the records imported to this file (the records-file format); a refused import writes none.",
)
@click.option("--as", "actor", help=IMPORTED_BY_HELP)
@click.argument("period")
@reports_errors
def settle_reconcile_point(keep: Path | None, actor: str | None, period: str) -> None:
    """Reconcile the coalition point of the closed PERIOD: write its records from the
    exchange's own book of the point (its operations and expiries; no partner sends them),
    import them as `settle reconcile` imports a partner's file, and print how they compared
    with the ledger. Then resolve its breaks and sign it off as a partner's."""
    view = with_services(lambda services: services.settlement.import_point_records(period, by=_actor(actor), keep=keep))
    _print_reconciliation(view)


def _print_reconciliation(view: ReconciliationView) -> None:
    """How an import's lines compared with the ledger, its totals, and what is left to resolve."""
    imported = view.reconciliation
    click.echo(
        f"reconciled {imported.partner} {imported.period}: {counted(imported.lines, 'line')}, sha256 {imported.file_sha256}"
    )
    for name, count in (
        ("MATCHED", imported.matched),
        ("AMOUNT_MISMATCH", imported.amount_mismatch),
        ("MISSING_IN_LEDGER", imported.missing_in_ledger),
        ("DUPLICATE", imported.duplicate),
        ("MISSING_IN_PARTNER", imported.missing_in_partner),
    ):
        click.echo(f"  {name:<20} {count:>12}")
    for name, minor in (
        ("the file's total", view.totals.records),
        ("the statement's net", view.totals.ledger),
        ("difference (breaks)", view.totals.difference),
    ):
        click.echo(f"  {name:<20} {view.currency.from_minor(minor):>12} {view.currency.code}")
    click.echo(
        f"{counted(view.unresolved, 'break')} to resolve (exchange settle resolve); reconciliation {imported.id}"
    )


@settle.command("breaks")
@click.option("--partner", required=True, help="The partner's program id.")
@click.option("--unresolved", is_flag=True, help="Only the breaks nobody has resolved yet.")
@click.argument("period")
@reports_errors
def settle_breaks(partner: str, unresolved: bool, period: str) -> None:
    """List the breaks of the partner's current reconciliation of PERIOD, each with its
    difference (what it puts between the file's total and the statement's net; they sum to the
    reconciliation's difference) and how it was resolved: the ids `exchange settle resolve
    --break` takes."""
    from exchange.settlement.reconciliation import break_difference

    async def breaks(services: Services) -> int:
        """Print the breaks a page at a time, as they are read (a month's may be many
        thousands); how many were printed."""
        current = await services.settlement.reconciliation(partner, period)
        code = current.currency.code
        click.echo(
            f"{'break':>8} {'kind':<20} {'line':>6} {f'partner ({code})':>14} {f'ledger ({code})':>14} "
            f"{f'difference ({code})':>17} {'resolution':<14} reference"
        )
        printed, after = 0, None
        while page := await services.settlement.breaks(current.reconciliation, unresolved_only=unresolved, after=after):
            for view in page:
                click.echo(break_line(view))
            printed, after = printed + len(page), page[-1].row.id
        return printed

    def break_line(view: BreakView) -> str:
        row, money = view.row, view.currency.from_minor
        amounts = ["" if amount is None else str(money(amount)) for amount in (row.partner_amount, row.ledger_amount)]
        difference = str(money(break_difference(row)))
        resolution = view.resolution.resolution if view.resolution else "-"
        return (
            f"{row.id:>8} {row.kind:<20} {row.line or '':>6} {amounts[0]:>14} {amounts[1]:>14} {difference:>17} "
            f"{resolution:<14} {row.reference}"
        )

    click.echo(counted(with_services(breaks), "break"))


def _actor(value: str | None) -> str:
    """Who a settlement command records as having acted: --as, or the operator."""
    return value or _operator()


@settle.command("resolve")
@click.option("--partner", required=True, help="The partner's program id.")
@click.option(
    "--resolution",
    type=click.Choice([value.value for value in Resolution]),
    required=True,
    help="ACCEPT_LEDGER (the ledger's figure stands) or ADJUST (post each break's adjustment).",
)
@click.option("--reason", required=True, help="Why, recorded with every break resolved.")
@click.option("--break", "ids", type=click.IntRange(min=0), multiple=True, help="A break's id (repeatable).")
@click.option(
    "--kind",
    type=click.Choice([kind.value for kind in BreakKind if kind is not BreakKind.MATCHED]),
    help="Every open break of this class.",
)
@click.option("--counterparty", help="Every open break whose line in the partner's file names this counterparty.")
@click.option("--all", "every", is_flag=True, help="Every open break (when no --break, --kind or --counterparty).")
@click.option(
    "--adjust-against",
    help="ADJUST only: who takes the other side of every adjustment (default: each break's own).",
)
@click.option("--as", "actor", help="Who is recorded as having resolved them (default: cli:<your user name>).")
@click.argument("period")
@reports_errors
def settle_resolve(
    partner: str,
    resolution: str,
    reason: str,
    ids: tuple[int, ...],
    kind: str | None,
    counterparty: str | None,
    every: bool,
    adjust_against: str | None,
    actor: str | None,
    period: str,
) -> None:
    """Resolve breaks of the partner's current reconciliation of PERIOD, all the same way and
    for the same reason, in one unit of work: all of them, or none.

    Select them by --break ids, or by --kind and/or --counterparty (the breaks still open), or
    take every open break with --all. Repeating a command resolves nothing more. A selection
    that takes no open break (a repeat, or a class the period has none of) resolves nothing,
    says so naming its filters, and exits 0; a --counterparty that is no participant is refused.
    """
    if every == bool(ids or kind or counterparty):
        raise click.UsageError("select breaks: --break, --kind and/or --counterparty, or --all")
    from exchange.settlement.breaks import BreakSelection, BulkResolveRequest

    request = BulkResolveRequest(
        partner=partner,
        period=period,
        selection=BreakSelection(ids=ids or None, kind=BreakKind(kind) if kind else None, counterparty=counterparty),
        resolution=Resolution(resolution),
        reason=reason,
        actor=_actor(actor),
        counterparty=adjust_against,
    )
    done = with_services(lambda services: services.settlement.resolve_many(request))
    if done.resolved or done.unchanged:  # named ids always count, one way or the other
        click.echo(f"resolved {counted(done.resolved, 'break')} ({done.unchanged} already resolved the same way)")
    else:
        given = (("--kind", kind), ("--counterparty", counterparty))
        filters = " ".join(f"{option} {value}" for option, value in given if value) or "--all"
        click.echo(f"resolved 0 breaks: no open break of {partner} {period} matched {filters}")
    if done.adjusted is not None:
        currency, into = done.reconciliation.currency, done.adjusted.period
        click.echo(
            f"posted {counted(done.adjusted.count, 'adjustment')} into {into}, "
            f"{currency.from_minor(done.adjusted.total)} {currency.code} in all to the position of {partner}: "
            f"each is on the statements of {into} as break:<its break id>"
        )
    click.echo(f"{counted(done.reconciliation.unresolved, 'break')} of {partner} {period} still open")


@settle.command("sign-off")
@click.option("--partner", required=True, help="The partner's program id.")
@click.option("--note", help="A note kept with the sign-off.")
@click.option("--as", "actor", help="Who is recorded as having signed off (default: cli:<your user name>).")
@click.argument("period")
@reports_errors
def settle_sign_off(partner: str, note: str | None, actor: str | None, period: str) -> None:
    """Sign off the partner's closed PERIOD once every break is resolved: nothing of it
    changes afterwards."""
    view = with_services(lambda services: services.settlement.sign_off(partner, period, by=_actor(actor), note=note))
    click.echo(f"signed off {partner} {view.position.period} by {view.position.signed_off_by}")


@settle.command("statement")
@click.option("--partner", required=True, help="A program id, or EXCHANGE for the exchange's fees.")
@click.option(
    "--format",
    "form",
    type=click.Choice(["json", "csv", "jws"]),
    default="json",
    show_default=True,
    help="The canonical JSON, its CSV rendering, or the JSON signed as a JWS.",
)
@click.option(
    "--output",
    type=OutputFile(),
    help=(
        "Write to this file instead of standard output: the document's bytes exactly, as signed"
        " (standard output adds a final line break to the JSON and the JWS)."
    ),
)
@click.argument("period")
@reports_errors
def settle_statement(partner: str, form: str, output: Path | None, period: str) -> None:
    """Print a participant's statement of the closed PERIOD as it was issued when the period
    closed: the canonical JSON, CSV, or the JSON signed as a JWS that anyone verifies with the
    exchange's published statement keys (/.well-known/statement-keys.json). The same bytes at
    every download."""

    # The stored document and JWS as issued, and the count of its lines from their table; the
    # CSV streamed from its head and lines' table a page at a time as it is written: a busy
    # month's document holds hundreds of megabytes, which is neither taken apart nor held twice.
    async def write(services: Services) -> tuple[int, int]:
        settlement = services.settlement
        if form == "csv":
            pieces = await settlement.statement_csv(partner, period)
        else:
            stored = await settlement.issued_statement(partner, period)
            text = stored.document if form == "json" else stored.jws
            pieces = _one(text if output is not None or text.endswith("\n") else text + "\n")
        lines = await settlement.statement_line_count(partner, period)
        if output is None:
            async for piece in pieces:
                sys.stdout.write(piece)
            return lines, 0
        written = 0
        with output.open("wb") as file:
            async for piece in pieces:
                written += file.write(piece.encode())  # the document's bytes: UTF-8, its line ends
        return lines, written

    lines, written = with_services(write)
    if output is not None:
        # Standard output is free, so say what the file holds, as the commands that write one do.
        click.echo(
            f"wrote {_statement_of(partner)} for {period} ({form}, "
            f"{counted(lines, 'statement line', grouped=True)}, "
            f"{counted(written, 'byte', grouped=True)}) to {output}"
        )


async def _one(text: str) -> AsyncIterator[str]:
    """``text`` as the one piece of a download."""
    yield text


def _statement_of(participant: str) -> str:
    """A participant's statement as a line names it: the exchange's own (its participant id,
    EXCHANGE, is what --partner takes, not a name), or a program's by its id. No line makes a
    possessive of a name ("EXCHANGE's", "fresh-mart's"), which reads well for none."""
    from exchange.settlement.participants import EXCHANGE

    return "the exchange's own statement" if participant == EXCHANGE else f"the statement of {participant}"


@main.command("books")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (what GET /settlement/books/… serves).")
@click.argument("partner")
@click.argument("period")
@reports_errors
def books(as_csv: bool, partner: str, period: str) -> None:
    """Print PARTNER's books of PERIOD (YYYY-MM; an open period's so far): points issued, taken
    back and outstanding with their value, the money behind them, the cost per point, the issue
    budget's use and its side of the coalition point (funded, spent with it, outstanding,
    breakage and its estimate). Like every read of the books, it records and logs, once, a budget alert
    level newly crossed."""
    from exchange.books.report import csv_lines

    found = with_services(lambda services: services.books.partner_books(partner, period))
    if as_csv:
        sys.stdout.writelines(csv_lines(found))
        return
    click.echo(f"{found.partner} {found.period} ({found.currency.code})")
    for _, _, figure, points, amount, currency in list(found.csv_rows())[1:]:
        # A figure not known yet (an expiry rate before any lot matured) is "-", not a bare currency.
        shown = f"{amount} {currency}" if amount else "-" if not points else ""
        click.echo(f"  {figure:<28} {points:>14} {shown:>22}".rstrip())


@main.group()
def sandbox() -> None:
    """Sandbox partners: stand-ins for partners' points systems (partners/CONTRACT.md)."""


@sandbox.command("serve", needs_database=False)
@click.option(
    "--partner", "program_id", cls=RenamedOption, required=True, help="The partner's program to play, e.g. formosa-air."
)
@old_name("--program", "--partner", "program_id")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=PORT, help="Port to bind (default: the port of the program's base_url).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".sandbox"),
    show_default=True,
    help="Where the sandbox keeps its SQLite file (<program>.sqlite3).",
)
@click.option(
    "--partners-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Program declarations (default: EXCHANGE_PARTNERS_DIR or partners/).",
)
@click.option("--seed", type=int, help="Seed for random faults, for reproducible runs.")
@click.option(
    "--token-ttl",
    type=click.IntRange(min=1),
    default=3600,
    show_default=True,
    help="Lifetime of issued access tokens, in seconds.",
)
@reports_errors
def sandbox_serve(
    program_id: str,
    host: str,
    port: int | None,
    data_dir: Path,
    partners_dir: Path | None,
    seed: int | None,
    token_ttl: int,
) -> None:
    """Serve a sandbox partner for one program, over REST and GraphQL, until Ctrl-C.

    Its client is the program's declared OAuth client; its members alice, bob, carol and
    dave are seeded on first start; its state survives restarts in DATA_DIR. Fault knobs,
    the operation log and balances are under /_sandbox.
    """
    from exchange.programs.declarations import read_partners_directory
    from exchange.sandbox.faults import FaultInjector, FaultSettings
    from exchange.sandbox.server import (
        SandboxServer,
        declared_address,
        sandbox_secret,
        serve_until_signalled,
    )
    from exchange.serving import ensure_data_dir, ensure_free

    settings = load_settings(partners_dir=partners_dir)
    directory = read_partners_directory(settings.partners_dir, named_by="--partners-dir or EXCHANGE_PARTNERS_DIR")
    programs = {program.id: program for program in directory.programs}
    if program_id not in programs:
        raise CommandFailed(
            f"no program {program_id!r} in {settings.partners_dir}: choose one of {', '.join(sorted(programs))}"
        )
    program = programs[program_id]
    if port is None:
        address = declared_address(program)
        port = address[1] if address else 0
    # Before its state is opened: a sandbox refused its port creates (and seeds) no store.
    ensure_free(
        host,
        port,
        name=f"sandbox {program.id}",
        remedy="stop what listens there or choose another port with --port",
    )
    ensure_data_dir(data_dir, name=f"sandbox {program.id}", remedy="choose another with --data-dir")
    server = SandboxServer(
        program,
        client_secret=sandbox_secret(program, os.environ),
        data_dir=data_dir,
        host=host,
        port=port,
        token_ttl=timedelta(seconds=token_ttl),
        faults=FaultInjector(FaultSettings(seed=seed)),
        log_level="info",
    )

    def ready() -> None:
        click.echo(
            f"sandbox {program.id} ({program.connector.kind}) serving on {server.url}; state in {server.data_file}",
            err=False,
        )

    run_async(serve_until_signalled([server], ready))


@main.group()
def schema() -> None:
    """The GraphQL schema."""


@schema.command("export", needs_database=False)
@click.option(
    "--output",
    type=OutputFile(),
    help="Write the SDL to this file instead of standard output.",
)
def schema_export(output: Path | None) -> None:
    """Print the GraphQL schema (SDL) that the code serves; schema.graphql is its copy."""
    from exchange.api.schema import build_schema
    from exchange.settings import Settings

    sdl = build_schema(Settings()).as_str() + "\n"
    if output is None:
        sys.stdout.write(sdl)
    else:
        output.write_text(sdl)


@main.group()
def clients() -> None:
    """OAuth clients of partners and staff tools."""


def _parse_scopes(values: tuple[str, ...]) -> frozenset[Scope] | None:
    names = [name for value in values for name in value.replace(",", " ").split()]
    return parse_scopes(names) if names else None


@clients.command("create")
@click.option("--partner", "program_id", help="The program the partner runs (a partner's client).")
@click.option(
    "--role",
    type=click.Choice(["settlement", "admin"]),
    help="A staff client's role (instead of --partner).",
)
@click.option(
    "--scopes",
    multiple=True,
    help="Scopes to grant, space- or comma-separated (default: all of the role's).",
)
@click.option(
    "--member-scopes",
    multiple=True,
    help="A partner's client: the most the member tokens it obtains may carry, and what members "
    "it signs in to the portal may do there (member:read only: look, not spend; always with "
    "member:read); space- or comma-separated (default: all member scopes with partner:write, else "
    "member:read).",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"client_id": …, "client_secret": …}.')
@reports_errors
def clients_create(
    program_id: str | None, role: str | None, scopes: tuple[str, ...], member_scopes: tuple[str, ...], as_json: bool
) -> None:
    """Create an OAuth client and print its secret, once.

    A partner's client (--partner P) gets the partner role for program P; staff clients
    (--role settlement or --role admin) get that role. The exchange keeps only a hash of
    the secret: store it when it is printed.
    """
    if (program_id is None) == (role is None):
        raise CommandFailed("give exactly one of --partner PROGRAM or --role settlement|admin")
    credentials = with_services(
        lambda services: services.access.create_client(
            role=Role(role) if role else Role.PARTNER,
            program_id=program_id,
            scopes=_parse_scopes(scopes),
            member_scopes=_parse_scopes(member_scopes),
        )
    )
    client = credentials.client
    if as_json:
        click.echo(json.dumps({"client_id": client.client_id, "client_secret": credentials.client_secret}))
        return
    tenant = f" for program {client.program_id}" if client.program_id else ""
    click.echo(f"client_id:     {client.client_id}")
    click.echo(f"client_secret: {credentials.client_secret}")
    for_members = f"; member scopes: {client.member_scope}" if client.member_scope else ""
    click.echo(f"role: {client.role}{tenant}; scopes: {client.scope}{for_members}")
    click.echo("Store the secret now: the exchange keeps only a hash and cannot show it again.")


@main.group()
def webhooks() -> None:
    """Webhook subscriptions: subscribe, the delivery log, replay, rotate, deliver now."""


@webhooks.command("create")
@click.option("--url", required=True, help="Where events are sent (https://; http:// to loopback in development).")
@click.option(
    "--event",
    "events",
    multiple=True,
    help="An event type to send (repeatable): its canonical name, the payload's `type`, such as "
    "conversion.completed, or GraphQL's name for it, CONVERSION_COMPLETED; default: every type. "
    "The output prints canonical names.",
)
@click.option("--partner", "program_id", help="The partner's program (its events only); default: every program's.")
@click.option("--description", default="", help="What the receiver is, for people reading the list.")
@reports_errors
def webhooks_create(url: str, events: tuple[str, ...], program_id: str | None, description: str) -> None:
    """Subscribe URL to events and print its signing secret, once."""
    from exchange.webhooks.events import EventType
    from exchange.webhooks.subscriptions import SubscriptionDraft

    draft = SubscriptionDraft(url, list(events) or [event.value for event in EventType], description, program_id)
    made = with_services(lambda services: services.webhooks.create(draft, by=_operator()))
    click.echo(f"subscription: {made.subscription.id}")
    click.echo(f"secret:       {made.secret}")
    click.echo(f"events: {' '.join(made.subscription.event_types)}")
    click.echo("Store the secret now: it is shown only this once (`exchange webhooks rotate` makes a new one).")


@webhooks.command("list")
@click.option("--partner", "program_id", help="Only this program's subscriptions.")
@click.option("--deleted", is_flag=True, help="The deleted ones too (their deliveries and log stay readable).")
@reports_errors
def webhooks_list(program_id: str | None, deleted: bool) -> None:
    """List live subscriptions: id, program (- for a staff tool's), URL and event types; with
    --deleted, the deleted ones too, each with when it was deleted."""
    rows = with_services(lambda services: services.webhooks.subscriptions(None, program_id=program_id, deleted=deleted))
    for row in rows:
        gone = f"  deleted={row.deleted_at.isoformat()}" if row.deleted_at is not None else ""
        click.echo(f"{row.id}  {row.program_id or '-'}  {row.url}  {','.join(row.event_types)}{gone}")
    click.echo(counted(len(rows), "subscription"), err=True)


@webhooks.command("deliveries")
@click.option(
    "--status", type=click.Choice(["PENDING", "DELIVERED", "DEAD", "CANCELLED"]), help="Only deliveries in this state."
)
@click.option("--first", type=FIRST, default=50, show_default=True, help="How many, the latest event first.")
@click.argument("subscription")
@reports_errors
def webhooks_deliveries(status: str | None, first: int, subscription: str) -> None:
    """List the subscription's deliveries: id, event, status, tries and the last answer."""
    views = with_services(
        lambda services: services.webhooks.deliveries(None, subscription, status=status, first=first)
    ).items
    for view in views:
        delivery, event = view.delivery, view.event
        answer = delivery.last_error or (str(delivery.last_status_code) if delivery.last_status_code else "-")
        click.echo(
            f"{delivery.id}  {event.id}  {event.type}  {event.object}  {delivery.status}  "
            f"tries={delivery.attempts}  last={answer}"
        )
    click.echo(counted(len(views), "delivery"), err=True)


@webhooks.command("log")
@click.option("--first", type=FIRST, default=50, show_default=True, help="How many attempts, the latest first.")
@click.argument("subscription")
@reports_errors
def webhooks_log(first: int, subscription: str) -> None:
    """List the subscription's delivery log: every attempt with its time, answer and latency."""
    rows = with_services(lambda services: services.webhooks.attempts(None, subscription, first=first)).items
    for row in rows:
        answer = row.status_code if row.status_code is not None else "-"
        click.echo(
            f"{row.attempted_at.isoformat()}  delivery={row.delivery_id}  status={answer}  "
            f"{row.latency_ms}ms  {row.outcome}  {row.error or ''}".rstrip()
        )
    click.echo(counted(len(rows), "attempt"), err=True)


@webhooks.command("replay")
@click.option("--delivery", "delivery_ids", type=int, multiple=True, help="A delivery to send again (repeatable).")
@click.option("--dead", is_flag=True, help="Every dead-lettered delivery.")
@click.option("--since", type=click.DateTime(), help="Every finished delivery of an event since then (UTC).")
@click.argument("subscription")
@reports_errors
def webhooks_replay(delivery_ids: tuple[int, ...], dead: bool, since: datetime | None, subscription: str) -> None:
    """Send finished deliveries again, with their original webhook-id and a new retry window."""
    if not (delivery_ids or dead or since):
        raise click.UsageError("say which deliveries: --delivery ID (repeatable), --dead or --since TIME")
    after = since.replace(tzinfo=UTC) if since is not None and since.tzinfo is None else since
    count = with_services(
        lambda services: services.webhooks.replay(None, subscription, delivery_ids=delivery_ids, dead=dead, since=after)
    )
    click.echo(
        f"{counted(count, 'delivery')} queued again; the gateway sends {'it' if count == 1 else 'them'} "
        "(or `exchange webhooks deliver`)"
    )


@webhooks.command("rotate")
@click.argument("subscription")
@reports_errors
def webhooks_rotate(subscription: str) -> None:
    """Make a new signing secret and print it, once; the old one also signs for
    EXCHANGE_WEBHOOK_SECRET_OVERLAP_HOURS while the receiver switches."""
    made = with_services(lambda services: services.webhooks.rotate_secret(None, subscription))
    click.echo(f"secret: {made.secret}")
    click.echo(f"the old secret also signs until {made.subscription.previous_secret_until}")


@webhooks.command("delete")
@click.argument("subscription")
@reports_errors
def webhooks_delete(subscription: str) -> None:
    """Stop a subscription; what was pending is cancelled (its log is kept in the database)."""
    with_services(lambda services: services.webhooks.delete(None, subscription))
    click.echo(f"subscription {subscription} deleted")


@webhooks.command("deliver")
@reports_errors
def webhooks_deliver() -> None:
    """Send every delivery that is due now, once: what the gateway's webhook job does (for
    EXCHANGE_WEBHOOK_INTERVAL_SECONDS=0, or a scheduler)."""
    report = with_services(lambda services: services.webhooks.deliver())
    click.echo(
        f"{counted(report.fanned_out, 'delivery')} made; {report.delivered} delivered, "
        f"{report.retrying} to retry, {report.dead} dead-lettered, {report.cut_off} cut off"
    )


@main.group()
def keys() -> None:
    """The keys the exchange signs access tokens and settlement statements with."""


@keys.command("rotate")
@click.option(
    "--statements",
    is_flag=True,
    help="Rotate the statement-signing key instead of the token-signing key.",
)
@click.option(
    "--compromised",
    is_flag=True,
    help="The old key is compromised. Token keys (the active one and any retired one still "
    "published) are withdrawn at once: every token they signed is refused from now on. With "
    "--statements the new key signs at once, the statement keys published until now are "
    "withdrawn, and the statements they signed are signed again with the new key; verifiers "
    "that cached the published keys must fetch them again.",
)
@reports_errors
def keys_rotate(statements: bool, compromised: bool) -> None:
    """Make a new signing key active: the token-signing key, or with --statements the
    statement-signing key. Either kind's rotation leaves the other alone.

    Running gateways sign tokens with a new token key from their next token; the old one stays
    published (/.well-known/jwks.json) until every token it signed has expired. With
    --compromised the old token key, and any retired one still published, is withdrawn at once:
    every gateway refuses the tokens they signed from their next request, and their clients
    must request new tokens.

    A new statement key is published (/.well-known/statement-keys.json) at once but signs only
    six minutes later, when every verifier's cached copy of the keys (kept up to five minutes)
    holds it; the old key signs until then (the first statement key, with none to sign
    meanwhile, signs at once). A retired statement key stays published for
    EXCHANGE_STATEMENT_RETENTION_YEARS after the last statement it signed. With --compromised
    the new key signs at once (on every gateway), every statement key published until then is
    withdrawn (a statement forged with it no longer verifies), and every issued statement they
    signed is signed again with the new key, its document unchanged: partners fetch them again,
    and verifiers holding a cached copy of the keys must fetch it again.
    """
    if statements:

        async def rotate(services: Services) -> None:
            rotation = await services.settlement.rotate_key(compromised=compromised)
            click.echo(f"active statement-signing key: {rotation.new.kid}")
            if compromised:
                click.echo("it signs now: verifiers that cached the published keys must fetch them again")
                click.echo(f"withdrawn (no longer published): {', '.join(rotation.withdrawn) or 'none'}")
                click.echo(
                    f"{counted(rotation.resigned, 'issued statement')} signed again with the new key, their documents "
                    "unchanged: partners must fetch them again (their old signatures no longer verify)"
                )
            else:
                click.echo(f"it is published now and signs from {rotation.new.signs_from}")
            if (retired := rotation.retired) is not None and not compromised:
                click.echo(f"retired key {retired.kid} signs until {retired.retired_at}")
                until = services.settlement.keys.published_until(retired)
                click.echo(f"retired key {retired.kid} stays published until {until}")
            click.echo(f"published statement keys: {', '.join(key.kid for key in rotation.published)}")

        with_services(rotate)
        return

    rotation = with_services(lambda services: services.access.rotate_signing_key(compromised=compromised))
    click.echo(f"active signing key: {rotation.new.kid}")
    if rotation.retired is not None:
        if compromised:
            click.echo(
                f"retired key {rotation.retired.kid} is withdrawn, with any retired before it: the tokens "
                "they signed are refused; their clients must request new tokens"
            )
        else:
            click.echo(f"retired key {rotation.retired.kid} stays published until {rotation.retired.publish_until}")
    click.echo(f"published keys: {', '.join(key.kid for key in rotation.published)}")


@main.group()
def people() -> None:
    """People who sign in to the consoles: settlement staff, admins, partners' staff."""


def _read_password() -> str:
    """The password, from a hidden prompt (typed twice) or, when standard input is not a
    terminal, its first line: never from the command line, where `ps` and shell history see it."""
    if sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline()
    if not line:  # told "12 to 256 characters" instead, one would look for a typo that is not there
        raise CommandFailed("no password was read: standard input was empty (pipe the password in as its first line)")
    return line.rstrip("\r\n")


@people.command("create")
@click.option("--username", required=True, help="The name they sign in with (lowercase letters, digits, . _ @ -).")
@click.option("--role", type=click.Choice(["settlement", "admin", "partner"]), required=True, help="What they do.")
@click.option("--partner", "program_id", help="The program a partner's staff member works for (with --role partner).")
@click.option("--totp", is_flag=True, help="Require a code from an authenticator app; prints its otpauth:// URI.")
@reports_errors
def people_create(username: str, role: str, program_id: str | None, totp: bool) -> None:
    """Create a person who signs in to the consoles, with the password read from a prompt
    (or from standard input's first line when it is not a terminal).

    With --totp they also need a code from an authenticator app: the command prints the
    secret's otpauth:// URI once, to be turned into a QR code or typed into the app.
    Everything but the password is checked before the password is asked for.
    """
    with_services(lambda services: services.people.check_new(username=username, role=Role(role), program_id=program_id))
    password = _read_password()
    created = with_services(
        lambda services: services.people.create(
            username=username, password=password, role=Role(role), program_id=program_id, with_totp=totp
        )
    )
    person = created.person
    tenant = f" for program {person.program_id}" if person.program_id else ""
    click.echo(f"created {person.username}: role {person.role}{tenant}")
    if created.totp_uri is not None:
        click.echo(f"TOTP: add this to an authenticator app now; it is not shown again:\n{created.totp_uri}")


@main.group()
def risk() -> None:
    """Risk review: conversions and redemptions held by a program's risk gates, and the decision log."""


def _held_line(row: Conversion | Redemption) -> str:
    from exchange.conversions.models import Conversion  # the command loads its models lazily

    until = f" held until {row.next_attempt_at.isoformat()}" if row.status == "HELD" else ""
    if isinstance(row, Conversion):
        what = f"{row.points_in:>12,} {row.from_program} -> {row.to_program}"
    else:
        what = f"{row.points:>12,} {row.paying_program} -> reward {row.reward_id}"
    return f"{row.id} {row.status:<9} {what} member {row.member_id} since {row.created_at.isoformat()}{until}"


@risk.command("held")
@click.option("--first", type=FIRST, default=50, show_default=True, help="How many at most of each.")
@reports_errors
def risk_held(first: int) -> None:
    """List the conversions, then the redemptions, waiting for review, oldest first."""
    held = with_services(lambda services: services.risk.held(first=first)).items
    redemptions = with_services(lambda services: services.risk.held_redemptions(first=first)).items
    rows: list[Conversion | Redemption] = [*held, *redemptions]
    for row in rows:
        click.echo(_held_line(row))
    click.echo(f"{counted(len(held), 'conversion')} and {counted(len(redemptions), 'redemption')} held")


_REDEMPTION = click.option("--redemption", is_flag=True, help="The id is a held redemption's, not a conversion's.")


@risk.command("approve")
@click.argument("row_id", metavar="ID")
@_REDEMPTION
@click.option("--as", "actor", help="Who approves, as recorded (default: cli:<user>).")
@reports_errors
def risk_approve(row_id: str, redemption: bool, actor: str | None) -> None:
    """Approve a held conversion (or redemption): it runs at once from its first debit (again:
    shown as it stands)."""
    if redemption:
        click.echo(
            _held_line(with_services(lambda services: services.risk.approve_redemption(row_id, staff=_actor(actor))))
        )
    else:
        click.echo(_held_line(with_services(lambda services: services.risk.approve(row_id, staff=_actor(actor)))))


@risk.command("reject")
@click.argument("row_id", metavar="ID")
@_REDEMPTION
@click.option("--reason", required=True, help="Why, recorded with the decision and on the conversion or redemption.")
@click.option("--as", "actor", help="Who rejects, as recorded (default: cli:<user>).")
@reports_errors
def risk_reject(row_id: str, redemption: bool, reason: str, actor: str | None) -> None:
    """Reject a held conversion (or redemption): FAILED, nothing moved (again: shown as it stands)."""
    if redemption:
        rejected = with_services(
            lambda services: services.risk.reject_redemption(row_id, staff=_actor(actor), reason=reason)
        )
        click.echo(_held_line(rejected))
    else:
        click.echo(
            _held_line(with_services(lambda services: services.risk.reject(row_id, staff=_actor(actor), reason=reason)))
        )


@risk.command("decisions")
@click.option("--conversion", "conversion_id", help="Only about this conversion.")
@click.option("--redemption", "redemption_id", help="Only about this redemption.")
@click.option("--member", "member_id", help="Only about this member.")
@click.option("--first", type=FIRST, default=50, show_default=True, help="How many at most.")
@reports_errors
def risk_decisions(conversion_id: str | None, redemption_id: str | None, member_id: str | None, first: int) -> None:
    """List the risk decision log, newest first: what each gate decided, and why."""
    rows = with_services(
        lambda services: services.risk.decisions(
            conversion_id=conversion_id, redemption_id=redemption_id, member_id=member_id, first=first
        )
    ).items
    for row in rows:
        about = (
            row.conversion_id
            or (row.redemption_id and f"redemption {row.redemption_id}")
            or f"link {row.program_id}:{row.member_ref}"
        )
        click.echo(
            f"{row.decided_at.isoformat()} {row.decision:<7} {row.rule or '-':<20} {about} "
            f"{row.decided_by or 'gates'}: {row.reason}"
        )
    click.echo(counted(len(rows), "decision"))
