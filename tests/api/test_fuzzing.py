"""Property-based fuzzing of the whole GraphQL schema: whatever a caller sends, the gateway never
fails with a 5xx or an ``INTERNAL_SERVER_ERROR``.

Queries and mutations over every root field are generated from the schema itself
(hypothesis-graphql), with strategies for the scalars that favour hostile values: non-finite
and absurd decimals, naive and off-calendar times, NUL and lone surrogates, very long strings,
huge numbers as ids, and period names at the calendar's edges. They are sent as each role
(no token, admin, settlement staff, a partner, a member) to a real gateway, on SQLite and on
PostgreSQL. The budget is fixed and the generation derandomized, so a run costs the same time
and sends the same requests every time; the figures are printed with the test's output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import graphql
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, nodes, queries

from exchange.api.schema import ExchangeSchema, build_schema
from exchange.auth.scopes import Role
from exchange.serving import free_port
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.conftest import SAMPLE_PARTNERS

#: Documents generated per role, store and root type (queries, mutations).
BUDGET = 150

PROGRAM_IDS = ["fresh-mart", "wallet-pay", "formosa-air", "happy-card", "harbor-bank", "EXCHANGE"]
HOSTILE_TEXT = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfff",
    "x" * 5000,
    "0000-01",
    "9999-12",
    "0001-01",
    "2026-13",
    "2026-1",
    "2026-11",
    "２０２６-01",
    "1:0",
    "0:1",
    "99999999999999999999999:1",
]
HOSTILE_DECIMALS = [
    "NaN",
    "sNaN",
    "-NaN",
    "Infinity",
    "-Infinity",
    "1e999999",
    "1e-999999",
    "0E-999999",
    "100000000000000000",
    "999999999999999999.999999999999999999",
    "1.00001",
    "-1",
    "0",
    "12.5",
    "abc",
    "",
]
HOSTILE_TIMES = [
    "2031-01-01T00:00:00",
    "2031-01-01",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-10:00",
    "2031-01-01T00:00:00+08:00",
    "2020-01-01T00:00:00Z",
    "now",
]
HOSTILE_INTS = [0, 1, -1, 200, 201, 1000, 1001, 2**31 - 1, -(2**31)]


def _text(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec=None), max_size=max_size)


#: Real ids, and real ids spoiled: a value that names something gets past authorization and
#: lookups, and its spoiled twin reaches the same code with hostile text.
IDS = [*PROGRAM_IDS, "1", "0", "-1", "99999999999999999999999", "١٢", "x" * 65]
SPOILED_IDS = [f"{value}{spoiler}" for value in PROGRAM_IDS for spoiler in ("\x00", "\ud800", "x" * 60)]

SCALARS: dict[str, st.SearchStrategy[graphql.ValueNode]] = {
    "String": st.one_of(st.sampled_from(HOSTILE_TEXT), st.sampled_from(PROGRAM_IDS + SPOILED_IDS), _text()).map(
        nodes.String
    ),
    "ID": st.one_of(st.sampled_from(IDS), st.sampled_from(SPOILED_IDS), _text()).map(nodes.String)
    | st.integers(min_value=-(2**31), max_value=2**31 - 1).map(nodes.Int),
    "Int": st.one_of(st.sampled_from(HOSTILE_INTS), st.integers(-(2**31), 2**31 - 1)).map(nodes.Int),
    "Decimal": st.one_of(
        st.sampled_from(HOSTILE_DECIMALS).map(nodes.String),
        st.decimals(allow_nan=False, allow_infinity=False, places=4, max_value=10**6, min_value=-(10**6)).map(
            nodes.String
        ),
        st.integers(min_value=-(10**40), max_value=10**40).map(nodes.Int),
        st.sampled_from(["1.5", "1e400"]).map(nodes.Float),
    ),
    "DateTime": st.sampled_from(HOSTILE_TIMES).map(nodes.String),
}


@dataclass
class Figures:
    requests: int = 0
    executed: int = 0
    server_errors: int = 0
    internal_errors: int = 0


def _generate(strategy: st.SearchStrategy[str], count: int) -> list[str]:
    """``count`` documents (or all there are), the same ones on every run."""
    documents: list[str] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(document: str) -> None:
        documents.append(document)

    collect()
    return documents


def _documents(schema: ExchangeSchema) -> list[str]:
    """:data:`BUDGET` queries and as many mutations, each selecting one root field (so that one
    refused value does not stop the others from running), over every root field."""
    sdl = schema.as_str()
    documents: list[str] = []
    for generate, root in ((queries, schema._schema.query_type), (mutations, schema._schema.mutation_type)):
        assert root is not None
        one_field_each = st.one_of(
            [
                generate(sdl, fields=[name], custom_scalars=SCALARS, codec=None, allow_x00=True)
                for name in sorted(root.fields)
            ]
        )
        documents += _generate(one_field_each, BUDGET)
    return documents


@pytest.fixture
def gateway_settings(database_url: str) -> Settings:
    """Once on SQLite and once on PostgreSQL; partners are not running, so their calls fail
    fast (one try) and the fuzzing reaches every refusal path instead of waiting."""
    return Settings(database_url=database_url, partners_dir=SAMPLE_PARTNERS, port=free_port(), partner_retry_attempts=1)


async def _tokens(kit: ExchangeKit) -> dict[str, str | None]:
    return {
        "anonymous": None,
        "admin": await kit.staff_token(Role.ADMIN),
        "settlement": await kit.staff_token(Role.SETTLEMENT),
        "partner": await kit.partner_token("fresh-mart"),
        "member": await kit.member_token("wallet-pay", "alice"),
    }


async def test_no_generated_request_fails_inside_the_gateway(
    kit: ExchangeKit, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    documents = _documents(build_schema(kit.settings))
    failures: list[tuple[str, str, int, Any]] = []
    figures: dict[str, Figures] = {}
    for role, token in (await _tokens(kit)).items():
        counted = figures[role] = Figures()
        headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
        for document in documents:
            # json.dumps escapes lone surrogates (\ud800), as a JavaScript client would send them.
            response = await kit.http.post("/graphql", content=json.dumps({"query": document}), headers=headers)
            counted.requests += 1
            counted.executed += response.status_code == 200 and response.json().get("data") is not None
            server_error = response.status_code >= 500
            internal = "INTERNAL_SERVER_ERROR" in response.text
            counted.server_errors += server_error
            counted.internal_errors += internal
            if server_error or internal:
                failures.append((role, document, response.status_code, _errors(response)))
    report = "".join(
        f"\nfuzzing {store} as {role}: {counted.requests} requests ({counted.executed} executed), "
        f"{counted.server_errors} 5xx, {counted.internal_errors} internal errors"
        for role, counted in figures.items()
    )
    with capsys.disabled():
        print(report)  # noqa: T201 - the figures are this test's report
    assert not failures, "\n\n".join(
        f"{role} got {status}: {errors}\n{doc}" for role, doc, status, errors in failures[:5]
    )


def _errors(response: httpx.Response) -> Any:
    try:
        return response.json().get("errors")
    except ValueError:
        return response.text[:500]
