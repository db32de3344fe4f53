"""An operation's description names every code it answers: it is where a client's developer
looks (GraphiQL, schema.graphql) to learn what to handle. Each case provokes a refusal and
finds its code in the description of the operation that gave it."""

from __future__ import annotations

from graphql import build_schema as parse_sdl

from exchange.api.schema import build_schema
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit

SCHEMA = parse_sdl(build_schema(Settings()).as_str())
CREATE_PROMOTION = """mutation($bonus: Decimal!, $ends: DateTime!) {
  createPromotion(input: {programId: "fresh-mart", id: "fm-once", bonusPercent: $bonus,
    startsAt: "2026-01-01T00:00:00Z", endsAt: $ends}) { id } }"""


def described(operation: str) -> str:
    assert SCHEMA.mutation_type is not None
    return SCHEMA.mutation_type.fields[operation].description or ""


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
