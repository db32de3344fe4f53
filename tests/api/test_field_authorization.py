"""Every field of Query and Mutation, over HTTP, against tokens it must refuse: one of a role
the access policy does not admit to it, one of an admitted role without the kind of scope it
needs (a read-only token for a mutation, a write-only one for a query), and, for a field a
partner reaches for its own program only, the partner's token naming another program. Each is
``FORBIDDEN`` on that field, before its resolver runs.

The policy is the schema walk's table (``tests/unit/test_field_rules.EXPECTED``), which this
test does not read from the rules it checks: it sends each field as a client would, with
arguments made up to the field's types, and reads what the server answers.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
    get_named_type,
    is_leaf_type,
)
from graphql.pyutils import Undefined

from exchange.api.schema import build_schema
from exchange.auth.scopes import Role
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.unit.test_field_rules import ANYONE, EXPECTED

SCHEMA = build_schema(Settings())._schema
#: A made-up value of each scalar, as a GraphQL literal.
SCALARS = {
    "String": '"x"',
    "ID": '"x"',
    "Int": "1",
    "Float": "1.0",
    "Boolean": "true",
    "Decimal": '"1"',
    "DateTime": '"2026-11-30T16:00:00Z"',
    "Date": '"2026-11-30"',
    "PointTotal": "1",
}
#: The arguments (and input fields) that name the program a partner's own-program rule reads.
PROGRAM_ARGUMENTS = {"programId", "fromProgram", "toProgram", "program", "partnerId"}
OWN, OTHER = "wallet-pay", "fresh-mart"
#: Any token may ask who it is.
NO_SCOPE_NEEDED = {"Query.viewer"}
#: Queries a staff token that may write reads as well (a webhook subscription's owner manages it).
READ_BY_WRITERS = {"Query.webhookSubscriptions", "Query.webhookSubscription"}


def literal(type_: GraphQLInputType, name: str, program: str) -> str:
    """A value of ``type_`` for the argument or input field ``name``: every required input field
    filled, a program named ``program``."""
    if isinstance(type_, GraphQLNonNull):
        return literal(type_.of_type, name, program)
    if isinstance(type_, GraphQLList):
        return f"[{literal(type_.of_type, name, program)}]"
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        fields = (
            f"{field_name}: {literal(field.type, field_name, program)}"
            for field_name, field in type_.fields.items()
            if (isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined)
            or field_name in PROGRAM_ARGUMENTS
        )
        return "{" + ", ".join(fields) + "}"
    assert isinstance(type_, GraphQLScalarType), type_
    return f'"{program}"' if name in PROGRAM_ARGUMENTS else SCALARS[type_.name]


def operation(kind: str, name: str, field: GraphQLField, program: str = OWN) -> str:
    """``name`` alone, its required arguments (and any naming a program) made up."""
    arguments = ", ".join(
        f"{argument_name}: {literal(argument.type, argument_name, program)}"
        for argument_name, argument in field.args.items()
        if isinstance(argument.type, GraphQLNonNull) or argument_name in PROGRAM_ARGUMENTS
    )
    selection = "" if is_leaf_type(get_named_type(field.type)) else " { __typename }"
    return f"{kind} {{ {name}{f'({arguments})' if arguments else ''}{selection} }}"


def qualified_name(kind: str, name: str) -> str:
    return f"{'Query' if kind == 'query' else 'Mutation'}.{name}"


def root_fields() -> list[tuple[str, str, GraphQLField]]:
    roots = (("query", SCHEMA.query_type), ("mutation", SCHEMA.mutation_type))
    return [
        (kind, name, field)
        for kind, root in roots
        if root is not None
        for name, field in root.fields.items()
        if EXPECTED[qualified_name(kind, name)] != ANYONE
    ]


FIELDS = root_fields()


def admitted(qualified: str) -> set[str]:
    """The roles the policy admits to the field (``partner:own`` admits partners)."""
    return {entry.split(":")[0] for entry in EXPECTED[qualified].split()}


async def tokens(kit: ExchangeKit) -> dict[tuple[str, str], str]:
    """By (role, which scopes: all, read or write), a token of each."""
    assertion = await kit.assertion(OWN, "alice")
    read_only = await kit.request_member_token(assertion, scope="member:read")
    assert read_only.status_code == 200, read_only.text
    made = {
        ("member", "all"): await kit.member_token(OWN, "alice"),
        ("member", "read"): str(read_only.json()["access_token"]),
        ("partner", "all"): await kit.partner_token(OWN),
    }
    for kind in ("read", "write"):
        made["partner", kind] = await kit.partner_token(OWN, scope=f"partner:{kind}")
    for role in (Role.SETTLEMENT, Role.ADMIN):
        made[role.value, "all"] = await kit.staff_token(role)
        for kind in ("read", "write"):
            made[role.value, kind] = await kit.staff_token(role, scope=f"{role.value}:{kind}")
    return made


def refusals(qualified: str, made: dict[tuple[str, str], str]) -> list[tuple[str, str]]:
    """The tokens (role, scopes) the field must refuse for the scope or the role."""
    if qualified in NO_SCOPE_NEEDED:
        return []
    roles = admitted(qualified)
    needed = "write" if qualified.startswith("Mutation.") else "read"
    return [
        (role, scopes)
        for role, scopes in made
        if role not in roles
        or (scopes not in ("all", needed) and not (qualified in READ_BY_WRITERS and role != "partner"))
    ]


def forbidden(body: dict[str, Any], name: str) -> bool:
    errors = body.get("errors") or []
    return any(
        error.get("path") == [name] and (error.get("extensions") or {}).get("code") == "FORBIDDEN" for error in errors
    )


async def test_every_root_field_refuses_the_wrong_role_and_the_wrong_kind_of_scope(kit: ExchangeKit) -> None:
    made = await tokens(kit)
    not_refused = []
    for kind, name, field in FIELDS:
        qualified = qualified_name(kind, name)
        document = operation(kind, name, field)
        for role, scopes in refusals(qualified, made):
            response = await kit.graphql(document, made[role, scopes])
            if not forbidden(response.json(), name):
                not_refused.append(f"{qualified} under a {role} token ({scopes}): {response.text[:200]}")
    assert not_refused == []


OWN_PROGRAM_FIELDS = [
    entry for entry in FIELDS if "partner:own" in EXPECTED[qualified_name(entry[0], entry[1])].split()
]


@pytest.mark.parametrize(("kind", "name", "field"), OWN_PROGRAM_FIELDS, ids=[name for _, name, _ in OWN_PROGRAM_FIELDS])
async def test_a_field_for_a_partners_own_program_refuses_another_program(
    kit: ExchangeKit, kind: str, name: str, field: GraphQLField
) -> None:
    document = operation(kind, name, field, program=OTHER)
    assert f'"{OTHER}"' in document
    response = await kit.graphql(document, await kit.partner_token(OWN))
    assert forbidden(response.json(), name), response.text
