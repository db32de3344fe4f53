"""GraphQL over HTTP, as a client sees it: data, typed errors, media types and statuses."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from strawberry.extensions.parser_cache import _get_parse_cache
from strawberry.extensions.validation_cache import _get_validate_cache

from exchange.api.errors import to_client_error
from exchange.api.schema import CACHED_DOCUMENT_LENGTH, build_schema
from exchange.db.database import Database
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"


async def post(
    client: httpx.AsyncClient, query: str, accept: str = "application/json", **variables: Any
) -> httpx.Response:
    return await client.post("/graphql", json={"query": query, "variables": variables}, headers={"accept": accept})


async def test_programs_lists_the_six_sample_programs_and_the_coalition_point(client: httpx.AsyncClient) -> None:
    response = await post(client, "{ programs { id name pointValue tiers { name level } } }")
    assert response.status_code == 200
    programs = {p["id"]: p for p in response.json()["data"]["programs"]}
    assert len(programs) == 7
    assert programs["happy-card"]["pointValue"] == "0.25"
    assert programs["harbor-bank"]["pointValue"] == "0.05"
    assert programs["formosa-air"]["tiers"] == [
        {"name": "Base", "level": 0},
        {"name": "Silver", "level": 1},
        {"name": "Gold", "level": 2},
        {"name": "Diamond", "level": 4},
    ]


async def test_program_by_id(client: httpx.AsyncClient) -> None:
    response = await post(
        client,
        "query($id: ID!) { program(id: $id) { name category pointName pointNamePlural limits { minimumPoints increment } } }",
        id="formosa-air",
    )
    assert response.json()["data"]["program"] == {
        "name": "Formosa Air Miles",
        "category": "AIRLINE",
        "pointName": "Mile",
        "pointNamePlural": "Miles",
        "limits": {"minimumPoints": 3000, "increment": 1000},
    }


async def test_unknown_program_is_a_typed_not_found(client: httpx.AsyncClient) -> None:
    response = await post(client, '{ program(id: "nope") { id } }')
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "NOT_FOUND", "field": "id"}
    assert error["path"] == ["program"]
    # What to type instead, without a second query.
    assert (
        error["message"]
        == "no program has id 'nope'; the programs are coalition, formosa-air, fresh-mart, happy-card, harbor-bank, tune-stream, wallet-pay"
    )


async def test_coalition_ladder(client: httpx.AsyncClient) -> None:
    response = await post(client, "{ coalition { settlementCurrency currencyMinorUnits ladder { level name } } }")
    coalition = response.json()["data"]["coalition"]
    assert coalition["settlementCurrency"] == "TWD"
    assert [level["name"] for level in coalition["ladder"]] == ["Member", "Silver", "Gold", "Platinum", "Diamond"]


async def test_answers_in_the_graphql_response_media_type_when_accepted(client: httpx.AsyncClient) -> None:
    response = await post(client, "{ programs { id } }", accept=GRAPHQL_RESPONSE_JSON)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE_JSON)
    legacy = await post(client, "{ programs { id } }")
    assert legacy.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ programs { id ", "GRAPHQL_VALIDATION_FAILED"),
        ("{ programs { nonsense } }", "GRAPHQL_VALIDATION_FAILED"),
    ],
)
async def test_request_errors_are_400_without_data_in_the_new_media_type(
    client: httpx.AsyncClient, query: str, code: str
) -> None:
    response = await post(client, query, accept=GRAPHQL_RESPONSE_JSON)
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == code
    legacy = await post(client, query)
    assert legacy.status_code == 200
    assert legacy.json()["errors"][0]["extensions"]["code"] == code


async def test_a_variable_of_the_wrong_type_names_the_variable(client: httpx.AsyncClient) -> None:
    response = await post(client, "query($id: ID!) { program(id: $id) { id } }", accept=GRAPHQL_RESPONSE_JSON, id=["x"])
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "id"}


async def test_queries_nested_deeper_than_the_setting_are_refused() -> None:
    schema = build_schema(Settings(max_query_depth=1))
    result = await schema.execute("{ programs { tiers { name } } }")
    assert result.errors is not None
    error = to_client_error(result.errors[0])
    assert error.extensions == {"code": "GRAPHQL_VALIDATION_FAILED"}
    assert "exceeds maximum operation depth of 1" in error.message


async def test_too_many_aliases_are_refused(client: httpx.AsyncClient) -> None:
    query = "{ " + " ".join(f"a{i}: programs {{ id }}" for i in range(20)) + " }"
    response = await post(client, query)
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "aliases" in error["message"].lower()


def fanned_out(spreads: int, levels: int) -> str:
    """A few hundred tokens that ask for spreads**levels fields: each fragment spreads the next."""
    fragments = " ".join(f"fragment F{level} on Query {{ {f'...F{level + 1} ' * spreads}}}" for level in range(levels))
    return f"query {{ ...F0 }} {fragments} fragment F{levels} on Query {{ programs {{ id }} }}"


async def test_fragments_spreading_fragments_past_the_field_limit_are_refused_before_any_walk(
    kit: ExchangeKit,
) -> None:
    """Ten spreads five levels deep ask for 2 x 10^5 fields in 300 tokens: the depth and alias
    limiters and the token check walked every spread (three seconds here, ten times longer for
    each level more, with a token or without). Counted once per fragment, it is refused at once."""
    token = await kit.partner_token("formosa-air")
    for caller in (None, token):
        response = await kit.graphql(fanned_out(10, 5), caller)
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
        assert error["message"].startswith("the document selects 200000 fields"), error
    within = (await kit.data(fanned_out(3, 3)))["programs"]  # 27 spreads of one field: merged
    assert {"id": "formosa-air"} in within


async def test_a_document_repeating_fields_past_what_merging_them_costs_is_refused_unchecked(kit: ExchangeKit) -> None:
    """Checking that fields of one name merge compares them pairwise: four hundred `programs
    { id }` in 1,600 tokens held the event loop for seconds, with a token or without. Past the
    budget the document is refused before that check; within it, the check still runs."""
    token = await kit.partner_token("formosa-air")
    for caller in (None, token):
        response = await kit.graphql("{" + " programs { id }" * 400 + " }", caller)
        (error,) = response.json()["errors"]
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
        assert error["message"].startswith("the document repeats fields, or spreads fragments side by side"), error
    merged = await kit.data("{" + " programs { id }" * 30 + " }")
    assert {"id": "formosa-air"} in merged["programs"]
    conflicting = (await kit.graphql("{ programs { id } programs: coalition { currency } }")).json()
    assert "conflict" in conflicting["errors"][0]["message"], conflicting


async def test_only_short_documents_are_kept_by_the_parser_and_validation_caches(kit: ExchangeKit) -> None:
    """Each cache keeps 1,024 documents: kept at any length, 1,024 different documents of a
    mebibyte (a long comment) held gigabytes, sent without a token."""
    caches = (_get_parse_cache(1024), _get_validate_cache(1024))

    def looked_up() -> list[tuple[int, int]]:
        return [(cache.cache_info().hits, cache.cache_info().misses) for cache in caches]

    long = "{ programs { id } } #" + "x" * CACHED_DOCUMENT_LENGTH
    before = looked_up()
    for _ in range(2):
        assert {"id": "formosa-air"} in (await kit.data(long))["programs"]
    assert looked_up() == before, "a long document is neither looked up nor kept"
    short = "{ programs { id } } # " + uuid.uuid4().hex  # no document a test sent before
    for _ in range(2):
        assert {"id": "formosa-air"} in (await kit.data(short))["programs"]
    assert looked_up() == [(hits + 1, misses + 1) for hits, misses in before], "kept once, then found"


async def test_graphiql_is_served_to_a_browser(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_unexpected_failures_are_masked(
    client: httpx.AsyncClient, gateway_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with Database.from_url(gateway_settings.database_url).engine.begin() as connection:
        await connection.exec_driver_sql("ALTER TABLE program RENAME TO program_gone")
    response = await post(client, "{ programs { id } }")
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["message"] == "Unexpected error."
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "program_gone" not in response.text and "Traceback" not in response.text
    assert any("unexpected error" in record.message for record in caplog.records)
