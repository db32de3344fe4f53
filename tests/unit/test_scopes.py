"""Roles and scopes: each role holds only its own scopes; requests may narrow them."""

from __future__ import annotations

import pytest

from exchange.auth import scopes as scopes_module
from exchange.auth.scopes import (
    CLIENT_ROLES,
    ROLE_SCOPES,
    InvalidScope,
    Role,
    Scope,
    StoredScopes,
    member_scopes_for_client,
    parse_scopes,
    scope_text,
    scopes_for_role,
)


def test_every_role_reads_and_writes_only_its_own_data() -> None:
    assert ROLE_SCOPES[Role.PARTNER] == {Scope.PARTNER_READ, Scope.PARTNER_WRITE}
    assert ROLE_SCOPES[Role.MEMBER] == {Scope.MEMBER_READ, Scope.MEMBER_WRITE, Scope.MEMBER_COALITION}
    assert ROLE_SCOPES[Role.SETTLEMENT] == {Scope.SETTLEMENT_READ, Scope.SETTLEMENT_WRITE}
    assert ROLE_SCOPES[Role.ADMIN] == {Scope.ADMIN_READ, Scope.ADMIN_WRITE}
    assert Role.MEMBER not in CLIENT_ROLES


def test_scopes_parse_from_the_oauth_form_and_print_back_in_a_stable_order() -> None:
    scopes = parse_scopes("partner:write  partner:read")
    assert scopes == {Scope.PARTNER_READ, Scope.PARTNER_WRITE}
    assert scope_text(scopes) == "partner:read partner:write"
    assert parse_scopes(["member:read"]) == {Scope.MEMBER_READ}


def test_an_unknown_scope_is_named() -> None:
    with pytest.raises(InvalidScope, match="unknown scope everything"):
        parse_scopes("partner:read everything")


def test_a_clients_stored_scopes_are_parsed_only_when_asked_and_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token's standing reads its client's scopes on every request; only a refusal names them."""
    parsed: list[str] = []

    def counting(text: str) -> frozenset[Scope]:
        parsed.append(text)
        return parse_scopes(text)

    monkeypatch.setattr(scopes_module, "parse_scopes", counting)
    stored = StoredScopes("partner:write partner:read")
    assert parsed == []
    assert Scope.PARTNER_READ in stored and Scope.SETTLEMENT_READ not in stored
    assert stored == ROLE_SCOPES[Role.PARTNER] and hash(stored) == hash(ROLE_SCOPES[Role.PARTNER])
    assert scope_text(stored) == "partner:read partner:write"
    assert stored & {Scope.PARTNER_READ} == frozenset({Scope.PARTNER_READ})
    assert parsed == ["partner:write partner:read"]


def test_stored_scopes_with_one_this_exchange_no_longer_knows_read_as_none() -> None:
    stored = StoredScopes("partner:read everything")
    assert len(stored) == 0 and scope_text(stored) == ""


@pytest.mark.parametrize("separator", ["\t", "\n", "\u00a0", "\u3000"])
def test_only_a_space_separates_scopes(separator: str) -> None:
    with pytest.raises(InvalidScope):
        parse_scopes(f"partner:read{separator}partner:write")


def test_a_role_gets_all_its_scopes_by_default_and_only_its_own_on_request() -> None:
    assert scopes_for_role(Role.ADMIN) == ROLE_SCOPES[Role.ADMIN]
    assert scopes_for_role(Role.PARTNER, frozenset({Scope.PARTNER_READ})) == {Scope.PARTNER_READ}
    with pytest.raises(InvalidScope, match="the partner role cannot hold settlement:read"):
        scopes_for_role(Role.PARTNER, frozenset({Scope.PARTNER_READ, Scope.SETTLEMENT_READ}))
    with pytest.raises(InvalidScope, match="at least one"):
        scopes_for_role(Role.PARTNER, frozenset())


def test_a_partner_clients_member_scopes_follow_its_own_unless_chosen() -> None:
    everything, read_only = ROLE_SCOPES[Role.PARTNER], frozenset({Scope.PARTNER_READ})
    assert member_scopes_for_client(Role.PARTNER, everything) == ROLE_SCOPES[Role.MEMBER]
    assert member_scopes_for_client(Role.PARTNER, frozenset({Scope.PARTNER_WRITE})) == ROLE_SCOPES[Role.MEMBER]
    assert member_scopes_for_client(Role.PARTNER, read_only) == {Scope.MEMBER_READ}
    chosen = frozenset({Scope.MEMBER_READ, Scope.MEMBER_WRITE})
    assert member_scopes_for_client(Role.PARTNER, read_only, chosen) == chosen
    assert member_scopes_for_client(Role.ADMIN, ROLE_SCOPES[Role.ADMIN]) == frozenset()


@pytest.mark.parametrize(
    ("role", "chosen", "message"),
    [
        (Role.PARTNER, frozenset({Scope.PARTNER_READ}), "member tokens cannot hold partner:read"),
        (Role.PARTNER, frozenset(), "at least one member scope"),
        (Role.PARTNER, frozenset({Scope.MEMBER_WRITE, Scope.MEMBER_COALITION}), "member tokens must hold member:read"),
        (Role.SETTLEMENT, frozenset({Scope.MEMBER_READ}), "only a partner's client obtains member tokens"),
    ],
)
def test_impossible_member_scopes_are_refused_naming_the_field(
    role: Role, chosen: frozenset[Scope], message: str
) -> None:
    with pytest.raises(InvalidScope, match=message) as refused:
        member_scopes_for_client(role, ROLE_SCOPES[role], chosen)
    assert refused.value.field == "memberScopes"
