"""Roles and scopes: who may call the exchange, and what a token lets them do.

Every token has one role. A role's scopes are the most its tokens can carry; a client (or a
token request) may narrow them. ``<role>:read`` reads the role's data, ``<role>:write`` changes
it, so a partner can hand a reporting tool a read-only token.

A partner's client also has its member scopes: the most the member tokens it obtains (by the
assertion grant) can carry, so that a read-only reporting client that can present the
partner's assertions cannot mint tokens that spend members' points. Unless chosen when the
client is created, they follow its own scopes: every member scope for a client that holds
``partner:write`` (it already changes the program's data), ``member:read`` only for one that
does not. Staff clients obtain no member tokens and have none.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Set
from enum import StrEnum
from typing import TypeVar

from exchange.errors import BadUserInput

T = TypeVar("T")


class Role(StrEnum):
    """Who is calling."""

    PARTNER = "partner"  #: a partner company, for the one program it runs
    MEMBER = "member"  #: a member, vouched for by a partner's signed assertion
    SETTLEMENT = "settlement"  #: settlement staff and their tools
    ADMIN = "admin"  #: operators of the exchange


class Scope(StrEnum):
    """What a token allows."""

    #: its own program: members, rates, rewards, positions, statements
    PARTNER_READ = "partner:read"
    #: its own program: rates, tiers, rewards, assertion keys, records upload
    PARTNER_WRITE = "partner:write"
    #: the member's own accounts and history
    MEMBER_READ = "member:read"
    #: the member's quotes, conversions, status matches and redemptions
    MEMBER_WRITE = "member:write"
    #: spending the member's coalition points (with ``member:write``): they are the exchange's,
    #: no partner's assertion answers for them, so a token carries this authority by name
    MEMBER_COALITION = "member:coalition"
    #: periods, every partner's positions and statements, reconciliation
    SETTLEMENT_READ = "settlement:read"
    #: closing periods, importing records, resolving breaks, signing off
    SETTLEMENT_WRITE = "settlement:write"
    #: programs and OAuth clients
    ADMIN_READ = "admin:read"
    ADMIN_WRITE = "admin:write"


ROLE_SCOPES: Mapping[Role, frozenset[Scope]] = {
    role: frozenset(scope for scope in Scope if scope.value.startswith(f"{role.value}:")) for role in Role
}

#: The field a client's member scopes are given in.
MEMBER_SCOPES_FIELD = "memberScopes"

#: Roles an OAuth client can have; member tokens come only from a partner's assertion.
CLIENT_ROLES: tuple[Role, ...] = (Role.PARTNER, Role.SETTLEMENT, Role.ADMIN)


class InvalidScope(BadUserInput):
    """``unknown``: the names given that are no scope at all (a typo, most likely)."""

    def __init__(self, message: str, field: str = "scopes", *, unknown: tuple[str, ...] = ()) -> None:
        super().__init__(message, field=field)
        self.unknown = unknown


def parse_scopes(text: str | Iterable[str]) -> frozenset[Scope]:
    """Scopes from a space-separated string (as OAuth sends them) or a list of names.

    Only the space separates (RFC 6749 §3.3): ``str.split()`` would also split on a tab, a
    line break or a no-break space, none of which a scope may hold or be separated by.
    """
    names = [name for name in text.split(" ") if name] if isinstance(text, str) else list(text)
    unknown = tuple(sorted(name for name in names if name not in Scope._value2member_map_))
    if unknown:
        raise InvalidScope(f"unknown scope {', '.join(unknown)}; known: {scope_text(Scope)}", unknown=unknown)
    return frozenset(Scope(name) for name in names)


class StoredScopes(Set[Scope]):
    """Scopes as a client's row stores them (the OAuth form), parsed when first asked and then
    kept: a token's standing reads its client's scopes on every request, but only a refusal
    names them (:attr:`~exchange.auth.principal.Principal.client_scopes`). A scope this
    exchange no longer knows makes them read as none."""

    __slots__ = ("_parsed", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._parsed: frozenset[Scope] | None = None

    def _scopes(self) -> frozenset[Scope]:
        if self._parsed is None:
            try:
                self._parsed = parse_scopes(self.text)
            except InvalidScope:
                self._parsed = frozenset()
        return self._parsed

    @classmethod
    def _from_iterable(cls, items: Iterable[T]) -> frozenset[T]:
        """What ``&``, ``|`` and ``-`` give: a plain set (no row stores it as text)."""
        return frozenset(items)

    def __contains__(self, scope: object) -> bool:
        return scope in self._scopes()

    def __iter__(self) -> Iterator[Scope]:
        return iter(self._scopes())

    def __len__(self) -> int:
        return len(self._scopes())

    def __hash__(self) -> int:
        return hash(self._scopes())  # as the equal frozenset's: a Principal stays hashable

    def __repr__(self) -> str:
        return f"StoredScopes({self.text!r})"


def scope_text(scopes: Iterable[Scope]) -> str:
    """The OAuth form: names in a stable order, separated by spaces."""
    return " ".join(sorted(scope.value for scope in scopes))


def scopes_for_role(role: Role, requested: frozenset[Scope] | None = None) -> frozenset[Scope]:
    """The requested scopes if the role may hold them all, else an error; none asked: all."""
    allowed = ROLE_SCOPES[role]
    if requested is None:
        return allowed
    if not requested:
        raise InvalidScope("give at least one scope")
    if extra := requested - allowed:
        raise InvalidScope(f"the {role.value} role cannot hold {scope_text(extra)}; it may hold {scope_text(allowed)}")
    return requested


def member_scopes_for_client(
    role: Role, scopes: frozenset[Scope], requested: frozenset[Scope] | None = None
) -> frozenset[Scope]:
    """A client's member scopes (see the module's docstring): the requested ones if it may
    have them, else an error; none asked: the default that follows its ``scopes``."""
    member_scopes = ROLE_SCOPES[Role.MEMBER]
    if role is not Role.PARTNER:
        if requested:
            raise InvalidScope(
                "only a partner's client obtains member tokens: give it no member scopes", MEMBER_SCOPES_FIELD
            )
        return frozenset()
    if requested is None:
        return member_scopes if Scope.PARTNER_WRITE in scopes else frozenset({Scope.MEMBER_READ})
    if not requested:
        raise InvalidScope("give at least one member scope", MEMBER_SCOPES_FIELD)
    if extra := requested - member_scopes:
        raise InvalidScope(
            f"member tokens cannot hold {scope_text(extra)}; they may hold {scope_text(member_scopes)}",
            MEMBER_SCOPES_FIELD,
        )
    if Scope.MEMBER_READ not in requested:
        # A member token that may spend but not read would convert from a balance it cannot see.
        raise InvalidScope(f"member tokens must hold {Scope.MEMBER_READ.value}: add it", MEMBER_SCOPES_FIELD)
    return requested
