"""A partner integrating by the documents alone: a points system written from partners/CONTRACT.md
and openapi.yaml (tests/api/contract_partner.py), declared as the README says, takes real
conversions into and out of its program through the gateway's GraphQL; as a webhook consumer it
verifies deliveries with the code docs/WEBHOOKS.md gives, verbatim. If the product and its
documents part, this fails."""

from __future__ import annotations

import base64
import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from exchange.serving import RunningServer, free_port, serving
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.api.conftest import Receiver
from tests.api.contract_partner import ContractPartner, Member
from tests.conftest import REPO_ROOT, SAMPLE_PARTNERS

pytestmark = pytest.mark.parametrize("store", ["sqlite", "postgresql"], indirect=True)

#: A program declaration as the README's "Configuring a program" and CONTRACT.md give it.
DECLARATION = """\
id = "{id}"
name = "{id} rewards"
category = "wallet"
point_name = "Point"
point_value = "{value}"

[[tiers]]
name = "Member"
level = 0

[connector]
kind = "rest"
base_url = "http://127.0.0.1:{port}"
timeout_seconds = "3"

[connector.oauth]
token_url = "http://127.0.0.1:{port}/oauth/token"
client_id = "exchange"
client_secret = "{secret}"
scope = "points"
"""
PROGRAMS = {"acme": "1", "beta": "0.5"}

LINK = """mutation($program: ID!, $ref: String!, $verification: String!) {
  linkAccount(programId: $program, memberRef: $ref, verification: $verification) { memberRef } }"""
QUOTE = """mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) { id pointsIn pointsOut } }"""
EXECUTE = """mutation($quote: ID!, $key: String!) {
  executeConversion(quoteId: $quote, idempotencyKey: $key) { id status pointsIn pointsOut failure { code } } }"""
SUBSCRIBE = """mutation($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) { secret subscription { id } } }"""


@pytest.fixture
def partners() -> dict[str, ContractPartner]:
    return {
        program: ContractPartner(client_id="exchange", client_secret=f"secret of {program}") for program in PROGRAMS
    }


@pytest.fixture
async def partner_servers(partners: dict[str, ContractPartner]) -> AsyncIterator[dict[str, RunningServer]]:
    for partner in partners.values():
        partner.members["alice"] = Member(balance=10_000, tier="Member", verification="1234", name="Alice Chen")
    async with serving(partners["acme"].app()) as acme, serving(partners["beta"].app()) as beta:
        yield {"acme": acme, "beta": beta}


@pytest.fixture
def gateway_settings(
    store: str, request: pytest.FixtureRequest, tmp_path: Path, partner_servers: dict[str, RunningServer]
) -> Iterator[Settings]:
    """The gateway on a fresh ``store``, its programs declared in a directory of their own."""
    shutil.copy(SAMPLE_PARTNERS / "coalition.toml", tmp_path / "coalition.toml")
    for program, value in PROGRAMS.items():
        declaration = DECLARATION.format(
            id=program, value=value, port=partner_servers[program].port, secret=f"secret of {program}"
        )
        (tmp_path / f"{program}.toml").write_text(declaration)
    databases = request.getfixturevalue("sqlite_databases" if store == "sqlite" else "postgres_databases")
    url = databases.create()
    try:
        yield Settings(database_url=url, partners_dir=tmp_path, port=free_port(), coalition_expiry_interval_seconds=0)
    finally:
        databases.drop(url)


async def alice(kit: ExchangeKit) -> dict[str, str]:
    """Alice's token from each program, her beta account linked through acme's token."""
    return await kit.linked_member("alice", ["acme", "beta"], verification="1234")


async def convert(kit: ExchangeKit, token: str, source: str, target: str, points: int, key: str) -> dict[str, Any]:
    quote = (await kit.data(QUOTE, token, **{"from": source, "to": target, "points": points}))["createQuote"]
    return dict((await kit.data(EXECUTE, token, quote=quote["id"], key=key))["executeConversion"])


def json_body(seen: Any) -> Any:
    assert seen.headers["content-type"] == "application/json"
    return json.loads(seen.body)


async def test_points_convert_into_and_out_of_a_partner_built_from_the_contract(
    kit: ExchangeKit, partners: dict[str, ContractPartner]
) -> None:
    tokens = await alice(kit)
    out = await convert(kit, tokens["acme"], "acme", "beta", 1000, "out-1")
    assert out["status"] == "COMPLETED" and out["failure"] is None
    assert partners["acme"].members["alice"].balance == 9_000
    assert partners["beta"].members["alice"].balance == 10_000 + out["pointsOut"]

    partners["acme"].tokens.clear()  # acme revokes the exchange's token: a 401, a new token, the call again
    back = await convert(kit, tokens["beta"], "beta", "acme", out["pointsOut"], "back-1")
    assert back["status"] == "COMPLETED"
    assert partners["beta"].members["alice"].balance == 10_000
    assert partners["acme"].members["alice"].balance == 9_000 + back["pointsOut"]

    assert len(partners["acme"].seen_at("/oauth/token")) == 2
    # What the contract says the exchange sends: a client-credentials token request, basic auth...
    token_request = partners["acme"].seen_at("/oauth/token")[0]
    user, _, password = base64.b64decode(token_request.headers["authorization"].removeprefix("Basic ")).partition(b":")
    assert (user, password) == (b"exchange", b"secret+of+acme"), "each form-urlencoded (RFC 6749 2.3.1)"
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(token_request.body.decode()) == {"grant_type": ["client_credentials"], "scope": ["points"]}
    # ...then its bearer token, and writes of exactly the documented members, ids of the documented form.
    [debit] = partners["acme"].seen_at("/debits")
    assert debit.headers["authorization"].startswith("Bearer ")
    assert json_body(debit) == {"operation_id": f"{out['id']}:debit", "member_ref": "alice", "points": 1000}
    [credit] = partners["beta"].seen_at("/credits")
    assert json_body(credit) == {
        "operation_id": f"{out['id']}:credit",
        "member_ref": "alice",
        "points": out["pointsOut"],
    }
    verify = partners["beta"].seen_at("/members/alice/verify")[0]
    assert json_body(verify) == {"verification": "1234"}


async def test_a_refused_credit_reverses_the_debit_at_the_source(
    kit: ExchangeKit, partners: dict[str, ContractPartner]
) -> None:
    tokens = await alice(kit)
    partners["beta"].closed_to_credits.add("alice")
    conversion = await convert(kit, tokens["acme"], "acme", "beta", 1000, "refused-credit")
    assert conversion["status"] == "REVERSED"
    assert partners["acme"].members["alice"].balance == 10_000
    [reversal] = partners["acme"].seen_at("/reversals")
    debit = f"{conversion['id']}:debit"
    assert json_body(reversal) == {"operation_id": f"{conversion['id']}:reverse-debit", "reverses": debit}
    assert partners["acme"].operations[debit]["status"] == "reversed"


async def test_a_write_applied_but_not_answered_is_repeated_with_its_id_and_applied_once(
    kit: ExchangeKit, partners: dict[str, ContractPartner]
) -> None:
    tokens = await alice(kit)
    acme = partners["acme"]
    acme.fail_after_applying.add("debit")
    conversion = await convert(kit, tokens["acme"], "acme", "beta", 1000, "crash")
    assert conversion["status"] == "COMPLETED"
    assert acme.members["alice"].balance == 9_000, "the repeat applied nothing more"
    first, again = acme.seen_at("/debits")
    assert json_body(again) == json_body(first), "the same id and request again, answered as recorded"


def documented_verification() -> str:
    """The Python snippet docs/WEBHOOKS.md gives for verifying a delivery."""
    text = (REPO_ROOT / "docs" / "WEBHOOKS.md").read_text()
    [snippet] = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    return str(snippet)


async def test_a_partner_verifies_its_webhooks_with_the_documented_code(
    kit: ExchangeKit, partners: dict[str, ContractPartner], receiver: tuple[Receiver, RunningServer]
) -> None:
    hooks, server = receiver
    partner = await kit.partner_token("acme")
    made = await kit.data(
        SUBSCRIBE,
        partner,
        input={"programId": "acme", "url": server.url + "/hook", "eventTypes": ["CONVERSION_COMPLETED"]},
    )
    secret = made["createWebhookSubscription"]["secret"]
    conversion = await convert(kit, (await alice(kit))["acme"], "acme", "beta", 1000, "hooked")
    await hooks.wait_for(1)
    [(headers, body)] = hooks.received
    scope: dict[str, Any] = {"secret": secret, "body": body, "headers": headers}
    exec(documented_verification(), scope)
    event = scope["event"]
    assert event["type"] == "conversion.completed" and event["data"]["id"] == conversion["id"]
    assert event["data"]["pointsIn"] == 1000
    forged = {**headers, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()}
    with pytest.raises(Exception, match="signature"):
        exec(documented_verification(), {"secret": secret, "body": body, "headers": forged})
