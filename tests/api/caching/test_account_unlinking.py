"""Unlinking a member's account over HTTP with real tokens, against sandbox partners: the link
goes at once (the federated view's cache with it), the records stay, a repeat says it was done
already, and the rules that keep an account linked refuse with the rule's name, changing nothing.

The gateway keeps partners' answers for five minutes, so that only the member's activity marker
can refresh them. Each test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import aiosqlite
import pytest

from exchange.sandbox.faults import FaultKind
from exchange.services.container import build_services
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet

ACCOUNTS = "{ me { accounts { program { id } balance } linkedAccounts { memberRef } } }"
LINK = """mutation($program: ID!, $ref: String!, $verification: String!) {
  linkAccount(programId: $program, memberRef: $ref, verification: $verification) { memberRef } }"""
UNLINK = """mutation($program: ID!, $ref: String!) { unlinkAccount(programId: $program, memberRef: $ref) {
  program { id } memberRef linkedAt unlinkedAt alreadyUnlinked } }"""
QUOTE = """mutation {
  createQuote(input: {fromProgram: "harbor-bank", toProgram: "formosa-air", points: 10000}) { id } }"""
EXECUTE = """mutation($quote: ID!) { executeConversion(quoteId: $quote, idempotencyKey: "k1") { id status } }"""
CONVERSIONS = "{ conversions(first: 10) { items { id toProgram { id } status } } }"


@pytest.fixture
async def bob(kit: ExchangeKit) -> str:
    """bob, whom harbor-bank asserted, with carol's account at formosa-air linked (PIN 3333); his token."""
    token = await kit.member_token("harbor-bank", "bob")
    await kit.data(LINK, token, program="formosa-air", ref="carol", verification="3333")
    return token


async def balances(kit: ExchangeKit, token: str) -> dict[str, int]:
    return {row["program"]["id"]: row["balance"] for row in (await kit.data(ACCOUNTS, token))["me"]["accounts"]}


def refusal(body: dict[str, Any]) -> dict[str, Any]:
    [error] = body["errors"]
    return dict(error["extensions"])


async def test_an_unlinked_account_leaves_the_view_at_once_and_linking_it_again_shows_the_partners_balance(
    kit: ExchangeKit, bob: str, fleet: SandboxFleet
) -> None:
    assert await balances(kit, bob) == {"coalition": 0, "formosa-air": 3_000, "harbor-bank": 25_000}
    unlinked = (await kit.data(UNLINK, bob, program="formosa-air", ref="carol"))["unlinkAccount"]
    assert unlinked["program"] == {"id": "formosa-air"} and unlinked["memberRef"] == "carol"
    assert unlinked["alreadyUnlinked"] is False
    assert await balances(kit, bob) == {"coalition": 0, "harbor-bank": 25_000}
    # Meanwhile carol earned miles at Formosa Air: the view cached 3,000 under the same member and program.
    async with aiosqlite.connect(fleet["formosa-air"].server.data_file) as db:
        await db.execute("UPDATE member SET balance = 4321 WHERE member_ref = 'carol'")
        await db.commit()
    await kit.data(LINK, bob, program="formosa-air", ref="carol", verification="3333")
    assert (await balances(kit, bob))["formosa-air"] == 4_321


async def test_a_token_the_unlinked_accounts_partner_asserted_ends_with_the_link(kit: ExchangeKit, bob: str) -> None:
    """formosa-air's partner asserted bob on carol's account: once bob unlinks it (under
    harbor-bank's token), formosa-air's token no longer reads his view, nor anything else."""
    formosa_air = await kit.member_token("formosa-air", "carol")
    assert set(await balances(kit, formosa_air)) == {"coalition", "formosa-air", "harbor-bank"}
    await kit.data(UNLINK, bob, program="formosa-air", ref="carol")
    response = await kit.graphql(ACCOUNTS, formosa_air)
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"].startswith(
        "the member has unlinked their account at formosa-air, on whose partner's word this token was issued"
    )
    assert await balances(kit, bob) == {"coalition": 0, "harbor-bank": 25_000}  # harbor-bank's stands


async def test_unlinking_again_answers_with_the_first_unlink(kit: ExchangeKit, bob: str) -> None:
    first = (await kit.data(UNLINK, bob, program="formosa-air", ref="carol"))["unlinkAccount"]
    again = (await kit.data(UNLINK, bob, program="formosa-air", ref="carol"))["unlinkAccount"]
    assert again == {**first, "alreadyUnlinked": True}


async def test_a_retried_unlink_leaves_another_account_linked_since_alone(
    kit: ExchangeKit, bob: str, fleet: SandboxFleet
) -> None:
    await kit.data(UNLINK, bob, program="formosa-air", ref="carol")
    await kit.data(LINK, bob, program="formosa-air", ref="dave", verification="4444")
    assert (await kit.data(UNLINK, bob, program="formosa-air", ref="carol"))["unlinkAccount"]["alreadyUnlinked"]
    assert (await balances(kit, bob))["formosa-air"] == 0  # dave's, still linked


async def test_an_account_that_is_not_the_members_is_not_found_alike(kit: ExchangeKit, bob: str) -> None:
    """carol's account linked to someone else, and an account no one has, are refused in the same
    words: nobody learns by trying whose accounts are linked."""
    alice = await kit.member_token("formosa-air", "alice")
    theirs = await kit.graphql(UNLINK, alice, program="formosa-air", ref="carol")
    nobodys = await kit.graphql(UNLINK, alice, program="formosa-air", ref="zed")
    assert refusal(theirs.json()) == refusal(nobodys.json()) == {"code": "NOT_FOUND", "field": "memberRef"}
    assert "formosa-air" in (await balances(kit, bob))


async def test_a_partners_token_cannot_unlink(kit: ExchangeKit, bob: str) -> None:
    partner = await kit.partner_token("formosa-air")
    response = await kit.graphql(UNLINK, partner, program="formosa-air", ref="carol")
    assert refusal(response.json())["code"] == "FORBIDDEN"
    assert "formosa-air" in (await balances(kit, bob))


@pytest.mark.parametrize(
    ("program", "ref", "rule"),
    [("harbor-bank", "bob", "SIGNED_IN_THROUGH"), ("coalition", None, "COALITION_ACCOUNT")],
)
async def test_the_account_signed_in_through_and_the_coalition_account_stay(
    kit: ExchangeKit, bob: str, program: str, ref: str | None, rule: str
) -> None:
    member_id = (await kit.data("{ me { id } }", bob))["me"]["id"]
    response = await kit.graphql(UNLINK, bob, program=program, ref=ref or member_id)
    assert refusal(response.json()) == {"code": "UNLINK_REFUSED", "field": "programId", "rule": rule}
    assert program in (await balances(kit, bob))


async def test_an_account_with_a_conversion_in_progress_stays_and_its_history_outlives_the_link(
    kit: ExchangeKit, bob: str, fleet: SandboxFleet
) -> None:
    """Formosa Air answers the credit 500: the conversion waits at the credit, and carol's account
    stays linked until it is done; once it is, the account unlinks and the conversion stays."""
    quote = (await kit.data(QUOTE, bob))["createQuote"]["id"]
    await fleet["formosa-air"].admin.set_faults(script=[FaultKind.ERROR])
    conversion = (await kit.data(EXECUTE, bob, quote=quote))["executeConversion"]
    assert conversion["status"] == "PENDING"
    response = await kit.graphql(UNLINK, bob, program="formosa-air", ref="carol")
    assert refusal(response.json()) == {
        "code": "UNLINK_REFUSED",
        "field": "programId",
        "rule": "SAGA_IN_PROGRESS",
        "saga": "conversion",
        "sagaId": conversion["id"],
    }
    assert "formosa-air" in (await balances(kit, bob))
    services = build_services(kit.settings, partner_base_urls=fleet.base_urls)
    try:
        await services.conversions.recover()
    finally:
        await services.aclose()
    done = {"id": conversion["id"], "toProgram": {"id": "formosa-air"}, "status": "COMPLETED"}
    assert (await kit.data(CONVERSIONS, bob))["conversions"]["items"] == [done]
    await kit.data(UNLINK, bob, program="formosa-air", ref="carol")
    assert (await kit.data(CONVERSIONS, bob))["conversions"]["items"] == [done]


async def test_a_quote_priced_on_the_tier_of_an_account_unlinked_since_is_not_executed(kit: ExchangeKit) -> None:
    """bob holds Harbor Bank's Platinum Card (level 2); alice's Formosa Air account, at its top
    tier, makes his coalition level 4 once he links it. His quote into coalition points priced on
    that level is refused when he has unlinked it, nothing converted; a new quote prices level 2,
    and converts."""
    bob = await kit.member_token("harbor-bank", "bob")
    await kit.data(LINK, bob, program="formosa-air", ref="alice", verification="1111")
    priced = """mutation { createQuote(input: {fromProgram: "harbor-bank", toProgram: "coalition", points: 10000})
      { id breakdown { memberLevel tierBonusPercent } } }"""
    quote = (await kit.data(priced, bob))["createQuote"]
    assert quote["breakdown"] == {"memberLevel": 4, "tierBonusPercent": "5"}
    await kit.data(UNLINK, bob, program="formosa-air", ref="alice")
    refused = (await kit.graphql(EXECUTE, bob, quote=quote["id"])).json()
    assert refusal(refused) == {"code": "QUOTE_EXPIRED", "field": "quoteId", "reason": "TIERS_CHANGED"}
    assert "coalition level 4" in refused["errors"][0]["message"]
    assert (await kit.data(CONVERSIONS, bob))["conversions"]["items"] == []
    again = (await kit.data(priced, bob))["createQuote"]
    assert again["breakdown"] == {"memberLevel": 2, "tierBonusPercent": "2"}
    assert (await kit.data(EXECUTE, bob, quote=again["id"]))["executeConversion"]["status"] == "COMPLETED"
