"""A list of parents costs the database as many statements as one parent does: nested fields
load through DataLoaders, one batch per child kind, never one query per parent."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from exchange.app import create_app
from exchange.auth.scopes import Role
from exchange.db.database import Database
from exchange.services.container import load_partners_directory
from exchange.serving import serving
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.api.conftest import ON_SQLITE_TOO
from tests.reads import statements_of

PROGRAM_FIELDS = """
  id
  tiers { name level }
  incomingRates { fromProgramId version }
  promotions { id }
  assertionKeys { kid }
  linkedAccounts(first: 5) { memberRef program { id } }
"""
REWARD_FIELDS = "id program { id tiers { name } }"


@pytest.fixture
def gateway_settings(store_settings: Settings) -> Settings:
    """The API tests' settings (on PostgreSQL, or the store a test names) with the gateway's
    background jobs off: a job's pass landing in a counted request would add its statements
    to the request's."""
    return store_settings.model_copy(
        update={
            "coalition_expiry_interval_seconds": 0,
            "recovery_interval_seconds": 0,
            "status_match_expiry_interval_seconds": 0,
            "redemption_interval_seconds": 0,
            "settlement_job_interval_seconds": 0,
            "webhook_interval_seconds": 0,
            "batch_interval_seconds": 0,
            "retention_interval_seconds": 0,
        }
    )


@pytest.fixture
async def app(gateway_settings: Settings) -> Starlette:
    await load_partners_directory(gateway_settings)
    return create_app(gateway_settings)


@pytest.fixture
async def counting_kit(gateway_settings: Settings, app: Starlette) -> AsyncIterator[ExchangeKit]:
    async with serving(app, port=gateway_settings.port) as server, httpx.AsyncClient(base_url=server.url) as http:
        db = Database.from_url(gateway_settings.database_url)
        try:
            yield ExchangeKit(settings=gateway_settings, http=http, db=db)
        finally:
            await db.dispose()


async def cost(kit: ExchangeKit, app: Starlette, query: str, token: str) -> int:
    """Statements one run of ``query`` sends, once caches are warm."""
    response = await kit.graphql(query, token)
    assert response.status_code == 200 and response.json().get("data"), response.text
    with statements_of(app.state.services.db) as sent:
        await kit.graphql(query, token)
    return len(sent)


async def test_every_program_costs_what_one_program_costs(counting_kit: ExchangeKit, app: Starlette) -> None:
    kit = counting_kit
    admin = await kit.staff_token(Role.ADMIN)
    for program in ("formosa-air", "fresh-mart", "wallet-pay"):
        await kit.assertion_key(program)
    partner = await kit.partner_token("fresh-mart")
    await kit.member_token("fresh-mart", "alice")  # a linked account to page through
    programs = (await kit.data("{ programs { id } }"))["programs"]
    assert len(programs) > 1
    every = "{ programs {" + PROGRAM_FIELDS + "} }"
    one = '{ program(id: "fresh-mart") {' + PROGRAM_FIELDS + "} }"
    # The admin reads every program's pricing and keys; linkedAccounts is each partner's own.
    assert await cost(kit, app, every, admin) == await cost(kit, app, one, admin)
    assert await cost(kit, app, every, partner) == await cost(kit, app, one, partner)


async def test_every_reward_costs_what_one_reward_costs(counting_kit: ExchangeKit, app: Starlette) -> None:
    kit = counting_kit
    rewards = (await kit.data("{ rewards(availableOnly: false) { id } }"))["rewards"]
    assert len(rewards) > 1
    every = "{ rewards(availableOnly: false) {" + REWARD_FIELDS + "} }"
    one = '{ reward(id: "' + rewards[0]["id"] + '") {' + REWARD_FIELDS + "} }"
    token = await kit.staff_token(Role.ADMIN)
    assert await cost(kit, app, every, token) == await cost(kit, app, one, token)


WEBHOOK_FIELDS = """
  id
  deliveries { id }
  dead: deliveries(status: DEAD) { id }
  attempts { deliveryId }
  deliveryPage(first: 2) { items { id } nextCursor }
  deadPage: deliveryPage(status: DEAD) { items { id } nextCursor }
  attemptPage(first: 2) { items { deliveryId } nextCursor }
"""
CREATE_WEBHOOK = """mutation($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) { subscription { id } } }"""


@ON_SQLITE_TOO
async def test_every_webhook_subscription_costs_what_one_costs(counting_kit: ExchangeKit, app: Starlette) -> None:
    # A staff tool lists every program's subscriptions: their delivery logs read one by one
    # cost statements per subscription and alias, hundreds in one request.
    kit = counting_kit
    admin = await kit.staff_token(Role.ADMIN)
    made_by_program = {"formosa-air": 3, "fresh-mart": 5, "wallet-pay": 1}
    for program, count in made_by_program.items():
        partner = await kit.partner_token(program)
        for number in range(count):
            made = await kit.graphql(
                CREATE_WEBHOOK,
                partner,
                input={"url": f"http://127.0.0.1:9/{number}", "eventTypes": ["PERIOD_CLOSED"], "programId": program},
            )
            assert made.json()["data"]["createWebhookSubscription"], made.text
    listed = (await kit.data("{ webhookSubscriptions { id } }", admin))["webhookSubscriptions"]
    assert len(listed) == 9
    every = "{ webhookSubscriptions {" + WEBHOOK_FIELDS + "} }"
    one = '{ webhookSubscription(id: "' + listed[0]["id"] + '") {' + WEBHOOK_FIELDS + "} }"
    assert await cost(kit, app, every, admin) == await cost(kit, app, one, admin)

    # A partner's own five cost what another's one does.
    def own(program: str) -> str:
        return '{ webhookSubscriptions(programId: "' + program + '") {' + WEBHOOK_FIELDS + "} }"

    five = await cost(kit, app, own("fresh-mart"), await kit.partner_token("fresh-mart"))
    assert five == await cost(kit, app, own("wallet-pay"), await kit.partner_token("wallet-pay"))


async def test_a_members_own_view_is_read_with_their_tokens_standing(counting_kit: ExchangeKit, app: Starlette) -> None:
    """``me`` and its linked accounts send no statement of their own: the check of a member
    token, one statement on every request, reads the member and their accounts with it."""
    kit = counting_kit
    await kit.assertion_key("fresh-mart")
    token = await kit.member_token("fresh-mart", "alice")
    query = "{ me { id createdAt linkedAccounts { memberRef linkedAt } } }"
    assert await cost(kit, app, query, token) == 1
    me = (await kit.graphql(query, token)).json()["data"]["me"]
    # Their account at fresh-mart, and the one the exchange keeps for them at the coalition point.
    assert sorted(account["memberRef"] for account in me["linkedAccounts"]) == sorted(["alice", me["id"]])
