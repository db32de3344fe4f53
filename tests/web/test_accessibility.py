"""axe-core over every page of the staff console, the partner console and the member portal, in
English and Traditional Chinese, a page showing a form's error among them: a new violation
fails the test. And every console's forms from the keyboard alone: a refused form puts the focus
on its first error.

axe-core comes from npm (tests/audit/package.json; `make test` runs `npm ci` there) and is
injected from node_modules with the page's CSP bypassed, so nothing is fetched from the network.
Every page is visited once per language in one browser; the pages to visit are checked against
the pages the application routes, so a new page fails here until it is added.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from exchange.auth.scopes import Role
from exchange.rewards.catalog import RewardDraft
from exchange.services.container import open_services
from exchange.settlement.models import JobState
from exchange.testing.databases import PostgresDatabases
from tests.conftest import REPO_ROOT
from tests.web.conftest import Gateway, console_sign_in, open_context, run_async, start_gateway
from tests.web.pages import web_pages
from tests.web.portal_partners import PIN, Partners, running_partners, set_up_member_sign_in
from tests.web.settlement_month import RECORDS, build_last_month

AXE = REPO_ROOT / "tests" / "audit" / "node_modules" / "axe-core" / "axe.min.js"
#: What axe checks: WCAG 2.2 A and AA, and its best practices (landmarks, the order of headings).
AXE_RUN = """() => axe.run(document, {
  runOnly: {type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]},
  resultTypes: ["violations"],
}).then((results) => results.violations.map((v) => ({
  id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
})))"""
#: What the application routes for GET that is no page to check: downloads, and fragments htmx
#: swaps into a page (checked there), and the step that sends a member on to a partner's page.
NOT_PAGES = {
    "/console/settlement/jobs/{job_id}/progress",
    "/console/settlement/{period}/statements/{participant}/{form}",
    "/console/settlement/{period}/reconciliations/{partner}/breaks.csv",
    "/console/partner/statements/{period}/statement.{format}",
    "/console/partner/statements/{period}/breaks.csv",
    "/console/partner/books/{period}/books.csv",
    "/portal/sign-in/{program}",
    "/portal/sign-in/return",  # the partner posts it; a GET is only told so (405)
}
PARTNER = "fresh-mart"


@dataclass(frozen=True)
class Site:
    """A gateway with a month settled and a reward published, and what the pages' addresses need."""

    gateway: Gateway
    partners: Partners
    period: str
    job_id: str
    reward_id: str


async def settle_and_publish(gateway: Gateway, period: str) -> tuple[str, str]:
    """Close ``period`` as staff do, in a job; import fresh-mart's records; publish a reward of
    fresh-mart's. The job's id and the reward's."""
    async with open_services(gateway.settings) as services:
        settlement = services.settlement
        job = await settlement.request_close(period, by="test")
        await settlement.run_jobs()  # the gateway's runner may have taken it: then wait for it
        while (state := (await settlement.job(job.id)).state) in (JobState.QUEUED, JobState.RUNNING):
            await asyncio.sleep(0.1)
        assert state == JobState.DONE
        await settlement.import_records(PARTNER, period, io.BytesIO(RECORDS.encode()), by="test")
        draft = RewardDraft(title="Harbour cruise for two", price=Decimal("120"), stock=5, description="Sunset.")
        reward = await services.rewards.publish(PARTNER, draft)
    return job.id, reward.id


@pytest.fixture(scope="module")
def site(postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with running_partners(tmp_path_factory.mktemp("a11y-sandboxes"), (PARTNER, "formosa-air")) as partners:
        for gateway in start_gateway(postgres_databases, partner_base_urls=partners.fleet.base_urls):
            set_up_member_sign_in(partners, gateway.settings)
            period = build_last_month(gateway.settings)
            job_id, reward_id = run_async(lambda: settle_and_publish(gateway, period))  # noqa: B023
            yield Site(gateway, partners, period, job_id, reward_id)


@dataclass
class Audit:
    """What axe found on the pages visited in one language, by page."""

    language: str
    found: dict[str, list[str]] = field(default_factory=dict)
    visited: set[str] = field(default_factory=set)

    def check(self, page: Page, label: str) -> None:
        """Run axe on the page as it stands; record its violations under ``label``. The page
        says which language it is in (screen readers pick their voice by it)."""
        assert page.evaluate("document.documentElement.lang") == self.language, label
        # One who moves by headings hears each of a page's first two levels once: two alike
        # read as one, whatever they head.
        headings = page.locator("h1, h2").all_inner_texts()
        if len(set(headings)) < len(headings):
            self.found.setdefault(label, []).append(f"headings repeated: {headings}")
        page.add_script_tag(path=str(AXE))
        for violation in page.evaluate(AXE_RUN):
            self.found.setdefault(label, []).append(
                f"{violation['impact']} {violation['id']}: {violation['help']} at {violation['nodes']}"
            )

    def visit(self, page: Page, pattern: str, path: str | None = None) -> None:
        """Open the page that the route ``pattern`` serves (at ``path``, when the pattern takes values)."""
        self.visited.add(pattern)
        answer = page.goto(path or pattern)
        assert answer is not None and answer.status < 400, f"{path or pattern}: {answer and answer.status}"
        self.check(page, path or pattern)

    def refused(self, page: Page, path: str, fields: dict[str, str]) -> None:
        """On the form at ``path``, fill ``fields`` (by the inputs' ids) with what the exchange
        refuses and send it with Enter; check the page that says why."""
        page.goto(path)
        for selector, value in fields.items():
            page.locator(selector).fill(value)
        with page.expect_navigation():
            page.locator(list(fields)[-1]).press("Enter")
        expect(page.locator("[role=alert]").first).to_be_visible()
        self.check(page, f"{path} (refused)")


@dataclass(frozen=True)
class Member:
    cookies: list[Any]
    quote: str
    conversion: str


@pytest.fixture(scope="module")
def member(browser: Browser, site: Site) -> Member:
    """A member signed in through Formosa Air with FreshMart linked, who converted once and
    redeemed the reward: the session's cookies, the quote's address and the conversion's."""
    partners = site.partners
    member_ref = partners.new_member("formosa-air", balance=50_000)
    partners.add_member(PARTNER, member_ref, balance=5_000)
    context = open_context(browser, site.gateway)
    try:
        page = context.new_page()
        page.goto("/portal/sign-in")
        page.get_by_role("link", name=re.compile("^Sign in with Formosa Air")).click()
        page.get_by_label("Member id").fill(member_ref)
        page.get_by_label("PIN").fill(PIN)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).to_have_url(re.compile(r"/portal/$"))
        page.get_by_label("Program", exact=True).select_option(PARTNER)
        page.get_by_label("Member id at that program").fill(member_ref)
        page.get_by_label("Verification code").fill(PIN)
        page.get_by_role("button", name="Link account").click()
        expect(page.get_by_role("status")).to_have_text("The account is linked.")
        page.goto("/portal/convert?from_program=formosa-air&to_program=fresh-mart&points=5000")
        page.get_by_role("button", name="Get a quote").click()
        expect(page).to_have_url(re.compile("/portal/convert/quotes/"))
        quote = page.url
        page.get_by_role("button", name="Convert now").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Converted")
        conversion = page.url
        page.goto(f"/portal/rewards/{site.reward_id}")
        page.get_by_role("button", name="Redeem").click()
        expect(page.get_by_role("status")).to_have_text("Redeemed. It is listed below.")
        return Member(context.cookies(), quote, conversion)  # type: ignore[arg-type]
    finally:
        context.close()


def a11y_context(browser: Browser, gateway: Gateway, language: str, **options: object) -> BrowserContext:
    """A context whose pages take axe's script: the CSP, which refuses inline scripts, bypassed."""
    context = open_context(browser, gateway, locale=language, bypass_csp=True, **options)
    context.set_default_timeout(10_000)
    return context


@pytest.mark.parametrize("language", ["en", "zh-TW"])
def test_no_page_of_the_consoles_or_the_portal_has_an_accessibility_violation(
    browser: Browser, site: Site, member: Member, language: str
) -> None:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing: `npm ci --prefix tests/audit` (make test runs it)", pytrace=False)
    gateway, period = site.gateway, site.period
    audit = Audit(language)
    go = audit.visit
    context = a11y_context(browser, gateway, language)
    try:  # the front door, and the staff console, a refused sign-in and a refused closing among its pages
        page = context.new_page()
        go(page, "/")
        go(page, "/console/sign-in")
        staff = gateway.person(Role.SETTLEMENT)
        audit.refused(page, "/console/sign-in", {"#username": staff.username, "#password": "wrong"})
        console_sign_in(page, staff)
        expect(page).to_have_url(re.compile(r"/console/$"))
        audit.check(page, "/console/ (staff)")
        audit.visited.add("/console/")
        go(page, "/console/settlement/")
        audit.refused(page, "/console/settlement/", {"#period": "2026-13"})
        go(page, "/console/settlement/jobs/{job_id}", f"/console/settlement/jobs/{site.job_id}")
        go(page, "/console/settlement/{period}", f"/console/settlement/{period}")
        go(
            page,
            "/console/settlement/{period}/statements/{participant}",
            f"/console/settlement/{period}/statements/{PARTNER}",
        )
        expect(page.locator("#signature-result")).not_to_be_empty()
        audit.check(page, "the statement, its signature checked")
        go(
            page,
            "/console/settlement/{period}/reconciliations/{partner}",
            f"/console/settlement/{period}/reconciliations/{PARTNER}",
        )
        go(page, "/console/risk/")
        go(page, "/console/partners-waiting")
    finally:
        context.close()

    context = a11y_context(browser, gateway, language)
    try:  # the partner console, a refused reward among its pages
        page = context.new_page()
        console_sign_in(page, gateway.person(Role.PARTNER, PARTNER))
        expect(page).to_have_url(re.compile(r"/console/$"))
        audit.check(page, "/console/ (partner)")
        base = "/console/partner"
        for pattern in ("rates", "rewards", "rewards/new", "redemptions", "access", "statements", "books"):
            go(page, f"{base}/{pattern}")
        audit.refused(page, f"{base}/rewards/new", {"#f-title": "A cruise", "#f-stock": "3", "#f-price": "abc"})
        go(page, f"{base}/rates/edit", f"{base}/rates/edit?fromProgram=formosa-air")
        go(page, f"{base}/rates/preview", f"{base}/rates/preview?fromProgram=formosa-air&points=5000")
        go(page, f"{base}/promotions/new")
        go(page, f"{base}/rewards/{{reward_id}}", f"{base}/rewards/{site.reward_id}")
        go(page, f"{base}/statements/{{period}}", f"{base}/statements/{period}")
        go(page, f"{base}/statements/{{period}}/reconciliation", f"{base}/statements/{period}/reconciliation")
        go(page, f"{base}/books/{{period}}", f"{base}/books/{period}")
    finally:
        context.close()

    context = a11y_context(browser, gateway, language)
    try:  # the member portal, a refused conversion among its pages
        page = context.new_page()
        go(page, "/portal/sign-in")
        context.add_cookies(member.cookies)  # type: ignore[arg-type]
        go(page, "/portal/")
        go(page, "/portal/accounts/{program_id}/unlink", f"/portal/accounts/{PARTNER}/unlink")
        go(page, "/portal/convert")
        audit.refused(page, "/portal/convert", {"#points": "many"})
        go(page, "/portal/convert/quotes/{quote_id}", member.quote)
        go(page, "/portal/conversions/{conversion_id}", member.conversion)
        go(page, "/portal/conversions")
        go(page, "/portal/rewards")
        go(page, "/portal/rewards/history")
        go(page, "/portal/rewards/{reward_id}", f"/portal/rewards/{site.reward_id}")
        go(page, "/portal/status-match", "/portal/status-match?from_program=formosa-air&to_program=fresh-mart")
    finally:
        context.close()

    routed = {path for path, method, _ in web_pages(gateway.app) if method == "GET"} - NOT_PAGES
    assert routed - audit.visited == set(), "pages no test here visits: add them"
    assert audit.found == {}, "\n".join(f"{page}:\n  " + "\n  ".join(found) for page, found in audit.found.items())


def tab_to(page: Page, selector: str, *, most: int = 60) -> None:
    """Press Tab from where the focus is until it reaches ``selector``, as a keyboard user does."""
    for _ in range(most):
        if page.locator(selector).evaluate("element => element === document.activeElement"):
            return
        page.keyboard.press("Tab")
    pytest.fail(f"{most} presses of Tab never reached {selector}")


def type_over(page: Page, text: str) -> None:
    """Replace what the focused field holds with ``text``, from the keyboard."""
    page.keyboard.press("ControlOrMeta+A")
    page.keyboard.type(text)


def expect_focus_on_error(page: Page, selector: str) -> None:
    """The refused form came back with the focus on the field in error, which is marked invalid
    and described by its error."""
    field = page.locator(selector)
    expect(field).to_be_focused()
    expect(field).to_have_attribute("aria-invalid", "true")
    described_by = field.get_attribute("aria-describedby") or ""
    errors = [page.locator(f"[id='{name}']") for name in described_by.split()]
    assert errors and any(error.inner_text().strip() for error in errors), f"{selector} names no error"


@pytest.fixture
def keyboard_context(browser: Browser, site: Site) -> Iterator[BrowserContext]:
    context = open_context(browser, site.gateway)
    context.set_default_timeout(10_000)
    try:
        yield context
    finally:
        context.close()


def test_the_staff_sign_in_and_closing_forms_work_from_the_keyboard_and_focus_their_error(
    keyboard_context: BrowserContext, site: Site
) -> None:
    page = keyboard_context.new_page()
    staff = site.gateway.person(Role.SETTLEMENT)
    page.goto("/console/sign-in")
    tab_to(page, "#username")
    page.keyboard.type(staff.username)
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    page.keyboard.press("Enter")
    # A refused sign-in names no field (it does not say which was wrong): the focus is on why.
    expect(page.locator("#sign-in-problem")).to_be_focused()
    tab_to(page, "#password")
    page.keyboard.type(staff.password)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/$"))

    page.goto("/console/settlement/")
    tab_to(page, "#period")
    type_over(page, "2026-13")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("must be a year and month")
    expect_focus_on_error(page, "#period")


def test_a_partner_publishes_a_reward_from_the_keyboard_after_the_focus_goes_to_its_error(
    keyboard_context: BrowserContext, site: Site
) -> None:
    page = keyboard_context.new_page()
    console_sign_in(page, site.gateway.person(Role.PARTNER, PARTNER))
    expect(page).to_have_url(re.compile(r"/console/$"))
    page.goto("/console/partner/rewards/new")
    tab_to(page, "#f-title")
    for text in ("Lounge pass", "One visit.", "eighty"):  # title, description, price
        page.keyboard.type(text)
        page.keyboard.press("Tab")
    page.keyboard.type("3")  # stock
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Nothing was changed")
    expect_focus_on_error(page, "#f-price")
    expect(page.locator("#f-price")).to_have_attribute("inputmode", "decimal")  # a phone's keypad with a point
    type_over(page, "80")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("The reward is published.")
    expect(page.get_by_role("heading", level=1)).to_have_text("Lounge pass")


def test_a_member_asks_for_a_quote_from_the_keyboard_after_the_focus_goes_to_its_error(
    keyboard_context: BrowserContext, site: Site, member: Member
) -> None:
    keyboard_context.add_cookies(member.cookies)  # type: ignore[arg-type]
    page = keyboard_context.new_page()
    page.goto("/portal/convert")
    tab_to(page, "#from-program")
    page.keyboard.press("Tab")  # the second program is chosen already
    page.keyboard.press("Tab")
    page.keyboard.type("many")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_be_visible()
    expect_focus_on_error(page, "#points")
    type_over(page, "5000")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile("/portal/convert/quotes/"))
