"""Who may do what: authorization rules as plain objects, usable by every front end.

A rule answers, for a caller (a :class:`~exchange.auth.principal.Principal`, or ``None`` for no
token), an object and the request's arguments, whether the caller may go on
(:meth:`Rule.allows`), and tabulates what a whole role may get (:meth:`Rule.access`), which the
GraphQL schema-walking test reviews as the access policy. Rules combine with ``&`` and ``|``:
:data:`PUBLIC` (no token needed), :data:`AUTHENTICATED` (any valid token), :func:`requires` (a
scope), :func:`roles` (a role), :func:`own_program` (the partner's own program) and
:func:`own_member` (the member themself); :data:`NOBODY` admits no one. Tenant rules read the
tenant from the object (:func:`source`) or the arguments (:func:`argument`).

GraphQL declares a rule on every field (:mod:`exchange.api.permissions` adapts them to
Strawberry, deny by default); the web pages declare one on every route
(:mod:`exchange.web.access`), asking it with the signed-in person's principal alone.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterable, Mapping
from enum import IntEnum
from types import MappingProxyType
from typing import Any, TypeVar

from exchange.auth.principal import Principal
from exchange.auth.scopes import ROLE_SCOPES, Role, Scope, scope_text
from exchange.errors import Forbidden, Unauthenticated

T = TypeVar("T")
Selector = Callable[[Any, Mapping[str, Any]], object]
#: What a rule is asked with when nothing but the caller matters (a web page's route).
NO_ARGUMENTS: Mapping[str, Any] = MappingProxyType({})


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


class Rule(abc.ABC):
    """Who may do something. Subclasses say it twice: for a request (:meth:`allows`)
    and for a whole role (:meth:`access`), which the schema-walking test tabulates."""

    def unauthenticated(self) -> Unauthenticated:
        """What a caller without a token hears."""
        return Unauthenticated(f"an access token is needed ({self.describe()})")

    def forbidden(
        self, principal: Principal, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> Forbidden:
        """What a caller whose token does not satisfy the rule hears: what the rule needs, and
        what to do next (:func:`next_step`)."""
        return Forbidden(f"not allowed: this needs {self.describe()}; {next_step(self, principal, source, arguments)}")

    def alternatives(self) -> tuple[tuple[Rule, ...], ...]:
        """The rule as ways to satisfy it, each the leaf rules that must all hold."""
        return ((self,),)

    @abc.abstractmethod
    def allows(
        self, principal: Principal | None, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> bool:
        """Whether ``principal`` may resolve the field on ``source`` with ``arguments`` (a page's
        rule is asked with the principal alone)."""

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
    def allows(
        self, principal: Principal | None, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> bool:
        return True

    def access(self, role: Role | None) -> Access:
        return Access.ALL

    def describe(self) -> str:
        return "nothing"


class Authenticated(Rule):
    def allows(
        self, principal: Principal | None, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> bool:
        return principal is not None

    def access(self, role: Role | None) -> Access:
        return Access.NONE if role is None else Access.ALL

    def describe(self) -> str:
        return "an access token"


class HasScope(Rule):
    """The token holds at least one of ``scopes``."""

    def __init__(self, *scopes: Scope) -> None:
        self.scopes = frozenset(scopes)

    def allows(
        self, principal: Principal | None, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> bool:
        return principal is not None and not principal.scopes.isdisjoint(self.scopes)

    def access(self, role: Role | None) -> Access:
        held = role is not None and not ROLE_SCOPES[role].isdisjoint(self.scopes)
        return Access.ALL if held else Access.NONE

    def describe(self) -> str:
        if len(self.scopes) == 1:
            return f"scope {next(iter(self.scopes))}"
        return "one of the scopes " + ", ".join(sorted(self.scopes))


class HasRole(Rule):
    """The caller is of one of ``roles`` (whatever scopes its token holds)."""

    def __init__(self, roles: Collection[Role]) -> None:
        self.roles = frozenset(roles)

    def allows(
        self, principal: Principal | None, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> bool:
        return principal is not None and principal.role in self.roles

    def access(self, role: Role | None) -> Access:
        return Access.ALL if role in self.roles else Access.NONE

    def describe(self) -> str:
        return "the role " + " or ".join(sorted(self.roles))


class OwnProgram(Rule):
    """The caller is the partner running the selected program (or one of the selected)."""

    def __init__(self, selector: Selector) -> None:
        self.selector = selector

    def allows(
        self, principal: Principal | None, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> bool:
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

    def allows(
        self, principal: Principal | None, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> bool:
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

    def alternatives(self) -> tuple[tuple[Rule, ...], ...]:
        ways: tuple[tuple[Rule, ...], ...] = ((),)
        for rule in self.rules:
            ways = tuple(way + more for way in ways for more in rule.alternatives())
        return ways

    def allows(
        self, principal: Principal | None, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> bool:
        return all(rule.allows(principal, source, arguments) for rule in self.rules)

    def access(self, role: Role | None) -> Access:
        return min(rule.access(role) for rule in self.rules)

    def describe(self) -> str:
        return " and ".join(rule.describe() for rule in self.rules)


class AnyOf(Rule):
    def __init__(self, *rules: Rule) -> None:
        self.rules = rules

    def alternatives(self) -> tuple[tuple[Rule, ...], ...]:
        return tuple(way for rule in self.rules for way in rule.alternatives())

    def allows(
        self, principal: Principal | None, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> bool:
        return any(rule.allows(principal, source, arguments) for rule in self.rules)

    def access(self, role: Role | None) -> Access:
        return max(rule.access(role) for rule in self.rules)

    def describe(self) -> str:
        return " or ".join(f"({rule.describe()})" for rule in self.rules)


class Unruled(Rule):
    """What a field or page without a declared rule gets: nobody may resolve or open it."""

    def allows(
        self, principal: Principal | None, source: Any = None, arguments: Mapping[str, Any] = NO_ARGUMENTS
    ) -> bool:
        return False

    def access(self, role: Role | None) -> Access:
        return Access.NONE

    def describe(self) -> str:
        return "an authorization rule, which this field lacks"


def next_step(rule: Rule, principal: Principal, source: Any, arguments: Mapping[str, Any]) -> str:
    """What a caller refused by ``rule`` can do about it, from its own token alone (nothing
    about other tenants): request a token with the scope it lacks, or have the exchange's
    operator grant its client that scope; or, when no token of its role would do, which roles'
    would; or, when it is the tenant that does not match, that a token reaches only its own."""
    role = principal.role
    reachable = [way for way in rule.alternatives() if all(leaf.access(role) is not Access.NONE for leaf in way)]
    if not reachable:
        roles = [other.value for other in Role if other is not role and rule.access(other) is not Access.NONE]
        if not roles:
            return "no token may"
        article = "an" if role.value[0] in "aeiou" else "a"
        return f"{article} {role.value} token never may: this is for {' or '.join(roles)} tokens"
    lacking = [
        [leaf for leaf in way if not leaf.allows(principal, source, arguments)]
        for way in reachable
        if all(leaf.allows(principal, source, arguments) for leaf in way if not isinstance(leaf, HasScope))
    ]
    if lacking:
        missing = [leaf.scopes & ROLE_SCOPES[role] for leaf in min(lacking, key=len) if isinstance(leaf, HasScope)]
        return _missing_scopes(principal, missing)
    if role is Role.PARTNER:
        return f"a partner's token reaches its own program's data only (this one's is {principal.program_id})"
    if role is Role.MEMBER:
        return "a member's token reaches that member's own data only"
    return "this token's scopes do not reach it"


def _missing_scopes(principal: Principal, missing: list[frozenset[Scope]]) -> str:
    """The next step of a caller whose token lacks ``missing`` (each set: one of them): a new
    token, if its client may hold them (``client_scopes``), else the operator's grant."""
    needed = " and ".join(sorted(scope_text(scopes).replace(" ", " or ") for scopes in missing))
    held = scope_text(principal.scopes) or "none"
    member = principal.role is Role.MEMBER
    client = f"client {principal.client_id}" + ("'s member tokens" if member else "")
    grantee = f"client {principal.client_id}" + ("'s member scopes" if member else "")
    allowed = principal.client_scopes
    if allowed is None:  # not read (a console session): both steps, conditionally
        return (
            f"request a token with scope {needed} (`scope` at /oauth/token; this one holds {held}); if {client} "
            f"may not hold it, ask the exchange operator to grant scope {needed} to {grantee}"
        )
    if all(not scopes.isdisjoint(allowed) for scopes in missing):
        return (
            f"request a token with scope {needed} (`scope` at /oauth/token; this one holds {held}): {client} "
            f"may hold {scope_text(allowed)}"
        )
    return (
        f"ask the exchange operator to grant scope {needed} to {grantee}: {client} may hold "
        f"{scope_text(allowed) or 'none'}"
    )


PUBLIC: Rule = Public()
AUTHENTICATED: Rule = Authenticated()
#: A web page declared without a rule (GraphQL gives each unruled field its own ``Unruled``).
NOBODY: Rule = Unruled()


def roles(*allowed: Role) -> Rule:
    """The caller is of one of these roles."""
    return HasRole(allowed)


def requires(*scopes: Scope) -> Rule:
    """The token holds at least one of ``scopes``."""
    return HasScope(*scopes)


def own_program(selector: Selector) -> Rule:
    return OwnProgram(selector)


def own_member(selector: Selector) -> Rule:
    return OwnMember(selector)
