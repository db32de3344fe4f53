"""The console and GraphiQL in a real browser (headless Chromium), as people use them:
signing in and out, with the keyboard alone, on a phone, in both languages, and offline."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from exchange.auth.scopes import Role
from tests.web.conftest import DESKTOP, FAILURE_LIMIT, PHONE, Gateway, Person, open_context

Screenshot = Callable[[Page, str], Path]


def sign_in(page: Page, person: Person, *, password: str | None = None, code: str = "") -> None:
    page.goto("/console/sign-in")
    page.get_by_label("Username").fill(person.username)
    page.get_by_label("Password").fill(person.password if password is None else password)
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Sign in").click()


def test_signing_in_with_a_password_shows_who_you_are_and_your_program(
    page: Page, gateway: Gateway, screenshot: Screenshot
) -> None:
    person = gateway.person(Role.PARTNER, "formosa-air")
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next=%2Fconsole%2F$"))
    sign_in(page, person)
    expect(page).to_have_url(re.compile(r"/console/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Console")
    expect(page.get_by_text(f"Signed in as {person.username}")).to_be_visible()
    facts = page.locator(".facts")
    expect(facts).to_contain_text("Partner staff")
    expect(facts).to_contain_text("Formosa Air Miles (formosa-air)")
    expect(facts).to_contain_text("NT$0.40 per Mile")
    screenshot(page, "home")


def test_signing_in_with_totp_needs_the_current_code(page: Page, gateway: Gateway, screenshot: Screenshot) -> None:
    person = gateway.person(Role.SETTLEMENT, with_totp=True)
    sign_in(page, person)
    expect(page.get_by_role("alert")).to_contain_text("The username, password or authentication code is not right.")
    expect(page.get_by_label("Username")).to_have_value(person.username)
    screenshot(page, "without-code")
    sign_in(page, person, code=person.code())
    expect(page).to_have_url(re.compile(r"/console/$"))
    expect(page.locator(".facts")).to_contain_text("Settlement staff")


def test_wrong_passwords_are_counted_and_lock_the_username_with_a_page_saying_so(
    page: Page, gateway: Gateway, screenshot: Screenshot
) -> None:
    person = gateway.person(Role.ADMIN)
    for _ in range(FAILURE_LIMIT):
        sign_in(page, person, password="not the password")
        expect(page.get_by_role("alert")).to_contain_text("is not right")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        sign_in(page, person)
    assert answer.value.status == 429 and int(answer.value.headers["retry-after"]) > 0
    expect(page.get_by_role("heading", name="Too many failed sign-ins")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Try again in 1 minute.")
    expect(page).to_have_url(re.compile(r"/console/sign-in$"))
    screenshot(page, "locked")


def test_signing_out_ends_the_session(page: Page, gateway: Gateway, screenshot: Screenshot) -> None:
    sign_in(page, gateway.person(Role.ADMIN))
    expect(page).to_have_url(re.compile(r"/console/$"))
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/console/sign-in\?notice=signed-out$"))
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    screenshot(page, "signed-out")
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))


def test_signing_in_with_the_keyboard_alone(page: Page, gateway: Gateway, screenshot: Screenshot) -> None:
    person = gateway.person(Role.SETTLEMENT)
    page.goto("/console/sign-in")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    for _ in range(10):
        if page.evaluate("document.activeElement.id") == "username":
            break
        page.keyboard.press("Tab")
    username = page.get_by_label("Username")
    expect(username).to_be_focused()
    outline = username.evaluate("element => getComputedStyle(element).outlineStyle")
    assert outline != "none", "the focused field shows its focus"
    page.keyboard.type(person.username)
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(person.password)
    screenshot(page, "typed")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/$"))
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Sign out":
            break
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?notice=signed-out$"))


LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


@pytest.mark.parametrize("language", ["en", "zh-TW"])
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_pages_fit_the_screen_and_speak_the_language(
    browser: Browser, gateway: Gateway, screenshot: Screenshot, language: str, viewport: dict[str, int]
) -> None:
    person = gateway.person(Role.PARTNER, "formosa-air")
    context = open_context(browser, gateway, locale=language, viewport=viewport)
    try:
        page = context.new_page()
        page.goto("/console/sign-in")
        for label in ("sign-in", "home"):
            if label == "home":
                page.locator("#username").fill(person.username)
                page.locator("#password").fill(person.password)
                page.locator("#password").press("Enter")
                expect(page).to_have_url(re.compile(r"/console/$"))
            expect(page.locator("html")).to_have_attribute("lang", language)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{label} scrolls sideways by {overflow} px at {viewport['width']} px"
            if language == "zh-TW":
                text = page.locator("body").inner_text()
                known = {
                    "English",
                    "Formosa",
                    "Air",
                    "Miles",
                    "formosa",
                    "air",
                    "Mile",
                    "NT",
                    *person.username.split("-"),
                }
                untranslated = set(LATIN_WORD.findall(text)) - known
                assert not untranslated, f"untranslated on {label}: {sorted(untranslated)}"
            screenshot(page, label)
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()


def test_traditional_chinese_is_chosen_from_accept_language(browser: Browser, gateway: Gateway) -> None:
    context = open_context(browser, gateway, locale="zh-TW")
    try:
        page = context.new_page()
        page.goto("/console/")
        expect(page.get_by_role("heading", level=1)).to_have_text("登入控制台")
        expect(page.get_by_label("使用者名稱")).to_be_visible()
        expect(page.get_by_role("button", name="登入")).to_be_visible()
    finally:
        context.close()


def test_the_language_switch_chooses_traditional_chinese_and_keeps_it(page: Page, gateway: Gateway) -> None:
    person = gateway.person(Role.ADMIN)
    page.goto("/console/sign-in")
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to the console")
    page.get_by_role("navigation", name="Language").get_by_role("link", name=re.compile("中文")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("登入控制台")
    page.get_by_label("使用者名稱").fill(person.username)
    page.get_by_label("密碼").fill(person.password)
    page.get_by_role("button", name="登入").click()
    expect(page).to_have_url(re.compile(r"/console/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("控制台")
    expect(page.locator(".facts")).to_contain_text("管理員")
    page.get_by_role("navigation", name="語言").get_by_role("link", name="English").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Console")


def test_htmx_requests_carry_the_sessions_csrf_token(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.person(Role.SETTLEMENT))
    expect(page).to_have_url(re.compile(r"/console/$"))
    page.wait_for_function("window.htmx !== undefined")
    without = page.evaluate(
        "fetch('/console/sign-out', {method: 'POST', headers: {'hx-request': 'true'}}).then(r => r.status)"
    )
    assert without == 403, "a script request without the token is refused"
    with page.expect_response(re.compile(r"/console/sign-out$")) as answer:
        page.evaluate("htmx.ajax('POST', '/console/sign-out', {source: document.body, swap: 'none'})")
    assert answer.value.request.headers["x-csrf-token"]
    assert answer.value.status in (200, 303)
    page.goto("/console/")
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))


def test_graphiql_renders_and_runs_a_query_with_no_network_beyond_loopback(
    page: Page, gateway: Gateway, screenshot: Screenshot
) -> None:
    refused: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto("/graphql?q=%7B%20programs%20%7B%20id%20name%20%7D%20%7D")  # GraphiQL reads q=; query= runs
    expect(page.locator(".graphiql-container .graphiql-editor").first).to_be_visible(timeout=20_000)
    page.get_by_role("button", name=re.compile("Execute query")).click()
    expect(page.locator(".graphiql-response")).to_contain_text('"id": "formosa-air"', timeout=20_000)
    screenshot(page, "graphiql")
    assert refused == [], f"GraphiQL reached beyond loopback: {refused}"


def headers_posted(page: Page) -> list[dict[str, str]]:
    """The headers of each query the page posts to /graphql from now on, as they are sent."""
    sent: list[dict[str, str]] = []

    def record(route: Route) -> None:
        if route.request.method == "POST":
            sent.append(route.request.all_headers())
        route.continue_()

    page.route("**/graphql*", record)
    return sent


def test_graphiql_sends_no_request_header_its_address_names(page: Page, gateway: Gateway) -> None:
    """GraphiQL took request headers from its address (``?headers=``) and sent them with every
    query, keeping them for later visits: a link made whoever opened it query under headers
    its author chose, such as an ``Authorization`` naming the author's token. The query from
    the address is shown, and runs without them."""
    sent = headers_posted(page)
    named = json.dumps({"Authorization": "Bearer from-the-link", "X-From-The-Link": "yes"})
    page.goto("/graphql?" + urlencode({"q": "{ programs { id } }", "headers": named}, quote_via=quote))
    expect(page.locator(".graphiql-container .graphiql-editor").first).to_be_visible(timeout=20_000)
    page.get_by_role("button", name=re.compile("Execute query")).click()
    expect(page.locator(".graphiql-response")).to_contain_text('"id": "formosa-air"', timeout=20_000)
    assert sent, "GraphiQL sent no query"
    assert [name for headers in sent for name in headers if name in ("authorization", "x-from-the-link")] == []
    assert "from-the-link" not in page.evaluate("JSON.stringify(window.localStorage)")


def test_graphiql_keeps_no_header_typed_into_it_in_the_browsers_storage(page: Page, gateway: Gateway) -> None:
    """GraphiQL kept the headers typed into its editor in the browser's storage, so a bearer
    token pasted there outlived the reader's session, for whoever used the browser next. The
    headers are sent with the query, and kept at most in the tab's session storage."""
    sent = headers_posted(page)
    page.goto("/graphql?" + urlencode({"q": "{ programs { id } }"}, quote_via=quote))
    expect(page.locator(".graphiql-container .graphiql-editor").first).to_be_visible(timeout=20_000)
    page.get_by_text("Headers", exact=True).click()
    page.locator(".graphiql-editor-tool .graphiql-editor:visible .CodeMirror").click()
    page.keyboard.insert_text('{"X-Typed-Here": "typed-secret"}')
    page.get_by_role("button", name=re.compile("Execute query")).click()
    expect(page.locator(".graphiql-response")).to_contain_text('"id": "formosa-air"', timeout=20_000)
    assert [headers.get("x-typed-here") for headers in sent][-1:] == ["typed-secret"]
    assert "typed-secret" not in page.evaluate("JSON.stringify(window.localStorage)")
