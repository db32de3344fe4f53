"""An operation's description names every code it answers: it is where a client's developer
looks (GraphiQL, schema.graphql) to learn what to handle. Each case provokes a refusal and
finds its code in the description of the operation that gave it."""

from __future__ import annotations

from graphql import build_schema as parse_sdl

from exchange.api.schema import build_schema
from exchange.auth.scopes import Role
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit

SCHEMA = parse_sdl(build_schema(Settings()).as_str())
CREATE_PROMOTION = """mutation($bonus: Decimal!, $ends: DateTime!) {
  createPromotion(input: {programId: "fresh-mart", id: "fm-once", bonusPercent: $bonus,
    startsAt: "2026-01-01T00:00:00Z", endsAt: $ends}) { id } }"""


def described(operation: str) -> str:
    """The operation's description and its arguments': where a client reads about it."""
    assert SCHEMA.mutation_type is not None and SCHEMA.query_type is not None
    field = SCHEMA.mutation_type.fields.get(operation) or SCHEMA.query_type.fields[operation]
    return " ".join([field.description or "", *(argument.description or "" for argument in field.args.values())])


async def answered(kit: ExchangeKit, token: str, query: str, **variables: object) -> tuple[str, str, str | None]:
    body = (await kit.graphql(query, token, **variables)).json()
    [error] = body["errors"]
    return error["path"][0], error["extensions"]["code"], error["extensions"].get("field")


async def test_a_promotions_refusals_are_named_where_a_client_reads_about_it(kit: ExchangeKit) -> None:
    token = await kit.partner_token("fresh-mart")
    await kit.data(CREATE_PROMOTION, token, bonus="10", ends="2099-01-01T00:00:00Z")
    refusals = [
        await answered(kit, token, CREATE_PROMOTION, bonus="20", ends="2099-01-01T00:00:00Z"),
        await answered(kit, token, CREATE_PROMOTION, bonus="10", ends="2026-06-01T00:00:00Z"),
        await answered(kit, token, 'mutation { endPromotion(programId: "fresh-mart", id: "none") { id } }'),
    ]
    assert refusals == [
        ("createPromotion", "IDEMPOTENCY_CONFLICT", "input.id"),
        ("createPromotion", "BAD_USER_INPUT", "input.endsAt"),
        ("endPromotion", "NOT_FOUND", "id"),
    ]
    assert [code for operation, code, _ in refusals if f"`{code}`" not in described(operation)] == []


PUBLISH = """mutation($stock: Int!) { publishReward(programId: "fresh-mart",
  input: {id: "fm-mug", title: "A mug", price: "100", stock: $stock}) { id } }"""


async def test_a_partners_rewards_keys_and_subscriptions_refusals_are_named_where_it_reads(kit: ExchangeKit) -> None:
    token = await kit.partner_token("fresh-mart")
    await kit.data(PUBLISH, token, stock=5)
    refusals = [
        await answered(kit, token, PUBLISH, stock=6),
        await answered(kit, token, PUBLISH.replace("fm-mug", "fm-cup"), stock=-1),
        await answered(kit, token, 'mutation { confirmRedemptionDelivery(redemptionId: "none") { id } }'),
        await answered(kit, token, 'mutation { removeAssertionKey(programId: "fresh-mart", kid: "none") { kid } }'),
        await answered(kit, token, 'mutation { deleteWebhookSubscription(id: "none") { id } }'),
    ]
    assert [(operation, code) for operation, code, _ in refusals] == [
        ("publishReward", "IDEMPOTENCY_CONFLICT"),
        ("publishReward", "BAD_USER_INPUT"),
        ("confirmRedemptionDelivery", "NOT_FOUND"),
        ("removeAssertionKey", "NOT_FOUND"),
        ("deleteWebhookSubscription", "NOT_FOUND"),
    ]
    assert [code for operation, code, _ in refusals if f"`{code}`" not in described(operation)] == []


async def test_the_queries_refusals_are_named_where_a_client_reads_about_them(kit: ExchangeKit) -> None:
    partner = await kit.partner_token("fresh-mart")
    member = await kit.member_token("wallet-pay", "alice")
    staff = await kit.staff_token(Role.SETTLEMENT)
    refusals = [
        await answered(kit, partner, '{ rewardRedemptions(rewardId: "none") { id } }'),
        await answered(kit, member, '{ redemptionQuote(rewardId: "none", payWith: "wallet-pay") { points } }'),
        await answered(
            kit, member, '{ statusMatchPreview(fromProgram: "wallet-pay", toProgram: "formosa-air") { __typename } }'
        ),
        await answered(kit, staff, '{ riskDecisions(conversionId: "none") { __typename } }'),
        await answered(kit, staff, '{ riskDecisions(redemptionId: "none") { __typename } }'),
    ]
    assert refusals == [
        ("rewardRedemptions", "NOT_FOUND", "rewardId"),
        ("redemptionQuote", "NOT_FOUND", "rewardId"),
        ("statusMatchPreview", "BAD_USER_INPUT", "toProgram"),
        ("riskDecisions", "NOT_FOUND", "conversionId"),
        ("riskDecisions", "NOT_FOUND", "redemptionId"),
    ]
    assert [code for operation, code, _ in refusals if f"`{code}`" not in described(operation)] == []
