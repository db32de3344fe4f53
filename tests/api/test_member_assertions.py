"""The JWT-bearer grant (RFC 7523): a partner's signed assertion yields a token limited to
one member; every kind of bad assertion is refused with invalid_grant."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from exchange.auth.assertions import MAX_ASSERTION_KEYS
from exchange.auth.scopes import Role, Scope
from exchange.testing.kit import ExchangeKit

ME = "{ me { id linkedAccounts { memberRef program { id } } } }"


async def test_a_member_token_is_limited_to_the_member_the_partner_vouched_for(kit: ExchangeKit) -> None:
    response = await kit.request_member_token(await kit.assertion("wallet-pay", "alice"), scope="member:read")
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["scope"] == "member:read" and token["token_type"] == "Bearer"
    me = (await kit.data(ME, token["access_token"]))["me"]
    assert me["linkedAccounts"] == [
        {"memberRef": me["id"], "program": {"id": "coalition"}},  # every member's own, at the coalition point
        {"memberRef": "alice", "program": {"id": "wallet-pay"}},
    ]

    again = await kit.member_token("wallet-pay", "alice")
    assert (await kit.data(ME, again))["me"]["id"] == me["id"], "the same account is the same member"
    bob = await kit.member_token("wallet-pay", "bob")
    assert (await kit.data(ME, bob))["me"]["id"] != me["id"]


async def test_a_member_token_names_the_program_that_asserted_it_and_introspection_shows_it(
    kit: ExchangeKit,
) -> None:
    token = await kit.member_token("fresh-mart", "carol")
    viewer = (await kit.data("{ viewer { role assertedBy programId } }", token))["viewer"]
    assert viewer == {"role": "MEMBER", "assertedBy": "fresh-mart", "programId": None}
    partner = await kit.partner("fresh-mart")
    response = await kit.http.post(
        "/oauth/introspect", data={"token": token}, auth=(partner.client.client_id, partner.client_secret)
    )
    introspected = response.json()
    assert introspected["active"] is True
    assert (introspected["role"], introspected["asserted_by"]) == ("member", "fresh-mart")
    assert "program_id" not in introspected, "a member token is no partner's tenant"
    own = await kit.http.post(
        "/oauth/introspect",
        data={"token": await kit.partner_token("fresh-mart")},
        auth=(partner.client.client_id, partner.client_secret),
    )
    assert "asserted_by" not in own.json()


async def test_the_issuer_or_the_token_endpoint_is_an_accepted_audience(kit: ExchangeKit) -> None:
    for audience in (kit.settings.issuer_url, kit.token_endpoint):
        response = await kit.request_member_token(await kit.assertion("fresh-mart", "dave", aud=audience))
        assert response.status_code == 200, audience


async def test_a_member_token_cannot_ask_for_partner_scopes(kit: ExchangeKit) -> None:
    response = await kit.request_member_token(await kit.assertion("wallet-pay", "carol"), scope="partner:read")
    assert (response.status_code, response.json()["error"]) == (400, "invalid_scope")


async def test_a_clients_member_tokens_carry_at_most_its_member_scopes(kit: ExchangeKit) -> None:
    reporting = await kit.new_client(Role.PARTNER, "wallet-pay", scopes=frozenset({Scope.PARTNER_READ}))
    chosen = await kit.new_client(
        Role.PARTNER, "wallet-pay", member_scopes=frozenset({Scope.MEMBER_READ, Scope.MEMBER_WRITE})
    )
    allowed = {
        reporting.client.client_id: "member:read",  # no partner:write: member:read by default
        chosen.client.client_id: "member:read member:write",
        (await kit.partner("wallet-pay")).client.client_id: "member:coalition member:read member:write",
    }
    for client_id, scopes in allowed.items():
        default = await kit.request_member_token(await kit.assertion("wallet-pay", "erin", iss=client_id))
        assert default.status_code == 200, default.text
        assert default.json()["scope"] == scopes
    for client_id, wider in (
        (reporting.client.client_id, "member:write"),
        (chosen.client.client_id, "member:coalition"),
    ):
        refused = await kit.request_member_token(
            await kit.assertion("wallet-pay", "erin", iss=client_id), scope=f"member:read {wider}"
        )
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope")
        assert refused.json()["error_description"] == (
            f"this client's member tokens may carry at most: {allowed[client_id]}"
        )


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": _now() - 3600}, "expired"),
        ({"aud": "https://somewhere-else.example/token"}, "/oauth/token"),  # names the audiences it takes
        ({"nbf": _now() + 3600}, "claims are invalid"),
        ({"exp": _now() + 7200}, "valid for too long"),
        ({"sub": " alice"}, "member_ref"),
        ({"iss": "no-such-client"}, "names no client"),
    ],
)
async def test_bad_assertions_are_invalid_grant(kit: ExchangeKit, claims: dict[str, object], reason: str) -> None:
    response = await kit.request_member_token(await kit.assertion("wallet-pay", "alice", **claims))
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    assert reason in response.json()["error_description"]


async def test_a_replayed_assertion_is_refused(kit: ExchangeKit) -> None:
    assertion = await kit.assertion("wallet-pay", "alice")
    assert (await kit.request_member_token(assertion)).status_code == 200
    replay = await kit.request_member_token(assertion)
    assert replay.json() == {
        "error": "invalid_grant",
        "error_description": "the assertion has been used before (replayed jti): sign a new one, with a new jti, "
        "for each token request",
    }


async def test_an_assertion_signed_by_an_unregistered_key_is_refused(kit: ExchangeKit) -> None:
    await kit.assertion_key("wallet-pay")
    client_id = (await kit.partner("wallet-pay")).client.client_id
    impostor = ECKey.generate_key("P-256", parameters={"kid": kit.partner_keys["wallet-pay"].kid})
    now = _now()
    forged = jwt.encode(
        {"alg": "ES256", "kid": impostor.kid},
        {"iss": client_id, "sub": "alice", "aud": kit.token_endpoint, "exp": now + 300, "jti": "forged"},
        impostor,
    )
    response = await kit.request_member_token(forged)
    assert response.json()["error_description"] == "the assertion's signature does not verify"


async def test_a_partner_without_a_registered_key_cannot_vouch(kit: ExchangeKit) -> None:
    client_id = (await kit.partner("harbor-bank")).client.client_id
    key = ECKey.generate_key("P-256")
    now = _now()
    assertion = jwt.encode(
        {"alg": "ES256"},
        {"iss": client_id, "sub": "alice", "aud": kit.token_endpoint, "exp": now + 300, "jti": "j"},
        key,
    )
    response = await kit.request_member_token(assertion)
    assert response.json()["error_description"] == "the partner has registered no assertion key"


async def test_only_partner_clients_may_vouch_for_members(kit: ExchangeKit) -> None:
    staff = await kit.new_client(Role.SETTLEMENT)
    key = ECKey.generate_key("P-256")
    now = _now()
    assertion = jwt.encode(
        {"alg": "ES256"},
        {"iss": staff.client.client_id, "sub": "alice", "aud": kit.token_endpoint, "exp": now + 300, "jti": "j"},
        key,
    )
    response = await kit.request_member_token(assertion)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")


async def test_a_removed_key_no_longer_vouches(kit: ExchangeKit) -> None:
    key = await kit.assertion_key("happy-card")
    partner_token = await kit.partner_token("happy-card")
    removed = await kit.data(
        'mutation($kid: String!) { removeAssertionKey(programId: "happy-card", kid: $kid) { kid } }',
        partner_token,
        kid=key.kid,
    )
    assert removed == {"removeAssertionKey": {"kid": key.kid}}
    response = await kit.request_member_token(await kit.assertion("happy-card", "alice"))
    assert response.status_code == 400


REMOVE = """mutation($program: ID!, $kid: String!) {
  removeAssertionKey(programId: $program, kid: $kid) { kid removedAt } }"""
KEYS = """query($id: ID!) { program(id: $id) { assertionKeys { kid removedAt } } }"""


async def test_removing_a_key_again_answers_the_first_removal(kit: ExchangeKit) -> None:
    """A retry of a removal whose answer was lost is a success naming the key removed, as the
    first answer was; a kid the program never had, another program's among them, stays
    NOT_FOUND. The removed key vouches for no one, is listed no more, and counts against no
    limit; registered again, it vouches anew."""
    key = await kit.assertion_key("happy-card")
    token = await kit.partner_token("happy-card")
    first = (await kit.data(REMOVE, token, program="happy-card", kid=key.kid))["removeAssertionKey"]
    assert first["kid"] == key.kid and first["removedAt"] is not None
    assert (await kit.data(REMOVE, token, program="happy-card", kid=key.kid)) == {"removeAssertionKey": first}
    assert (await kit.data(KEYS, token, id="happy-card"))["program"]["assertionKeys"] == []
    assert (await kit.request_member_token(await kit.assertion("happy-card", "alice"))).status_code == 400

    theirs = await kit.assertion_key("formosa-air")
    for kid in ("never-registered", str(theirs.kid)):
        refused = (await kit.graphql(REMOVE, token, program="happy-card", kid=kid)).json()
        assert refused["data"]["removeAssertionKey"] is None
        assert [error["extensions"]["code"] for error in refused["errors"]] == ["NOT_FOUND"]

    register = """mutation($program: ID!, $key: String!) {
      registerAssertionKey(programId: $program, publicKey: $key) { kid removedAt } }"""
    for _ in range(MAX_ASSERTION_KEYS):
        fresh = json.dumps(ECKey.generate_key("P-256", auto_kid=True).as_dict(private=False))
        assert (await kit.data(register, token, program="happy-card", key=fresh))["registerAssertionKey"]
    for kid in [
        fresh_key["kid"] for fresh_key in (await kit.data(KEYS, token, id="happy-card"))["program"]["assertionKeys"]
    ]:
        await kit.data(REMOVE, token, program="happy-card", kid=kid)
    public = json.dumps(key.as_dict(private=False))
    again = (await kit.data(register, token, program="happy-card", key=public))["registerAssertionKey"]
    assert again == {"kid": key.kid, "removedAt": None}
    assert (await kit.request_member_token(await kit.assertion("happy-card", "alice"))).status_code == 200
