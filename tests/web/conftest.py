"""A gateway on PostgreSQL served from a thread for the whole session, people to sign in as,
and one headless Chromium (Debian's; `make test` installs it) for every browser test.

Screenshots are kept in test-artifacts/screenshots/ (git-ignored), named after their test.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable, Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from starlette.applications import Starlette

from exchange.app import create_app
from exchange.auth.scopes import Role
from exchange.people import totp
from exchange.services.container import load_partners_directory, open_services
from exchange.serving import free_port
from exchange.settings import Settings
from exchange.testing.databases import PostgresDatabases
from exchange.testing.threads import serving_in_thread
from exchange.trust_store import trust_store
from tests.conftest import REPO_ROOT, SAMPLE_PARTNERS

SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
#: As root Chromium needs --no-sandbox; the others stop it calling Google's hosts, which this
#: machine's network refuses noisily.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
#: Failed sign-ins before a username is locked, low so that a test reaches it quickly.
FAILURE_LIMIT = 3
PASSWORD = "a long enough password"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 740}

_usernames = itertools.count(1)
T = TypeVar("T")


def run_async(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``work()`` to completion in a thread of its own: Playwright's synchronous API keeps
    an event loop running in the tests' thread, where asyncio.run cannot start another."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(work())).result()


@dataclass(frozen=True)
class Person:
    username: str
    password: str
    role: Role
    program_id: str | None = None
    totp_secret: str | None = None

    def code(self) -> str:
        assert self.totp_secret is not None
        return totp.code_at(self.totp_secret, datetime.now(UTC))


@dataclass
class Gateway:
    url: str
    settings: Settings
    app: Starlette

    def person(self, role: Role, program_id: str | None = None, *, with_totp: bool = False) -> Person:
        """A new person, created as `exchange people create` does."""
        username = f"{role.value}-{next(_usernames)}"

        async def create() -> str | None:
            async with open_services(self.settings) as services:
                created = await services.people.create(
                    username=username, password=PASSWORD, role=role, program_id=program_id, with_totp=with_totp
                )
            return created.totp_uri

        uri = run_async(create)
        return Person(username, PASSWORD, role, program_id, pyotp.parse_uri(uri).secret if uri else None)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30, verify=trust_store())


def start_gateway(
    databases: PostgresDatabases,
    *,
    partner_base_urls: Mapping[str, str] | None = None,
    load_partners: bool = True,
    **settings: object,
) -> Iterator[Gateway]:
    url = databases.create()
    try:
        gateway_settings = Settings(
            database_url=url,
            partners_dir=SAMPLE_PARTNERS,
            port=free_port(),
            token_failure_limit=FAILURE_LIMIT,
            recovery_interval_seconds=0,
            status_match_expiry_interval_seconds=0,
            redemption_interval_seconds=0,
            **settings,  # type: ignore[arg-type]
        )
        # The sample declarations carry inline secrets, which a production load refuses; the
        # catalog is loaded as in development, and only the gateway runs as configured.
        catalog_settings = gateway_settings.model_copy(update={"environment": "development"})
        if load_partners:
            run_async(lambda: load_partners_directory(catalog_settings))
        app = create_app(gateway_settings, partner_base_urls=partner_base_urls)
        with serving_in_thread(app, port=gateway_settings.port) as base_url:
            yield Gateway(url=base_url, settings=gateway_settings, app=app)
    finally:
        databases.drop(url)


@pytest.fixture(scope="session")
def gateway(postgres_databases: PostgresDatabases) -> Iterator[Gateway]:
    """One gateway for every web test: each test makes people of its own."""
    yield from start_gateway(postgres_databases)


#: The partners the portal's tests sign members in through and convert between.
PORTAL_PARTNERS = ("fresh-mart", "formosa-air", "wallet-pay")


@dataclass
class PortalGateway:
    gateway: Gateway
    partners: Any  # tests.web.portal_partners.Partners (imported late: it imports this module)


def start_portal_gateway(databases: PostgresDatabases, data_dir: Path) -> Iterator[PortalGateway]:
    """A gateway whose connectors reach sandbox partners (their data in ``data_dir``), which sign
    members in to its portal."""
    from tests.web.portal_partners import running_partners, set_up_member_sign_in

    with running_partners(data_dir, PORTAL_PARTNERS) as partners:
        for gateway in start_gateway(databases, partner_base_urls=partners.fleet.base_urls):
            set_up_member_sign_in(partners, gateway.settings)
            yield PortalGateway(gateway, partners)


@pytest.fixture(scope="session")
def portal_gateway(
    postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PortalGateway]:
    """The portal's gateway every portal test shares: each test makes members of its own."""
    yield from start_portal_gateway(postgres_databases, tmp_path_factory.mktemp("portal-sandboxes"))


@pytest.fixture(scope="session")
def partnered_gateway(
    postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway whose partners harbor-bank and formosa-air are sandboxes on loopback, for
    tests in which members redeem and convert."""
    from tests.web.portal_partners import running_partners

    with running_partners(tmp_path_factory.mktemp("sandboxes"), ("harbor-bank", "formosa-air")) as partners:
        yield from start_gateway(
            postgres_databases, partner_base_urls=partners.fleet.base_urls, partner_retry_attempts=1
        )


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


#: Records every Content-Security-Policy violation of a page, for the fixture to check.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def open_context(browser: Browser, gateway: Gateway, **options: object) -> BrowserContext:
    context = browser.new_context(base_url=gateway.url, **{"locale": "en-US", "viewport": DESKTOP, **options})  # type: ignore[arg-type]
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    return context


def console_sign_in(page: Page, person: Person) -> None:
    """Sign ``person`` in to the console in whatever language the page is (the fields by id,
    the form sent with Enter)."""
    page.goto("/console/sign-in")
    page.locator("#username").fill(person.username)
    page.locator("#password").fill(person.password)
    page.locator("#password").press("Enter")


@pytest.fixture
def context(browser: Browser, gateway: Gateway) -> Iterator[BrowserContext]:
    context = open_context(browser, gateway)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page whose every document must run under the CSP without a violation."""
    page = context.new_page()
    yield page
    if not page.is_closed():
        assert page.evaluate("window.__cspViolations || []") == []


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Iterator[Callable[[Page, str], Path]]:
    """``screenshot(page, label)`` saves test-artifacts/screenshots/<test>-<label>.png."""
    taken: list[Path] = []

    def take(page: Page, label: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{request.node.name}-{label}").strip("-")
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        taken.append(path)
        return path

    yield take


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SCREENSHOTS.is_dir() and (shots := sorted(SCREENSHOTS.glob("*.png"))):
        terminalreporter.write_line(f"browser screenshots: {len(shots)} in {SCREENSHOTS}")
