"""A statement signed again after its key was withdrawn as compromised says so, when and with
which key, on the staff console's statement page and on the partner console's statements pages:
a partner holding the first JWS learns from the page that it no longer verifies. In both
languages, at a phone's width."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from exchange.auth.scopes import Role
from exchange.services.container import open_services
from exchange.testing.databases import PostgresDatabases
from tests.web.conftest import PHONE, Gateway, console_sign_in, open_context, run_async
from tests.web.settlement_month import settling_gateway
from tests.web.test_settlement_browser import no_sideways_scroll

Screenshot = Callable[[Page, str], Path]
#: What the pages say of a statement signed again, by language: the words before the key's id.
SIGNED_AGAIN = {"en": "Signed again at", "zh-TW": "重新簽署於"}


@dataclass(frozen=True)
class Resigned:
    gateway: Gateway
    period: str
    kid: str
    """The key that signed the period's statements again."""


async def close_and_withdraw(gateway: Gateway, period: str) -> str:
    """Close ``period``, then withdraw the key that signed its statements; the new key's id."""
    async with open_services(gateway.settings) as services:
        await services.settlement.close(period, by="test")
        rotation = await services.settlement.rotate_key(compromised=True)
    assert rotation.resigned > 0
    return rotation.new.kid


@pytest.fixture(scope="module")
def resigned(postgres_databases: PostgresDatabases) -> Iterator[Resigned]:
    """Last month closed (its statements issued), then the statement key withdrawn as
    compromised, so that every statement of the month is signed again."""
    for gateway, period in settling_gateway(postgres_databases):
        kid = run_async(partial(close_and_withdraw, gateway, period))
        yield Resigned(gateway, period, kid)


@pytest.mark.parametrize("language", ["en", "zh-TW"])
def test_a_statement_signed_again_says_when_and_with_which_key_in_both_consoles(
    browser: Browser, resigned: Resigned, screenshot: Screenshot, language: str
) -> None:
    gateway, period, kid = resigned.gateway, resigned.period, resigned.kid
    said = f"{SIGNED_AGAIN[language]} "
    staff = open_context(browser, gateway, locale=language, viewport=PHONE)
    try:
        page = staff.new_page()
        console_sign_in(page, gateway.person(Role.SETTLEMENT))
        page.goto(f"/console/settlement/{period}/statements/fresh-mart")
        facts = page.locator(".facts")
        expect(facts).to_contain_text(said)
        expect(facts).to_contain_text(kid)
        # The signature the page checks is the new one, by the key the facts name.
        expect(page.locator("#signature-result")).to_contain_text(kid, timeout=10_000)
        no_sideways_scroll(page, "the staff's statement")
        screenshot(page, "staff-statement")
    finally:
        staff.close()

    partner = open_context(browser, gateway, locale=language, viewport=PHONE)
    try:
        page = partner.new_page()
        console_sign_in(page, gateway.person(Role.PARTNER, "fresh-mart"))
        page.goto("/console/partner/statements")
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=period, exact=True))
        expect(row).to_contain_text(said)
        expect(row).to_contain_text(kid)
        no_sideways_scroll(page, "the partner's statements")
        screenshot(page, "partner-statements")
        page.get_by_role("link", name=period, exact=True).click()
        facts = page.locator(".facts")
        expect(facts).to_contain_text(said)
        expect(facts).to_contain_text(kid)
        no_sideways_scroll(page, "the partner's statement")
        screenshot(page, "partner-statement")
    finally:
        partner.close()
