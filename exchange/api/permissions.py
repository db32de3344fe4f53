"""Authorization of every GraphQL field: one declared rule per field, deny by default.

The rules themselves are plain objects (:mod:`exchange.auth.rules`, re-exported here so that a
field declaration needs one import); this module makes them Strawberry permissions. Declare a
field's rule in one line, on the field::

    @strawberry.field(description="…", extensions=[authorize(requires(Scope.PARTNER_READ) & own_program(source("id")))])

or for every field of a type that has no rule of its own::

    @authorize_fields(PUBLIC)
    @strawberry.type
    class Tier: ...

Tenant rules read the tenant from the object (:func:`source`) or the field's arguments by
their Python names (:func:`argument`). A field without a rule is denied to everyone, and the
schema-walking test names it.

A refused field is a GraphQL error on that field, and other fields still resolve, as long
as the refused field is nullable: give a protected field on a root type, or on a type whose
other fields are public, a nullable type (``Member | None``) so that the refusal stops there
(the schema-walking test checks this).

The error is ``FORBIDDEN`` for a caller whose token lacks the scope or tenant, and
``UNAUTHENTICATED`` for a caller without a token (the HTTP layer refuses those before execution, see
:mod:`exchange.api.authentication`).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from graphql import GraphQLObjectType
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info
from strawberry.types.base import get_object_definition
from strawberry.types.field import StrawberryField

from exchange.auth.rules import (
    AUTHENTICATED,
    PUBLIC,
    Access,
    Rule,
    Unruled,
    argument,
    own_member,
    own_program,
    requires,
    source,
)

if TYPE_CHECKING:
    from strawberry.schema.schema import Schema

__all__ = [
    "AUTHENTICATED",
    "PUBLIC",
    "Access",
    "Authorize",
    "Rule",
    "Unruled",
    "argument",
    "authorize",
    "authorize_fields",
    "enforce_field_rules",
    "own_member",
    "own_program",
    "requires",
    "rule_of",
    "source",
]

T = TypeVar("T")

_RULE = "exchange.rule"
#: graphql-core fields point back at their Strawberry definition under this key.
_STRAWBERRY_DEFINITION = "strawberry-definition"


class RulePermission(BasePermission):
    """A rule as Strawberry asks it: ``UNAUTHENTICATED`` without a token, ``FORBIDDEN`` (saying
    what to do next) otherwise."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal = info.context.principal
        if self.rule.allows(principal, source, kwargs):
            return True
        if principal is None:
            raise self.rule.unauthenticated()
        raise self.rule.forbidden(principal, source, kwargs)


class Authorize(PermissionExtension):
    """The field extension that enforces a field's rule."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(permissions=[RulePermission(rule)], use_directives=False)
        self.rule = rule


def authorize(rule: Rule) -> Authorize:
    """``extensions=[authorize(rule)]``: the rule of one field."""
    return Authorize(rule)


def authorize_fields(rule: Rule) -> Callable[[type[T]], type[T]]:
    """Class decorator (above ``@strawberry.type``): ``rule`` for every field without one.

    A public rule is only recorded, so those fields keep Strawberry's fast path.
    """

    def decorate(cls: type[T]) -> type[T]:
        definition = get_object_definition(cls, strict=True)
        for field in definition.fields:
            if rule_of(field) is not None:
                continue
            if rule.is_public:
                field.metadata = MappingProxyType({**field.metadata, _RULE: rule})
            else:
                field.extensions.append(Authorize(rule))
        return cls

    return decorate


def rule_of(field: StrawberryField) -> Rule | None:
    """The rule declared for ``field``, if any."""
    for extension in field.extensions:
        if isinstance(extension, Authorize):
            return extension.rule
    rule = field.metadata.get(_RULE) if field.metadata else None
    return rule if isinstance(rule, Rule) else None


def enforce_field_rules(schema: Schema) -> dict[str, Rule]:
    """Every object field's rule by ``Type.field``; a field without one is made to refuse.

    Called once when the schema is built. Introspection (``__schema``, ``__type``,
    ``__typename``) describes the schema, not data, and stays public.
    """
    rules: dict[str, Rule] = {}
    for graphql_type in schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for name, graphql_field in graphql_type.fields.items():
            definition = (graphql_field.extensions or {}).get(_STRAWBERRY_DEFINITION)
            rule = rule_of(definition) if isinstance(definition, StrawberryField) else None
            if rule is None:
                rule = Unruled()
                graphql_field.resolve = _refuse(rule)
            rules[f"{graphql_type.name}.{name}"] = rule
    return rules


def _refuse(rule: Unruled) -> Callable[..., Any]:
    def resolve(source: Any, info: Any, **arguments: Any) -> Any:
        principal = info.context.principal
        raise rule.unauthenticated() if principal is None else rule.forbidden(principal, source, arguments)

    return resolve
