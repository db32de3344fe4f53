"""The risk review console against real sandbox partners: a member's conversion held by
FreshMart's gate shows to settlement staff, who reject one (a reason required) and approve
another over HTTP; partner staff are refused; the member's page says when the hold ends; held
redemptions paid with FreshMart points are reviewed the same way; and in a browser, on a phone
in Traditional Chinese, staff reject one from the list, and a member cancels a held redemption
(in English) and is told in Chinese of one staff approved before the cancel arrived."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import update
from sqlmodel import col

from exchange.auth.scopes import Role
from exchange.db.database import Database
from exchange.programs.models import Program
from exchange.risk import reasons
from exchange.risk.decisions import decision, record_refusal
from exchange.risk.models import Decision, Subject
from exchange.risk.policy import Per, Velocity
from exchange.testing.databases import PostgresDatabases
from tests.web.conftest import PHONE, Gateway, PortalGateway, console_sign_in, open_context, run_async, start_gateway
from tests.web.portal_flows import ask_quote, convert_form, csrf_token, linked_member
from tests.web.portal_partners import running_partners, set_up_member_sign_in
from tests.web.test_console_http import form_token, signed_in
from tests.web.test_portal_browser import sign_in as browser_sign_in

#: Conversions out of FreshMart above this many points wait for staff.
HOLD_ABOVE = 2_000
HELD_ROW = re.compile(r"<td data-label=\"[^\"]+\">([0-9a-f-]{36})</td>")


def held_ids(page: str) -> list[str]:
    """The conversions the page lists as waiting (the tables below it name some too)."""
    return HELD_ROW.findall(page.split('id="held-redemptions-heading"')[0])


def held_redemption_ids(page: str) -> list[str]:
    """The redemptions the page lists as waiting."""
    return HELD_ROW.findall(page.split('id="held-redemptions-heading"')[1].split('id="decisions-heading"')[0])


@pytest.fixture(scope="module")
def holding_gateway(
    postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PortalGateway]:
    """A gateway of its own (the hold changes FreshMart for every test that converts out of it),
    reading the catalog afresh on every use, with FreshMart's hold declared."""
    with running_partners(tmp_path_factory.mktemp("risk-sandboxes"), ("fresh-mart", "formosa-air")) as partners:
        for gateway in start_gateway(
            postgres_databases, partner_base_urls=partners.fleet.base_urls, catalog_cache_seconds=0
        ):
            set_up_member_sign_in(partners, gateway.settings)
            hold(gateway)
            yield PortalGateway(gateway, partners)


def hold(gateway: Gateway) -> None:
    async def declare() -> None:
        db = Database.from_url(gateway.settings.database_url)
        try:
            async with db.transaction() as session:
                await session.exec(  # type: ignore[call-overload]
                    update(Program)
                    .where(col(Program.id) == "fresh-mart")
                    .values(risk={"hold_above_points": HOLD_ABOVE, "hold_expires_after_seconds": 86400})
                )
        finally:
            await db.dispose()

    run_async(declare)


def held_conversion(client: httpx.Client) -> str:
    """Convert 3,000 FreshMart points of the signed-in member: held; the conversion's page."""
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 3_000)
    converted = client.post(quote_page, data=convert_form(client, quote_page))
    assert converted.status_code == 303, converted.text
    return str(converted.headers["location"])


def test_staff_reject_and_approve_held_conversions_and_partners_cannot(holding_gateway: PortalGateway) -> None:
    partners, gateway = holding_gateway.partners, holding_gateway.gateway
    with gateway.client() as member:
        member_ref = linked_member(holding_gateway, member, points=10_000, miles=0)
        to_reject, to_approve = (held_conversion(member) for _ in range(2))
        page = member.get(to_reject).text
        assert "Your conversion is waiting for review" in page and "Decision due by" in page
    assert partners.balance("fresh-mart", member_ref) == 10_000  # nothing moved while held

    with signed_in(gateway, gateway.person(Role.PARTNER, "fresh-mart")) as partner:
        assert partner.get("/console/risk/").status_code == 403
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as staff:
        listed = staff.get("/console/risk/")
        assert listed.status_code == 200
        held = held_ids(listed.text)
        reject_id, approve_id = (path.rsplit("/", 1)[1] for path in (to_reject, to_approve))
        assert held == [reject_id, approve_id]  # oldest first
        token = form_token(staff, "/console/risk/")

        no_reason = staff.post(f"/console/risk/{reject_id}/reject", data={"csrf_token": token, "reason": "  "})
        assert no_reason.status_code == 400 and "reason must be 1 to 500 characters" in no_reason.text
        no_token = staff.post(f"/console/risk/{reject_id}/reject", data={"reason": "stolen card"})
        assert no_token.status_code == 403
        assert held_ids(staff.get("/console/risk/").text) == held  # nothing changed

        rejected = staff.post(f"/console/risk/{reject_id}/reject", data={"csrf_token": token, "reason": "stolen card"})
        assert rejected.status_code == 303
        after = staff.get(rejected.headers["location"]).text
        assert f"Conversion {reject_id}: Rejected." in after and "stolen card" in html.unescape(after)
        approved = staff.post(f"/console/risk/{approve_id}/approve", data={"csrf_token": token})
        assert approved.status_code == 303
        assert f"Conversion {approve_id}: Approved." in staff.get(approved.headers["location"]).text
        assert held_ids(staff.get("/console/risk/").text) == []

        again = staff.post(f"/console/risk/{reject_id}/approve", data={"csrf_token": token})
        assert again.status_code == 409 and "not held" in again.text
        assert staff.post("/console/risk/x%00y/approve", data={"csrf_token": token}).status_code == 400

    assert partners.balance("fresh-mart", member_ref) == 10_000 - 3_000  # only the approved one moved
    assert partners.balance("formosa-air", member_ref) > 0


def test_a_rejected_conversion_tells_its_member_the_staffs_own_words_in_a_chinese_sentence(
    holding_gateway: PortalGateway,
) -> None:
    gateway = holding_gateway.gateway
    with gateway.client() as member:
        linked_member(holding_gateway, member, points=10_000, miles=0)
        page = held_conversion(member)
        conversion_id = page.rsplit("/", 1)[1]
        with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as staff:
            form = {"csrf_token": form_token(staff, "/console/risk/"), "reason": "卡片掛失"}
            assert staff.post(f"/console/risk/{conversion_id}/reject", data=form).status_code == 303
        chinese = html.unescape(member.get(page, headers={"accept-language": "zh-TW"}).text)
    failure = chinese.split('id="failure">')[1].split("</p>")[0]
    assert failure == '交換平台人員駁回，原話：<q class="own-words" lang=""><bdi>卡片掛失</bdi></q>'


def test_the_decision_log_names_programs_and_says_the_gates_reasons_in_the_readers_language(
    holding_gateway: PortalGateway,
) -> None:
    with holding_gateway.gateway.client() as member:
        linked_member(holding_gateway, member, points=10_000, miles=0)
        conversion_id = held_conversion(member).rsplit("/", 1)[1]
    with signed_in(holding_gateway.gateway, holding_gateway.gateway.person(Role.SETTLEMENT)) as staff:
        english, chinese = (staff.get("/console/risk/", params={"lang": lang}).text for lang in ("en", "zh-TW"))
    for page in english, chinese:
        log = page.split('id="decisions-heading"')[1]
        row = next(row for row in log.split("<tr>") if conversion_id in row)
        assert '">FreshMart Rewards</td>' in row and "fresh-mart" not in row
        held = page.split('id="held-redemptions-heading"')[0]
        assert '">FreshMart Rewards <span' in held and '">Formosa Air Miles <span' in held
        # The rule is said in words, its code kept beside them.
        assert '<code class="rule-code">HOLD_ABOVE</code>' in row
    assert "above 2,000 points: waits for staff review" in english
    assert "超過 2,000 點：等候人員審核" in chinese and "waits for staff review" not in chinese
    assert "Large outflow: held for staff review <code" in english and "大額轉出：等候人員審核 <code" in chinese
    # The link the member made just before: verified by the partner, said by its name.
    assert "已經 Formosa Air Miles 驗證；已核對資格" in chinese


def test_a_velocity_refusal_in_the_log_is_said_in_the_readers_language(holding_gateway: PortalGateway) -> None:
    rule = Velocity(per=Per.MEMBER, window=timedelta(days=1), max_count=5, max_points=20_000)
    written = reasons.velocity("fresh-mart", rule, made=23_000, over_points=True)
    assert written == (
        "fresh-mart allows at most 5 conversions or redemptions or 20,000 points per member in 1 day; "
        "this would make 23,000 points"
    )

    async def log() -> None:
        db = Database.from_url(holding_gateway.gateway.settings.database_url)
        try:
            refused = decision(
                Subject.CONVERSION,
                Decision.REFUSE,
                reason=written,
                rule="VELOCITY_MEMBER",
                member_id="velocity-member",
                program_id="fresh-mart",
                member_ref="velocity-member",
                now=datetime.now(UTC),
            )
            await record_refusal(db, refused)
        finally:
            await db.dispose()

    run_async(log)
    with signed_in(holding_gateway.gateway, holding_gateway.gateway.person(Role.SETTLEMENT)) as staff:
        english, chinese = (staff.get("/console/risk/", params={"lang": lang}).text for lang in ("en", "zh-TW"))
    assert (
        "FreshMart Rewards allows at most 5 conversions or redemptions or 20,000 points per member in 1 day; "
        "this would make 23,000 points" in english
    )
    assert "FreshMart Rewards 規定每會員在 1 天 內最多 5 筆轉換或兌換或 20,000 點；此筆將達 23,000 點" in chinese


def held_redemption(client: httpx.Client) -> None:
    """Redeem a Formosa Air lounge pass (6,120 FreshMart points) with the signed-in member's
    FreshMart points: held."""
    page = "/portal/rewards/formosa-air-lounge-pass"
    form = {"csrf_token": csrf_token(client, page), "pay_with": "fresh-mart"}
    key = re.search(r'name="idempotency_key" value="([^"]+)"', client.get(page).text)
    assert key is not None
    redeemed = client.post(page, data={**form, "idempotency_key": key[1]})
    assert redeemed.status_code == 303, redeemed.text


def test_staff_reject_and_approve_held_redemptions(holding_gateway: PortalGateway) -> None:
    partners, gateway = holding_gateway.partners, holding_gateway.gateway
    with gateway.client() as member:
        member_ref = linked_member(holding_gateway, member, points=10_000, miles=0)
        held_redemption(member)
        held_redemption(member)
        assert "Waiting for review: no points taken yet" in member.get("/portal/rewards/history").text
    assert partners.balance("fresh-mart", member_ref) == 10_000

    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as staff:
        to_reject, to_approve = held_redemption_ids(staff.get("/console/risk/").text)[-2:]
        token = form_token(staff, "/console/risk/")
        rejected = staff.post(
            f"/console/risk/redemptions/{to_reject}/reject", data={"csrf_token": token, "reason": "stolen card"}
        )
        assert rejected.status_code == 303
        assert f"Redemption {to_reject}: Rejected." in staff.get(rejected.headers["location"]).text
        approved = staff.post(f"/console/risk/redemptions/{to_approve}/approve", data={"csrf_token": token})
        assert approved.status_code == 303
        assert f"Redemption {to_approve}: Approved." in staff.get(approved.headers["location"]).text
        assert to_approve not in held_redemption_ids(staff.get("/console/risk/").text)
        again = staff.post(f"/console/risk/redemptions/{to_reject}/approve", data={"csrf_token": token})
        assert again.status_code == 409 and "not held" in again.text

    assert partners.balance("fresh-mart", member_ref) == 10_000 - 6_120  # only the approved one was paid


def test_staff_reject_a_held_conversion_on_a_phone_in_traditional_chinese(
    holding_gateway: PortalGateway, browser: Browser, screenshot: Callable[[Page, str], Path]
) -> None:
    gateway = holding_gateway.gateway
    with gateway.client() as member:
        linked_member(holding_gateway, member, points=10_000, miles=0)
        conversion_id = held_conversion(member).rsplit("/", 1)[1]
    person = gateway.person(Role.SETTLEMENT)
    context = open_context(browser, gateway, locale="zh-TW", viewport=PHONE)
    try:
        page = context.new_page()
        console_sign_in(page, person)
        page.get_by_role("link", name="風險審核").click()
        expect(page.get_by_role("heading", name="等候審核的轉換")).to_be_visible()
        row = page.locator("tr", has_text=conversion_id)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the risk review scrolls sideways by {overflow} px on a phone"
        # Nor does any of its tables: each row stacks, each value under its column's name.
        tables = page.evaluate("[...document.querySelectorAll('.table-wrap')].map(t => t.scrollWidth - t.clientWidth)")
        assert tables and max(tables) <= 0, f"a table of the risk review scrolls sideways on a phone: {tables}"
        expect(row.locator("td[data-label=點數]")).to_be_visible()
        screenshot(page, "held")
        row.get_by_label(f"駁回 {conversion_id[:8]} 的原因").fill("卡片掛失")
        row.get_by_role("button", name=f"駁回 {conversion_id[:8]}").click()
        expect(page.get_by_role("status")).to_have_text(f"轉換 {conversion_id}：駁回。")
        expect(page.locator("tr", has_text=conversion_id).first).to_contain_text("卡片掛失")
        screenshot(page, "rejected")
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()


def test_a_member_cancels_a_held_redemption_in_english_and_one_decided_meanwhile_in_chinese(
    holding_gateway: PortalGateway, browser: Browser, screenshot: Callable[[Page, str], Path]
) -> None:
    partners, gateway = holding_gateway.partners, holding_gateway.gateway
    member_ref = partners.new_member("fresh-mart", balance=20_000)
    english = open_context(browser, gateway)
    try:
        page = english.new_page()
        browser_sign_in(page, "FreshMart Rewards", member_ref)
        for _ in range(2):  # 6,120 FreshMart points each: above FreshMart's hold
            page.goto("/portal/rewards/formosa-air-lounge-pass")
            page.get_by_role("button", name="Redeem").click()
            expect(page.get_by_role("status")).to_have_text(
                "Your redemption is waiting for review: no points were taken yet. It is listed below."
            )
        rows = page.locator("table.list tbody tr")
        expect(rows.filter(has_text="Waiting for review: no points taken yet")).to_have_count(2)
        screenshot(page, "held")
        newest, older = (str(row.get_attribute("id")).removeprefix("redemption-") for row in rows.all()[:2])
        page.locator(f"#redemption-{newest}").get_by_role("button", name="Cancel this redemption").click()
        expect(page.get_by_role("status")).to_have_text("Cancelled. No points were taken.")
        expect(page.locator(f"#redemption-{newest} .status")).to_have_text("Cancelled before review: no points taken")
        expect(page.locator(f"#redemption-{older}").get_by_role("button")).to_have_count(1)
        screenshot(page, "cancelled")
        assert page.evaluate("window.__cspViolations") == []
        cookies = english.cookies()
    finally:
        english.close()
    assert partners.balance("fresh-mart", member_ref) == 20_000
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as publisher:  # the publisher's view
        listed = html.unescape(publisher.get("/console/partner/rewards/formosa-air-lounge-pass").text)
        assert "Cancelled before review" in listed and "Waiting for the exchange's review" in listed
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as staff:  # the log says how the hold ended
        decisions = staff.get("/console/risk/").text
        assert re.search(
            rf'">Cancelled</td>\s*<td [^>]+>Cancelled while held <code class="rule-code">CANCELLED</code></td>\s*'
            rf"<td [^>]+>FreshMart Rewards</td>\s*<td [^>]+>{newest}</td>",
            decisions,
        )
        in_chinese = staff.get("/console/risk/", params={"lang": "zh-TW"}).text
        assert "會員於暫停待審時取消：未扣除任何點數" in in_chinese

    chinese = open_context(browser, gateway, locale="zh-TW", viewport=PHONE)
    chinese.add_cookies(cookies)  # type: ignore[arg-type]
    try:
        page = chinese.new_page()
        page.goto("/portal/rewards/history")
        expect(page.locator(f"#redemption-{older} .status")).to_contain_text("等候審核：尚未扣除點數")
        expect(page.locator(f"#redemption-{newest} .status")).to_have_text("審核前已取消：未扣除點數")
        with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as staff:  # staff approve it meanwhile
            approve = f"/console/risk/redemptions/{older}/approve"
            assert staff.post(approve, data={"csrf_token": form_token(staff, "/console/risk/")}).status_code == 303
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            page.get_by_role("button", name="取消這筆兌換").click()
        assert answer.value.status == 409
        expect(page.get_by_role("alert")).to_contain_text("這筆兌換已不在等候審核")
        expect(page.locator(f"#redemption-{older} .status")).to_have_text("已付款，等待交付")
        screenshot(page, "decided-meanwhile")
        assert page.evaluate("window.__cspViolations") == []
    finally:
        chinese.close()
    assert partners.balance("fresh-mart", member_ref) == 20_000 - 6_120  # paid once, not reversed
