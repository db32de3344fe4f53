"""Lists a client can make grow come a page at a time: ``first`` of them after a cursor, ``first``
from 1 to its documented most (the most is taken, one more is ``BAD_USER_INPUT`` on ``first``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from graphql import build_schema as parse_sdl
from joserfc.jwk import ECKey

from exchange.api.schema import build_schema
from exchange.auth.assertions import MAX_ASSERTION_KEYS
from exchange.auth.scopes import Role
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.unit.test_list_bounds import FIRST_RANGE


def refused_first(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(error["extensions"]["code"], error["extensions"].get("field")) for error in body["errors"]]


async def test_clients_come_in_pages_by_client_id(kit: ExchangeKit) -> None:
    admin = await kit.staff_token(Role.ADMIN)
    for program in ("wallet-pay", "formosa-air", "fresh-mart"):
        await kit.partner(program)
    every = [client["clientId"] for client in (await kit.data("{ clients { clientId } }", admin))["clients"]]
    assert len(every) >= 4 and every == sorted(every)
    walked: list[str] = []
    after = None
    while True:
        page = (
            await kit.data(
                "query($after: String) { clients(first: 2, after: $after) { clientId } }", admin, after=after
            )
        )["clients"]
        walked += [client["clientId"] for client in page]
        if len(page) < 2:
            break
        after = page[-1]["clientId"]
    assert walked == every
    most = await kit.data("{ clients(first: 500) { clientId } }", admin)
    assert [client["clientId"] for client in most["clients"]] == every
    body = (await kit.graphql("{ clients(first: 501) { clientId } }", admin)).json()
    assert body["data"] == {"clients": None} and refused_first(body) == [("BAD_USER_INPUT", "first")]


CREATE_PROMOTION = """
mutation($program: ID!, $id: ID!, $starts: DateTime!) {
  createPromotion(input: {programId: $program, id: $id, bonusPercent: "10", startsAt: $starts,
    endsAt: "2099-01-01T00:00:00Z"}) { id }
}
"""


async def test_a_programs_promotions_come_in_pages_by_id(kit: ExchangeKit) -> None:
    for program, promotion, starts in (
        ("fresh-mart", "fm-c", "2026-01-01T00:00:00Z"),
        ("fresh-mart", "fm-a", "2026-03-01T00:00:00Z"),
        ("fresh-mart", "fm-b", "2026-02-01T00:00:00Z"),
        ("wallet-pay", "wp-a", "2026-01-01T00:00:00Z"),
    ):
        await kit.data(CREATE_PROMOTION, await kit.partner_token(program), program=program, id=promotion, starts=starts)
    staff = await kit.staff_token(Role.SETTLEMENT)
    every = {
        program["id"]: [promotion["id"] for promotion in program["promotions"]]
        for program in (await kit.data("{ programs { id promotions(first: 500) { id } } }", staff))["programs"]
    }
    assert every["fresh-mart"][:3] == ["fm-a", "fm-b", "fm-c"] and every["wallet-pay"][:1] == ["wp-a"]
    assert all(ids == sorted(ids) for ids in every.values())
    firsts = await kit.data("{ programs { id promotions(first: 1) { id } } }", staff)
    assert {program["id"]: [p["id"] for p in program["promotions"]] for program in firsts["programs"]} == {
        program: ids[:1] for program, ids in every.items()
    }
    walked: list[str] = []
    after = None
    while True:
        query = 'query($after: ID) { program(id: "fresh-mart") { promotions(first: 2, after: $after) { id } } }'
        page = (await kit.data(query, staff, after=after))["program"]["promotions"]
        walked += [promotion["id"] for promotion in page]
        if len(page) < 2:
            break
        after = page[-1]["id"]
    assert walked == every["fresh-mart"]
    body = (await kit.graphql('{ program(id: "fresh-mart") { promotions(first: 501) { id } } }', staff)).json()
    assert body["data"] == {"program": {"promotions": None}} and refused_first(body) == [("BAD_USER_INPUT", "first")]


REGISTER_KEY = """
mutation($key: String!) { registerAssertionKey(programId: "fresh-mart", publicKey: $key) { kid } }
"""


def public_key(kid: str) -> str:
    return json.dumps(ECKey.generate_key("P-256", parameters={"kid": kid}).as_dict(private=False))


async def test_a_program_holds_a_bounded_number_of_assertion_keys(kit: ExchangeKit) -> None:
    """Every key a program holds is listed at once, and its assertions are checked against the
    set: another kid past the most is refused, a kid already there may still be replaced."""
    token = await kit.partner_token("fresh-mart")
    for number in range(MAX_ASSERTION_KEYS):
        await kit.data(REGISTER_KEY, token, key=public_key(f"key-{number}"))
    body = (await kit.graphql(REGISTER_KEY, token, key=public_key("one-too-many"))).json()
    assert body["data"] == {"registerAssertionKey": None}
    [error] = body["errors"]
    assert (
        error["extensions"] | {"code": "LIMIT_EXCEEDED", "field": "publicKey", "limit": "assertion_keys"}
        == (error["extensions"])
    )
    assert await kit.data(REGISTER_KEY, token, key=public_key("key-3")) == {"registerAssertionKey": {"kid": "key-3"}}
    listed = await kit.data('{ program(id: "fresh-mart") { assertionKeys { kid } } }', token)
    assert sorted(key["kid"] for key in listed["program"]["assertionKeys"]) == sorted(
        f"key-{number}" for number in range(MAX_ASSERTION_KEYS)
    )
    await kit.data('mutation { removeAssertionKey(programId: "fresh-mart", kid: "key-0") { kid } }', token)
    assert await kit.data(REGISTER_KEY, token, key=public_key("new")) == {"registerAssertionKey": {"kid": "new"}}


#: Every page at the root that needs no other argument, and who may read it.
ROOT_PAGES = {
    "conversions": "member",
    "statusMatches": "member",
    "redemptions": "member",
    "rewards": "anyone",
    "pendingOperations": "settlement",
    "retryingOperations": "settlement",
    "heldConversions": "settlement",
    "heldRedemptions": "settlement",
    "riskDecisions": "settlement",
    "clients": "admin",
}


def most_of(field: str) -> int:
    """The most ``first`` takes, as the schema tells a client."""
    query_type = parse_sdl(build_schema(Settings()).as_str()).query_type
    assert query_type is not None
    said = FIRST_RANGE.fullmatch(query_type.fields[field].args["first"].description or "")
    assert said, field
    return int(said.group(1))


@pytest.mark.parametrize("field", ROOT_PAGES)
async def test_a_root_page_takes_the_most_its_description_states_and_refuses_one_more(
    kit: ExchangeKit, field: str
) -> None:
    reader = ROOT_PAGES[field]
    token = {
        "member": lambda: kit.member_token("wallet-pay", "alice"),
        "settlement": lambda: kit.staff_token(Role.SETTLEMENT),
        "admin": lambda: kit.staff_token(Role.ADMIN),
    }.get(reader)
    bearer = await token() if token else None
    most = most_of(field)
    query = f"query($first: Int!) {{ {field}(first: $first) {{ __typename }} }}"
    assert field in await kit.data(query, bearer, first=most)
    body = (await kit.graphql(query, bearer, first=most + 1)).json()
    # A non-null list (rewards) takes the whole data with it.
    assert body["data"] in ({field: None}, None) and refused_first(body) == [("BAD_USER_INPUT", "first")]
