"""The console over HTTP, as a browser (or an attacker's page) would send it: who is refused,
CSRF, cookies, headers, caching and the failure limit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from exchange.auth.principal import Principal
from exchange.auth.scopes import ROLE_SCOPES, Role
from exchange.testing.databases import PostgresDatabases
from tests.web.conftest import FAILURE_LIMIT, Gateway, Person, start_gateway
from tests.web.pages import web_pages

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_token(client: httpx.Client, path: str = "/console/sign-in") -> str:
    match = CSRF_FIELD.search(client.get(path).text)
    assert match is not None
    return match[1]


def sign_in(client: httpx.Client, person: Person, **extra: str) -> httpx.Response:
    token = form_token(client)
    form = {"csrf_token": token, "username": person.username, "password": person.password, **extra}
    return client.post("/console/sign-in", data=form)


@contextmanager
def signed_in(gateway: Gateway, person: Person) -> Iterator[httpx.Client]:
    with gateway.client() as client:
        response = sign_in(client, person)
        assert response.status_code == 303 and response.headers["location"] == "/console/", response.text
        yield client


@pytest.fixture
def staff(gateway: Gateway) -> dict[Role, Person]:
    return {
        Role.SETTLEMENT: gateway.person(Role.SETTLEMENT),
        Role.ADMIN: gateway.person(Role.ADMIN),
        Role.PARTNER: gateway.person(Role.PARTNER, "formosa-air"),
    }


def principal_of(person: Person) -> Principal:
    return Principal(
        role=person.role,
        subject=person.username,
        client_id=f"console:{person.username}",
        scopes=ROLE_SCOPES[person.role],
        token_id="-",
        expires_at=datetime.now(UTC),
        program_id=person.program_id,
    )


def test_every_page_that_is_not_public_refuses_a_visitor_without_a_session(gateway: Gateway) -> None:
    guarded = [(path, method) for path, method, page in web_pages(gateway.app) if not page.rule.is_public]
    assert ("/console/", "GET") in guarded and ("/console/sign-out", "POST") in guarded
    with gateway.client() as client:
        for path, method in guarded:
            response = client.request(method, path)
            if method == "GET":
                assert response.status_code == 303, path
                location = urlsplit(response.headers["location"])
                assert location.path == f"/{path.split('/')[1]}/sign-in"
                assert parse_qs(location.query)["next"] == [path]
            else:
                assert response.status_code == 401, path
                assert "Sign in to continue" in response.text


def test_every_page_refuses_a_signed_in_person_whose_role_it_does_not_admit(
    gateway: Gateway, staff: dict[Role, Person]
) -> None:
    # The console's pages: the portal's have sessions of their own, which a console session is
    # not (tests/web/test_portal_http.py shows staff are refused there).
    for person in staff.values():
        with signed_in(gateway, person) as client:
            token = form_token(client, "/console/")
            for path, method, page in web_pages(gateway.app):
                if not path.startswith("/console/") or page.rule.allows(principal_of(person)) or page.rule.is_public:
                    continue
                response = client.request(method, path, headers={"X-CSRF-Token": token})
                assert response.status_code == 403, (person.role, path, method)
                assert "Your role does not give you access to this page." in response.text
            assert client.get("/console/").status_code == 200, "the session still works"


def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(
    gateway: Gateway, staff: dict[Role, Person]
) -> None:
    with signed_in(gateway, staff[Role.ADMIN]) as client:
        for attempt in ({}, {"csrf_token": "not-the-token"}):
            refused = client.post("/console/sign-out", data=attempt)
            assert refused.status_code == 403
            assert "Nothing was changed" in refused.text
        assert client.post("/console/sign-out", headers={"X-CSRF-Token": "not-the-token"}).status_code == 403
        assert client.get("/console/").status_code == 200, "still signed in"
        token = form_token(client, "/console/")
        signed_out = client.post("/console/sign-out", data={"csrf_token": token})
        assert signed_out.status_code == 303
        assert signed_out.headers["location"] == "/console/sign-in?notice=signed-out"
        assert client.get("/console/").status_code == 303, "signed out"


def test_the_sign_in_form_needs_its_own_token_so_no_other_site_can_sign_anyone_in(
    gateway: Gateway, staff: dict[Role, Person]
) -> None:
    person = staff[Role.SETTLEMENT]
    credentials = {"username": person.username, "password": person.password}
    with gateway.client() as attacker, gateway.client() as victim:
        foreign_token = form_token(attacker)
        victim.get("/console/sign-in")  # the victim has a form cookie of their own
        for form in (credentials, {**credentials, "csrf_token": foreign_token}):
            refused = victim.post("/console/sign-in", data=form)
            assert refused.status_code == 403
            assert "exchange_session" not in refused.headers.get("set-cookie", "")
        assert victim.get("/console/").status_code == 303
    with signed_in(gateway, person):
        pass  # none of that counted as a failure


def test_the_session_cookie_is_http_only_strict_and_site_wide(gateway: Gateway, staff: dict[Role, Person]) -> None:
    with gateway.client() as client:
        response = sign_in(client, staff[Role.PARTNER])
        cookies = response.headers.get_list("set-cookie")
        session = next(cookie for cookie in cookies if cookie.startswith("exchange_session="))
        attributes = {part.strip().lower() for part in session.split(";")[1:]}
        assert attributes == {"httponly", "path=/", "samesite=strict"}, "no Secure over plain HTTP in development"
        assert any(cookie.startswith('exchange_form=""') for cookie in cookies), "the form token is dropped"


@pytest.fixture(scope="module")
def production_gateway(postgres_databases: PostgresDatabases) -> Iterator[Gateway]:
    yield from start_gateway(
        postgres_databases,
        environment="production",
        issuer="https://exchange.example",
        key_encryption_secret="a production key-encryption secret, 32+ characters",
    )


def test_in_production_cookies_are_secure_and_host_only(production_gateway: Gateway) -> None:
    person = production_gateway.person(Role.ADMIN)
    with production_gateway.client() as client:
        form = client.get("/console/sign-in")
        assert form.headers["strict-transport-security"] == "max-age=31536000"
        form_cookie = form.headers["set-cookie"]
        assert form_cookie.startswith("__Host-exchange_form=") and "; Secure" in form_cookie
        token = form_cookie.split(";")[0].split("=", 1)[1]
        # httpx keeps Secure cookies for HTTPS; the test sends the form cookie by hand.
        response = client.post(
            "/console/sign-in",
            data={"csrf_token": token, "username": person.username, "password": person.password},
            headers={"cookie": f"__Host-exchange_form={token}"},
        )
        assert response.status_code == 303, response.text
        session = next(c for c in response.headers.get_list("set-cookie") if c.startswith("__Host-exchange_session="))
        attributes = {part.strip().lower() for part in session.split(";")[1:]}
        assert attributes == {"httponly", "path=/", "samesite=strict", "secure"}


def test_pages_forbid_inline_scripts_framing_and_caching(gateway: Gateway) -> None:
    with gateway.client() as client:
        for response in (client.get("/console/sign-in"), client.get("/graphql", headers={"accept": "text/html"})):
            assert response.status_code == 200
            policy = response.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
            assert "frame-ancestors 'none'" in policy and response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
        assert client.get("/console/sign-in").headers["cache-control"] == "no-store"


def test_static_files_are_kept_for_a_year_by_version_and_revalidated_otherwise(gateway: Gateway) -> None:
    with gateway.client() as client:
        page = client.get("/console/sign-in").text
        url = re.search(r'src="(/static/vendor/htmx.org/htmx.min.js\?v=\w+)"', page)
        assert url is not None
        versioned = client.get(url[1])
        assert (
            versioned.status_code == 200 and versioned.headers["cache-control"] == "public, max-age=31536000, immutable"
        )
        assert versioned.headers["content-type"].startswith(("text/javascript", "application/javascript"))
        plain = client.get("/static/vendor/htmx.org/htmx.min.js")
        assert plain.headers["cache-control"] == "no-cache" and plain.content == versioned.content
        again = client.get("/static/app.css", headers={"if-none-match": client.get("/static/app.css").headers["etag"]})
        assert again.status_code == 304
        assert client.get("/static/vendor/htmx.org/htmx.min.js?v=stale").headers["cache-control"] == "no-cache"
        assert client.get("/static/../exchange/settings.py").status_code == 404


def test_too_many_failed_sign_ins_lock_the_username_with_429_and_retry_after(gateway: Gateway) -> None:
    person = gateway.person(Role.SETTLEMENT)
    with gateway.client() as client:
        for _ in range(FAILURE_LIMIT):
            wrong = sign_in(client, person, password="not the password")
            assert wrong.status_code == 401
            assert "The username, password or authentication code is not right." in wrong.text
        locked = sign_in(client, person)
        assert locked.status_code == 429
        assert 0 < int(locked.headers["retry-after"]) <= gateway.settings.token_failure_window
        assert "Too many failed sign-ins" in locked.text
        assert "exchange_session" not in locked.headers.get("set-cookie", "")


@pytest.mark.parametrize(
    ("wanted", "landing"),
    [
        ("/console/", "/console/"),
        ("/console/?tab=1", "/console/?tab=1"),
        ("https://elsewhere.example/", "/console/"),
        ("//elsewhere.example/console/", "/console/"),
        ("/console//elsewhere.example", "/console/"),
        ("/portal/", "/console/"),
        ("/console/sign-in", "/console/"),
    ],
)
def test_after_sign_in_only_a_console_address_is_followed(
    gateway: Gateway, staff: dict[Role, Person], wanted: str, landing: str
) -> None:
    with gateway.client() as client:
        response = sign_in(client, staff[Role.ADMIN], next=wanted)
        assert response.status_code == 303 and response.headers["location"] == landing


def test_an_unknown_console_address_is_a_page_saying_so(gateway: Gateway) -> None:
    with gateway.client() as client:
        response = client.get("/console/no-such-page", headers={"accept-language": "zh-TW"})
        assert response.status_code == 404
        assert "找不到網頁" in response.text and response.headers["content-language"] == "zh-TW"


@pytest.mark.parametrize(
    "path",
    [
        "/console/no-such-page",  # the console's router finds no page
        "/console/partner/rewards/no-such-reward",  # the page finds no such reward of the partner's
        "/console/partner/statements/2001-01",  # nor a statement of a period it took no part in
        "/console/partner/statements/2001-01/statement.xml",
        "/console/partner/books/2026-13",
    ],
)
@pytest.mark.parametrize("accept", ["text/html", "*/*"])
def test_a_page_that_finds_nothing_says_so_with_the_visitor_still_signed_in(
    gateway: Gateway, staff: dict[Role, Person], path: str, accept: str
) -> None:
    """Whether the router or the page finds nothing, the answer is the console's page, with the
    person signed in (their name, their sign-out) and the pages' headers, to a browser and to
    htmx (which asks for anything) alike."""
    person = staff[Role.PARTNER]
    with signed_in(gateway, person) as client:
        response = client.get(path, headers={"accept": accept, "accept-language": "zh-TW"})
        assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
        assert "找不到網頁" in response.text
        assert person.username in response.text and 'action="/console/sign-out"' in response.text
        assert response.headers["cache-control"] == "no-store" and response.headers["content-language"] == "zh-TW"
        assert client.get("/console/").status_code == 200, "the session still works"


def test_the_portal_s_own_refusal_of_a_method_is_a_portal_page(gateway: Gateway) -> None:
    """The return address refuses a GET (405, ``Allow: POST``) in the portal's layout, whose
    sign-in is the portal's, not the console's."""
    with gateway.client() as client:
        response = client.get("/portal/sign-in/return", headers={"accept": "text/html"})
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert "This page cannot be used that way." in response.text
        assert 'href="/portal/"' in response.text and 'href="/console/sign-in"' not in response.text


def test_the_bare_address_says_where_each_front_end_is(gateway: Gateway) -> None:
    with gateway.client() as client:
        response = client.get("/", headers={"accept-language": "zh-TW"})
        assert response.status_code == 200 and "會員專區" in response.text
        # Every page names the zone its times are in (the settlement zone, Taipei by default).
        assert "時間以台北時間顯示。" in response.text
        assert "Times are shown in Taiwan Time." in client.get("/", headers={"accept-language": "en"}).text
        assert all(f'href="{path}"' in response.text for path in ("/portal/", "/console/", "/graphql"))
    assert ("/", "GET") in [(path, method) for path, method, _ in web_pages(gateway.app)]


def test_pages_of_an_exchange_with_no_partners_loaded_say_so_instead_of_failing(
    postgres_databases: PostgresDatabases,
) -> None:
    """A newcomer who migrated and started the gateway but skipped `exchange partners load`."""
    with contextmanager(start_gateway)(postgres_databases, load_partners=False) as gateway, gateway.client() as client:
        response = client.get("/portal/sign-in", headers={"accept-language": "zh-TW"})
        assert response.status_code == 404 and "無法完成此操作" in response.text
        assert "run `exchange partners load`" in response.text.replace("&#96;", "`")


def test_an_unknown_address_outside_the_consoles_is_a_page_for_a_browser(gateway: Gateway) -> None:
    with gateway.client() as client:
        browser = {"accept": "text/html,application/xhtml+xml", "accept-language": "zh-TW"}
        response = client.get("/no-such-page", headers=browser)
        assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
        assert "找不到網頁" in response.text and response.headers["content-language"] == "zh-TW"
        assert "Content-Security-Policy" in response.headers
        wrong = client.post("/static/app.css", headers=browser)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"
        assert "此網頁無法以這種方式使用。" in wrong.text


def test_the_language_switch_is_remembered_for_a_year(gateway: Gateway) -> None:
    with gateway.client() as client:
        switched = client.get("/console/sign-in?lang=zh-TW", headers={"accept-language": "en"})
        assert switched.headers["content-language"] == "zh-TW" and '<html lang="zh-TW">' in switched.text
        cookie = next(c for c in switched.headers.get_list("set-cookie") if c.startswith("exchange_lang="))
        assert "Max-Age=31536000" in cookie
        assert client.get("/console/sign-in", headers={"accept-language": "en"}).headers["content-language"] == "zh-TW"
        assert client.get("/console/sign-in?lang=xx").headers["content-language"] == "zh-TW"


def test_signing_in_over_an_ended_session_keeps_the_new_session(gateway: Gateway, staff: dict[Role, Person]) -> None:
    person = staff[Role.SETTLEMENT]
    with gateway.client() as form_reader, gateway.client() as client:
        token = form_token(form_reader)
        response = client.post(
            "/console/sign-in",
            data={"csrf_token": token, "username": person.username, "password": person.password},
            headers={"cookie": f"exchange_form={token}; exchange_session=an-ended-session"},
        )
        assert response.status_code == 303
        sessions = [c for c in response.headers.get_list("set-cookie") if c.startswith("exchange_session=")]
        assert len(sessions) == 1 and not sessions[0].startswith('exchange_session=""')
        assert client.get("/console/").status_code == 200


def test_signing_in_over_a_live_session_ends_it_on_the_server(gateway: Gateway, staff: dict[Role, Person]) -> None:
    with gateway.client() as client:
        sign_in(client, staff[Role.SETTLEMENT])
        earlier = client.cookies["exchange_session"]
        token = form_token(client, "/console/")
        for person in (staff[Role.PARTNER], staff[Role.PARTNER]):  # someone else, then the same person again
            form = {"csrf_token": token, "username": person.username, "password": person.password}
            assert client.post("/console/sign-in", data=form).status_code == 303
            assert client.cookies["exchange_session"] != earlier
            with gateway.client() as replay:
                replay.cookies["exchange_session"] = earlier
                forgotten = replay.get("/console/")
                assert forgotten.status_code == 303, "the session signed in over is nobody's any more"
                assert forgotten.headers["location"].startswith("/console/sign-in")
            earlier, token = client.cookies["exchange_session"], form_token(client, "/console/")
        assert client.get("/console/").status_code == 200


def test_a_page_asked_the_wrong_way_says_so_and_what_it_allows(gateway: Gateway) -> None:
    with gateway.client() as client:
        response = client.get("/console/sign-out")
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert "This page cannot be used that way." in response.text
