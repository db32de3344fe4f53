"""The member portal in a real browser (headless Chromium), against sandbox partners on
loopback: signing in at the partner's page, converting in time and after the countdown ran out,
redeeming a reward, what is refused, in both languages and at a phone's width."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import update
from sqlmodel import col

from exchange.auth.scopes import Role
from exchange.db.database import Database
from exchange.pricing.models import Quote
from exchange.rewards.catalog import RewardDraft
from exchange.services.container import open_services
from exchange.web.portal import convert
from exchange.web.portal import rewards as portal_rewards
from tests.web.conftest import DESKTOP, PASSWORD, PHONE, PortalGateway, open_context, run_async
from tests.web.portal_flows import pair_limits
from tests.web.portal_partners import PIN

Screenshot = Callable[[Page, str], Path]
QUOTE_URL = re.compile(r"/portal/convert/quotes/([0-9a-f-]{36})$")


@pytest.fixture
def portal_context(browser: Browser, portal_gateway: PortalGateway) -> Iterator[BrowserContext]:
    context = open_context(browser, portal_gateway.gateway)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def member_page(portal_context: BrowserContext) -> Iterator[Page]:
    """A page whose every document of the exchange must run under its CSP without a violation."""
    page = portal_context.new_page()
    yield page
    if not page.is_closed():
        assert page.evaluate("window.__cspViolations || []") == []


def sign_in(page: Page, program_name: str, member_ref: str, *, start: str = "/portal/sign-in") -> None:
    """Sign in at the partner's page, as a member does (or, signed in, through one more partner)."""
    page.goto(start)
    page.get_by_role("link", name=re.compile(f"^Sign in with {program_name}")).click()
    page.get_by_label("Member id").fill(member_ref)
    page.get_by_label("PIN").fill(PIN)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/portal/$"))


def link(page: Page, program_name: str, member_ref: str) -> None:
    page.goto("/portal/")
    page.get_by_label("Program", exact=True).select_option(label=program_name)
    page.get_by_label("Member id at that program").fill(member_ref)
    page.get_by_label("Verification code").fill(PIN)
    page.get_by_role("button", name="Link account").click()
    expect(page.get_by_role("status")).to_have_text("The account is linked.")


def ask_quote(page: Page, source: str, target: str, points: int) -> str:
    page.goto("/portal/convert")
    page.get_by_label("From", exact=True).select_option(label=source)
    page.get_by_label("To", exact=True).select_option(label=target)
    page.get_by_label("Points to convert").fill(str(points))
    page.get_by_role("button", name="Get a quote").click()
    expect(page).to_have_url(QUOTE_URL)
    match = QUOTE_URL.search(page.url)
    assert match is not None
    return match[1]


def expire_in(portal_gateway: PortalGateway, quote_id: str, seconds: float) -> None:
    """Bring the quote's expiry near (as if most of its minutes had passed)."""

    async def run() -> None:
        db = Database.from_url(portal_gateway.gateway.settings.database_url)
        try:
            async with db.transaction() as session:
                soon = datetime.now(UTC) + timedelta(seconds=seconds)
                await session.exec(update(Quote).where(col(Quote.id) == quote_id).values(expires_at=soon))  # type: ignore[call-overload]
        finally:
            await db.dispose()

    run_async(run)


async def publish_reward(portal_gateway: PortalGateway, title: str, price: str) -> str:
    """A reward of Formosa Air, published as its partner does; its id."""
    async with open_services(portal_gateway.gateway.settings) as services:
        draft = RewardDraft(title=title, price=Decimal(price), stock=3, description="Sunset sailing.")
        return (await services.rewards.publish("formosa-air", draft)).id


def member_with_two_programs(portal_gateway: PortalGateway, page: Page) -> str:
    """Signed in through FreshMart (5,000 points), Formosa Air (4,000 miles) linked."""
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=5_000)
    partners.add_member("formosa-air", member_ref, balance=4_000)
    sign_in(page, "FreshMart Rewards", member_ref)
    link(page, "Formosa Air Miles", member_ref)
    return member_ref


def test_a_member_converts_in_time_and_both_partners_balances_change(
    member_page: Page, portal_gateway: PortalGateway, screenshot: Screenshot
) -> None:
    page, partners = member_page, portal_gateway.partners
    member_ref = member_with_two_programs(portal_gateway, page)
    expect(page.locator("#account-fresh-mart .balance")).to_have_text("5,000 FreshMart Points")
    expect(page.locator("#account-formosa-air .balance")).to_have_text("4,000 Miles")
    screenshot(page, "accounts")
    ask_quote(page, "FreshMart Rewards", "Formosa Air Miles", 1_000)
    expect(page.locator("[data-countdown-left]")).to_have_text(re.compile(r"^[0-9]+:[0-5][0-9]$"))
    expect(page.locator("#quote-announce")).to_contain_text("Time left to convert at this price")
    screenshot(page, "quote")
    page.get_by_role("button", name="Convert now").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Converted")
    screenshot(page, "outcome")
    assert partners.balance("fresh-mart", member_ref) == 4_000
    miles = partners.balance("formosa-air", member_ref)
    assert miles > 4_000
    expect(page.locator("#outcome")).to_contain_text(f"{miles - 4_000:,} Miles (Formosa Air)")
    # Back to the quote's page and Convert now again: the conversion it became, converted once.
    page.go_back()
    expect(page).to_have_url(QUOTE_URL)
    page.get_by_role("button", name="Convert now").click()
    expect(page.locator("#again")).to_have_text(re.compile("^You had already converted with this quote"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Converted")
    screenshot(page, "converted-again")
    assert partners.balance("fresh-mart", member_ref) == 4_000
    page.get_by_role("link", name="See your balances").click()
    expect(page.locator("#account-formosa-air .balance")).to_have_text(f"{miles:,} Miles")
    # The month's conversions, found again from the convert form, at a phone's width.
    page.set_viewport_size(PHONE)
    page.goto("/portal/convert")
    page.get_by_role("link", name="Your conversions").click()
    expect(page.locator("tr[id^=conversion-]")).to_have_count(1)
    expect(page.locator("tr[id^=conversion-] .status")).to_have_text("Converted")
    screenshot(page, "conversions")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.locator("tr[id^=conversion-] .status a").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Converted")


def test_the_convert_form_says_a_pairs_own_rule_at_a_phones_width(
    member_page: Page, portal_gateway: PortalGateway, screenshot: Screenshot
) -> None:
    """A pair's own minimum and step, under the source programs' own, readable on a phone."""
    page = member_page
    member_with_two_programs(portal_gateway, page)
    page.set_viewport_size(PHONE)
    database_url = portal_gateway.gateway.settings.database_url
    with pair_limits(database_url, "fresh-mart", "formosa-air", minimum_points=2_000, increment=500):
        page.goto("/portal/convert")
        expect(page.locator("#rule-fresh-mart-to-formosa-air")).to_have_text(
            "From FreshMart Rewards into Formosa Air Miles: at least 2,000 FreshMart Points, in steps of 500."
        )
        screenshot(page, "pair-rule")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_a_member_pages_to_older_conversions_at_a_phones_width(
    member_page: Page, portal_gateway: PortalGateway, screenshot: Screenshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history listed the newest 50 and no more; the older ones are a link away."""
    monkeypatch.setattr(convert, "HISTORY_LENGTH", 1)
    page = member_page
    member_with_two_programs(portal_gateway, page)
    for points in (1_000, 2_000):
        ask_quote(page, "FreshMart Rewards", "Formosa Air Miles", points)
        page.get_by_role("button", name="Convert now").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Converted")
    page.set_viewport_size(PHONE)
    page.get_by_role("link", name="Your conversions").click()
    expect(page.locator("tr[id^=conversion-]")).to_contain_text("2,000 FreshMart Points")
    page.get_by_role("navigation", name="More conversions").get_by_role("link", name="Older conversions").click()
    expect(page.locator("tr[id^=conversion-]")).to_contain_text("1,000 FreshMart Points")
    expect(page.get_by_role("link", name="Older conversions")).to_have_count(0)
    screenshot(page, "older-conversions")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.get_by_role("link", name="Newest conversions").click()
    expect(page.locator("tr[id^=conversion-]")).to_contain_text("2,000 FreshMart Points")


def test_after_the_countdown_runs_out_the_page_asks_for_a_new_quote_from_the_keyboard(
    member_page: Page, portal_gateway: PortalGateway, screenshot: Screenshot
) -> None:
    page, partners = member_page, portal_gateway.partners
    member_ref = member_with_two_programs(portal_gateway, page)
    quote_id = ask_quote(page, "FreshMart Rewards", "Formosa Air Miles", 1_000)
    expire_in(portal_gateway, quote_id, 3)
    page.reload()
    expect(page.get_by_role("button", name="Convert now")).to_be_visible()
    new_quote = page.get_by_role("button", name="Ask for a new quote")
    expect(new_quote).to_be_visible(timeout=15_000)
    expect(page.get_by_role("button", name="Convert now")).to_be_hidden()
    expect(page.locator("#quote-announce")).to_have_text("This quote has run out. Ask for a new quote to convert.")
    expect(new_quote).to_be_focused()
    screenshot(page, "expired")
    page.keyboard.press("Enter")
    expect(page).to_have_url(QUOTE_URL)
    assert quote_id not in page.url
    expect(page.get_by_role("button", name="Convert now")).to_be_visible()
    assert partners.balance("fresh-mart", member_ref) == 5_000


def test_a_member_redeems_a_reward_published_by_a_partner(
    member_page: Page, portal_gateway: PortalGateway, screenshot: Screenshot
) -> None:
    page, partners = member_page, portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=60_000)

    reward_id = run_async(lambda: publish_reward(portal_gateway, "Harbour cruise for two", "120"))
    sign_in(page, "FreshMart Rewards", member_ref)
    page.get_by_role("link", name="Rewards", exact=True).click()
    screenshot(page, "catalog")
    page.get_by_role("link", name="Harbour cruise for two").click()
    expect(page).to_have_url(re.compile(f"/portal/rewards/{reward_id}$"))
    option = page.get_by_label(re.compile(r"\d FreshMart Points$"))
    expect(option).to_be_checked()
    price = int(re.match(r"[\d,]+", option.evaluate("e => e.labels[0].textContent"))[0].replace(",", ""))  # type: ignore[index]
    screenshot(page, "reward")
    page.get_by_role("button", name="Redeem").click()
    expect(page.get_by_role("status")).to_have_text("Redeemed. It is listed below.")
    expect(page.locator("table.list")).to_contain_text("Harbour cruise for two")
    expect(page.locator("table.list")).to_contain_text("Paid, awaiting delivery")
    screenshot(page, "history")
    assert partners.balance("fresh-mart", member_ref) == 60_000 - price


def test_a_member_pages_to_older_redemptions_in_chinese_at_a_phones_width(
    browser: Browser, portal_gateway: PortalGateway, screenshot: Screenshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history listed the newest 50 and no more; the older ones are a link away, in the
    member's language."""
    monkeypatch.setattr(portal_rewards, "HISTORY_LENGTH", 1)
    member_ref = portal_gateway.partners.new_member("fresh-mart", balance=60_000)
    titles = {"Harbour cruise for two", "Island ferry for two"}
    rewards = [run_async(partial(publish_reward, portal_gateway, title, "120")) for title in sorted(titles)]

    def redeeming_both(english: Page) -> None:
        sign_in(english, "FreshMart Rewards", member_ref)
        for reward_id in rewards:
            english.goto(f"/portal/rewards/{reward_id}")
            english.get_by_role("button", name="Redeem").click()
            expect(english.get_by_role("status")).to_have_text("Redeemed. It is listed below.")

    context = in_language(browser, portal_gateway, redeeming_both, language="zh-TW", viewport=PHONE)
    try:
        page = context.new_page()
        page.goto("/portal/rewards/history")
        rows = page.locator("tr[id^=redemption-] td:first-child")
        expect(rows).to_have_count(1)
        newest = rows.inner_text()
        expect(page.get_by_role("link", name="最新的兌換")).to_have_count(0)
        page.get_by_role("navigation", name="更多兌換").get_by_role("link", name="較早的兌換").click()
        expect(rows).to_have_count(1)
        assert {newest, rows.inner_text()} == titles, "each on a page of its own"
        expect(page.get_by_role("link", name="較早的兌換")).to_have_count(0)
        screenshot(page, "older-redemptions")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.get_by_role("link", name="最新的兌換").click()
        expect(rows).to_have_text(newest)
    finally:
        context.close()


def test_every_portal_page_is_refused_without_a_member_session_even_to_staff(
    member_page: Page, portal_gateway: PortalGateway, screenshot: Screenshot
) -> None:
    page = member_page
    pages = ["/portal/", "/portal/convert", "/portal/rewards", "/portal/rewards/history", "/portal/status-match"]
    for path in pages:
        page.goto(path)
        expect(page).to_have_url(re.compile(r"/portal/sign-in\?next="))
        expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the member portal")
    screenshot(page, "sign-in")
    staff = portal_gateway.gateway.person(Role.ADMIN)
    page.goto("/console/sign-in")
    page.get_by_label("Username").fill(staff.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/console/$"))
    for path in pages:
        page.goto(path)
        expect(page).to_have_url(re.compile(r"/portal/sign-in\?next="))


def test_a_form_sent_without_its_csrf_token_is_refused_and_nothing_changes(
    member_page: Page, portal_gateway: PortalGateway, screenshot: Screenshot
) -> None:
    page, partners = member_page, portal_gateway.partners
    member_ref = member_with_two_programs(portal_gateway, page)
    ask_quote(page, "FreshMart Rewards", "Formosa Air Miles", 1_000)
    page.locator("#quote-live input[name=csrf_token]").evaluate("input => input.remove()")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.get_by_role("button", name="Convert now").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("The form could not be accepted")
    screenshot(page, "refused")
    assert partners.balance("fresh-mart", member_ref) == 5_000


def in_language(
    browser: Browser,
    portal_gateway: PortalGateway,
    signing_in: Callable[[Page], object],
    *,
    language: str,
    viewport: dict[str, int],
) -> BrowserContext:
    """A browser in ``language`` at ``viewport``, signed in by ``signing_in`` (which reads the
    English pages, in a context of its own); the caller closes it."""
    english = open_context(browser, portal_gateway.gateway, viewport=viewport)
    try:
        signing_in(english.new_page())
        cookies = english.cookies()
    finally:
        english.close()
    context = open_context(browser, portal_gateway.gateway, locale=language, viewport=viewport)
    context.add_cookies(cookies)  # type: ignore[arg-type]
    return context


@pytest.mark.parametrize("language", ["en", "zh-TW"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_portal_reads_in_both_languages_and_at_a_phone_width(
    browser: Browser, portal_gateway: PortalGateway, screenshot: Screenshot, language: str, viewport: dict[str, int]
) -> None:
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=12_500, tier="Gold Shopper")
    partners.add_member("wallet-pay", member_ref, balance=800)

    def signed_in(page: Page) -> None:
        sign_in(page, "FreshMart Rewards", member_ref)
        link(page, "Wallet Pay Points", member_ref)

    context = in_language(browser, portal_gateway, signed_in, language=language, viewport=viewport)
    try:
        page = context.new_page()
        page.goto("/portal/")
        expect(page.locator("html")).to_have_attribute("lang", language)
        # Chinese has no plural: the point's name as FreshMart declared it, not an English plural.
        unit = "FreshMart Point" if language == "zh-TW" else "FreshMart Points"
        expect(page.locator("#account-fresh-mart .balance")).to_have_text(f"12,500 {unit}")
        screenshot(page, "accounts")
        # A link refused (a code Formosa Air does not confirm): switching language and back
        # keeps the program and member id entered, never the code.
        page.locator("#link-program").select_option("formosa-air")
        page.locator("#link-member").fill(member_ref)
        page.locator("#link-verification").fill("0000")
        page.locator("#link-verification").press("Enter")
        expect(page.locator("#link-problem")).to_be_visible()
        screenshot(page, "link-refused")
        for _ in range(2):
            page.locator("nav.languages a:not([aria-current])").click()
            expect(page.locator("#link-member")).to_have_value(member_ref)
            expect(page.locator("#link-program")).to_have_value("formosa-air")
            expect(page.locator("#link-verification")).to_have_value("")
        page.goto("/portal/convert?from_program=fresh-mart&to_program=wallet-pay&points=1e3")
        page.locator("form.form button[type=submit]").click()
        expect(page.locator("#problem")).to_contain_text("1,000,000,000")
        expect(page.locator("#points")).to_have_value("1e3")
        # Each program's minimum and step, under the points field, before any quote is asked.
        expect(page.locator("#rule-fresh-mart")).to_contain_text(f"200 {unit}")
        expect(page.locator("#rule-wallet-pay")).to_be_visible()
        screenshot(page, "points-refused")
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        # Switching language on the refused form and back keeps what was chosen and typed.
        for _ in range(2):
            page.locator("nav.languages a:not([aria-current])").click()
            expect(page.locator("#points")).to_have_value("1e3")
            expect(page.locator("#to-program")).to_have_value("wallet-pay")
        expect(page.locator("html")).to_have_attribute("lang", language)
        # As a phone's keyboard types digits in Chinese: full width.
        page.locator("#points").fill("１,０００" if language == "zh-TW" else "1,000")
        page.locator("form.form button[type=submit]").click()
        expect(page).to_have_url(QUOTE_URL)
        expect(page.locator("#points-in")).to_contain_text("1,000")
        expect(page.locator("[data-countdown-left]")).to_have_text(re.compile(r"^[0-9]+:[0-5][0-9]$"))
        # A full-width colon is its own space: none after it, as after an English colon.
        left = "剩餘時間：" if language == "zh-TW" else "Time left: "
        assert re.match(f"^{left}[0-9]+:", page.locator(".countdown-line").inner_text()), "the countdown's label"
        expect(page.locator("#source-balance")).to_have_text(f"12,500 {unit}")
        screenshot(page, "quote")
        # More than the 12,500 held: told on the quote, no Convert now, the amount to change.
        page.goto("/portal/convert?from_program=fresh-mart&to_program=wallet-pay&points=15000")
        page.locator("form.form button[type=submit]").click()
        expect(page).to_have_url(QUOTE_URL)
        expect(page.locator("#short")).to_contain_text("12,500")
        expect(page.locator("#convert")).to_have_count(0)
        screenshot(page, "quote-short")
        page.locator("#change-amount").click()
        expect(page.locator("#points")).to_have_value("15000")
        expect(page.locator("#to-program")).to_have_value("wallet-pay")
        page.goto("/portal/status-match?from_program=fresh-mart&to_program=wallet-pay")
        expect(page.locator("#matched-tier")).to_have_text("Premium")
        screenshot(page, "status-match")
        page.goto("/portal/rewards")
        screenshot(page, "rewards")
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= viewport["width"], "nothing sticks out sideways"
        # A reward of 1,000 TWD: FreshMart's 12,500 points pay for it, Wallet Pay's 800 do not,
        # and the page says so beside Wallet Pay instead of offering it.
        page.goto(
            f"/portal/rewards/{run_async(lambda: publish_reward(portal_gateway, 'Island ferry for two', '1000'))}"
        )
        expect(page.locator("#pay-wallet-pay")).to_be_disabled()
        expect(page.locator("#balance-wallet-pay")).to_contain_text("800")
        expect(page.locator("#balance-wallet-pay")).to_contain_text("1,020")
        expect(page.locator("#pay-fresh-mart")).to_be_checked()
        expect(page.locator("#balance-fresh-mart")).to_contain_text(f"12,500 {unit}")
        # The coalition point, none held: named once under the choices, not a disabled choice.
        expect(page.locator("#pay-coalition")).to_have_count(0)
        expect(page.locator("#unheld")).to_contain_text("Coalition Points")
        screenshot(page, "reward")
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        # Each label starts on its radio's line, at a phone's width too (it used to wrap under it).
        for program in ("fresh-mart", "wallet-pay"):
            radio = page.locator(f"#pay-{program}").bounding_box()
            label = page.locator(f"label[for=pay-{program}]").bounding_box()
            assert radio is not None and label is not None
            assert label["y"] < radio["y"] + radio["height"] and label["x"] > radio["x"], program
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()


@pytest.mark.parametrize(
    ("language", "viewport", "unlinked"),
    [
        ("en", DESKTOP, "The account is unlinked. Your history through it stays; you can link it again at any time."),
        ("zh-TW", PHONE, "帳戶已取消連結。透過此帳戶的紀錄仍會保留；您隨時可以再次連結。"),
    ],
    ids=["en-desktop", "zh-TW-phone"],
)
def test_a_member_unlinks_an_account_from_its_card_after_confirming(
    browser: Browser,
    portal_gateway: PortalGateway,
    screenshot: Screenshot,
    language: str,
    viewport: dict[str, int],
    unlinked: str,
) -> None:
    context = in_language(
        browser,
        portal_gateway,
        lambda page: member_with_two_programs(portal_gateway, page),
        language=language,
        viewport=viewport,
    )
    try:
        page = context.new_page()
        page.goto("/portal/")
        expect(page.locator("#unlink-fresh-mart")).to_have_count(0)  # signed in with it: it stays
        page.locator("#unlink-formosa-air").click()
        expect(page).to_have_url(re.compile(r"/portal/accounts/formosa-air/unlink$"))
        screenshot(page, "unlink-confirm")
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        # The two answers side by side (or stacked on a phone) are buttons of one height.
        confirm, cancel = (page.locator(f"#unlink-{which}").bounding_box() for which in ("confirm", "cancel"))
        assert confirm is not None and cancel is not None
        assert abs(confirm["height"] - cancel["height"]) < 0.5, (confirm, cancel)
        page.locator("#unlink-confirm").press("Enter")
        expect(page).to_have_url(re.compile(r"/portal/\?notice=unlinked$"))
        expect(page.get_by_role("status")).to_have_text(unlinked)
        expect(page.locator("#account-formosa-air")).to_have_count(0)
        expect(page.locator("#account-fresh-mart")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    finally:
        context.close()


#: The widths, from a narrow phone's up, at which a list item's ``<time>`` is split over two
#: lines (an inline element a line break splits has a box on each line).
TIME_SPLIT_AT = """(item) => {
  const time = item.querySelector("time");
  const split = [];
  for (let width = 120; width <= 360; width += 4) {
    item.style.width = width + "px";
    if (time.getClientRects().length > 1) split.push(width);
  }
  item.style.width = "";
  return split;
}"""


@pytest.mark.parametrize("language", ["en", "zh-TW"])
def test_the_coalition_cards_expiry_keeps_its_moment_on_one_line_at_a_phones_width(
    browser: Browser, portal_gateway: PortalGateway, screenshot: Screenshot, language: str
) -> None:
    """A phone's width wrapped the card's expiry line inside its date, "2028年1月" on one line
    and "1日 午夜12:00:00" on the next: the line may wrap around the moment, never inside it."""
    member_ref = portal_gateway.partners.new_member("fresh-mart", balance=5_000)

    def earned(page: Page) -> None:
        sign_in(page, "FreshMart Rewards", member_ref)
        ask_quote(page, "FreshMart Rewards", "Coalition Points", 1_000)
        page.get_by_role("button", name="Convert now").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Converted")

    context = in_language(browser, portal_gateway, earned, language=language, viewport=PHONE)
    try:
        page = context.new_page()
        page.goto("/portal/")
        expiring = page.locator("#expiring li")
        expect(expiring).to_have_count(1)
        screenshot(page, "coalition-card")
        assert expiring.evaluate(TIME_SPLIT_AT) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    finally:
        context.close()


@pytest.mark.parametrize(("language", "until"), [("en", "Until"), ("zh-TW", "有效至")])
def test_the_portal_lists_say_each_cells_column_at_a_phones_width(
    browser: Browser, portal_gateway: PortalGateway, screenshot: Screenshot, language: str, until: str
) -> None:
    """At a phone's width a list's headings are hidden and its rows stack: a status match read
    "FreshMart Rewards · Gold Shopper, Wallet Pay Points, Premium, Active, a date", leaving the
    member to guess which program matched whom and what the date was."""
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=100, tier="Gold Shopper")
    partners.add_member("wallet-pay", member_ref, balance=100)

    def matched(page: Page) -> None:
        sign_in(page, "FreshMart Rewards", member_ref)
        link(page, "Wallet Pay Points", member_ref)
        page.goto("/portal/status-match?from_program=fresh-mart&to_program=wallet-pay")
        page.locator("#request-match").click()
        expect(page.locator("#matches tbody tr")).to_have_count(1)

    context = in_language(browser, portal_gateway, matched, language=language, viewport=PHONE)
    try:
        page = context.new_page()
        page.goto("/portal/status-match")
        screenshot(page, "status-matches")
        cells = page.locator("#matches tbody td")
        said = cells.evaluate_all("cells => cells.map(cell => getComputedStyle(cell, '::before').content)")
        labels = cells.evaluate_all("cells => cells.map(cell => JSON.stringify(cell.dataset.label))")
        assert said == labels and len(said) == 5 and said[-1] == f'"{until}"'
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.set_viewport_size(DESKTOP)
        assert cells.first.evaluate("cell => getComputedStyle(cell, '::before').content") == "none", "headings say it"
    finally:
        context.close()


#: Where each of the sign-in page's buttons has its text's last two characters, 登入 ("sign
#: in"), as lines: the top of each character's box, for every width the button is given.
WORD_LINES = """(button) => {
  const text = [...button.childNodes].find((node) => node.nodeType === Node.TEXT_NODE);
  const end = text.data.lastIndexOf("登入");
  const top = (at) => {
    const range = document.createRange();
    range.setStart(text, at);
    range.setEnd(text, at + 1);
    return range.getClientRects()[0].top;
  };
  const found = [];
  for (let width = 160; width <= 400; width += 4) {
    button.style.width = width + "px";
    found.push([width, top(end), top(end + 1)]);
  }
  button.style.width = "";
  return found;
}"""


def test_a_chinese_sign_in_button_wraps_between_words_never_inside_one(
    browser: Browser, portal_gateway: PortalGateway
) -> None:
    """The button "透過 Harbor Bank Card Rewards 登入" may wrap at any width a phone gives it, but never
    between 登 and 入, which leaves a line that reads "sign" and another that reads "in"."""
    context = open_context(browser, portal_gateway.gateway, locale="zh-TW", viewport=PHONE)
    try:
        page = context.new_page()
        page.goto("/portal/sign-in")
        buttons = page.locator("ul.choices a.button")
        assert buttons.count() > 1
        for button in buttons.all():
            split = [width for width, first, second in button.evaluate(WORD_LINES) if first != second]
            assert split == [], f"{button.inner_text()!r} breaks inside 登入 at these widths: {split}"
    finally:
        context.close()
