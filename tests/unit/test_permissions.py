"""Permission rules: deny by default at run time, type-level rules, and which fields an
operation without a token may not select."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import pytest
import strawberry
from graphql import parse

from exchange.api.authentication import fields_needing_a_token
from exchange.api.inputs import Text
from exchange.api.permissions import (
    AUTHENTICATED,
    PUBLIC,
    Authorize,
    Unruled,
    authorize,
    authorize_fields,
    own_program,
    requires,
    rule_of,
    source,
)
from exchange.api.schema import ExchangeSchema, build_schema
from exchange.auth.principal import Principal
from exchange.auth.scopes import ROLE_SCOPES, Role, Scope
from exchange.settings import Settings


@dataclass
class FakeContext:
    principal: Principal | None


def partner(program_id: str, scopes: frozenset[Scope] = ROLE_SCOPES[Role.PARTNER]) -> Principal:
    return Principal(
        role=Role.PARTNER,
        subject="c",
        client_id="c",
        scopes=scopes,
        token_id="t",
        expires_at=datetime.now(UTC),
        program_id=program_id,
    )


@strawberry.type
class Vault:
    contents: str = "gold"


@authorize_fields(requires(Scope.PARTNER_READ) & own_program(source("owner")))
@strawberry.type
class Ledger:
    owner: strawberry.Private[str]
    total: int = 7
    note: str = strawberry.field(default="hi", extensions=[authorize(PUBLIC)])


@authorize_fields(PUBLIC)
@strawberry.type
class Catalog:
    name: str = "catalog"


@strawberry.type
class Probe:
    @strawberry.field(extensions=[authorize(PUBLIC)])
    def vault(self) -> Vault | None:
        return Vault()

    @strawberry.field(extensions=[authorize(AUTHENTICATED)])
    def ledger(self, owner: Annotated[str, Text(64)]) -> Ledger | None:
        return Ledger(owner=owner)

    @strawberry.field(extensions=[authorize(PUBLIC)])
    def catalog(self) -> Catalog:
        return Catalog()


@pytest.fixture(scope="module")
def probe() -> ExchangeSchema:
    return ExchangeSchema(query=Probe)


async def test_a_field_without_a_rule_is_denied_to_everyone(probe: ExchangeSchema) -> None:
    assert isinstance(probe.field_rules["Vault.contents"], Unruled)
    anonymous = await probe.execute("{ vault { contents } }", context_value=FakeContext(None))
    assert anonymous.errors and anonymous.errors[0].original_error.code == "UNAUTHENTICATED"  # type: ignore[union-attr]
    everyone = await probe.execute("{ vault { contents } }", context_value=FakeContext(partner("p")))
    assert everyone.data == {"vault": None}
    assert everyone.errors and everyone.errors[0].original_error.code == "FORBIDDEN"  # type: ignore[union-attr]


async def test_a_type_rule_covers_its_fields_and_a_field_rule_wins(probe: ExchangeSchema) -> None:
    query = '{ ledger(owner: "p") { total note } }'
    own = await probe.execute(query, context_value=FakeContext(partner("p")))
    assert own.errors is None and own.data == {"ledger": {"total": 7, "note": "hi"}}
    other = await probe.execute(query, context_value=FakeContext(partner("q")))
    assert other.data == {"ledger": None}
    assert [error.path for error in other.errors or []] == [["ledger", "total"]]
    unscoped = await probe.execute(query, context_value=FakeContext(partner("p", frozenset({Scope.PARTNER_WRITE}))))
    assert "partner:read" in str(unscoped.errors)


def test_a_public_type_rule_leaves_strawberrys_fast_path_alone() -> None:
    field = strawberry.types.base.get_object_definition(Catalog, strict=True).fields[0]
    assert field.extensions == [] and rule_of(field) is PUBLIC
    ledger_fields = strawberry.types.base.get_object_definition(Ledger, strict=True).fields
    assert all(isinstance(extension, Authorize) for f in ledger_fields for extension in f.extensions)


@pytest.fixture(scope="module")
def exchange_schema() -> ExchangeSchema:
    return build_schema(Settings())


@pytest.mark.parametrize(
    ("query", "operation", "needing"),
    [
        ("{ programs { id tiers { name } } coalition { ladder { level } } }", None, []),
        ("{ __typename __schema { types { name } } }", None, []),
        ("{ viewer { role } }", None, ["Query.viewer", "Viewer.role"]),
        ("{ programs { linkedAccounts { memberRef } } }", None, ["Program.linkedAccounts", "LinkedAccount.memberRef"]),
        (
            "{ programs { ...F } } fragment F on Program { assertionKeys { kid } }",
            None,
            ["Program.assertionKeys", "AssertionKey.kid"],
        ),
        (
            "{ programs { ... on Program { linkedAccounts { memberId } } } }",
            None,
            ["Program.linkedAccounts", "LinkedAccount.memberId"],
        ),
        ("{ viewer @skip(if: true) { role } }", None, ["Query.viewer", "Viewer.role"]),
        ("query A { programs { id } } query B { me { id } }", "A", []),
        ("query A { programs { id } } query B { me { id } }", "B", ["Query.me", "Member.id"]),
        ("query A { programs { id } } query B { me { id } }", "C", []),
        (
            'mutation { removeAssertionKey(programId: "p", kid: "k") { kid } }',
            None,
            ["Mutation.removeAssertionKey", "AssertionKey.kid"],
        ),
    ],
)
def test_an_operation_needs_a_token_when_it_selects_any_protected_field(
    exchange_schema: ExchangeSchema, query: str, operation: str | None, needing: list[str]
) -> None:
    found = fields_needing_a_token(exchange_schema._schema, exchange_schema.field_rules, parse(query), operation)
    assert found == needing
