"""A hostile client cannot grow /metrics: whatever operation names, field combinations, aliases
and paths it sends, the request metrics' labels stay within the schema's root fields."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import httpx
from graphql import build_schema
from prometheus_client.parser import text_string_to_metric_families

from exchange.api.observed import NO_OPERATION, SEVERAL

#: Root fields anyone may select, and a selection of each.
SELECTIONS = {
    "programs": "programs { id }",
    "program": 'program(id: "wallet-pay") { id }',
    "coalition": "coalition { settlementCurrency }",
    "rewards": "rewards { id }",
    "__typename": "__typename",
}
ROOT_FIELDS = tuple(SELECTIONS)
#: Every root field of the schema (the metrics are the process's: other tests' requests count too).
SCHEMA = build_schema((Path(__file__).parents[2] / "schema.graphql").read_text())
SCHEMA_ROOT_FIELDS = {
    name for root in (SCHEMA.query_type, SCHEMA.mutation_type) if root is not None for name in root.fields
} | {"__typename", "__schema", "__type"}


async def labels(client: httpx.AsyncClient) -> dict[str, set[str]]:
    """Every value each label of the request and error metrics has on this gateway's /metrics."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    found: dict[str, set[str]] = {"operation": set(), "code": set()}
    for family in text_string_to_metric_families(response.text):
        if family.name in ("exchange_request_duration_seconds", "exchange_errors"):
            for sample in family.samples:
                for name in found.keys() & sample.labels.keys():
                    found[name].add(sample.labels[name])
    return found


async def test_random_operation_names_field_combinations_and_paths_add_no_series(
    client: httpx.AsyncClient,
) -> None:
    for count in (1, 2, 3):
        for fields in itertools.combinations(ROOT_FIELDS, count):
            name = "Op" + uuid.uuid4().hex
            query = f"query {name} {{ r{uuid.uuid4().hex}: {' '.join(SELECTIONS[field] for field in fields)} }}"
            response = await client.post("/graphql", json={"query": query, "operationName": name})
            assert response.status_code == 200, response.text
    for _ in range(10):
        stranger = "Op" + uuid.uuid4().hex
        await client.post("/graphql", json={"query": "query Known { __typename }", "operationName": stranger})
        await client.get(f"/graphql/{uuid.uuid4().hex}")
        await client.get(f"/{uuid.uuid4().hex}?operationName={stranger}")
        await client.post("/graphql", json={"query": f"{{ {uuid.uuid4().hex} }}"})

    served = await labels(client)
    assert served["operation"] <= {*SCHEMA_ROOT_FIELDS, SEVERAL, NO_OPERATION}, served["operation"]
    assert SEVERAL in served["operation"] and "programs" in served["operation"]
    assert all(code.isupper() for code in served["code"]), served["code"]
