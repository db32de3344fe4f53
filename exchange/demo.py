"""``exchange demo``: the whole exchange on one machine, with sample programs and callers.

Besides serving the sample programs, the demo sets up one OAuth client per partner (with a
demo key it signs member assertions with), one for settlement staff and one for admins, and
makes ``alice`` and ``bob`` members the way they would become ones: ``wallet-pay`` vouches for
them (a signed assertion posted to the token endpoint), they link their ``formosa-air``
accounts with their PINs, and ``formosa-air`` vouches for them too. A member token spends only
the points of the program that asserted it, so each member gets a ready token per linked
program (``members.alice.tokens["wallet-pay"]``). It all goes to ``<data-dir>/credentials.json``.
Restarting is safe: the same clients get fresh secrets and keys, linking again is a no-op, so
the file is always current and nothing piles up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shlex
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from exchange.app import create_app
from exchange.auth.clients import ClientCredentials
from exchange.auth.scopes import Role
from exchange.clock import SetClock
from exchange.db import migrate
from exchange.demo_month import (
    FILE_PARTNER,
    MEMBERS,
    DemoPerson,
    build_previous_month,
    create_sign_ins,
    partner_records,
)
from exchange.ledger.periods import SettlementCalendar
from exchange.programs.declarations import read_partners_directory
from exchange.programs.models import ProgramKind
from exchange.sandbox.server import SandboxServer, demo_sandboxes
from exchange.services.container import Services, load_partners_directory, open_services
from exchange.services.portal import RETURN_PATH
from exchange.serving import (
    RunningServer,
    ensure_data_dir,
    ensure_free,
    listening_socket,
    start_server,
    wait_for_stop_signal,
)
from exchange.settings import Settings
from exchange.text import counted
from exchange.trust_store import trust_store
from exchange.web.security import gateway_protocol

EXAMPLE_QUERY = "{ programs { id name pointValue tiers { name level } } }"
#: The banner's query as a member, as README's "Calling the API with a token" has it: each
#: account with its program (alice's memberRef is the same at every partner).
MEMBER_QUERY = "{ viewer { assertedBy } me { id linkedAccounts { memberRef program { name } } } }"
CREDENTIALS_FILE = "credentials.json"
#: In the data directory while last month is being built: there, a build began and did not end.
UNFINISHED_BUILD = "last-month-unfinished"
DEMO_KEY_ID = "demo-assertion-key"
#: Sample members every sandbox partner knows, with their PIN there; these get ready tokens.
DEMO_MEMBERS = {"alice": "1111", "bob": "2222"}
#: The programs they are linked at: the first vouches for them, they link the others.
DEMO_PROGRAMS = ("wallet-pay", "formosa-air")
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LINK = """mutation($program: ID!, $ref: String!, $pin: String!) {
  linkAccount(programId: $program, memberRef: $ref, verification: $pin) { memberRef } }"""


@dataclass(frozen=True)
class LastMonth:
    """What the demo built of the previous month: its name, and the partner's file to reconcile."""

    period: str
    partner_file: Path


def database_url(settings: Settings) -> str:
    """The demo's database URL as a person writes it (README.md does), ``sqlite:///`` and the
    file's absolute path, so that it works from any directory; the settings hold the driver's
    spelling, ``sqlite+aiosqlite://``, which the CLI takes too but nobody types."""
    return migrate.display_url(settings.database_url)


def command_environment(settings: Settings) -> str:
    """What a command run beside the demo needs in its environment: the demo's database, and
    its issuer when that is not the one a command assumes (``http://127.0.0.1:8000``, as with
    ``--port``): a close issues statements naming the issuer, and a partner verifying one
    checks it against the gateway it fetched the statement from (partners/SETTLEMENT.md)."""
    environment = f"EXCHANGE_DATABASE_URL={database_url(settings)}"
    assumed = Settings.model_construct().issuer_url  # the defaults alone, not this environment's
    if settings.issuer_url != assumed:
        environment += f" EXCHANGE_ISSUER={settings.issuer_url}"
    return environment


def month_lines(settings: Settings, month: LastMonth | None) -> list[str]:
    if month is None:
        return []
    environment = command_environment(settings)
    exchange = exchange_command()
    return [
        f'  Last month, {month.period}, is ready to settle (README.md, "The demo\'s last month"):',
        f"    {environment} {exchange} settle close {month.period}",
        f"    {environment} {exchange} settle reconcile --partner {FILE_PARTNER} {month.period} {month.partner_file}",
    ]


def exchange_command() -> str:
    """The ``exchange`` command as a shell that has not activated the virtual environment finds
    it: the script beside this interpreter (``make demo`` puts nothing on ``PATH``)."""
    script = Path(sys.executable).with_name("exchange")
    return shlex.quote(str(script)) if script.exists() else "exchange"


def banner(
    gateway_url: str,
    settings: Settings,
    sandboxes: list[SandboxServer],
    credentials: Path,
    people: list[DemoPerson],
    month: LastMonth | None,
) -> str:
    url = f"{gateway_url}/graphql"
    partners = [f"    {server.program.id:<12} {server.program.connector.kind:<8} {server.url}" for server in sandboxes]
    sign_ins = [f"    {person.username:<24} {person.password}" for person in people]
    members = ", ".join(f"{member.member_ref} {member.pin}" for member in MEMBERS)
    return "\n".join(
        [
            "",
            "The coalition points exchange demo is running.",
            f"  GraphiQL (open in a browser): {url}",
            f"  Console (open in a browser): {gateway_url}/console/ ; sign in as (development passwords):",
            *sign_ins,
            f"  Member portal (open in a browser): {gateway_url}/portal/ ; choose a program, then a member id and PIN:",
            f"    {members}",
            *month_lines(settings, month),
            f"  Database: {database_url(settings)}",
            "  Sandbox partners (admin API at <url>/_sandbox):",
            *partners,
            f"  OAuth clients and member tokens: {credentials}",
            "  Try this query:",
            f"    {EXAMPLE_QUERY}",
            "  or from a shell:",
            f"    curl -s {url} -H 'content-type: application/json' \\",
            f'      -d \'{{"query": "{EXAMPLE_QUERY}"}}\'',
            '  and, as a member (see README.md, "Calling the API with a token"):',
            f"""    curl -s {url} -H "authorization: Bearer $(jq -r '.members.alice.tokens["wallet-pay"]' {credentials})" \\""",
            f"      -H 'content-type: application/json' -d '{{\"query\": \"{MEMBER_QUERY}\"}}'",
            "Stop it with Ctrl-C.",
            "",
        ]
    )


def _client_entry(credentials: ClientCredentials) -> dict[str, Any]:
    client = credentials.client
    return {
        "client_id": client.client_id,
        "client_secret": credentials.client_secret,
        "role": client.role,
        "program_id": client.program_id,
        "scope": client.scope,
    }


async def set_up_clients(services: Services) -> tuple[dict[str, Any], dict[str, ECKey]]:
    """One client per partner (with a fresh assertion key), one settlement, one admin; the
    same clients on every start, with fresh secrets. The coalition point has no partner."""
    entries: dict[str, Any] = {}
    keys: dict[str, ECKey] = {}
    for program in await services.catalog.programs():
        if program.kind != ProgramKind.PARTNER:
            continue
        credentials = await services.access.renew_client(f"demo-{program.id}", role=Role.PARTNER, program_id=program.id)
        key = ECKey.generate_key("P-256", parameters={"kid": DEMO_KEY_ID})
        await services.access.register_assertion_key(program.id, json.dumps(key.as_dict(private=False)))
        keys[program.id] = key
        entries[program.id] = {**_client_entry(credentials), "assertion_key": key.as_dict(private=True)}
    for role in (Role.SETTLEMENT, Role.ADMIN):
        credentials = await services.access.renew_client(f"demo-{role.value}", role=role, program_id=None)
        entries[role.value] = _client_entry(credentials)
    return entries, keys


async def obtain_member_token(
    http: httpx.AsyncClient, issuer: str, client_id: str, key: ECKey, member_ref: str
) -> dict[str, Any]:
    """What a partner does: sign an assertion about its member, trade it for a token."""
    now = datetime.now(UTC)
    assertion = jwt.encode(
        {"alg": "ES256", "kid": key.kid},
        {
            "iss": client_id,
            "sub": member_ref,
            "aud": f"{issuer}/oauth/token",
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(minutes=5)).timestamp()),
            "jti": secrets.token_urlsafe(16),
        },
        key,
        algorithms=["ES256"],
    )
    token = await http.post("/oauth/token", data={"grant_type": JWT_BEARER, "assertion": assertion})
    token.raise_for_status()
    return {
        "access_token": token.json()["access_token"],
        "expires_at": (now + timedelta(seconds=token.json()["expires_in"])).isoformat(),
    }


async def _member_data(http: httpx.AsyncClient, token: str, query: str, **variables: str) -> dict[str, Any]:
    answer = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers={"authorization": f"Bearer {token}"}
    )
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    if body.get("errors"):
        raise RuntimeError(f"the demo could not set up its members: {body['errors']}")
    return dict(body["data"])


async def demo_member(
    http: httpx.AsyncClient, issuer: str, clients: dict[str, Any], keys: dict[str, ECKey], member_ref: str, pin: str
) -> dict[str, Any]:
    """``member_ref`` as the first of :data:`DEMO_PROGRAMS` vouches for them, with their accounts at
    the others linked, and a token from each program: each spends only its own program's points."""

    async def vouched_by(program_id: str) -> dict[str, Any]:
        return await obtain_member_token(http, issuer, clients[program_id]["client_id"], keys[program_id], member_ref)

    first, *others = DEMO_PROGRAMS
    tokens = {first: await vouched_by(first)}
    for program_id in others:
        await _member_data(http, tokens[first]["access_token"], LINK, program=program_id, ref=member_ref, pin=pin)
        tokens[program_id] = await vouched_by(program_id)
    me = await _member_data(http, tokens[first]["access_token"], "{ me { id } }")
    return {
        "member_id": me["me"]["id"],
        "member_ref": member_ref,
        "tokens": {program_id: token["access_token"] for program_id, token in tokens.items()},
        "expires_at": min(token["expires_at"] for token in tokens.values()),
    }


def write_private(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` readable by its owner only: it holds secrets."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    path.chmod(0o600)


async def set_up_member_sign_in(services: Services, sandboxes: list[SandboxServer], clients: dict[str, Any]) -> None:
    """Each sandbox's sign-in page signs members in to the portal: its key registered at the
    exchange (beside the demo's own), the portal's return URL registered at the sandbox."""
    return_url = services.settings.issuer_url + RETURN_PATH
    for sandbox in sandboxes:
        program_id = sandbox.program.id
        if program_id not in clients:
            continue
        public_key = json.dumps(sandbox.sign_in.key.as_dict(private=False))
        await services.access.register_assertion_key(program_id, public_key)
        sandbox.sign_in.client_id = clients[program_id]["client_id"]
        sandbox.sign_in.return_urls = frozenset({return_url})


async def write_credentials(
    settings: Settings, data_dir: Path, gateway_url: str, sandboxes: list[SandboxServer]
) -> Path:
    issuer = settings.issuer_url
    async with open_services(settings) as services:
        client_entries, partner_keys = await set_up_clients(services)
        await set_up_member_sign_in(services, sandboxes, client_entries)
    members: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30, verify=trust_store()) as http:
        for member_ref, pin in DEMO_MEMBERS.items():
            members[member_ref] = await demo_member(http, issuer, client_entries, partner_keys, member_ref, pin)
    path = (data_dir / CREDENTIALS_FILE).resolve()
    write_private(
        path,
        {
            "issuer": issuer,
            "token_endpoint": f"{issuer}/oauth/token",
            "graphql": f"{gateway_url}/graphql",
            "clients": client_entries,
            "members": members,
        },
    )
    return path


#: The loggers the month's planted partner failures warn on: each retry of a call, each
#: conversion left to ask again.
PLANTED_FAILURE_LOGGERS = ("exchange.connectors", "exchange.sagas")


class RepeatsLeftOut(logging.Filter):
    """Lets each warning through once, counting the repeats it leaves out. The same warning is
    the same text with the same values, whatever its floats (a retry's random delay): the demo
    drives its month's recovery round after round at one instant, and a planted failure warned
    three lines a round, which read as a loop."""

    def __init__(self) -> None:
        super().__init__()
        self.left_out = 0
        self._seen: set[tuple[str, ...]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else (record.args,)
        said = (record.name, str(record.msg), *(str(arg) for arg in args if not isinstance(arg, float)))
        if said in self._seen:
            self.left_out += 1
            return False
        self._seen.add(said)
        return True


@contextmanager
def repeats_left_out(logger_names: tuple[str, ...] = PLANTED_FAILURE_LOGGERS) -> Iterator[RepeatsLeftOut]:
    """Within the block only (the demo's month build; the gateway it serves afterwards, like
    any deployment, logs every warning), each warning of these loggers is logged once."""
    repeats = RepeatsLeftOut()
    loggers = [logging.getLogger(name) for name in logger_names]
    for logger in loggers:
        logger.addFilter(repeats)
    try:
        yield repeats
    finally:
        for logger in loggers:
            logger.removeFilter(repeats)


def start_afresh(data_dir: Path) -> str:
    return f"remove {data_dir} to start afresh"


async def prepare_last_month(settings: Settings, data_dir: Path, sandboxes: list[SandboxServer]) -> LastMonth | None:
    """Build the previous month (once) and write the partner's file of it; ``None`` on a data
    directory made before the demo built months (its programs are younger than the month), or
    where a build did not finish (stopped with Ctrl-C, say): played again on top of its first
    half, the month ran into the members' caps with a message that helped nobody."""
    unfinished = data_dir / UNFINISHED_BUILD
    if unfinished.exists():
        print(
            f"last month's build in {data_dir} did not finish and cannot be resumed; serving without it: "
            + start_afresh(data_dir)
        )
        return None
    progress("playing last month through the services (the sandbox partners' planted failures log warnings, each once)")
    await asyncio.to_thread(unfinished.touch)
    try:
        with repeats_left_out() as repeats:
            built = await build_previous_month(
                settings, now=datetime.now(UTC), sandbox_urls={server.program.id: server.url for server in sandboxes}
            )
    except BaseException:
        print(f"last month's build stopped half-way and cannot be resumed: {start_afresh(data_dir)}", flush=True)
        raise
    await asyncio.to_thread(unfinished.unlink)
    if built.built:
        repeated = (
            f" ({counted(repeats.left_out, 'repeat')} of those warnings left out: the month's recovery rounds "
            "asked the failing partners again)"
            if repeats.left_out
            else ""
        )
        progress(
            f"built {built.period}: {counted(len(built.conversions), 'conversion')}, "
            f"{counted(len(built.redemptions), 'redemption')}{repeated}"
        )
    if built.unplayable is not None:
        print(f"{built.period} cannot be played on {data_dir}: {built.unplayable}; {start_afresh(data_dir)}")
        return None
    path = (data_dir / f"{FILE_PARTNER}-{built.period}.csv").resolve()
    async with open_services(settings) as services:
        records = await partner_records(services, built.period)
    await asyncio.to_thread(path.write_text, records)
    return LastMonth(built.period, path)


async def sign_ins(settings: Settings) -> list[DemoPerson]:
    """The console's sample people (see :func:`exchange.demo_month.create_sign_ins`)."""
    async with open_services(settings) as services:
        return await create_sign_ins(services, [program.id for program in await services.catalog.programs()])


async def run_demo(settings: Settings, data_dir: Path) -> None:
    """Sandbox partners, then the gateway; Ctrl-C (or SIGTERM) stops the gateway, then them.

    The sandboxes run in this process and event loop (through exchange.serving), not as
    child processes: one Ctrl-C stops everything, nothing is left behind if the demo dies,
    and a port already taken fails the start with a clear message.
    """
    # Every address first: a port in use stops the demo before it creates anything, even its
    # data directory. A second demo given another --port would otherwise load its programs
    # into the first one's database and only then find the sandboxes' ports taken.
    listener = listening_socket(
        settings.host,
        settings.port,
        name="the gateway",
        remedy="stop what listens there (another demo?) or choose another port with --port",
    )
    try:
        declarations = read_partners_directory(settings.partners_dir, named_by="--partners-dir").programs
        sandboxes = demo_sandboxes(declarations, data_dir / "sandboxes", os.environ)
        for sandbox in sandboxes:
            ensure_free(
                sandbox.host,
                sandbox.port,
                name=f"sandbox {sandbox.program.id} (the port of its connector.base_url in {settings.partners_dir})",
                remedy="stop what listens there: another demo's sandboxes hold these ports, so stop that demo first",
            )
        ensure_data_dir(data_dir, name="the demo", remedy="choose another with --data-dir")
        await _run_demo(settings, data_dir, listener, sandboxes)
    finally:
        listener.close()  # the gateway has closed it already if it served


def progress(step: str) -> None:
    """One line saying what the demo does now, at once: a first start takes a minute or more,
    and the gateway's address answers only once the banner is printed."""
    print(f"demo: {step}", flush=True)


async def _run_demo(
    settings: Settings, data_dir: Path, listener: socket.socket, sandboxes: list[SandboxServer]
) -> None:
    progress(f"migrating its database, {data_dir / 'exchange.db'}")
    await asyncio.to_thread(migrate.upgrade, settings.database_url)
    # The coalition has run since the previous month began, so that month can be played.
    calendar = SettlementCalendar(settings.timezone, settings.settlement_period_months)
    began = SetClock(calendar.starts_at(calendar.latest_over(datetime.now(UTC))))
    report = (await load_partners_directory(settings, clock=began)).programs
    progress(
        f"loaded {counted(len(report.created) + len(report.updated) + len(report.unchanged), 'program')} "
        f"from {settings.partners_dir}"
    )
    gateway: RunningServer | None = None
    try:
        progress(f"starting {counted(len(sandboxes), 'sandbox partner')}")
        for sandbox in sandboxes:
            await sandbox.start()
        month = await prepare_last_month(settings, data_dir, sandboxes)
        progress("creating the console's sample sign-ins")
        people = await sign_ins(settings)
        progress("starting the gateway, then signing in the sample members")
        gateway = await start_server(
            create_app(settings),
            host=settings.host,
            handle_signals=False,
            listener=listener,
            max_connections=settings.max_connections,
            protocol=gateway_protocol(secure=settings.served_over_https),
        )
        credentials = await write_credentials(settings, data_dir, gateway.url, sandboxes)
        print(banner(gateway.url, settings, sandboxes, credentials, people, month), flush=True)
        await wait_for_stop_signal()
    finally:
        if gateway is not None:
            await gateway.stop()
        await asyncio.gather(*(sandbox.stop() for sandbox in sandboxes))
