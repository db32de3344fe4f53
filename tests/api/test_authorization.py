"""Scope and tenant on every path: a partner never reads another partner's members or keys,
a member never sees another member, whatever the query's shape (nested fields, aliases,
fragments, lookups by id); a refusal is FORBIDDEN on its field and the rest resolves."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from joserfc.jwk import ECKey

from exchange.auth.scopes import Role, Scope
from exchange.members.models import LinkedAccount
from exchange.testing.kit import ExchangeKit


def errors_at(body: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    return {tuple(error["path"]): error["extensions"]["code"] for error in body.get("errors", [])}


async def member_id(kit: ExchangeKit, token: str) -> str:
    return str((await kit.data("{ me { id } }", token))["me"]["id"])


@pytest.fixture
async def members(kit: ExchangeKit) -> dict[str, str]:
    """alice and bob at wallet-pay, frank at formosa-air, and carol at both (her second
    account linked the way linkAccount will)."""
    tokens = {
        "alice": await kit.member_token("wallet-pay", "alice"),
        "bob": await kit.member_token("wallet-pay", "bob"),
        "frank": await kit.member_token("formosa-air", "frank"),
        "carol": await kit.member_token("wallet-pay", "carol"),
    }
    ids = {name: await member_id(kit, token) for name, token in tokens.items()}
    async with kit.db.transaction() as session:
        session.add(
            LinkedAccount(
                member_id=ids["carol"],
                program_id="formosa-air",
                member_ref="carol-fa",
                linked_at=datetime.now(UTC),
                established_by="assertion",
            )
        )
    return {**ids, **{f"{name}_token": token for name, token in tokens.items()}}


async def test_a_partner_lists_its_own_programs_accounts_and_no_other(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    token = await kit.partner_token("formosa-air")
    own = await kit.data('{ program(id: "formosa-air") { linkedAccounts { memberRef memberId } } }', token)
    assert own["program"]["linkedAccounts"] == [
        {"memberRef": "carol-fa", "memberId": members["carol"]},
        {"memberRef": "frank", "memberId": members["frank"]},
    ]
    foreign = (await kit.graphql('{ program(id: "wallet-pay") { id linkedAccounts { memberRef } } }', token)).json()
    assert foreign["data"] == {"program": {"id": "wallet-pay", "linkedAccounts": None}}
    assert errors_at(foreign) == {("program", "linkedAccounts"): "FORBIDDEN"}


async def test_listing_every_program_shows_a_partner_only_its_own_accounts(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    token = await kit.partner_token("wallet-pay")
    body = (await kit.graphql("{ programs { id linkedAccounts { memberRef } } }", token)).json()
    by_id = {program["id"]: program["linkedAccounts"] for program in body["data"]["programs"]}
    assert by_id.pop("wallet-pay") == [{"memberRef": "alice"}, {"memberRef": "bob"}, {"memberRef": "carol"}]
    assert set(by_id.values()) == {None}
    assert sorted(errors_at(body).values()) == ["FORBIDDEN"] * 6  # five partners and the coalition point


async def test_aliases_and_fragments_do_not_open_another_tenant(kit: ExchangeKit, members: dict[str, str]) -> None:
    token = await kit.partner_token("formosa-air")
    query = """
      { mine: program(id: "formosa-air") { ...Accounts }
        theirs: program(id: "wallet-pay") { ... on Program { linkedAccounts { memberRef } } }
        also: program(id: "wallet-pay") { ...Accounts } }
      fragment Accounts on Program { linkedAccounts { memberRef } }
    """
    body = (await kit.graphql(query, token)).json()
    assert [a["memberRef"] for a in body["data"]["mine"]["linkedAccounts"]] == ["carol-fa", "frank"]
    assert body["data"]["theirs"]["linkedAccounts"] is None and body["data"]["also"]["linkedAccounts"] is None
    assert errors_at(body) == {("theirs", "linkedAccounts"): "FORBIDDEN", ("also", "linkedAccounts"): "FORBIDDEN"}


async def test_a_partner_looks_up_only_members_linked_to_it_and_cannot_probe_ids(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    token = await kit.partner_token("formosa-air")
    query = "query($id: ID!) { member(id: $id) { id linkedAccounts { memberRef program { id } } } }"
    carol = await kit.data(query, token, id=members["carol"])
    assert carol["member"]["linkedAccounts"] == [{"memberRef": "carol-fa", "program": {"id": "formosa-air"}}], (
        "carol's wallet-pay account is wallet-pay's business"
    )
    foreign = (await kit.graphql(query, token, id=members["alice"])).json()
    missing = (await kit.graphql(query, token, id="mbr_does_not_exist")).json()
    assert foreign["data"] == missing["data"] == {"member": None}
    assert foreign["errors"][0]["message"] == missing["errors"][0]["message"]
    assert errors_at(foreign) == errors_at(missing) == {("member",): "FORBIDDEN"}


async def test_a_partner_cannot_read_or_change_another_partners_assertion_keys(kit: ExchangeKit) -> None:
    await kit.assertion_key("wallet-pay")
    token = await kit.partner_token("formosa-air")
    read = (await kit.graphql('{ program(id: "wallet-pay") { name assertionKeys { kid } } }', token)).json()
    assert read["data"]["program"] == {"name": "Wallet Pay Points", "assertionKeys": None}
    assert errors_at(read) == {("program", "assertionKeys"): "FORBIDDEN"}

    key = json.dumps(ECKey.generate_key("P-256", parameters={"kid": "planted"}).as_dict(private=False))
    planted = (
        await kit.graphql(
            'mutation($key: String!) { registerAssertionKey(programId: "wallet-pay", publicKey: $key) { kid } }',
            token,
            key=key,
        )
    ).json()
    assert errors_at(planted) == {("registerAssertionKey",): "FORBIDDEN"}
    removed = (
        await kit.graphql(
            'mutation($kid: String!) { removeAssertionKey(programId: "wallet-pay", kid: $kid) { kid } }',
            token,
            kid=kit.partner_keys["wallet-pay"].kid,
        )
    ).json()
    assert errors_at(removed) == {("removeAssertionKey",): "FORBIDDEN"}
    owner = await kit.partner_token("wallet-pay")
    kids = (await kit.data('{ program(id: "wallet-pay") { assertionKeys { kid } } }', owner))["program"][
        "assertionKeys"
    ]
    assert kids == [{"kid": kit.partner_keys["wallet-pay"].kid}]


async def test_a_member_sees_only_themself_by_every_path(kit: ExchangeKit, members: dict[str, str]) -> None:
    token = members["alice_token"]
    me = await kit.data("{ me { id linkedAccounts { memberRef memberId } } viewer { memberId } }", token)
    assert me["me"] == {
        "id": members["alice"],
        # Her own account at the coalition point (her id is her memberRef there), and wallet-pay's.
        "linkedAccounts": [
            {"memberRef": members["alice"], "memberId": members["alice"]},
            {"memberRef": "alice", "memberId": members["alice"]},
        ],
    }
    assert me["viewer"] == {"memberId": members["alice"]}

    by_id = (await kit.graphql("query($id: ID!) { member(id: $id) { id } }", token, id=members["bob"])).json()
    assert errors_at(by_id) == {("member",): "FORBIDDEN"}
    nested = (
        await kit.graphql("{ me { linkedAccounts { program { id linkedAccounts { memberRef } } } } }", token)
    ).json()
    assert [account["program"] for account in nested["data"]["me"]["linkedAccounts"]] == [
        {"id": "coalition", "linkedAccounts": None},
        {"id": "wallet-pay", "linkedAccounts": None},
    ]
    assert errors_at(nested) == {
        ("me", "linkedAccounts", 0, "program", "linkedAccounts"): "FORBIDDEN",
        ("me", "linkedAccounts", 1, "program", "linkedAccounts"): "FORBIDDEN",
    }
    catalog = (
        await kit.graphql('{ program(id: "wallet-pay") { linkedAccounts { memberRef } } clients { clientId } }', token)
    ).json()
    assert set(errors_at(catalog).values()) == {"FORBIDDEN"} and len(catalog["errors"]) == 2


async def test_a_partner_token_is_no_member_token(kit: ExchangeKit, members: dict[str, str]) -> None:
    body = (await kit.graphql("{ me { id } }", await kit.partner_token("wallet-pay"))).json()
    assert body["data"] == {"me": None} and errors_at(body) == {("me",): "FORBIDDEN"}


async def test_a_missing_scope_is_forbidden_on_that_field_alone(kit: ExchangeKit) -> None:
    read_only = await kit.partner_token("formosa-air", scope="partner:read")
    key = json.dumps(ECKey.generate_key("P-256").as_dict(private=False))
    write = (
        await kit.graphql(
            'mutation($key: String!) { registerAssertionKey(programId: "formosa-air", publicKey: $key) { kid } }',
            read_only,
            key=key,
        )
    ).json()
    assert errors_at(write) == {("registerAssertionKey",): "FORBIDDEN"}
    assert "partner:write" in write["errors"][0]["message"]

    settlement = await kit.staff_token(Role.SETTLEMENT)
    body = (await kit.graphql("{ viewer { role } programs { id } clients { clientId } }", settlement)).json()
    assert body["data"]["viewer"] == {"role": "SETTLEMENT"} and len(body["data"]["programs"]) == 7
    assert body["data"]["clients"] is None and errors_at(body) == {("clients",): "FORBIDDEN"}


async def test_admins_manage_clients_and_any_programs_keys_but_read_no_members(
    kit: ExchangeKit, members: dict[str, str]
) -> None:
    partner = await kit.partner("fresh-mart")
    admin = await kit.staff_token(Role.ADMIN)
    listed = await kit.data("{ clients { clientId role programId scopes memberScopes } }", admin)
    assert {
        "clientId": partner.client.client_id,
        "role": "PARTNER",
        "programId": "fresh-mart",
        "scopes": ["partner:read", "partner:write"],
        "memberScopes": ["member:coalition", "member:read", "member:write"],
    } in listed["clients"]
    key = json.dumps(ECKey.generate_key("P-256", parameters={"kid": "set-by-admin"}).as_dict(private=False))
    registered = await kit.data(
        'mutation($key: String!) { registerAssertionKey(programId: "fresh-mart", publicKey: $key) { kid } }',
        admin,
        key=key,
    )
    assert registered == {"registerAssertionKey": {"kid": "set-by-admin"}}
    keys = await kit.data('{ program(id: "fresh-mart") { assertionKeys { kid } } }', admin)
    assert keys["program"]["assertionKeys"] == [{"kid": "set-by-admin"}]
    body = (await kit.graphql("query($id: ID!) { member(id: $id) { id } }", admin, id=members["alice"])).json()
    assert errors_at(body) == {("member",): "FORBIDDEN"}


async def test_bad_key_input_is_a_typed_error(kit: ExchangeKit) -> None:
    token = await kit.partner_token("formosa-air")
    body = (
        await kit.graphql(
            'mutation { registerAssertionKey(programId: "formosa-air", publicKey: "nonsense") { kid } }', token
        )
    ).json()
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "publicKey"}


async def test_the_schema_and_the_catalog_stay_open_without_a_token(kit: ExchangeKit) -> None:
    introspection = await kit.data('{ __typename __type(name: "Member") { fields { name } } }')
    assert {field["name"] for field in introspection["__type"]["fields"]} == {
        "id",
        "createdAt",
        "linkedAccounts",
        "accounts",
        "expiringPoints",
        "coalitionLevel",
    }
    catalog = await kit.data(
        "{ programs { id name pointValue tiers { name level } } coalition { settlementCurrency } }"
    )
    assert len(catalog["programs"]) == 7  # six partners' programs and the coalition point


async def test_a_refused_partner_is_told_whether_a_new_token_or_the_operator_s_grant_gives_it_the_scope(
    kit: ExchangeKit,
) -> None:
    clear = 'mutation { clearConversionRate(fromProgram: "wallet-pay", toProgram: "formosa-air") { id } }'
    full = await kit.new_client(Role.PARTNER, "formosa-air")
    narrowed = (await kit.graphql(clear, await kit.client_token(full, "partner:read"))).json()
    assert narrowed["errors"][0]["message"].endswith(
        "; request a token with scope partner:write (`scope` at /oauth/token; this one holds partner:read): "
        f"client {full.client.client_id} may hold partner:read partner:write"
    )
    reader = await kit.new_client(Role.PARTNER, "formosa-air", scopes=frozenset({Scope.PARTNER_READ}))
    refused = (await kit.graphql(clear, await kit.client_token(reader))).json()
    assert refused["errors"][0]["extensions"] == {"code": "FORBIDDEN"}
    assert refused["errors"][0]["message"].endswith(
        f"; ask the exchange operator to grant scope partner:write to client {reader.client.client_id}: "
        f"client {reader.client.client_id} may hold partner:read"
    )
