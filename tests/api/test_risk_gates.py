"""Membership validation at linking and the risk gates on conversions and redemptions, through a
real gateway with sandbox partners on loopback: each refusal with its code and nothing changed,
velocity counted over conversions and redemptions together, a hold approved and one rejected
by staff, and every decision in the log.

The gateway loads the sample programs with ``[risk]`` sections added (the sample files declare
none): happy-card refuses name mismatches, holds above 5,000 points (for two hours' review at
most) and allows three
conversions an hour per account; wallet-pay allows 3,000 points an hour per member;
fresh-mart has a day's cooling period after linking.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select
from standardwebhooks import Webhook

from exchange.auth.scopes import Role
from exchange.conversions.models import Conversion
from exchange.ledger.models import LedgerTransaction
from exchange.pricing.models import LimitUsage
from exchange.services.container import build_services
from exchange.services.holds import HoldExpiry
from exchange.serving import RunningServer, free_port
from exchange.settings import Settings
from exchange.testing.clock import FrozenClock
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet
from exchange.webhooks.models import WebhookEvent
from tests.api.conftest import Receiver
from tests.conftest import SAMPLE_PARTNERS

PARTNERS = ("wallet-pay", "happy-card", "fresh-mart")

RISK = {
    "happy-card": """
[risk]
refuse_name_mismatch = true
hold_above_points = 5000
hold_expires_after_seconds = 7200

[[risk.velocity]]
per = "account"
window_seconds = 3600
max_count = 3
""",
    "wallet-pay": """
[risk]

[[risk.velocity]]
per = "member"
window_seconds = 3600
max_points = 3000
""",
    "fresh-mart": """
[risk]
cooling_period_seconds = 86400
""",
}

LINK = """
mutation($program: ID!, $ref: String!, $verification: String!, $name: String) {
  linkAccount(programId: $program, memberRef: $ref, verification: $verification, name: $name) { memberRef }
}
"""
ME = "{ me { id accounts { program { id } balance } } }"
QUOTE = """
mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) { id }
}
"""
EXECUTE = """
mutation($quote: ID!, $key: String!) {
  executeConversion(quoteId: $quote, idempotencyKey: $key) { id status failure { code } }
}
"""
CONVERSIONS = """
{ conversions(first: 50) { items { status pointsIn pointsOut fromProgram { id } toProgram { id } } } }
"""
HELD = "{ heldConversions { id status pointsIn } }"
APPROVE = "mutation($id: ID!) { approveConversion(id: $id) { id status failure { code } } }"
REJECT = 'mutation($id: ID!) { rejectConversion(id: $id, reason: "unusual amount") { id status failure { code } } }'
DECISIONS = """
query($member: ID, $conversion: ID, $redemption: ID) {
  riskDecisions(memberId: $member, conversionId: $conversion, redemptionId: $redemption) {
    subject decision rule reason programId memberRef conversionId redemptionId points decidedBy
  }
}
"""


@pytest.fixture
async def partner_base_urls(sandboxes: SandboxFleet) -> dict[str, str]:
    await sandboxes.start(*PARTNERS)
    return sandboxes.base_urls


@pytest.fixture
def gateway_settings(
    request: pytest.FixtureRequest,
    pg_database_url: str,
    tmp_path: Path,
    sandboxes: SandboxFleet,
    partner_base_urls: dict[str, str],
) -> Settings:
    """The sample programs with their ``[risk]``, declared where the sandboxes run (so that the
    ``exchange`` command, which reads partners' addresses from the database, reaches them too);
    a test's indirect parameter adds settings."""
    partners = tmp_path / "partners"
    shutil.copytree(SAMPLE_PARTNERS, partners)
    for program, risk in RISK.items():
        path = partners / f"{program}.toml"
        declared = sandboxes[program].program.connector.base_url
        path.write_text(path.read_text().replace(declared, partner_base_urls[program]) + risk)
    extra = getattr(request, "param", {})
    return Settings(database_url=pg_database_url, partners_dir=partners, port=free_port(), **extra)


@pytest.fixture
async def staff(kit: ExchangeKit) -> str:
    return await kit.staff_token(Role.SETTLEMENT)


@pytest.fixture
async def alice(kit: ExchangeKit) -> dict[str, str]:
    """Alice's tokens from wallet-pay (which vouched for her) and from happy-card, whose account
    she linked with her name as happy-card has it (in another order and case)."""
    wallet = await kit.member_token("wallet-pay", "alice")
    await kit.data(LINK, wallet, program="happy-card", ref="alice", verification="1111", name="CHEN alice")
    return {"wallet-pay": wallet, "happy-card": await kit.member_token("happy-card", "alice")}


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert len(body.get("errors") or ()) == 1, body
    return dict(body["errors"][0])


async def convert(kit: ExchangeKit, token: str, source: str, target: str, points: int, key: str) -> Any:
    quote = (await kit.data(QUOTE, token, **{"from": source, "to": target, "points": points}))["createQuote"]
    return await kit.graphql(EXECUTE, token, quote=quote["id"], key=key)


async def balances(sandboxes: SandboxFleet, member_ref: str) -> dict[str, int]:
    return {program: await sandboxes[program].admin.balance(member_ref) for program in PARTNERS}


async def decisions(kit: ExchangeKit, staff: str, **about: str) -> list[dict[str, Any]]:
    return list((await kit.data(DECISIONS, staff, **about))["riskDecisions"])


async def test_the_decision_log_about_an_id_that_does_not_exist_is_not_found(kit: ExchangeKit, staff: str) -> None:
    """Not an empty log, which reads as "nothing was decided about it"."""
    for variable, argument in (("conversion", "conversionId"), ("redemption", "redemptionId"), ("member", "memberId")):
        error = error_of(await kit.graphql(DECISIONS, staff, **{variable: "nope"}))
        assert (error["extensions"]["code"], error["extensions"]["field"]) == ("NOT_FOUND", argument)
        assert error["message"] == f"no {variable} has id 'nope'"
        refused = await asyncio.to_thread(exchange_command, kit.settings, "decisions", f"--{variable}", "nope")
        assert (refused.returncode, refused.stdout, refused.stderr) == (2, "", f"Error: no {variable} has id 'nope'\n")


async def test_an_ineligible_account_is_refused_with_its_own_code(
    kit: ExchangeKit, sandboxes: SandboxFleet, staff: str
) -> None:
    token = await kit.member_token("wallet-pay", "bob")
    member = (await kit.data(ME, token))["me"]["id"]
    codes = {
        "inactive": "ACCOUNT_INACTIVE",
        "suspended": "ACCOUNT_SUSPENDED",
        "not_activated": "ACCOUNT_NOT_ACTIVATED",
        "tier_not_allowed": "TIER_NOT_ALLOWED",
    }
    for eligibility in codes:
        await sandboxes["fresh-mart"].admin.add_member(
            f"bob-{eligibility}", balance=1000, verification="2222", name="王小明", eligibility=eligibility
        )
    for eligibility, code in codes.items():
        refused = error_of(
            await kit.graphql(LINK, token, program="fresh-mart", ref=f"bob-{eligibility}", verification="2222")
        )
        assert refused["extensions"] == {
            "code": code,
            "field": "memberRef",
            "program": "fresh-mart",
            "eligibility": eligibility,
        }
    accounts = (await kit.data(ME, token))["me"]["accounts"]
    # Nothing linked: the account it signed in with, and the coalition point's every member has.
    assert sorted(account["program"]["id"] for account in accounts) == ["coalition", "wallet-pay"]
    logged = await decisions(kit, staff, member=member)
    assert sorted((d["subject"], d["decision"], d["rule"]) for d in logged) == sorted(
        ("LINK", "REFUSE", code) for code in codes.values()
    )


async def test_linking_checks_the_name_against_the_partners_record(kit: ExchangeKit, staff: str) -> None:
    token = await kit.member_token("wallet-pay", "bob")
    wrong = error_of(
        await kit.graphql(LINK, token, program="fresh-mart", ref="bob", verification="2222", name="Chen Mei")
    )
    assert wrong["extensions"] == {"code": "NAME_MISMATCH", "field": "name", "program": "fresh-mart"}
    # happy-card refuses name mismatches: it needs the name
    missing = error_of(await kit.graphql(LINK, token, program="happy-card", ref="bob", verification="2222"))
    assert missing["extensions"] == {"code": "BAD_USER_INPUT", "field": "name"}
    # a space, or an ideographic space, between the characters: the same name as 王小明
    await kit.data(LINK, token, program="fresh-mart", ref="bob", verification="2222", name="王 小明")
    await kit.data(LINK, token, program="happy-card", ref="bob", verification="2222", name="王　小明")
    member = (await kit.data(ME, token))["me"]["id"]
    logged = [(d["decision"], d["rule"], d["programId"]) for d in await decisions(kit, staff, member=member)]
    assert logged == [
        ("ALLOW", None, "happy-card"),
        ("ALLOW", None, "fresh-mart"),
        ("REFUSE", "NAME_MISMATCH", "fresh-mart"),
    ]


async def test_a_name_the_partner_reports_that_no_column_can_hold_is_its_bad_answer_not_a_500(
    kit: ExchangeKit, sandboxes: SandboxFleet
) -> None:
    """A partner's own records are outside text too: a NUL in the name it reports (which
    PostgreSQL cannot store) makes its answer malformed, and nothing is linked."""
    await sandboxes["fresh-mart"].admin.add_member("nul-name", balance=10, verification="2222", name="Bob\x00Chen")
    token = await kit.member_token("wallet-pay", "bob")
    refused = error_of(await kit.graphql(LINK, token, program="fresh-mart", ref="nul-name", verification="2222"))
    assert refused["extensions"]["code"] == "PARTNER_UNAVAILABLE", refused
    accounts = (await kit.data(ME, token))["me"]["accounts"]
    assert "fresh-mart" not in {account["program"]["id"] for account in accounts}


async def test_each_gate_refuses_with_its_code_and_changes_nothing(
    kit: ExchangeKit, sandboxes: SandboxFleet, alice: dict[str, str], staff: str
) -> None:
    before = await balances(sandboxes, "alice")
    # cooling: alice's fresh-mart account was just linked
    await kit.data(LINK, alice["wallet-pay"], program="fresh-mart", ref="alice", verification="1111")
    fresh = await kit.member_token("fresh-mart", "alice")
    cooling = error_of(await convert(kit, fresh, "fresh-mart", "wallet-pay", 1000, "cool"))
    assert cooling["extensions"]["code"] == "COOLING_PERIOD"
    assert cooling["extensions"]["field"] == "quoteId"
    # velocity per member, in points: 2,000 then 2,000 more of 3,000 an hour
    first = (await convert(kit, alice["wallet-pay"], "wallet-pay", "happy-card", 2000, "w1")).json()["data"]
    assert first["executeConversion"]["status"] == "COMPLETED"
    points = error_of(await convert(kit, alice["wallet-pay"], "wallet-pay", "happy-card", 2000, "w2"))
    assert points["extensions"] == {
        "code": "VELOCITY_EXCEEDED",
        "field": "quoteId",
        "per": "member",
        "windowSeconds": 3600,
    }
    # velocity per account, in conversions: three from happy-card, not a fourth
    for n in range(3):
        done = (await convert(kit, alice["happy-card"], "happy-card", "wallet-pay", 400, f"h{n}")).json()["data"]
        assert done["executeConversion"]["status"] == "COMPLETED"
    count = error_of(await convert(kit, alice["happy-card"], "happy-card", "wallet-pay", 400, "h3"))
    assert (count["extensions"]["code"], count["extensions"]["per"]) == ("VELOCITY_EXCEEDED", "account")
    # names: alice's happy-card and fresh-mart accounts are hers, carol's is someone else's
    carol = await kit.member_token("wallet-pay", "carol")
    await kit.data(LINK, carol, program="happy-card", ref="carol", verification="3333", name="Carol Lin")
    await kit.data(LINK, carol, program="fresh-mart", ref="dave", verification="4444")
    carol_at_happy_card = await kit.member_token("happy-card", "carol")
    names = error_of(await convert(kit, carol_at_happy_card, "happy-card", "fresh-mart", 400, "n1"))
    assert names["extensions"] == {"code": "NAME_MISMATCH", "field": "quoteId"}

    # no refused conversion was recorded, and only the allowed ones moved points
    conversions = (await kit.data(CONVERSIONS, alice["wallet-pay"]))["conversions"]["items"]
    assert [item["status"] for item in conversions] == ["COMPLETED"] * 4
    expected = dict(before)
    for item in conversions:
        expected[item["fromProgram"]["id"]] -= item["pointsIn"]
        expected[item["toProgram"]["id"]] += item["pointsOut"]
    assert await balances(sandboxes, "alice") == expected
    assert await sandboxes["happy-card"].admin.balance("carol") == 3000
    refused = [
        (d["rule"], d["programId"])
        for d in await decisions(kit, staff)
        if d["decision"] == "REFUSE" and d["subject"] == "CONVERSION"
    ]
    assert sorted(refused) == [
        ("COOLING_PERIOD", "fresh-mart"),
        ("NAME_MISMATCH", "happy-card"),
        ("VELOCITY_ACCOUNT", "happy-card"),
        ("VELOCITY_MEMBER", "wallet-pay"),
    ]


async def test_velocity_holds_under_concurrent_conversions(
    kit: ExchangeKit, sandboxes: SandboxFleet, alice: dict[str, str]
) -> None:
    token = alice["happy-card"]
    quotes = [
        (await kit.data(QUOTE, token, **{"from": "happy-card", "to": "wallet-pay", "points": 400}))["createQuote"]["id"]
        for _ in range(6)
    ]
    answers = await asyncio.gather(
        *(kit.graphql(EXECUTE, token, quote=quote, key=f"race-{n}") for n, quote in enumerate(quotes))
    )
    bodies = [answer.json() for answer in answers]
    passed = [body for body in bodies if not body.get("errors")]
    refused = [body["errors"][0]["extensions"]["code"] for body in bodies if body.get("errors")]
    assert len(passed) == 3 and refused == ["VELOCITY_EXCEEDED"] * 3
    assert await sandboxes["happy-card"].admin.balance("alice") == 120_000 - 3 * 400


async def test_a_held_conversion_waits_for_staff_and_runs_when_approved(
    kit: ExchangeKit, sandboxes: SandboxFleet, alice: dict[str, str], staff: str
) -> None:
    before = await balances(sandboxes, "alice")
    held = (await convert(kit, alice["happy-card"], "happy-card", "wallet-pay", 6000, "big")).json()["data"]
    conversion = held["executeConversion"]
    assert conversion["status"] == "HELD"
    assert await balances(sandboxes, "alice") == before  # nothing moved while it waits
    assert (await kit.data(HELD, staff))["heldConversions"] == [
        {"id": conversion["id"], "status": "HELD", "pointsIn": 6000}
    ]
    member_try = error_of(await kit.graphql(APPROVE, alice["happy-card"], id=conversion["id"]))
    assert member_try["extensions"]["code"] == "FORBIDDEN"

    approved = (await kit.data(APPROVE, staff, id=conversion["id"]))["approveConversion"]
    assert approved == {"id": conversion["id"], "status": "COMPLETED", "failure": None}
    again = (await kit.data(APPROVE, staff, id=conversion["id"]))["approveConversion"]
    assert again == approved  # idempotent
    too_late = error_of(await kit.graphql(REJECT, staff, id=conversion["id"]))
    assert too_late["extensions"]["code"] == "NOT_HELD"
    after = await balances(sandboxes, "alice")
    assert after["happy-card"] == before["happy-card"] - 6000 and after["wallet-pay"] > before["wallet-pay"]
    assert (await kit.data(HELD, staff))["heldConversions"] == []
    logged = [(d["decision"], d["rule"]) for d in await decisions(kit, staff, conversion=conversion["id"])]
    assert logged == [("APPROVE", "STAFF_REVIEW"), ("HOLD", "HOLD_ABOVE")]


async def test_a_rejected_hold_ends_failed_with_nothing_moved(
    kit: ExchangeKit, sandboxes: SandboxFleet, alice: dict[str, str], staff: str
) -> None:
    before = await balances(sandboxes, "alice")
    held = (await convert(kit, alice["happy-card"], "happy-card", "wallet-pay", 6000, "big")).json()["data"]
    conversion_id = held["executeConversion"]["id"]
    rejected = (await kit.data(REJECT, staff, id=conversion_id))["rejectConversion"]
    assert rejected == {"id": conversion_id, "status": "FAILED", "failure": {"code": "RISK_REJECTED"}}
    assert (await kit.data(REJECT, staff, id=conversion_id))["rejectConversion"] == rejected
    assert error_of(await kit.graphql(APPROVE, staff, id=conversion_id))["extensions"]["code"] == "NOT_HELD"
    assert await balances(sandboxes, "alice") == before
    assert await sandboxes["happy-card"].admin.operations() == []  # no partner was asked anything
    logged = await decisions(kit, staff, conversion=conversion_id)
    assert [(d["decision"], d["decidedBy"] is not None) for d in logged] == [("REJECT", True), ("HOLD", False)]
    assert logged[0]["reason"] == "unusual amount"
    async with kit.db.transaction() as session:  # subscribers hear of it as of any failed conversion
        events = (
            await session.exec(select(WebhookEvent.type).where(WebhookEvent.object == f"conversion:{conversion_id}"))
        ).all()
    assert events == ["conversion.failed"]


async def reserved(kit: ExchangeKit) -> int:
    async with kit.db.transaction() as session:
        return int((await session.exec(select(func.coalesce(func.sum(LimitUsage.used), 0)))).one())


CONVERSION = """
query($id: ID!) { conversion(id: $id) { status createdAt heldUntil failure { code message } } }
"""


async def test_a_hold_nobody_reviews_ends_failed_at_its_time_with_nothing_moved(
    kit: ExchangeKit,
    sandboxes: SandboxFleet,
    alice: dict[str, str],
    staff: str,
    partner_base_urls: dict[str, str],
) -> None:
    before = await balances(sandboxes, "alice")
    held = (await convert(kit, alice["happy-card"], "happy-card", "wallet-pay", 6000, "big")).json()["data"]
    conversion_id = held["executeConversion"]["id"]
    shown = (await kit.data(CONVERSION, alice["happy-card"], id=conversion_id))["conversion"]
    held_until = datetime.fromisoformat(shown["heldUntil"])
    assert held_until == datetime.fromisoformat(shown["createdAt"]) + timedelta(hours=2)  # as happy-card declares

    async def expire_at(moment: datetime) -> int:
        services = build_services(kit.settings, clock=FrozenClock(moment), partner_base_urls=partner_base_urls)
        try:
            return await services.risk.review.expire_due()
        finally:
            await services.aclose()

    assert await reserved(kit) > 0  # its caps (the member's day and month, the budget) while it waits
    assert await expire_at(held_until - timedelta(seconds=1)) == 0
    assert (await kit.data(HELD, staff))["heldConversions"] == [
        {"id": conversion_id, "status": "HELD", "pointsIn": 6000}
    ]
    assert await expire_at(held_until) == 1
    assert await expire_at(held_until) == 0  # once

    ended = (await kit.data(CONVERSION, alice["happy-card"], id=conversion_id))["conversion"]
    assert (ended["status"], ended["failure"]["code"], ended["heldUntil"]) == ("FAILED", "HOLD_EXPIRED", None)
    assert "not reviewed" in ended["failure"]["message"]
    assert error_of(await kit.graphql(APPROVE, staff, id=conversion_id))["extensions"]["code"] == "NOT_HELD"
    assert await balances(sandboxes, "alice") == before
    assert await sandboxes["happy-card"].admin.operations() == []
    logged = [(d["decision"], d["rule"], d["decidedBy"]) for d in await decisions(kit, staff, conversion=conversion_id)]
    assert logged == [("REJECT", "HOLD_EXPIRED", None), ("HOLD", "HOLD_ABOVE", None)]
    async with kit.db.transaction() as session:
        events = (
            await session.exec(select(WebhookEvent.type).where(WebhookEvent.object == f"conversion:{conversion_id}"))
        ).all()
    assert events == ["conversion.failed"]
    assert await reserved(kit) == 0  # the caps it had reserved are given back


def exchange_command(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("exchange")), "risk", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "EXCHANGE_DATABASE_URL": settings.database_url},
        check=False,
    )


async def test_staff_review_holds_from_the_command_line(
    kit: ExchangeKit, sandboxes: SandboxFleet, alice: dict[str, str], staff: str
) -> None:
    to_approve, to_reject = [
        (await convert(kit, alice["happy-card"], "happy-card", "wallet-pay", 6000, key)).json()["data"][
            "executeConversion"
        ]["id"]
        for key in ("cli-1", "cli-2")
    ]
    # A conversion's id given as a redemption's said only "no redemption has id …".
    mistaken = await asyncio.to_thread(exchange_command, kit.settings, "approve", "--redemption", to_approve)
    assert mistaken.returncode == 2
    assert f"no redemption has id '{to_approve}': it is a conversion's; review it as one (without --redemption" in (
        mistaken.stderr
    )
    approved = await asyncio.to_thread(exchange_command, kit.settings, "approve", to_approve, "--as", "ops-anna")
    assert approved.returncode == 0, approved.stderr
    assert f"{to_approve} COMPLETED" in approved.stdout
    rejected = await asyncio.to_thread(exchange_command, kit.settings, "reject", to_reject, "--reason", "too big")
    assert rejected.returncode == 0, rejected.stderr
    assert f"{to_reject} FAILED" in rejected.stdout
    assert await sandboxes["happy-card"].admin.balance("alice") == 120_000 - 6000
    assert (await kit.data(HELD, staff))["heldConversions"] == []
    logged = [(d["decision"], d["decidedBy"]) for d in await decisions(kit, staff) if d["subject"] == "CONVERSION"]
    assert logged[:2] == [("REJECT", f"cli:{getpass.getuser()}"), ("APPROVE", "ops-anna")]


COUPON = "fresh-mart-coupon-100"
REDEEM = """
mutation($reward: ID!, $pay: ID!, $key: String!) {
  redeemReward(rewardId: $reward, payWith: $pay, idempotencyKey: $key) { id status points }
}
"""
REDEMPTIONS = "{ redemptions { id status } }"
STOCK = "query($id: ID!) { reward(id: $id) { stock } }"


async def redeem(kit: ExchangeKit, token: str, pay_with: str, key: str, reward: str = COUPON) -> Any:
    return await kit.graphql(REDEEM, token, reward=reward, pay=pay_with, key=key)


async def stock(kit: ExchangeKit, reward: str = COUPON) -> int:
    return int((await kit.data(STOCK, id=reward))["reward"]["stock"])


async def test_conversions_and_redemptions_count_together_against_a_velocity_limit(
    kit: ExchangeKit, sandboxes: SandboxFleet, alice: dict[str, str], staff: str
) -> None:
    token = alice["happy-card"]  # happy-card allows three an hour per account
    assert (await convert(kit, token, "happy-card", "wallet-pay", 400, "c1")).json()["data"]["executeConversion"]
    redeemed = (await kit.data(REDEEM, token, reward=COUPON, pay="happy-card", key="r1"))["redeemReward"]
    assert redeemed["status"] == "COMPLETED"
    assert (await convert(kit, token, "happy-card", "wallet-pay", 400, "c2")).json()["data"]["executeConversion"]

    refused = error_of(await redeem(kit, token, "happy-card", "r2"))
    assert refused["extensions"] == {
        "code": "VELOCITY_EXCEEDED",
        "field": "payWith",
        "per": "account",
        "windowSeconds": 3600,
    }
    assert error_of(await redeem(kit, token, "happy-card", "r2"))["extensions"] == refused["extensions"]  # retried
    assert error_of(await convert(kit, token, "happy-card", "wallet-pay", 400, "c3"))["extensions"]["per"] == "account"

    assert await sandboxes["happy-card"].admin.balance("alice") == 120_000 - 2 * 400 - redeemed["points"]
    assert await stock(kit) == 200 - 1
    assert (await kit.data(REDEMPTIONS, token))["redemptions"] == [{"id": redeemed["id"], "status": "COMPLETED"}]
    member = (await kit.data(ME, token))["me"]["id"]
    logged = [
        (d["decision"], d["rule"], d["programId"], d["redemptionId"] == redeemed["id"], d["conversionId"])
        for d in await decisions(kit, staff, member=member)
        if d["subject"] == "REDEMPTION"
    ]
    assert logged == [
        ("REFUSE", "VELOCITY_ACCOUNT", "happy-card", False, None),
        ("REFUSE", "VELOCITY_ACCOUNT", "happy-card", False, None),
        ("ALLOW", None, "happy-card", True, None),
    ]


async def test_each_gate_refuses_a_redemption_with_its_code_and_changes_nothing(
    kit: ExchangeKit, sandboxes: SandboxFleet, alice: dict[str, str], staff: str
) -> None:
    before = await balances(sandboxes, "alice")
    # cooling: alice's fresh-mart account was just linked
    await kit.data(LINK, alice["wallet-pay"], program="fresh-mart", ref="alice", verification="1111")
    fresh = await kit.member_token("fresh-mart", "alice")
    cooling = error_of(await redeem(kit, fresh, "fresh-mart", "cool"))
    assert (cooling["extensions"]["code"], cooling["extensions"]["field"]) == ("COOLING_PERIOD", "payWith")
    # names: carol's happy-card account and the account at fresh-mart (the coupon's publisher)
    # carry different names
    carol = await kit.member_token("wallet-pay", "carol")
    await kit.data(LINK, carol, program="happy-card", ref="carol", verification="3333", name="Carol Lin")
    await kit.data(LINK, carol, program="fresh-mart", ref="dave", verification="4444")
    names = error_of(await redeem(kit, await kit.member_token("happy-card", "carol"), "happy-card", "n1"))
    assert names["extensions"] == {"code": "NAME_MISMATCH", "field": "payWith"}
    assert await balances(sandboxes, "alice") == before
    assert await sandboxes["happy-card"].admin.balance("carol") == 3000
    assert await stock(kit) == 200
    assert (await kit.data(REDEMPTIONS, alice["happy-card"]))["redemptions"] == []
    refused = [
        (d["decision"], d["rule"], d["programId"], d["points"] > 0)
        for d in await decisions(kit, staff)
        if d["subject"] == "REDEMPTION"
    ]
    assert sorted(refused) == [
        ("REFUSE", "COOLING_PERIOD", "fresh-mart", True),
        ("REFUSE", "NAME_MISMATCH", "happy-card", True),
    ]


HELD_REDEMPTIONS = "{ heldRedemptions { id status points } }"
APPROVE_REDEMPTION = "mutation($id: ID!) { approveRedemption(id: $id) { id status failureCode } }"
REJECT_REDEMPTION = """
mutation($id: ID!) { rejectRedemption(id: $id, reason: "unusual amount") { id status failureCode } }
"""
MY_REDEMPTIONS = "{ redemptions { id status failureCode heldUntil createdAt } }"


async def test_a_redemption_above_the_hold_waits_for_staff_approved_rejected_or_expired(
    kit: ExchangeKit, sandboxes: SandboxFleet, alice: dict[str, str], staff: str, partner_base_urls: dict[str, str]
) -> None:
    token, before = alice["happy-card"], await balances(sandboxes, "alice")
    # 1,300 TWD is 5,304 happy-card points with the fee: above happy-card's 5,000 for review
    hamper = (
        await kit.data(
            'mutation($input: PublishRewardInput!) { publishReward(programId: "fresh-mart", input: $input) { id } }',
            await kit.partner_token("fresh-mart"),
            input={"title": "Hamper", "price": "1300", "stock": 3},
        )
    )["publishReward"]["id"]
    to_approve, to_reject, to_expire = [
        (await kit.data(REDEEM, token, reward=hamper, pay="happy-card", key=key))["redeemReward"]
        for key in ("big-1", "big-2", "big-3")
    ]
    assert {(r["status"], r["points"]) for r in (to_approve, to_reject, to_expire)} == {("HELD", 5304)}
    assert await balances(sandboxes, "alice") == before  # nothing debited while held
    assert await stock(kit, hamper) == 0  # set aside
    assert (await kit.data(HELD_REDEMPTIONS, staff))["heldRedemptions"] == [
        {"id": r["id"], "status": "HELD", "points": 5304} for r in (to_approve, to_reject, to_expire)
    ]
    assert error_of(await kit.graphql(APPROVE_REDEMPTION, token, id=to_approve["id"]))["extensions"]["code"] == (
        "FORBIDDEN"
    )

    mistaken = error_of(await kit.graphql(APPROVE, staff, id=to_approve["id"]))
    assert mistaken["extensions"] == {"code": "NOT_FOUND", "field": "id"}
    assert "it is a redemption's; review it as one (with --redemption" in mistaken["message"]
    assert "approveRedemption or rejectRedemption in GraphQL" in mistaken["message"]
    approved = (await kit.data(APPROVE_REDEMPTION, staff, id=to_approve["id"]))["approveRedemption"]
    assert approved == {"id": to_approve["id"], "status": "COMPLETED", "failureCode": None}
    assert (await kit.data(APPROVE_REDEMPTION, staff, id=to_approve["id"]))["approveRedemption"] == approved
    assert error_of(await kit.graphql(REJECT_REDEMPTION, staff, id=to_approve["id"]))["extensions"]["code"] == (
        "NOT_HELD"
    )
    rejected = (await kit.data(REJECT_REDEMPTION, staff, id=to_reject["id"]))["rejectRedemption"]
    assert rejected == {"id": to_reject["id"], "status": "FAILED", "failureCode": "RISK_REJECTED"}

    mine = {r["id"]: r for r in (await kit.data(MY_REDEMPTIONS, token))["redemptions"]}
    held_until = datetime.fromisoformat(mine[to_expire["id"]]["heldUntil"])
    assert held_until == datetime.fromisoformat(mine[to_expire["id"]]["createdAt"]) + timedelta(hours=2)
    services = build_services(kit.settings, clock=FrozenClock(held_until), partner_base_urls=partner_base_urls)
    try:
        assert await services.risk.review.expire_due() == 1  # by the recovery pass's job
    finally:
        await services.aclose()
    expired = (await kit.data(MY_REDEMPTIONS, token))["redemptions"]
    assert {(r["id"], r["status"], r["failureCode"], r["heldUntil"]) for r in expired} == {
        (to_approve["id"], "COMPLETED", None, None),
        (to_reject["id"], "FAILED", "RISK_REJECTED", None),
        (to_expire["id"], "FAILED", "HOLD_EXPIRED", None),
    }
    assert error_of(await kit.graphql(APPROVE_REDEMPTION, staff, id=to_expire["id"]))["extensions"]["code"] == (
        "NOT_HELD"
    )
    assert (await kit.data(HELD_REDEMPTIONS, staff))["heldRedemptions"] == []
    after = await balances(sandboxes, "alice")
    assert after == {**before, "happy-card": before["happy-card"] - 5304}  # only the approved one
    assert await stock(kit, hamper) == 2  # the rejected and the expired ones' stock came back
    logged = {
        r["id"]: [
            (d["decision"], d["rule"], d["decidedBy"] is not None)
            for d in await decisions(kit, staff, redemption=r["id"])
        ]
        for r in (to_approve, to_reject, to_expire)
    }
    assert logged == {
        to_approve["id"]: [("APPROVE", "STAFF_REVIEW", True), ("HOLD", "HOLD_ABOVE", False)],
        to_reject["id"]: [("REJECT", "STAFF_REVIEW", True), ("HOLD", "HOLD_ABOVE", False)],
        to_expire["id"]: [("REJECT", "HOLD_EXPIRED", False), ("HOLD", "HOLD_ABOVE", False)],
    }


CANCEL = """
mutation($id: ID!, $expected: RedemptionStatus) {
  cancelRedemption(redemptionId: $id, expectedStatus: $expected) { id status failureCode cancelledBy }
}
"""
SUBSCRIBE = """mutation($input: CreateWebhookSubscriptionInput!) {
  createWebhookSubscription(input: $input) { secret subscription { id } } }"""


async def publish_hamper(kit: ExchangeKit, stock: int) -> str:
    """A FreshMart reward of 1,300 TWD: 5,304 happy-card points with the fee, above happy-card's
    5,000 for review."""
    publish = 'mutation($input: PublishRewardInput!) { publishReward(programId: "fresh-mart", input: $input) { id } }'
    input = {"title": "Hamper", "price": "1300", "stock": stock}
    return str((await kit.data(publish, await kit.partner_token("fresh-mart"), input=input))["publishReward"]["id"])


async def held_redemption(kit: ExchangeKit, token: str, reward: str, key: str) -> str:
    redeemed = (await kit.data(REDEEM, token, reward=reward, pay="happy-card", key=key))["redeemReward"]
    assert redeemed["status"] == "HELD"
    return str(redeemed["id"])


async def redemption_events(kit: ExchangeKit) -> list[tuple[str, str, dict[str, Any]]]:
    """Every redemption event in the outbox, in order: type, redemption id, data."""
    async with kit.db.transaction() as session:
        rows = (await session.exec(select(WebhookEvent).order_by(col(WebhookEvent.sequence)))).all()
    return [
        (row.type, row.object.removeprefix("redemption:"), json.loads(row.body)["data"])
        for row in rows
        if row.object.startswith("redemption:")
    ]


async def test_a_held_redemption_is_cancelled_by_its_member_or_publisher_and_partners_hear_each_end(
    kit: ExchangeKit,
    sandboxes: SandboxFleet,
    alice: dict[str, str],
    staff: str,
    partner_base_urls: dict[str, str],
    receiver: tuple[Receiver, RunningServer],
) -> None:
    hooks, server = receiver
    publisher = await kit.partner_token("fresh-mart")
    subscribed = (
        await kit.data(
            SUBSCRIBE,
            publisher,
            input={
                "programId": "fresh-mart",
                "url": server.url + "/hook",
                "eventTypes": ["REDEMPTION_HELD", "REDEMPTION_FAILED"],
            },
        )
    )["createWebhookSubscription"]
    token, before = alice["happy-card"], await balances(sandboxes, "alice")
    hamper = await publish_hamper(kit, stock=5)

    by_member = await held_redemption(kit, token, hamper, "h1")
    assert await stock(kit, hamper) == 4
    cancelled = (await kit.data(CANCEL, token, id=by_member, expected="HELD"))["cancelRedemption"]
    assert cancelled == {"id": by_member, "status": "FAILED", "failureCode": "CANCELLED", "cancelledBy": "MEMBER"}
    assert (await kit.data(CANCEL, token, id=by_member))["cancelRedemption"] == cancelled  # a repeat
    assert await stock(kit, hamper) == 5
    not_held = error_of(await kit.graphql(APPROVE_REDEMPTION, staff, id=by_member))["extensions"]
    assert (not_held["code"], not_held["status"]) == ("NOT_HELD", "FAILED")
    someone_else = await kit.member_token("wallet-pay", "carol")
    assert error_of(await kit.graphql(CANCEL, someone_else, id=by_member))["extensions"]["code"] == "NOT_FOUND"

    by_publisher = await held_redemption(kit, token, hamper, "h2")
    other_partner = await kit.partner_token("wallet-pay")
    assert error_of(await kit.graphql(CANCEL, other_partner, id=by_publisher))["extensions"]["code"] == "NOT_FOUND"
    withdrawn = (await kit.data(CANCEL, publisher, id=by_publisher))["cancelRedemption"]
    assert (withdrawn["status"], withdrawn["cancelledBy"]) == ("FAILED", "PUBLISHER")

    rejected = await held_redemption(kit, token, hamper, "h3")
    await kit.data(REJECT_REDEMPTION, staff, id=rejected)
    late = error_of(await kit.graphql(CANCEL, token, id=rejected, expected="HELD"))["extensions"]
    assert late == {"code": "NOT_HELD", "field": "redemptionId", "status": "FAILED"}
    unexpected = error_of(await kit.graphql(CANCEL, token, id=rejected))["extensions"]
    assert (unexpected["code"], unexpected["status"]) == ("BAD_USER_INPUT", "FAILED")

    to_expire, approved = [await held_redemption(kit, token, hamper, key) for key in ("h4", "h5")]
    await kit.data(APPROVE_REDEMPTION, staff, id=approved)
    paid = error_of(await kit.graphql(CANCEL, token, id=approved, expected="HELD"))["extensions"]
    assert (paid["code"], paid["status"]) == ("NOT_HELD", "COMPLETED")  # refused, not reversed
    held_until = datetime.fromisoformat(
        next(r for r in (await kit.data(MY_REDEMPTIONS, token))["redemptions"] if r["id"] == to_expire)["heldUntil"]
    )
    services = build_services(kit.settings, clock=FrozenClock(held_until), partner_base_urls=partner_base_urls)
    try:
        assert await services.risk.review.expire_due() == 1
    finally:
        await services.aclose()

    assert await balances(sandboxes, "alice") == {**before, "happy-card": before["happy-card"] - 5304}
    assert await stock(kit, hamper) == 4  # only the approved one's unit is gone
    async with kit.db.transaction() as session:  # the cancelled holds reached neither partner nor ledger
        posted = (await session.exec(select(LedgerTransaction.id))).all()
    debits = [op["operation_id"] for op in await sandboxes["happy-card"].admin.operations()]
    for unpaid in (by_member, by_publisher, rejected, to_expire):
        assert not any(unpaid in operation for operation in [*posted, *debits])

    # Each transition wrote its event once, in its unit of work; the approved one was paid.
    events = await redemption_events(kit)
    ended = {
        redemption: (data["status"], data["failureCode"], data["cancelledBy"], bool(data["reason"]))
        for kind, redemption, data in events
        if kind == "redemption.failed"
    }
    assert sorted((kind, redemption) for kind, redemption, _ in events) == sorted(
        [("redemption.held", r) for r in (by_member, by_publisher, rejected, to_expire, approved)]
        + [("redemption.failed", r) for r in (by_member, by_publisher, rejected, to_expire)]
        + [("redemption.paid", approved)]
    )
    assert ended == {
        by_member: ("FAILED", "CANCELLED", "MEMBER", True),
        by_publisher: ("FAILED", "CANCELLED", "PUBLISHER", True),
        rejected: ("FAILED", "RISK_REJECTED", None, True),
        to_expire: ("FAILED", "HOLD_EXPIRED", None, True),
    }
    held = next(data for kind, redemption, data in events if kind == "redemption.held" and redemption == to_expire)
    assert datetime.fromisoformat(held["heldUntil"]) == held_until
    assert (held["publisher"], held["payingProgram"], held["points"]) == ("fresh-mart", "happy-card", 5304)

    # The publisher's subscription receives what it asked for, signed, in order per redemption
    # (but the expiry's event: it happened on a clock two hours ahead, and is due then).
    await hooks.wait_for(8)
    bodies = [Webhook(subscribed["secret"]).verify(body, headers) for headers, body in hooks.received]
    assert sorted((body["type"], body["data"]["id"]) for body in bodies) == sorted(
        (kind, redemption)
        for kind, redemption, _ in events
        if kind != "redemption.paid" and (kind, redemption) != ("redemption.failed", to_expire)
    )
    for redemption in (by_member, by_publisher, rejected):
        assert [body["type"] for body in bodies if body["data"]["id"] == redemption] == [
            "redemption.held",
            "redemption.failed",
        ]

    # The decision log tells each hold's whole story, a cancel included (newest first).
    told = {
        redemption: [
            (d["decision"], d["rule"], d["decidedBy"]) for d in await decisions(kit, staff, redemption=redemption)
        ]
        for redemption in (by_member, by_publisher, rejected, to_expire)
    }
    assert told == {
        by_member: [("CANCEL", "CANCELLED", None), ("HOLD", "HOLD_ABOVE", None)],
        by_publisher: [("CANCEL", "CANCELLED", None), ("HOLD", "HOLD_ABOVE", None)],
        rejected: [("REJECT", "STAFF_REVIEW", told[rejected][0][2]), ("HOLD", "HOLD_ABOVE", None)],
        to_expire: [("REJECT", "HOLD_EXPIRED", None), ("HOLD", "HOLD_ABOVE", None)],
    }
    assert told[rejected][0][2] is not None  # the staff member
    (cancel,) = [d for d in await decisions(kit, staff, redemption=by_member) if d["decision"] == "CANCEL"]
    assert "cancelled by the member" in cancel["reason"] and cancel["points"] == 5304


async def test_a_members_cancel_and_a_staff_approval_at_once_end_in_exactly_one_outcome(
    kit: ExchangeKit, sandboxes: SandboxFleet, alice: dict[str, str], staff: str
) -> None:
    token, start = alice["happy-card"], await sandboxes["happy-card"].admin.balance("alice")
    hamper = await publish_hamper(kit, stock=3)
    outcomes = []
    for round in range(3):  # happy-card allows three an hour; a cancelled one does not count
        redemption = await held_redemption(kit, token, hamper, f"race-{round}")
        cancel, approve = await asyncio.gather(
            kit.graphql(CANCEL, token, id=redemption, expected="HELD"),
            kit.graphql(APPROVE_REDEMPTION, staff, id=redemption),
        )
        cancelled, approved = cancel.json(), approve.json()
        if "errors" in cancelled:  # the approval won: paid, and the cancel refused
            assert approved["data"]["approveRedemption"]["status"] == "COMPLETED", approved
            assert error_of(cancel)["extensions"]["code"] == "NOT_HELD"
            outcomes.append("approved")
        else:  # the cancel won: nothing debited, and the approval refused
            assert cancelled["data"]["cancelRedemption"]["status"] == "FAILED", cancelled
            assert error_of(approve)["extensions"]["code"] == "NOT_HELD"
            outcomes.append("cancelled")
        (final,) = [r for r in (await kit.data(MY_REDEMPTIONS, token))["redemptions"] if r["id"] == redemption]
        assert final["status"] == ("COMPLETED" if outcomes[-1] == "approved" else "FAILED")
    paid = outcomes.count("approved")
    assert await sandboxes["happy-card"].admin.balance("alice") == start - paid * 5304
    assert await stock(kit, hamper) == 3 - paid
    assert [kind for kind, _, _ in await redemption_events(kit)].count("redemption.failed") == 3 - paid


RECOVER = str(Path(sys.executable).with_name("exchange"))


@pytest.mark.parametrize("gateway_settings", [{"recovery_interval_seconds": 0}], indirect=True)  # no hold-expiry job
async def test_exchange_recover_ends_the_holds_past_their_review_time_and_says_how_many(
    kit: ExchangeKit, alice: dict[str, str], staff: str, partner_base_urls: dict[str, str]
) -> None:
    """After an outage no gateway ran the hold-expiry job: the operator's `exchange recover`
    ends every hold whose review time has passed (``HOLD_EXPIRED``, as the job ends it) and
    reports it on a line of its own, with the holds still waiting for staff."""
    overdue, waiting = [
        (await convert(kit, alice["happy-card"], "happy-card", "wallet-pay", 6000, key)).json()["data"][
            "executeConversion"
        ]["id"]
        for key in ("overdue", "waiting")
    ]
    async with kit.db.transaction() as session:  # its review time passed during the outage
        conversion = await session.get(Conversion, overdue)
        assert conversion is not None and conversion.status == "HELD"
        conversion.next_attempt_at = datetime.now(UTC) - timedelta(minutes=1)
        session.add(conversion)

    recovered = await asyncio.to_thread(
        subprocess.run,
        [RECOVER, "recover"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "EXCHANGE_DATABASE_URL": kit.settings.database_url},
        check=False,
    )
    assert recovered.returncode == 0, recovered.stderr
    assert "1 hold expired unreviewed; 1 still held for review" in recovered.stdout.splitlines()
    ended = (await kit.data(CONVERSION, alice["happy-card"], id=overdue))["conversion"]
    assert (ended["status"], ended["failure"]["code"]) == ("FAILED", "HOLD_EXPIRED")
    assert (await kit.data(HELD, staff))["heldConversions"] == [{"id": waiting, "status": "HELD", "pointsIn": 6000}]

    # The same pass through the services, once the other's review time has passed too.
    held_until = datetime.fromisoformat(
        (await kit.data(CONVERSION, alice["happy-card"], id=waiting))["conversion"]["heldUntil"]
    )
    services = build_services(kit.settings, clock=FrozenClock(held_until), partner_base_urls=partner_base_urls)
    try:
        recovery = await services.recover()
        assert (recovery.holds.expired, recovery.holds.held) == (1, 0)
        assert (await services.recover()).holds == HoldExpiry(expired=0, held=0)  # once
    finally:
        await services.aclose()
    assert (await kit.data(HELD, staff))["heldConversions"] == []
    assert await reserved(kit) == 0
