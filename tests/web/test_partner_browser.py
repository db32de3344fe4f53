"""The partner console in a real browser (headless Chromium): a partner publishes a reward, a
member redeems it, the partner confirms the delivery; the live preview; every page refused
without the partner role; a form without its CSRF token refused; English, Traditional Chinese
and a phone's width, with screenshots."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from exchange.auth.scopes import Role
from exchange.programs.declarations import read_partners_directory
from tests.conftest import SAMPLE_PARTNERS
from tests.web import test_partner_http
from tests.web.conftest import DESKTOP, PHONE, Gateway, console_sign_in, open_context
from tests.web.pages import web_pages
from tests.web.test_console_browser import LATIN_WORD, sign_in
from tests.web.test_partner_http import redeem_as_member

Screenshot = Callable[[Page, str], Path]
PARTNER = "/console/partner"
#: The partner console's pages to open, with an address for those that take a value.
PAGES = {
    f"{PARTNER}/rates": "Rates and promotions",
    f"{PARTNER}/rewards": "Rewards",
    f"{PARTNER}/redemptions": "Redemptions to confirm",
    f"{PARTNER}/statements": "Statements",
    f"{PARTNER}/books": "Books",
    f"{PARTNER}/access": "Clients and keys",
}


#: A gateway with the previous period settled (test_partner_http's), for the pages of a statement.
settled = test_partner_http.settled


@pytest.fixture
def partner_page(browser: Browser, partnered_gateway: Gateway) -> Iterator[Page]:
    context = open_context(browser, partnered_gateway)
    try:
        page = context.new_page()
        yield page
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()


def test_a_published_reward_is_redeemed_by_a_member_and_its_delivery_confirmed(
    partner_page: Page, partnered_gateway: Gateway, screenshot: Screenshot
) -> None:
    page = partner_page
    sign_in(page, partnered_gateway.person(Role.PARTNER, "formosa-air"))
    page.get_by_role("link", name="Manage your program").click()
    page.get_by_role("navigation", name="Partner console").get_by_role("link", name="Rewards").click()
    page.get_by_role("link", name="Publish a reward").click()
    # The form with the keyboard alone: type, Tab to the next field, Enter to send.
    page.get_by_label("Title").focus()
    page.keyboard.type("Priority boarding")
    for text in ("Board first on any flight.", "80", "3"):
        page.keyboard.press("Tab")
        page.keyboard.type(text)
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("The reward is published.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Priority boarding")
    expect(page.locator(".facts")).to_contain_text("NT$80.00")
    screenshot(page, "published")
    reward_id = page.url.split("/rewards/")[1].split("?")[0]

    redeemed = redeem_as_member(partnered_gateway, reward_id, "boarding-1")
    assert redeemed["status"] == "COMPLETED"
    page.get_by_role("link", name="Redemptions to confirm").click()
    row = page.get_by_role("row").filter(has_text="Priority boarding")
    expect(row).to_contain_text("Harbor Bank Card Rewards")  # the paying program by its name
    screenshot(page, "to-confirm")
    row.get_by_role("button", name=re.compile("^Confirm delivery")).click()
    expect(page.get_by_role("status")).to_have_text("The delivery is confirmed.")
    # Gone from the list (others' redemptions of the shared gateway may still await theirs).
    expect(page.get_by_role("row").filter(has_text="Priority boarding")).to_have_count(0)
    page.goto(f"{PARTNER}/rewards/{reward_id}")
    expect(page.get_by_role("row").filter(has_text="Harbor Bank Card Rewards")).to_contain_text("Delivered")
    expect(page.locator(".facts div").filter(has_text="Stock").locator("dd")).to_have_text(
        "2"
    )  # 3 less the one redeemed
    screenshot(page, "delivered")


def test_the_preview_prices_a_conversion_as_the_partner_types(
    page: Page, gateway: Gateway, screenshot: Screenshot
) -> None:
    sign_in(page, gateway.person(Role.PARTNER, "formosa-air"))
    page.goto(f"{PARTNER}/rates")
    page.get_by_label("From", exact=True).select_option("harbor-bank")
    page.get_by_label("Points to convert").fill("60000")
    result = page.locator("#preview-result")
    expect(result).to_contain_text("7,000 Miles")
    expect(result).to_contain_text("NT$")
    page.get_by_label("Points to convert").fill("5000")
    expect(result.get_by_role("alert")).to_contain_text("At least 10,000 points must be converted")
    page.get_by_label("Points to convert").fill("120000")
    expect(result).to_contain_text("14,000 Miles")
    screenshot(page, "preview")


def test_a_refused_value_is_shown_on_its_field(page: Page, gateway: Gateway, screenshot: Screenshot) -> None:
    sign_in(page, gateway.person(Role.PARTNER, "formosa-air"))
    page.goto(f"{PARTNER}/promotions/new")
    page.get_by_label("Promotion id").fill("browser-promo")
    page.get_by_label("Bonus percent").fill("5000")
    page.get_by_label("Ends").fill("2099-01-01T00:00")
    page.get_by_role("button", name="Start the promotion").click()
    expect(page.get_by_role("alert")).to_contain_text("Bonus percent must be more than 0 and at most 1,000")
    field = page.get_by_label("Bonus percent")
    expect(field).to_have_attribute("aria-invalid", "true")
    expect(field).to_have_value("5000")
    screenshot(page, "refused-field")


def test_every_partner_page_is_refused_without_the_partner_role(
    page: Page, gateway: Gateway, screenshot: Screenshot
) -> None:
    reward = "fresh-mart-coupon-100"
    paths = [
        path.replace("{reward_id}", reward).replace("{period}", "2026-11").replace("{format}", "json")
        for path, method, _page in web_pages(gateway.app)
        if method == "GET" and path.startswith(f"{PARTNER}/")
    ]
    assert set(PAGES) <= set(paths)
    page.goto(paths[0])
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    for role in (Role.SETTLEMENT, Role.ADMIN):
        sign_in(page, gateway.person(role))
        for path in paths:
            answer = page.goto(path)
            assert answer is not None and answer.status == 403, (role, path)
            expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
        expect(page.get_by_role("navigation", name="Partner console")).to_have_count(0)
        screenshot(page, f"refused-{role.value}")
        page.get_by_role("button", name="Sign out").click()


def test_a_partner_form_without_its_csrf_token_is_refused_and_changes_nothing(
    page: Page, gateway: Gateway, screenshot: Screenshot
) -> None:
    sign_in(page, gateway.person(Role.PARTNER, "formosa-air"))
    page.goto(f"{PARTNER}/rewards/new")
    page.get_by_label("Title").fill("Forged reward")
    page.get_by_label(re.compile("^Price")).fill("10")
    page.get_by_label("Stock").fill("1")
    page.locator('form[action="/console/partner/rewards"] input[name="csrf_token"]').evaluate("input => input.remove()")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.get_by_role("button", name="Publish").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("The form could not be accepted")
    screenshot(page, "csrf-refused")
    page.goto(f"{PARTNER}/rewards")
    expect(page.get_by_text("Forged reward")).to_have_count(0)


@pytest.mark.parametrize("language", ["en", "zh-TW"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_partner_pages_fit_the_screen_and_speak_the_language(
    browser: Browser, gateway: Gateway, screenshot: Screenshot, language: str, viewport: dict[str, int]
) -> None:
    person = gateway.person(Role.PARTNER, "formosa-air")
    context = open_context(browser, gateway, locale=language, viewport=viewport)
    try:
        page = context.new_page()
        console_sign_in(page, person)
        expect(page).to_have_url(re.compile(r"/console/$"))
        for path in (*PAGES, f"{PARTNER}/rewards/new", f"{PARTNER}/rewards/formosa-air-lounge-pass"):
            page.goto(path)
            expect(page.locator("html")).to_have_attribute("lang", language)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at {viewport['width']} px"
            # Nor does a table hide its last columns in a sideways scroll of its own.
            tables = page.evaluate(
                "[...document.querySelectorAll('.partner-table-wrap')].map(t => t.scrollWidth - t.clientWidth)"
            )
            assert all(hidden <= 0 for hidden in tables), (
                f"a table of {path} scrolls sideways at {viewport['width']} px: {tables}"
            )
            broken = page.evaluate(BROKEN_WORDS, ".partner-table")
            assert not broken, f"a table of {path} breaks words at {viewport['width']} px: {broken}"
            if language == "zh-TW":
                untranslated = set(LATIN_WORD.findall(page.locator("main").inner_text())) - data_words(page)
                assert not untranslated, f"untranslated on {path}: {sorted(untranslated)}"
            screenshot(page, path.rsplit("/", 1)[1])
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()


#: The Latin words and numbers in the cells of the tables a selector finds that the browser
#: broke across lines although the cell could be wide enough for them: a word is laid out on
#: one line, or the table is no use on a phone ("Coalitio / n Points", "Exch / ange fee"); only
#: a word wider than the cell can be (a 32-character id on a phone) may break.
BROKEN_WORDS = """selector => {
  const broken = [];
  for (const cell of document.querySelectorAll(`${selector} th, ${selector} td`)) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.data.matchAll(/[A-Za-z0-9]{2,}/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const rects = [...range.getClientRects()];
        const lines = new Set(rects.map(rect => Math.round(rect.top)));
        const width = rects.reduce((sum, rect) => sum + rect.width, 0);
        if (lines.size > 1 && width <= cell.parentElement.clientWidth) broken.push(word[0]);
      }
    }
  }
  return broken;
}"""

#: Latin words that are data or codes, not prose: what no translation touches.
CODES = {"NT", "TWD", "JSON", "CSV", "JWS", "JWK", "PEM", "RSA", "Ed", "API", "ID", "kid", "OAuth", "SETTLEMENT", "md"}


def data_words(page: Page) -> set[str]:
    """The Latin words of the data on the page (programs, rewards, tiers, ids, scopes) and codes."""
    directory = read_partners_directory(SAMPLE_PARTNERS)
    names = [
        text
        for program in directory.programs
        for text in (
            program.id,
            program.name,
            program.point_name,
            *(tier.name for tier in program.tiers),
            *(reward.title for reward in program.rewards),
            *(reward.id for reward in program.rewards),
            *(promotion.id for promotion in program.promotions),
        )
    ]
    names += [level.name for level in directory.coalition.ladder]
    if (point := directory.coalition.point) is not None:
        names += [point.id, point.name, point.point_name]
    names += page.locator("main code, main th[scope=row]").all_inner_texts()
    return CODES | {word for text in names for word in LATIN_WORD.findall(text)}


@pytest.mark.parametrize("language", ["en", "zh-TW"])
def test_a_settled_periods_statement_and_reconciliation_fit_a_phone(
    browser: Browser, settled: tuple[Gateway, str], screenshot: Screenshot, language: str
) -> None:
    """Their tables stack on a phone: none scrolls sideways, none breaks a word."""
    gateway, period = settled
    context = open_context(browser, gateway, locale=language, viewport=PHONE)
    try:
        page = context.new_page()
        console_sign_in(page, gateway.person(Role.PARTNER, "formosa-air"))
        for path in (f"{PARTNER}/statements/{period}", f"{PARTNER}/statements/{period}/reconciliation"):
            page.goto(path)
            tables = page.evaluate(
                "[...document.querySelectorAll('.partner-table-wrap, .table-wrap')]"
                ".map(t => t.scrollWidth - t.clientWidth)"
            )
            assert tables and all(hidden <= 0 for hidden in tables), f"a table of {path} scrolls sideways: {tables}"
            broken = [word for table in (".partner-table", ".table") for word in page.evaluate(BROKEN_WORDS, table)]
            assert not broken, f"a table of {path} breaks words: {broken}"
            screenshot(page, path.rsplit("/", 1)[1])
    finally:
        context.close()
