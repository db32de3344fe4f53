"""The console's page of what waits on partners: a conversion whose credit a partner keeps
failing shows to settlement staff, by the partner's name, with why, in the reader's language;
partner staff are refused; and on a phone in Traditional Chinese its tables stack."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import update
from sqlmodel import col

from exchange.auth.scopes import Role
from exchange.conversions.models import Conversion, ConversionStatus, SagaStep
from exchange.db.database import Database
from tests.web.conftest import PHONE, PortalGateway, console_sign_in, open_context, run_async
from tests.web.portal_flows import ask_quote, convert_form
from tests.web.test_console_http import signed_in
from tests.web.test_portal_convert_http import linked_member

PAGE = "/console/partners-waiting"
UNREACHABLE = "partner formosa-air: credit: cannot connect"


@pytest.fixture
def client(portal_gateway: PortalGateway) -> Iterator[httpx.Client]:
    with portal_gateway.gateway.client() as client:
        yield client


def failing_credit(portal_gateway: PortalGateway, conversion_id: str) -> None:
    """Leave the conversion as four attempts at a credit Formosa Air could not be reached for
    leave it, next tried tomorrow (so the gateway's recovery leaves it alone meanwhile)."""

    async def run() -> None:
        db = Database.from_url(portal_gateway.gateway.settings.database_url)
        try:
            async with db.transaction() as session:
                await session.exec(  # type: ignore[call-overload]
                    update(Conversion)
                    .where(col(Conversion.id) == conversion_id)
                    .values(
                        status=ConversionStatus.PENDING,
                        step=SagaStep.CREDIT,
                        attempts=4,
                        last_error=UNREACHABLE,
                        next_attempt_at=datetime.now(UTC) + timedelta(days=1),
                        finished_at=None,
                    )
                )
        finally:
            await db.dispose()

    run_async(run)


def converted_then_failing(portal_gateway: PortalGateway, client: httpx.Client) -> str:
    """A member's conversion from FreshMart to Formosa Air, left failing at its credit; its id."""
    linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    converted = client.post(quote_page, data=convert_form(client, quote_page))
    conversion_id = str(converted.headers["location"].rsplit("/", 1)[1])
    failing_credit(portal_gateway, conversion_id)
    return conversion_id


def test_staff_see_a_credit_a_partner_keeps_failing_by_name_and_partner_staff_are_refused(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    gateway = portal_gateway.gateway
    conversion_id = converted_then_failing(portal_gateway, client)

    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as staff:
        page = staff.get(PAGE)
        assert page.status_code == 200
        failing = page.text.split('id="failing-heading"')[1].split('id="pending-heading"')[0]
        row = failing.split(conversion_id)[1].split("</tr>")[0]
        assert 'Formosa Air Miles <code class="rule-code">formosa-air</code>' in row
        assert '<code class="rule-code">CREDIT</code>' in row and ">4<" in row
        assert UNREACHABLE in row
        assert f'href="{PAGE}"' in staff.get("/console/settlement/").text, "the console's menu leads to it"

        chinese = staff.get(PAGE, headers={"accept-language": "zh-TW"}).text
        assert "<h1>等待合作夥伴</h1>" in chinese
        row = chinese.split(conversion_id)[1].split("</tr>")[0]
        assert f'<span lang="en"><bdi>{UNREACHABLE}</bdi></span>' in row, (
            "the exchange's English detail is marked as such"
        )

    for person in (gateway.person(Role.PARTNER, "formosa-air"), gateway.person(Role.ADMIN)):
        with signed_in(gateway, person) as other:
            assert other.get(PAGE).status_code == 403, person.role


def test_on_a_phone_in_traditional_chinese_the_page_is_reached_from_the_menu_and_its_rows_stack(
    portal_gateway: PortalGateway, client: httpx.Client, browser: Browser, screenshot: Callable[[Page, str], Path]
) -> None:
    gateway = portal_gateway.gateway
    conversion_id = converted_then_failing(portal_gateway, client)
    person = gateway.person(Role.SETTLEMENT)
    context = open_context(browser, gateway, locale="zh-TW", viewport=PHONE)
    try:
        page = context.new_page()
        console_sign_in(page, person)
        page.get_by_role("link", name="等待合作夥伴").click()
        expect(page.get_by_role("heading", name="合作夥伴持續失敗的步驟")).to_be_visible()
        row = page.locator("tr", has_text=conversion_id)
        expect(row.locator("td[data-label=合作夥伴]")).to_contain_text("Formosa Air Miles")
        expect(row.locator("td[data-label=嘗試次數]")).to_have_text("4")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px on a phone"
        tables = page.evaluate("[...document.querySelectorAll('.table-wrap')].map(t => t.scrollWidth - t.clientWidth)")
        assert tables and max(tables) <= 0, f"a table scrolls sideways on a phone: {tables}"
        screenshot(page, "failing")
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()
