"""A real gateway, ``exchange serve --workers 2`` on PostgreSQL with sandbox partners, seen as
its operators see it: Prometheus scrapes /metrics (whichever worker answers, it adds up both),
and its JSON logs name each request and conversion and hold no secret sent to it."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url

from exchange.db.database import Database
from exchange.observability.metrics import served_metrics
from exchange.programs.declarations import PartnersDirectory
from exchange.services.container import load_partners_directory
from exchange.serving import free_port
from exchange.settings import Settings
from exchange.testing.databases import PostgresDatabases
from exchange.testing.kit import ExchangeKit
from exchange.testing.processes import ExchangeProcess, declarations_pointing_at, gateway_process
from exchange.testing.sandboxes import SandboxFleet
from tests.conftest import SAMPLE_PARTNERS

pytestmark = [pytest.mark.postgres_only, pytest.mark.asyncio(loop_scope="module")]

LINK = """mutation($program: ID!, $ref: String!, $verification: String!) {
  linkAccount(programId: $program, memberRef: $ref, verification: $verification) { memberRef } }"""
QUOTE = """mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) { id } }"""
EXECUTE = """mutation($quote: ID!, $key: String!) {
  executeConversion(quoteId: $quote, idempotencyKey: $key) { id status } }"""
TYPENAME = "{ __typename }"
SUBSCRIBE = """mutation($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) { secret subscription { id } } }"""
ROTATE = """mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret } }"""
#: The database's password (the throwaway cluster trusts local connections, so any will do).
DATABASE_PASSWORD = "database-password-that-must-never-be-logged"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Gateway:
    kit: ExchangeKit
    process: ExchangeProcess
    log: Path

    def log_entries(self) -> list[dict[str, Any]]:
        """Every line the gateway wrote so far, each a JSON object (or the test fails)."""
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    postgres_databases: PostgresDatabases, sample_partners: PartnersDirectory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """One gateway for the module's tests: starting two workers is most of their time."""
    directory = tmp_path_factory.mktemp("observed")
    url = postgres_databases.create()
    sandboxes = SandboxFleet(sample_partners, directory / "sandboxes")
    await sandboxes.start("wallet-pay", "happy-card")
    partners = declarations_pointing_at(sandboxes.base_urls, SAMPLE_PARTNERS, directory / "partners")
    with_password = make_url(url).set(password=DATABASE_PASSWORD).render_as_string(hide_password=False)
    settings = Settings(database_url=with_password, partners_dir=partners, port=free_port())
    await load_partners_directory(settings)
    log = directory / "gateway.log"
    process = gateway_process(settings, workers=2, output=log, EXCHANGE_LOG_FORMAT="json", EXCHANGE_LOG_LEVEL="debug")
    db = Database.from_url(settings.database_url)
    try:
        await process.start()
        async with httpx.AsyncClient(base_url=settings.issuer_url, timeout=30) as http:
            yield Gateway(ExchangeKit(settings=settings, http=http, db=db), process, log)
    finally:
        process.stop()
        await db.dispose()
        await sandboxes.stop()
        postgres_databases.drop(url)


async def convert(kit: ExchangeKit, key: str, **headers: str) -> str:
    """Alice converts 1000 happy-card points into wallet-pay's (idempotency key ``key``); the
    conversion's id."""
    alice = await kit.member_token("wallet-pay", "alice")
    await kit.data(LINK, alice, program="happy-card", ref="alice", verification="1111")
    quote = (await kit.data(QUOTE, alice, **{"from": "happy-card", "to": "wallet-pay", "points": 1000}))["createQuote"]
    token = await kit.member_token("happy-card", "alice")
    response = await kit.http.post(
        "/graphql",
        json={"query": EXECUTE, "variables": {"quote": quote["id"], "key": key}},
        headers={"authorization": f"Bearer {token}", **headers},
    )
    done = response.json()["data"]["executeConversion"]
    assert done["status"] == "COMPLETED", response.text
    return str(done["id"])


async def scrape(kit: ExchangeKit) -> Samples:
    response = await kit.http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def access_pids(gateway: Gateway) -> set[int]:
    """The worker processes that have answered a request so far."""
    return {entry["process"] for entry in gateway.log_entries() if entry["logger"] == "uvicorn.access"}


async def test_every_metric_is_served_and_moves_with_a_conversion_whichever_worker_answers(gateway: Gateway) -> None:
    kit = gateway.kit
    before = await scrape(kit)
    await convert(kit, "scraped")
    refused = await kit.http.post("/graphql", content=b"{ __typename }", headers={"content-type": "text/plain"})
    assert refused.status_code == 415
    unauthenticated = await kit.http.post("/graphql", json={"query": TYPENAME}, headers={"authorization": "Bearer x"})
    assert unauthenticated.status_code == 401
    missing = await kit.graphql(EXECUTE, await kit.member_token("happy-card", "alice"), quote="no-such", key="k")
    assert missing.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    # Requests on fresh connections until both workers have answered some: the counts below
    # must be the sum of both.
    asked = 0
    while len(access_pids(gateway)) < 2 or asked < 4:
        assert asked < 200, "one worker answered every request"
        async with httpx.AsyncClient(base_url=kit.settings.issuer_url) as fresh:
            response = await fresh.post("/graphql", json={"query": TYPENAME})
        assert response.json() == {"data": {"__typename": "Query"}}
        asked += 1
    after = await scrape(kit)

    served = {(name, frozenset(dict(labels)) - {"le"}) for name, labels in after}
    for name, (kind, labels) in served_metrics().items():
        series = name + ("_count" if kind == "histogram" else "")
        assert (series, labels) in served, f"{name} by {sorted(labels)} is not served"

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "exchange_request_duration_seconds_count"
    assert moved(requests, operation="__typename", outcome="ok") == asked
    assert moved(requests, operation="executeConversion", outcome="ok") == 1
    assert moved(requests, operation="executeConversion", outcome="error") == 1
    assert moved(requests, operation="(none)", outcome="refused") == 2
    assert moved("exchange_errors_total", code="NOT_FOUND") == 1
    assert moved("exchange_errors_total", code="UNSUPPORTED_MEDIA_TYPE") == 1
    assert moved("exchange_errors_total", code="UNAUTHENTICATED") == 1
    calls = "exchange_partner_call_duration_seconds_count"
    assert moved(calls, program="happy-card", operation="debit", outcome="ok") == 1
    assert moved(calls, program="wallet-pay", operation="credit", outcome="ok") == 1
    assert value(after, "exchange_partner_breaker_open", program="happy-card") == 0
    assert moved("exchange_ledger_postings_total", kind="conversion") == 1
    assert value(after, "exchange_saga_state", saga="conversion", state="PENDING") == 0
    assert value(after, "exchange_saga_oldest_pending_seconds", saga="conversion") == 0
    assert value(after, "exchange_recovery_backlog", saga="conversion") == 0


async def test_logs_name_the_request_and_the_conversion_and_hold_no_secret(gateway: Gateway) -> None:
    kit = gateway.kit
    secrets = {
        "token": "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2VjcmV0LXNpZ25hdHVyZQ",
        "client secret": "client-secret-that-must-never-be-logged",
        "token in the URL": "url-token-that-must-never-be-logged",
        "verification": "493817",
    }
    refused = await kit.http.post(
        "/graphql",
        json={"query": TYPENAME},
        headers={"authorization": f"Bearer {secrets['token']}", "x-request-id": "caller-chosen-1"},
    )
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "caller-chosen-1"
    partner = await kit.partner("wallet-pay")
    wrong = await kit.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(partner.client.client_id, secrets["client secret"]),
    )
    assert wrong.status_code == 401
    in_url = await kit.http.get(f"/graphql?query={TYPENAME}&access_token={secrets['token in the URL']}")
    assert in_url.status_code == 400
    alice = await kit.member_token("wallet-pay", "alice")
    unlinked = await kit.graphql(LINK, alice, program="happy-card", ref="mallory", verification=secrets["verification"])
    assert unlinked.json()["errors"]
    odd = await kit.http.get("/healthz", headers={"x-request-id": "not a well-formed id"})
    assert odd.headers["x-request-id"] not in ("", "not a well-formed id")
    conversion = await convert(kit, "logged", **{"x-request-id": "caller-chosen-2"})

    text = gateway.log.read_text()
    for what, secret in secrets.items():
        assert secret not in text, f"the {what} is in the log"
    entries = gateway.log_entries()
    assert any(entry.get("request_id") == "caller-chosen-1" for entry in entries)
    requests = [entry for entry in entries if entry["logger"] == "uvicorn.access"]
    assert requests and all(entry.get("request_id") for entry in requests)
    finished = [entry for entry in entries if entry.get("conversion_id") == conversion]
    assert finished and all(entry["request_id"] == "caller-chosen-2" for entry in finished)
    assert any("finished: COMPLETED" in entry["message"] for entry in finished)
    assert {"time", "level", "logger", "process", "message"} <= set(entries[0])


async def test_no_secret_of_any_flow_reaches_the_log(gateway: Gateway) -> None:
    """Tokens in the token endpoint's answers and in introspection, webhook signing secrets
    (made and rotated, then used to sign), a partner callback's signature, a console user's
    password, the partners' client secrets and the database's password: none in any line
    written at DEBUG, access log and traces included."""
    kit = gateway.kit
    secrets = {"database password": DATABASE_PASSWORD, "console password": "console-password-never-logged"}
    secrets |= {f"{program} client secret": f"sandbox-{program}" for program in ("wallet-pay", "happy-card")}
    partner = await kit.partner("wallet-pay")
    secrets["exchange client secret"] = partner.client_secret
    issued = await kit.request_token(partner)
    secrets["access token"] = token = issued.json()["access_token"]
    basic = (partner.client.client_id, partner.client_secret)
    introspected = await kit.http.post("/oauth/introspect", data={"token": token}, auth=basic)
    assert introspected.json()["active"] is True
    hook = {"url": f"http://127.0.0.1:{free_port()}/hook", "eventTypes": ["CONVERSION_COMPLETED"]}
    made = (await kit.data(SUBSCRIBE, token, input={**hook, "programId": "wallet-pay"}))["createWebhookSubscription"]
    secrets["webhook secret"] = made["secret"]
    rotated = await kit.data(ROTATE, token, id=made["subscription"]["id"])
    secrets["rotated webhook secret"] = rotated["rotateWebhookSecret"]["secret"]
    secrets["member token"] = await kit.member_token("wallet-pay", "alice")
    await convert(kit, "signed-webhook")  # its event is signed with both secrets
    assert (await kit.http.post("/oauth/revoke", data={"token": token}, auth=basic)).status_code == 200

    secrets["callback signature"] = signature = "v1,Y2FsbGJhY2stc2lnbmF0dXJlLW5ldmVyLWxvZ2dlZA=="
    forged = await kit.http.post(
        "/partners/happy-card/callbacks",
        json={"operationId": "op-1", "status": "ACCEPTED"},
        headers={"webhook-id": "msg-1", "webhook-timestamp": str(int(time.time())), "webhook-signature": signature},
    )
    assert forged.status_code in (400, 401, 404), forged.text
    form = await kit.http.get("/console/sign-in")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert csrf is not None
    refused = await kit.http.post(
        "/console/sign-in",
        data={"csrf_token": csrf[1], "username": "nobody", "password": secrets["console password"]},
    )
    assert refused.status_code in (200, 400, 401, 403), refused.status_code

    text = gateway.log.read_text()
    assert "/oauth/introspect" in text and "/console/sign-in" in text  # the access log saw them
    for what, secret in secrets.items():
        assert secret not in text, f"the {what} is in the log"
