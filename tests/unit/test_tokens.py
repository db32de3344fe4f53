"""Access-token claims (RFC 9068) and the principal they name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exchange.auth.errors import InvalidAccessToken
from exchange.auth.scopes import Role, Scope
from exchange.auth.tokens import access_token_claims, principal_from_claims

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def test_a_partner_token_carries_rfc_9068_claims_its_role_and_its_program() -> None:
    claims = access_token_claims(
        issuer="https://exchange.example",
        audience="https://exchange.example/graphql",
        client_id="formosa-air-1",
        role=Role.PARTNER,
        scopes=frozenset({Scope.PARTNER_WRITE, Scope.PARTNER_READ}),
        subject="formosa-air-1",
        program_id="formosa-air",
        now=NOW,
        lifetime=timedelta(minutes=15),
    )
    assert claims["iss"] == "https://exchange.example"
    assert claims["aud"] == "https://exchange.example/graphql"
    assert claims["exp"] - claims["iat"] == 900 and claims["iat"] == int(NOW.timestamp())
    assert claims["scope"] == "partner:read partner:write"
    assert (claims["role"], claims["program_id"], claims["client_id"]) == ("partner", "formosa-air", "formosa-air-1")
    assert len(claims["jti"]) >= 20
    principal = principal_from_claims(claims)
    assert (principal.role, principal.program_id, principal.member_id) == (Role.PARTNER, "formosa-air", None)
    assert principal.has_scope(Scope.PARTNER_READ) and not principal.has_scope(Scope.ADMIN_READ)
    assert principal.expires_at == NOW + timedelta(minutes=15)


def test_a_member_token_names_the_member_as_subject() -> None:
    claims = access_token_claims(
        issuer="i",
        audience="a",
        client_id="wallet-pay-1",
        role=Role.MEMBER,
        scopes=frozenset({Scope.MEMBER_READ}),
        subject="mbr_1",
        now=NOW,
        lifetime=timedelta(hours=1),
    )
    assert "program_id" not in claims
    principal = principal_from_claims(claims)
    assert (principal.member_id, principal.client_id) == ("mbr_1", "wallet-pay-1")


@pytest.mark.parametrize(
    "change",
    [{"role": "emperor"}, {"scope": "everything"}, {"program_id": None}, {"role": "admin"}],
)
def test_claims_that_do_not_add_up_are_refused(change: dict[str, object]) -> None:
    claims = access_token_claims(
        issuer="i",
        audience="a",
        client_id="c",
        role=Role.PARTNER,
        scopes=frozenset({Scope.PARTNER_READ}),
        subject="c",
        program_id="p",
        now=NOW,
        lifetime=timedelta(hours=1),
    )
    claims.update(change)
    claims = {key: value for key, value in claims.items() if value is not None}
    with pytest.raises(InvalidAccessToken):
        principal_from_claims(claims)
