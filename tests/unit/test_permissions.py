"""Permission rules: deny by default at run time, type-level rules, and which fields an
operation without a token may not select."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass, replace
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
    Access,
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


def member(scopes: frozenset[Scope]) -> Principal:
    return Principal(
        role=Role.MEMBER,
        subject="mbr_1",
        client_id="formosa-air-app",
        scopes=scopes,
        token_id="t",
        expires_at=datetime.now(UTC),
        member_id="mbr_1",
        asserted_by="formosa-air",
    )


async def test_a_refusal_says_what_to_do_next_from_the_caller_s_own_token(probe: ExchangeSchema) -> None:
    query = '{ ledger(owner: "p") { total } }'
    unscoped = await probe.execute(query, context_value=FakeContext(partner("p", frozenset({Scope.PARTNER_WRITE}))))
    assert [error.message for error in unscoped.errors or []] == [
        "not allowed: this needs scope partner:read and the caller's own program; request a token with scope "
        "partner:read (`scope` at /oauth/token; this one holds partner:write); if client c may not hold it, ask "
        "the exchange operator to grant scope partner:read to client c"
    ]
    other = await probe.execute(query, context_value=FakeContext(partner("q")))
    assert [error.message for error in other.errors or []] == [
        "not allowed: this needs scope partner:read and the caller's own program; a partner's token reaches its "
        "own program's data only (this one's is q)"
    ]
    by_a_member = await probe.execute(query, context_value=FakeContext(member(ROLE_SCOPES[Role.MEMBER])))
    assert [error.message for error in by_a_member.errors or []] == [
        "not allowed: this needs scope partner:read and the caller's own program; a member token never may: "
        "this is for partner tokens"
    ]


def test_a_refused_member_is_told_the_scope_its_role_may_hold_and_whom_to_ask_for_it() -> None:
    rule = requires(Scope.MEMBER_COALITION) | requires(Scope.SETTLEMENT_READ)
    refusal = rule.forbidden(member(frozenset({Scope.MEMBER_READ, Scope.MEMBER_WRITE})))
    assert refusal.code == "FORBIDDEN"
    assert refusal.message.endswith(
        "; request a token with scope member:coalition (`scope` at /oauth/token; this one holds member:read "
        "member:write); if client formosa-air-app's member tokens may not hold it, ask the exchange operator to "
        "grant scope member:coalition to client formosa-air-app's member scopes"
    )
    staff_only = requires(Scope.SETTLEMENT_READ, Scope.ADMIN_READ).forbidden(partner("p"))
    assert staff_only.message.endswith("; a partner token never may: this is for settlement or admin tokens")
    by_an_admin = dataclasses.replace(partner("p", ROLE_SCOPES[Role.ADMIN]), role=Role.ADMIN, program_id=None)
    members_only = requires(Scope.MEMBER_WRITE).forbidden(by_an_admin)
    assert members_only.message.endswith("; an admin token never may: this is for member tokens"), "not 'a admin'"


def test_a_refusal_tells_a_new_token_from_the_operator_s_grant_by_what_the_client_may_hold() -> None:
    rule = requires(Scope.PARTNER_WRITE)
    narrowed = replace(partner("p", frozenset({Scope.PARTNER_READ})), client_scopes=ROLE_SCOPES[Role.PARTNER])
    assert rule.forbidden(narrowed).message == (
        "not allowed: this needs scope partner:write; request a token with scope partner:write (`scope` at "
        "/oauth/token; this one holds partner:read): client c may hold partner:read partner:write"
    )
    read_only = replace(narrowed, client_scopes=frozenset({Scope.PARTNER_READ}))
    assert rule.forbidden(read_only).message == (
        "not allowed: this needs scope partner:write; ask the exchange operator to grant scope partner:write to "
        "client c: client c may hold partner:read"
    )
    reader = replace(member(frozenset({Scope.MEMBER_READ})), client_scopes=frozenset({Scope.MEMBER_READ}))
    assert (
        requires(Scope.MEMBER_WRITE)
        .forbidden(reader)
        .message.endswith(
            "; ask the exchange operator to grant scope member:write to client formosa-air-app's member scopes: "
            "client formosa-air-app's member tokens may hold member:read"
        )
    )


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


def test_rules_are_plain_objects_that_load_without_strawberry() -> None:
    """The web pages authorize routes with the same rules, without GraphQL in the process."""
    code = (
        "import sys\n"
        "from exchange.auth.rules import own_program, requires, source\n"
        "from exchange.auth.scopes import Scope\n"
        "rule = requires(Scope.PARTNER_READ) & own_program(source('program_id'))\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('strawberry', 'graphql')]\n"
        "print(rule.describe())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "scope partner:read and the caller's own program"


def test_web_pages_and_graphql_fields_declare_the_same_rules() -> None:
    from exchange.auth import rules
    from exchange.web import access

    assert (access.Rule, access.PUBLIC, access.NOBODY, access.requires) == (
        rules.Rule,
        rules.PUBLIC,
        rules.NOBODY,
        rules.requires,
    )
    staff = access.roles(Role.SETTLEMENT, Role.ADMIN)
    assert staff.allows(partner("p")) is False and staff.access(Role.ADMIN) is Access.ALL
    assert access.requires(Scope.PARTNER_READ).allows(partner("p"))


def test_a_rule_answers_for_any_caller_object_and_arguments() -> None:
    rule = requires(Scope.PARTNER_READ) & own_program(source("program_id"))
    mine, theirs = Reward(program_id="p"), Reward(program_id="q")
    assert rule.allows(partner("p"), mine, {}) and not rule.allows(partner("p"), theirs, {})
    assert not rule.allows(None, mine, {})
    assert rule.visible(partner("p"), [mine, theirs]) == [mine]
    assert rule.forbidden(partner("p"), theirs).code == "FORBIDDEN" and rule.unauthenticated().code == "UNAUTHENTICATED"


@dataclass
class Reward:
    program_id: str
