"""Authorization of every GraphQL field: one declared rule per field, deny by default.

Declare a field's rule in one line, on the field::

    @strawberry.field(description="…", extensions=[authorize(requires(Scope.PARTNER_READ) & own_program(source("id")))])

or for every field of a type that has no rule of its own::

    @authorize_fields(PUBLIC)
    @strawberry.type
    class Tier: ...

Rules are permission classes (Strawberry's ``BasePermission``) that combine with ``&`` and
``|``: :data:`PUBLIC` (no token needed), :data:`AUTHENTICATED` (any valid token),
:func:`requires` (a scope), :func:`own_program` (the partner's own program) and
:func:`own_member` (the member themself). Tenant rules read the tenant from the object
(:func:`source`) or the arguments (:func:`argument`). A field without a rule is denied to
everyone, and the schema-walking test names it.

A refused field is a GraphQL error on that field, and other fields still resolve, as long
as the refused field is nullable: give a protected field on a root type, or on a type whose
other fields are public, a nullable type (``Member | None``) so that the refusal stops there
(the schema-walking test checks this).

The error is ``FORBIDDEN`` for a caller whose token lacks the scope or tenant, and
``UNAUTHENTICATED`` for a caller without a token (the HTTP layer refuses those before execution, see
:mod:`exchange.api.authentication`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterable, Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from graphql import GraphQLObjectType
from strawberry.permission import BasePermission, PermissionExtension
from strawberry.types import Info
from strawberry.types.base import get_object_definition
from strawberry.types.field import StrawberryField

from exchange.auth.principal import Principal
from exchange.auth.scopes import ROLE_SCOPES, Role, Scope
from exchange.errors import Forbidden, Unauthenticated

if TYPE_CHECKING:
    from strawberry.schema.schema import Schema

T = TypeVar("T")
Selector = Callable[[Any, Mapping[str, Any]], object]

_RULE = "exchange.rule"
#: graphql-core fields point back at their Strawberry definition under this key.
_STRAWBERRY_DEFINITION = "strawberry-definition"


class Access(IntEnum):
    """How much of a field a role may read: nothing, its own tenant's, or all of it."""

    NONE = 0
    OWN = 1
    ALL = 2


def source(attribute: str) -> Selector:
    """Select the tenant from the object the field is on."""
    return lambda parent, _arguments: getattr(parent, attribute)


def argument(path: str) -> Selector:
    """Select the tenant from the field's argument ``path``: a Python name, or a dotted path
    into an input object (``"input.to_program"``)."""
    name, *attributes = path.split(".")

    def select(_parent: Any, arguments: Mapping[str, Any]) -> object:
        value = arguments.get(name)
        for attribute in attributes:
            value = getattr(value, attribute, None)
        return value

    return select


class Rule(BasePermission):
    """Who may resolve a field. Subclasses say it twice: for a request (:meth:`allows`)
    and for a whole role (:meth:`access`), which the schema-walking test tabulates."""

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        principal: Principal | None = info.context.principal
        if self.allows(principal, source, kwargs):
            return True
        if principal is None:
            raise Unauthenticated(f"an access token is needed ({self.describe()})")
        return False

    def on_unauthorized(self) -> None:
        raise Forbidden(f"not allowed: this needs {self.describe()}")

    @abc.abstractmethod
    def allows(self, principal: Principal | None, source: Any, arguments: Mapping[str, Any]) -> bool:
        """Whether ``principal`` may resolve the field on ``source`` with ``arguments``."""

    @abc.abstractmethod
    def access(self, role: Role | None) -> Access:
        """What a caller of ``role`` (``None``: no token) may get, holding all its scopes."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The rule in words, for error messages."""

    @property
    def is_public(self) -> bool:
        return self.access(None) is Access.ALL

    def visible(self, principal: Principal | None, items: Iterable[T]) -> list[T]:
        """The ``items`` this rule lets ``principal`` see (for lists of tenant-owned objects)."""
        return [item for item in items if self.allows(principal, item, {})]

    def __and__(self, other: Rule) -> Rule:
        return AllOf(self, other)

    def __or__(self, other: Rule) -> Rule:
        return AnyOf(self, other)


class Public(Rule):
    def allows(self, principal: Principal | None, source: Any, arguments: Mapping[str, Any]) -> bool:
        return True

    def access(self, role: Role | None) -> Access:
        return Access.ALL

    def describe(self) -> str:
        return "nothing"


class Authenticated(Rule):
    def allows(self, principal: Principal | None, source: Any, arguments: Mapping[str, Any]) -> bool:
        return principal is not None

    def access(self, role: Role | None) -> Access:
        return Access.NONE if role is None else Access.ALL

    def describe(self) -> str:
        return "an access token"


class HasScope(Rule):
    """The token holds at least one of ``scopes``."""

    def __init__(self, *scopes: Scope) -> None:
        self.scopes = frozenset(scopes)

    def allows(self, principal: Principal | None, source: Any, arguments: Mapping[str, Any]) -> bool:
        return principal is not None and not principal.scopes.isdisjoint(self.scopes)

    def access(self, role: Role | None) -> Access:
        held = role is not None and not ROLE_SCOPES[role].isdisjoint(self.scopes)
        return Access.ALL if held else Access.NONE

    def describe(self) -> str:
        if len(self.scopes) == 1:
            return f"scope {next(iter(self.scopes))}"
        return "one of the scopes " + ", ".join(sorted(self.scopes))


class OwnProgram(Rule):
    """The caller is the partner running the selected program (or one of the selected)."""

    def __init__(self, selector: Selector) -> None:
        self.selector = selector

    def allows(self, principal: Principal | None, source: Any, arguments: Mapping[str, Any]) -> bool:
        if principal is None or principal.program_id is None:
            return False
        selected = self.selector(source, arguments)
        if isinstance(selected, str):
            return selected == principal.program_id
        return isinstance(selected, Collection) and principal.program_id in selected

    def access(self, role: Role | None) -> Access:
        return Access.OWN if role is Role.PARTNER else Access.NONE

    def describe(self) -> str:
        return "the caller's own program"


class OwnMember(Rule):
    """The caller is the selected member."""

    def __init__(self, selector: Selector) -> None:
        self.selector = selector

    def allows(self, principal: Principal | None, source: Any, arguments: Mapping[str, Any]) -> bool:
        return (
            principal is not None
            and principal.member_id is not None
            and self.selector(source, arguments) == principal.member_id
        )

    def access(self, role: Role | None) -> Access:
        return Access.OWN if role is Role.MEMBER else Access.NONE

    def describe(self) -> str:
        return "the caller's own member account"


class AllOf(Rule):
    def __init__(self, *rules: Rule) -> None:
        self.rules = rules

    def allows(self, principal: Principal | None, source: Any, arguments: Mapping[str, Any]) -> bool:
        return all(rule.allows(principal, source, arguments) for rule in self.rules)

    def access(self, role: Role | None) -> Access:
        return min(rule.access(role) for rule in self.rules)

    def describe(self) -> str:
        return " and ".join(rule.describe() for rule in self.rules)


class AnyOf(Rule):
    def __init__(self, *rules: Rule) -> None:
        self.rules = rules

    def allows(self, principal: Principal | None, source: Any, arguments: Mapping[str, Any]) -> bool:
        return any(rule.allows(principal, source, arguments) for rule in self.rules)

    def access(self, role: Role | None) -> Access:
        return max(rule.access(role) for rule in self.rules)

    def describe(self) -> str:
        return " or ".join(f"({rule.describe()})" for rule in self.rules)


class Unruled(Rule):
    """What a field without a declared rule gets: nobody may resolve it."""

    def allows(self, principal: Principal | None, source: Any, arguments: Mapping[str, Any]) -> bool:
        return False

    def access(self, role: Role | None) -> Access:
        return Access.NONE

    def describe(self) -> str:
        return "an authorization rule, which this field lacks"


PUBLIC: Rule = Public()
AUTHENTICATED: Rule = Authenticated()


def requires(*scopes: Scope) -> Rule:
    """The token holds at least one of ``scopes``."""
    return HasScope(*scopes)


def own_program(selector: Selector) -> Rule:
    return OwnProgram(selector)


def own_member(selector: Selector) -> Rule:
    return OwnMember(selector)


class Authorize(PermissionExtension):
    """The field extension that enforces a field's rule."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(permissions=[rule], use_directives=False)
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
        if info.context.principal is None:
            raise Unauthenticated(f"an access token is needed ({rule.describe()})")
        rule.on_unauthorized()

    return resolve
