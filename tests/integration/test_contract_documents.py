"""partners/CONTRACT.md, openapi.yaml and contract.graphql describe what the code does."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import yaml
from graphql import build_schema, parse, validate
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from exchange.connectors.contract import ContractCode
from exchange.connectors.graphql import DOCUMENTS
from exchange.sandbox.faults import MAGIC_POINTS, FaultKind
from exchange.sandbox.graphql import build_contract_schema
from exchange.testing.sandboxes import RunningSandbox, SandboxFleet
from tests.conftest import SAMPLE_PARTNERS

OPENAPI: dict[str, Any] = yaml.safe_load((SAMPLE_PARTNERS / "openapi.yaml").read_text())
CONTRACT_MD = (SAMPLE_PARTNERS / "CONTRACT.md").read_text()
CONTRACT_SDL = (SAMPLE_PARTNERS / "contract.graphql").read_text()


def test_the_openapi_document_is_valid_openapi_3_1() -> None:
    validate_spec(OPENAPI)
    assert OPENAPI["openapi"].startswith("3.1")


def test_the_openapi_document_lists_every_contract_code() -> None:
    assert OPENAPI["components"]["schemas"]["ContractCode"]["enum"] == [code.value for code in ContractCode]


def test_contract_graphql_is_the_schema_the_sandbox_serves() -> None:
    assert build_contract_schema().as_str() + "\n" == CONTRACT_SDL, (
        "partners/contract.graphql is stale: export build_contract_schema().as_str()"
    )


def test_the_connector_documents_are_valid_against_the_contract_schema() -> None:
    schema = build_schema(CONTRACT_SDL)
    for call, document in DOCUMENTS.items():
        assert validate(schema, parse(document)) == [], call


def test_contract_md_documents_codes_magic_amounts_and_paths() -> None:
    for code in ContractCode:
        assert code.value in CONTRACT_MD, code
    for points, fault in MAGIC_POINTS.items():
        assert re.search(rf"{points:,}.*{fault.value}", CONTRACT_MD), (points, fault)
    for kind in FaultKind:
        assert kind.value in CONTRACT_MD, kind
    for path in OPENAPI["paths"]:
        assert path in CONTRACT_MD, path


def test_the_openapi_document_answers_a_missing_token_401_and_one_without_the_scope_403() -> None:
    """As CONTRACT.md says ("Answer `401` … to a bad token, `403` to a token without the `points`
    scope"): openapi.yaml listed no 403, so a partner built from it alone did not know to answer one."""
    assert "`403` to a token without the `points`" in " ".join(CONTRACT_MD.split())
    for path, operations in OPENAPI["paths"].items():
        for method, operation in operations.items():
            if method != "parameters" and path != "/oauth/token":
                assert {"401", "403"} <= set(operation["responses"]), (method, path)


def _response_schema(path: str, method: str, status: int, media_type: str) -> dict[str, Any]:
    response = OPENAPI["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        response = OPENAPI["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"][media_type]["schema"]
    return {**schema, "components": OPENAPI["components"]}


class Checked:
    """Sends requests to a sandbox and checks each answer against the OpenAPI document."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.seen: set[tuple[str, str, int]] = set()

    async def __call__(self, method: str, path: str, template: str, status: int, json: Any = None) -> Any:
        response = await self.http.request(method, path, json=json)
        assert response.status_code == status, response.text
        media_type = response.headers["content-type"].split(";")[0]
        schema = _response_schema(template, method.lower(), status, media_type)
        body = response.json()
        OAS31Validator(schema).validate(body)
        self.seen.add((template, method.lower(), status))
        return body


@pytest.fixture
async def wallet(sandboxes: SandboxFleet) -> RunningSandbox:
    (sandbox,) = await sandboxes.start("wallet-pay")
    return sandbox


@pytest.fixture
async def checked(wallet: RunningSandbox) -> AsyncIterator[Checked]:
    async with httpx.AsyncClient(base_url=wallet.url) as http:
        token = await http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "points"},
            auth=("exchange", "sandbox-wallet-pay"),
        )
        OAS31Validator(_response_schema("/oauth/token", "post", 200, "application/json")).validate(token.json())
        http.headers["authorization"] = f"Bearer {token.json()['access_token']}"
        yield Checked(http)


async def test_the_sandbox_answers_as_the_openapi_document_says(checked: Checked) -> None:
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    await checked("GET", "/members/alice", "/members/{member_ref}", 200)
    await checked("GET", "/members/zed", "/members/{member_ref}", 404)
    await checked("POST", "/members/alice/verify", "/members/{member_ref}/verify", 200, {"verification": "1"})
    await checked("POST", "/members/alice/verify", "/members/{member_ref}/verify", 400, {"verification": 1})
    debit = {"operation_id": "d1", "member_ref": "alice", "points": 100}
    await checked("POST", "/debits", "/debits", 201, debit)
    await checked("POST", "/debits", "/debits", 200, debit)
    await checked("POST", "/debits", "/debits", 409, {**debit, "points": 5})
    await checked("POST", "/debits", "/debits", 422, {**debit, "operation_id": "d2", "points": 10**9})
    await checked("POST", "/debits", "/debits", 404, {**debit, "operation_id": "d3", "member_ref": "zed"})
    await checked("POST", "/debits", "/debits", 400, {**debit, "points": 1.0})
    await checked("POST", "/credits", "/credits", 201, {**debit, "operation_id": "c1"})
    await checked("POST", "/reversals", "/reversals", 201, {"operation_id": "r1", "reverses": "d1", "points": 40})
    await checked("POST", "/reversals", "/reversals", 422, {"operation_id": "r2", "reverses": "d1", "points": 61})
    await checked("POST", "/reversals", "/reversals", 201, {"operation_id": "r3", "reverses": "never"})
    await checked("POST", "/debits", "/debits", 409, {**debit, "operation_id": "never"})
    await checked("GET", "/operations/never", "/operations/{operation_id}", 200)
    await checked("GET", "/operations/r1", "/operations/{operation_id}", 200)
    await checked("GET", "/operations/nothing", "/operations/{operation_id}", 404)
    match = {"operation_id": "t1", "member_ref": "carol", "tier": "Premium", "expires_at": until}
    await checked("POST", "/tier-matches", "/tier-matches", 201, match)
    await checked("POST", "/tier-matches", "/tier-matches", 422, {**match, "operation_id": "t2", "tier": "Gold"})
    await checked("POST", "/reversals", "/reversals", 201, {"operation_id": "t1:revert", "reverses": "t1"})
    await checked("POST", "/reversals", "/reversals", 422, {"operation_id": "r4", "reverses": "r1"})
    del checked.http.headers["authorization"]
    await checked("GET", "/members/alice", "/members/{member_ref}", 401)
