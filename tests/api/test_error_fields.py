"""One rule for every operation: an unknown program is ``NOT_FOUND``, and ``extensions.field``
is the path of the argument as the client wrote it (``programId``, ``input.toProgram``)."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.auth.scopes import Role
from exchange.testing.kit import ExchangeKit

PUBLIC_KEY = '{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}'
REWARD = {"title": "A mug", "price": "120", "stock": 3}


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    (error,) = body["errors"]
    return dict(error["extensions"])


async def callers(kit: ExchangeKit) -> dict[str, str]:
    return {
        "member": await kit.member_token("wallet-pay", "alice"),
        "partner": await kit.partner_token("fresh-mart"),
        "admin": await kit.staff_token(Role.ADMIN),
    }


UNKNOWN_PROGRAMS = [
    (
        "member",
        'mutation { createQuote(input: {fromProgram: "nope", toProgram: "wallet-pay", points: 1000}) { id } }',
        "input.fromProgram",
    ),
    (
        "member",
        'mutation { createQuote(input: {fromProgram: "wallet-pay", toProgram: "nope", points: 1000}) { id } }',
        "input.toProgram",
    ),
    (
        "member",
        'mutation { linkAccount(programId: "nope", memberRef: "alice", verification: "1") { memberRef } }',
        "programId",
    ),
    ("member", '{ statusMatchPreview(fromProgram: "nope", toProgram: "wallet-pay") { outcome } }', "fromProgram"),
    ("member", 'mutation { requestStatusMatch(fromProgram: "wallet-pay", toProgram: "nope") { id } }', "toProgram"),
    ("member", '{ redemptionQuote(rewardId: "$reward", payWith: "nope") { points } }', "payWith"),
    ("member", 'mutation { authorizeDebit(programId: "nope", points: 100) { id } }', "programId"),
    ("member", 'mutation { authorizeDebit(program: "nope", points: 100) { id } }', "program"),
    (
        "member",
        'mutation { redeemReward(rewardId: "$reward", payWith: "nope", idempotencyKey: "k") { id } }',
        "payWith",
    ),
    (
        "partner",
        'mutation { setConversionRate(input: {fromProgram: "nope", toProgram: "fresh-mart", ratio: "1:2"}) { id } }',
        "input.fromProgram",
    ),
    ("partner", 'mutation { clearConversionRate(fromProgram: "nope", toProgram: "fresh-mart") { id } }', "fromProgram"),
    (
        "partner",
        'mutation { createPromotion(input: {programId: "fresh-mart", id: "p", bonusPercent: "5", '
        'startsAt: "2026-01-01T00:00:00Z", endsAt: "2099-01-01T00:00:00Z", fromPrograms: ["wallet-pay", "nope"]}) { id } }',
        "input.fromPrograms",
    ),
    (
        "admin",
        'mutation { publishReward(programId: "nope", input: {title: "A mug", price: "120", stock: 3}) { id } }',
        "programId",
    ),
    ("admin", 'mutation { registerAssertionKey(programId: "nope", publicKey: "$key") { kid } }', "programId"),
    ("admin", '{ program(id: "nope") { id } }', "id"),
    ("admin", '{ webhookSubscriptions(programId: "nope") { id } }', "programId"),
]


@pytest.mark.parametrize(("caller", "operation", "field"), UNKNOWN_PROGRAMS)
async def test_an_unknown_program_is_not_found_at_the_argument_the_client_wrote(
    kit: ExchangeKit, caller: str, operation: str, field: str
) -> None:
    tokens = await callers(kit)
    reward = (await kit.data('{ rewards(programId: "fresh-mart") { id } }'))["rewards"][0]["id"]
    query = operation.replace("$reward", reward).replace("$key", PUBLIC_KEY.replace('"', '\\"'))
    body = (await kit.graphql(query, tokens[caller])).json()
    assert refusal(body) == {"code": "NOT_FOUND", "field": field}


BAD_INPUTS = [
    (
        "member",
        'mutation { createQuote(input: {fromProgram: "wallet-pay", toProgram: "wallet-pay", points: 0}) { id } }',
        "input.points",
    ),
    (
        "member",
        'mutation { linkAccount(programId: "fresh-mart", memberRef: " alice", verification: "1") { memberRef } }',
        "memberRef",
    ),
    (
        "member",
        'mutation { redeemReward(rewardId: "$reward", payWith: "wallet-pay", idempotencyKey: "") { id } }',
        "idempotencyKey",
    ),
    ("member", "{ redemptions(first: 0) { id } }", "first"),
    (
        "partner",
        'mutation { setConversionRate(input: {fromProgram: "wallet-pay", toProgram: "fresh-mart", ratio: "12"}) { id } }',
        "input.ratio",
    ),
    (
        "partner",
        'mutation { setConversionRate(input: {fromProgram: "wallet-pay", toProgram: "fresh-mart", '
        'bands: [{fromPoints: 1, ratio: "1:2"}, {fromPoints: 100, ratio: "x"}]}) { id } }',
        "input.bands[1].ratio",
    ),
    (
        "partner",
        'mutation { createPromotion(input: {programId: "fresh-mart", id: "p", bonusPercent: "0", '
        'startsAt: "2026-01-01T00:00:00Z", endsAt: "2099-01-01T00:00:00Z"}) { id } }',
        "input.bonusPercent",
    ),
    ("partner", '{ program(id: "fresh-mart") { linkedAccounts(first: 0) { memberRef } } }', "first"),
    # Written inline, a value its argument's type cannot hold is named as a variable's would be.
    (
        "member",
        'mutation { createQuote(input: {fromProgram: "wallet-pay", toProgram: "fresh-mart", points: 99999999999}) '
        "{ id } }",
        "input.points",
    ),
    # ... and so is one Python will not even read as an int (more than 4,300 digits).
    (
        "member",
        'mutation { createQuote(input: {fromProgram: "wallet-pay", toProgram: "fresh-mart", points: %s}) '
        "{ id } }" % ("9" * 5000),
        "input.points",
    ),
    ("member", "{ redemptions(first: -%s) { id } }" % ("9" * 4301), "first"),
    ("member", '{ redemptions(first: "ten") { id } }', "first"),
    (
        "member",
        'mutation { createQuote(input: {fromProgram: "wallet-pay", toProgram: "fresh-mart", points: 1000, form: 1}) '
        "{ id } }",
        "input.form",
    ),
    ("member", 'mutation { createQuote(input: {fromProgram: "wallet-pay", points: 100}) { id } }', "input"),
    (
        "admin",
        'mutation { publishReward(programId: "fresh-mart", input: {title: "", price: "1", stock: 1}) { id } }',
        "input.title",
    ),
]


@pytest.mark.parametrize(("caller", "operation", "field"), BAD_INPUTS)
async def test_bad_input_names_the_argument_path_the_client_wrote(
    kit: ExchangeKit, caller: str, operation: str, field: str
) -> None:
    tokens = await callers(kit)
    reward = (await kit.data('{ rewards(programId: "fresh-mart") { id } }'))["rewards"][0]["id"]
    body = (await kit.graphql(operation.replace("$reward", reward), tokens[caller])).json()
    assert refusal(body) == {"code": "BAD_USER_INPUT", "field": field}


async def test_a_number_written_inline_too_long_to_read_is_refused_in_a_few_words(kit: ExchangeKit) -> None:
    """A 5,000-digit Int written in the document was an unexpected error (Python refuses to read
    so long a number), and GraphQL's own message for it would quote all 5,000 digits."""
    tokens = await callers(kit)
    body = (await kit.graphql("{ redemptions(first: %s) { id } }" % ("9" * 5000), tokens["member"])).json()
    (error,) = body["errors"]
    assert error["message"] == "first: Int cannot represent the value written here"
