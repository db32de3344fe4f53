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


def _member_claims() -> dict[str, object]:
    return access_token_claims(
        issuer="i",
        audience="a",
        client_id="wallet-pay-1",
        role=Role.MEMBER,
        scopes=frozenset({Scope.MEMBER_READ}),
        subject="mbr_1",
        asserted_by="wallet-pay",
        now=NOW,
        lifetime=timedelta(hours=1),
    )


def test_a_member_token_names_the_member_as_subject_and_the_program_that_asserted_them() -> None:
    claims = _member_claims()
    assert "program_id" not in claims, "a member token is never a partner's tenant"
    assert claims["asserted_by"] == "wallet-pay"
    principal = principal_from_claims(claims)
    assert (principal.member_id, principal.client_id) == ("mbr_1", "wallet-pay-1")
    assert (principal.asserted_by, principal.program_id) == ("wallet-pay", None)


@pytest.mark.parametrize("asserted_by", [None, "", 7])
def test_a_member_token_without_the_program_that_asserted_it_is_refused(asserted_by: object) -> None:
    claims = {key: value for key, value in _member_claims().items() if key != "asserted_by"}
    if asserted_by is not None:
        claims["asserted_by"] = asserted_by
    with pytest.raises(InvalidAccessToken, match="request a new token"):
        principal_from_claims(claims)


@pytest.mark.parametrize(
    "change",
    [
        {"role": "emperor"},
        {"scope": "everything"},
        {"program_id": None},
        {"role": "admin"},
        {"asserted_by": "p"},
    ],
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
