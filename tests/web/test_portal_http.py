"""The member portal over HTTP: signing in through a partner (the front-channel flow of
partners/CONTRACT.md), what each way of getting it wrong is answered, and who is refused."""

from __future__ import annotations

import base64
import html
import re
import secrets
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from exchange.auth.scopes import Role
from exchange.sandbox.faults import FaultKind
from exchange.sandbox.member_sign_in import MemberSignIn
from tests.web.conftest import PortalGateway
from tests.web.pages import web_pages
from tests.web.portal_flows import (
    HIDDEN,
    answer_partner,
    csrf_token,
    language_link,
    partner_page,
    post_back,
    rows_per_table,
    sign_in,
)
from tests.web.portal_partners import PIN


@pytest.fixture
def client(portal_gateway: PortalGateway) -> httpx.Client:
    with portal_gateway.gateway.client() as client:
        yield client


def test_a_member_signs_in_through_their_partner_and_sees_their_balance(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    member_ref = portal_gateway.partners.new_member("fresh-mart", balance=12_345)
    sign_in(client, "fresh-mart", member_ref)
    home = client.get("/portal/")
    assert home.status_code == 200
    assert "12,345" in home.text and member_ref in home.text


@pytest.mark.parametrize(("balance", "shown"), [(12_345, "12,345 FreshMart Points"), (1, "1 FreshMart Point<")])
def test_a_balance_is_named_in_the_plural_unless_it_is_one_point(
    portal_gateway: PortalGateway, client: httpx.Client, balance: int, shown: str
) -> None:
    sign_in(client, "fresh-mart", portal_gateway.partners.new_member("fresh-mart", balance=balance))
    home = client.get("/portal/")
    assert shown in home.text


@pytest.mark.parametrize(
    ("wanted", "landing"),
    [
        ("/portal/convert?lang=zh-TW", "/portal/convert?lang=zh-TW"),
        ("//elsewhere.example/portal/", "/portal/"),
        ("https://elsewhere.example/portal/", "/portal/"),
        ("/console/", "/portal/"),
        ("/portal/sign-in/fresh-mart", "/portal/"),
        # Text a cookie cannot hold as it is, kept percent-encoded (the address a browser asks for).
        ("/portal/status-match?from_program=\u00e9\u20ac", "/portal/status-match?from_program=%C3%A9%E2%82%AC"),
    ],
)
def test_a_member_sent_to_sign_in_from_a_page_goes_on_to_it_once_signed_in(
    portal_gateway: PortalGateway, client: httpx.Client, wanted: str, landing: str
) -> None:
    """Through the partner and back: the page asked for is kept across the round trip (only a
    portal page: a link cannot send the member elsewhere once signed in)."""
    member_ref = portal_gateway.partners.new_member("fresh-mart", balance=500)
    if wanted.startswith("/portal/convert"):
        sent = client.get(wanted)
        assert sent.status_code == 303
        assert sent.headers["location"] == "/portal/sign-in?" + urlencode({"next": wanted})
    choose = client.get("/portal/sign-in", params={"next": wanted})
    link = html.unescape(re.search(r'href="(/portal/sign-in/fresh-mart[^"]*)"', choose.text)[1])  # type: ignore[index]
    assert link == (
        "/portal/sign-in/fresh-mart"
        if landing == "/portal/"
        else f"/portal/sign-in/fresh-mart?{urlencode({'next': wanted})}"
    )
    started = client.get(link)
    assert started.status_code == 303
    landed = post_back(answer_partner(client, started.headers["location"], member_ref)).send(client)
    assert landed.status_code == 200
    went_on = re.search(r'<a href="([^"]+)" id="continue">([^<]+)</a>', landed.text)
    assert went_on is not None and html.unescape(went_on[1]) == landing
    # (The page asked for was in zh-TW, and so is the rest of the sign-in.)
    assert (went_on[2] in ("Continue to the page you were going to", "繼續前往您原本要去的頁面")) == (
        landing != "/portal/"
    )
    assert client.get(landing).status_code == 200, "signed in"
    # The next sign-in, started from the sign-in page itself, goes home: nothing is left over.
    again = post_back(answer_partner(client, partner_page(client, "fresh-mart"), member_ref)).send(client)
    assert 'href="/portal/" id="continue"' in again.text


def test_the_partner_page_refuses_a_wrong_pin_and_sends_nobody_back(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    member_ref = portal_gateway.partners.new_member("fresh-mart")
    answer = answer_partner(client, partner_page(client, "fresh-mart"), member_ref, pin="0000")
    assert answer.status_code == 401 and "do not match" in answer.text
    assert client.get("/portal/").status_code == 303


def test_the_partner_page_follows_no_return_url_but_the_registered_one(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    page = partner_page(client, "fresh-mart")
    elsewhere = page.replace("redirect_uri=http", "redirect_uri=https%3A%2F%2Fattacker.example%2F%3Fx%3Dhttp")
    assert elsewhere != page
    refused = client.get(elsewhere)
    assert refused.status_code == 400 and "not registered" in refused.text
    origin = page.split("/member-sign-in")[0]
    posted = client.post(
        f"{origin}/member-sign-in",
        data={"state": "s", "redirect_uri": "https://attacker.example/", "member": "x", "pin": PIN, "action": "cancel"},
    )
    assert posted.status_code == 400 and "location" not in posted.headers


def test_a_sign_in_comes_back_once_and_only_to_the_browser_that_started_it(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    member_ref = portal_gateway.partners.new_member("fresh-mart")
    back = post_back(answer_partner(client, partner_page(client, "fresh-mart"), member_ref))
    ticket = client.cookies["exchange_sign_in"]
    with portal_gateway.gateway.client() as other_browser:
        stolen = back.send(other_browser)
        assert stolen.status_code == 400 and "was not started here" in stolen.text
        assert other_browser.get("/portal/").status_code == 303
    # The other browser's attempt did not use up this one's state: it completes once...
    assert back.send(client).status_code == 200
    assert client.get("/portal/").status_code == 200
    # ...and never again (the state and the assertion are both single use).
    client.cookies.delete("exchange_member")
    client.cookies.set("exchange_sign_in", ticket)
    assert back.send(client).status_code == 400
    assert client.get("/portal/").status_code == 303


@pytest.mark.parametrize("forged", [{}, {"state": "someone else's"}, {"state": "", "assertion": "x.y.z"}])
def test_a_return_posted_without_the_sign_ins_state_leaves_it_able_to_finish(
    portal_gateway: PortalGateway, client: httpx.Client, forged: dict[str, str]
) -> None:
    """Another site may post to the return page (the partner must): without this sign-in's
    state it is refused and the browser's ticket stays, so the member's sign-in still ends."""
    member_ref = portal_gateway.partners.new_member("fresh-mart")
    back = post_back(answer_partner(client, partner_page(client, "fresh-mart"), member_ref))
    refused = client.post(back.url, data=forged)
    assert refused.status_code == 400 and "exchange_sign_in" not in refused.headers.get("set-cookie", "")
    assert client.get("/portal/").status_code == 303
    assert back.send(client).status_code == 200
    assert client.get("/portal/").status_code == 200


def test_the_return_address_takes_only_the_partners_post(portal_gateway: PortalGateway, client: httpx.Client) -> None:
    """A browser sent back by GET (or reloading the address) is answered that the address is
    not used that way, not that no program called "return" signs members in (an assertion in
    the URL is refused before any page, as credentials in URLs are)."""
    member_ref = portal_gateway.partners.new_member("fresh-mart")
    back = post_back(answer_partner(client, partner_page(client, "fresh-mart"), member_ref))
    got = client.get(back.url, params={"state": back.fields["state"]}, headers={"accept": "text/html"})
    assert got.status_code == 405 and got.headers["allow"] == "POST" and "Not possible here" in got.text
    assert client.get(back.url, params=back.fields).status_code == 400
    assert client.get("/portal/").status_code == 303
    assert back.send(client).status_code == 200


def test_a_member_who_cancels_at_the_partner_is_not_signed_in(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    page_url = partner_page(client, "fresh-mart")
    hidden = dict(HIDDEN.findall(client.get(page_url).text))
    cancelled = post_back(client.post(page_url.split("?")[0], data={**hidden, "action": "cancel"}))
    assert cancelled.fields["error"] == "access_denied" and "assertion" not in cancelled.fields
    landed = cancelled.send(client)
    assert landed.status_code == 400 and "did not sign you in" in landed.text


@pytest.mark.parametrize(
    ("language", "member_label", "mismatch"),
    [("en", "Member id", "That member id and PIN do not match."), ("zh-TW", "會員編號", "會員編號與 PIN 碼不符。")],
)
def test_the_partners_sign_in_page_is_told_the_portals_language_and_the_sandboxs_speaks_it(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, member_label: str, mismatch: str
) -> None:
    """A member reading the portal in Chinese was asked for their member id and PIN in English
    at the partner's page, halfway through signing in."""
    member_ref = portal_gateway.partners.new_member("fresh-mart")
    started = client.get("/portal/sign-in/fresh-mart", headers={"accept-language": language})
    assert started.status_code == 303
    page_url = started.headers["location"]
    assert parse_qs(urlsplit(page_url).query)["ui_locales"] == [language]
    page = client.get(page_url)
    assert f'<html lang="{language}">' in page.text and f'<label for="member">{member_label}</label>' in page.text
    hidden = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', page.text))
    assert hidden["ui_locales"] == language, "its refusal speaks the same language"
    wrong = client.post(
        page_url.split("?")[0], data={**hidden, "member": member_ref, "pin": "0000", "action": "sign-in"}
    )
    assert wrong.status_code == 401 and mismatch in wrong.text


def test_a_signed_in_member_who_cancels_signing_in_with_one_more_program_is_still_signed_in_and_led_back(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """Adding a program's sign-in (from the convert page, say) and cancelling it at the partner
    showed only "sign in to the member portal", as if the member's session had ended, and lost
    the page they were on."""
    member_ref = portal_gateway.partners.new_member("fresh-mart")
    sign_in(client, "fresh-mart", member_ref)
    started = client.get("/portal/sign-in/formosa-air", params={"next": "/portal/convert"})
    assert started.status_code == 303
    page_url = started.headers["location"]
    hidden = dict(HIDDEN.findall(client.get(page_url).text))
    cancelled = post_back(client.post(page_url.split("?")[0], data={**hidden, "action": "cancel"}))
    landed = cancelled.send(client)
    assert landed.status_code == 400 and "did not sign you in" in landed.text
    assert "You are still signed in, with the programs you signed in with before." in landed.text
    assert '<a href="/portal/convert">Continue to the page you were going to</a>' in landed.text
    assert 'href="/portal/sign-in/formosa-air?next=%2Fportal%2Fconvert"' in landed.text, "a new try goes on there too"
    assert client.get("/portal/").status_code == 200, "the member's session stands"


def test_an_assertion_for_the_token_endpoint_does_not_sign_anyone_in_to_the_portal(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    member_ref = portal_gateway.partners.new_member("fresh-mart")
    back = post_back(answer_partner(client, partner_page(client, "fresh-mart"), member_ref))
    # The same partner key, but an assertion whose audience is the token endpoint, not the portal.
    sandbox = portal_gateway.partners.fleet["fresh-mart"].server.sign_in
    token_endpoint = portal_gateway.gateway.settings.issuer_url + "/oauth/token"
    forged = sandbox.assertion(member_ref, token_endpoint, back.fields["state"])
    refused = back.send(client, assertion=forged)
    assert refused.status_code == 400 and "could not be verified" in refused.text
    assert client.get("/portal/").status_code == 303


def test_an_assertion_for_another_sign_in_is_refused(portal_gateway: PortalGateway, client: httpx.Client) -> None:
    member_ref = portal_gateway.partners.new_member("fresh-mart")
    back = post_back(answer_partner(client, partner_page(client, "fresh-mart"), member_ref))
    sandbox = portal_gateway.partners.fleet["fresh-mart"].server.sign_in
    other = sandbox.assertion(member_ref, back.url, "another sign-in's state")
    assert back.send(client, assertion=other).status_code == 400
    assert client.get("/portal/").status_code == 303


def test_signing_in_through_a_partner_as_another_member_starts_a_new_session(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=5_000)
    partners.add_member("formosa-air", member_ref, balance=7_000)
    sign_in(client, "fresh-mart", member_ref)
    first_session = client.cookies["exchange_member"]
    # Formosa Air's account is not linked to this member: it is someone else to the exchange.
    sign_in(client, "formosa-air", member_ref, token_path="/portal/")
    assert client.cookies["exchange_member"] != first_session
    home = client.get("/portal/").text
    assert "7,000" in home and "5,000" not in home


def test_every_portal_page_refuses_a_console_session_and_no_session(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    gateway = portal_gateway.gateway
    staff = gateway.person(Role.ADMIN)
    token = csrf_token(client, "/console/sign-in")
    signed = client.post(
        "/console/sign-in", data={"csrf_token": token, "username": staff.username, "password": staff.password}
    )
    assert signed.status_code == 303
    for path in ("/portal/",):
        assert client.get(path).status_code == 303
    assert client.post("/portal/sign-out", data={"csrf_token": token}).status_code in (401, 403)


def link(
    client: httpx.Client, program_id: str, member_ref: str, verification: str = PIN, name: str = ""
) -> httpx.Response:
    token = csrf_token(client, "/portal/")
    form = {
        "csrf_token": token,
        "program": program_id,
        "member_ref": member_ref,
        "verification": verification,
        "name": name,
    }
    return client.post("/portal/accounts/link", data=form)


def test_a_member_links_an_account_the_partner_confirms_and_is_refused_a_wrong_code_or_name(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=1_000)
    partners.add_member("formosa-air", member_ref, balance=8_000, name="Lin Mei")
    sign_in(client, "fresh-mart", member_ref)
    unspeakable = link(client, "formosa-air", "\uff11\uff12")  # no partner's id: the contract's characters only
    assert unspeakable.status_code == 400 and "member_ref must be letters" in unspeakable.text
    refused = link(client, "formosa-air", member_ref, verification="9999")
    assert refused.status_code == 400 and "does not confirm this account" in refused.text
    other_name = link(client, "formosa-air", member_ref, name="Lin Mai")
    assert other_name.status_code == 400 and "has another name for this account" in other_name.text
    # The member's entries stay in the form to be put right; the verification code is not sent back.
    assert 'name="member_ref" required maxlength="128"' in other_name.text
    assert f'value="{member_ref}"' in other_name.text and 'value="Lin Mai"' in other_name.text
    assert 'name="verification" type="password" required maxlength="256" autocomplete="off">' in other_name.text
    assert "8,000" not in client.get("/portal/").text
    linked = link(client, "formosa-air", member_ref, name="MEI LIN")
    assert linked.status_code == 303 and linked.headers["location"] == "/portal/?notice=linked"
    home = client.get("/portal/").text
    assert "8,000" in home and "1,000" in home
    assert "Sign in with Formosa Air Miles too" in home


def test_an_account_the_partner_does_not_confirm_is_said_in_the_readers_language(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=1_000)
    partners.add_member("formosa-air", member_ref, balance=8_000)
    sign_in(client, "fresh-mart", member_ref)
    client.headers["accept-language"] = "zh-TW"
    refused = link(client, "formosa-air", member_ref, verification="9999")
    assert refused.status_code == 400
    assert "Formosa Air Miles 無法以這個驗證碼確認此帳戶" in refused.text
    assert "does not confirm" not in refused.text  # the exchange's English is read back, not shown


def test_switching_language_after_a_link_was_refused_keeps_the_form_filled_in_but_the_code(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """The language links of the page a refused link answered held no input (the address of a
    page shown for a POST holds none): switching language showed an empty form."""
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=1_000)
    partners.add_member("formosa-air", member_ref, balance=8_000, name="Lin Mei")
    sign_in(client, "fresh-mart", member_ref)
    refused = link(client, "formosa-air", member_ref, verification="9999", name="Lin Mei")
    assert refused.status_code == 400
    chinese_link = language_link(refused.text, "zh-TW")
    assert "9999" not in chinese_link and "verification" not in chinese_link, "a secret stays out of addresses"
    chinese = client.get(chinese_link)
    assert chinese.status_code == 200 and "連結帳戶" in chinese.text
    assert '<option value="formosa-air" selected>' in chinese.text
    assert f'value="{member_ref}"' in chinese.text and 'value="Lin Mei"' in chinese.text


def test_signing_in_through_a_second_partner_adds_its_authority_to_the_session_under_a_new_id(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=2_000)
    partners.add_member("formosa-air", member_ref, balance=9_000)
    sign_in(client, "fresh-mart", member_ref)
    assert link(client, "formosa-air", member_ref).status_code == 303
    session_cookie = client.cookies["exchange_member"]
    sign_in(client, "formosa-air", member_ref, token_path="/portal/")
    assert client.cookies["exchange_member"] != session_cookie, "more power, a new id"
    with portal_gateway.gateway.client() as replay:
        replay.cookies["exchange_member"] = session_cookie
        assert replay.get("/portal/").status_code == 303, "the id it had before reaches nothing"
    home = client.get("/portal/").text
    assert "Sign in with Formosa Air Miles too" not in home
    assert "You signed in with Formosa Air Miles" in home and "You signed in with FreshMart Rewards" in home


def test_a_partner_that_fails_shows_on_its_own_card_while_the_others_render(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=4_321)
    partners.add_member("wallet-pay", member_ref, balance=7_654)
    sign_in(client, "fresh-mart", member_ref)
    assert link(client, "wallet-pay", member_ref).status_code == 303
    wallet = partners.fleet["wallet-pay"].admin
    partners.run(wallet.set_faults(percent={FaultKind.ERROR: 100}))
    try:
        home = client.get("/portal/")
    finally:
        partners.run(wallet.set_faults())
    assert home.status_code == 200
    assert "4,321" in home.text
    # A grouped figure ("7,654"): a bare "765" could be part of a random member id on the page.
    assert "could not be reached just now" in home.text and "7,654" not in home.text


def test_signing_out_needs_the_csrf_token_and_ends_the_session(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    sign_in(client, "fresh-mart", portal_gateway.partners.new_member("fresh-mart"))
    refused = client.post("/portal/sign-out", data={"csrf_token": "not-the-token"})
    assert refused.status_code == 403 and "Nothing was changed" in refused.text
    assert client.get("/portal/").status_code == 200, "still signed in"
    signed_out = client.post("/portal/sign-out", data={"csrf_token": csrf_token(client, "/portal/")})
    assert signed_out.status_code == 303 and signed_out.headers["location"] == "/portal/sign-in?notice=signed-out"
    assert client.get("/portal/").status_code == 303


@pytest.mark.parametrize("issuer", ["a\\u0000b", "\\ud800", "c" * 10_000])
def test_an_assertion_whose_iss_no_client_could_have_is_refused_not_failed_on(
    portal_gateway: PortalGateway, client: httpx.Client, issuer: str
) -> None:
    """Anyone can start a sign-in and post back what they like: an ``iss`` that the database
    could not even be asked about (a NUL, half a surrogate pair, far too long) is a refused
    sign-in, as an unknown client's is."""
    [state] = parse_qs(urlsplit(partner_page(client, "fresh-mart")).query)["state"]
    claims = base64.urlsafe_b64encode(f'{{"iss": "{issuer}", "sub": "m"}}'.encode()).rstrip(b"=").decode()
    refused = client.post(
        "/portal/sign-in/return", data={"state": state, "assertion": f"eyJhbGciOiJFUzI1NiJ9.{claims}.c2ln"}
    )
    assert refused.status_code == 400 and "could not be verified" in refused.text
    assert client.get("/portal/").status_code == 303


def test_starting_sign_ins_writes_nothing_however_many_are_started(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """Anyone may ask for sign-in pages without signing in: a burst of them leaves the database
    as it was, and each still works only in the browser that started it."""
    database_url = portal_gateway.gateway.settings.database_url
    before = rows_per_table(database_url)
    tickets = set()
    for _ in range(50):
        with portal_gateway.gateway.client() as anyone:
            assert anyone.get("/portal/sign-in/fresh-mart").status_code == 303
            tickets.add(anyone.cookies["exchange_sign_in"])
    assert rows_per_table(database_url) == before
    assert len(tickets) == 50

    member_ref = portal_gateway.partners.new_member("fresh-mart")
    back = post_back(answer_partner(client, partner_page(client, "fresh-mart"), member_ref))
    client.cookies.set("exchange_sign_in", tickets.pop())  # another browser's ticket
    assert back.send(client).status_code == 400
    assert client.get("/portal/").status_code == 303


def forged_assertion(sandbox: MemberSignIn, key: ECKey, **claims: object) -> str:
    """An assertion as ``sandbox`` signs one, with ``claims`` changed, signed with ``key``."""
    now = int(time.time())
    signed = {"iss": sandbox.client_id, "aud": "", "iat": now, "exp": now + 300, "jti": secrets.token_urlsafe(16)}
    return jwt.encode({"alg": "ES256", "kid": key.kid}, {**signed, **claims}, key, algorithms=["ES256"])


@pytest.mark.parametrize(
    "forgery",
    [
        "another partner's own assertion",
        "this partner's iss signed with another partner's key",
        "another partner's iss signed with this partner's key",
        "expired",
        "for another return URL",
    ],
)
def test_an_assertion_the_partner_the_sign_in_went_to_did_not_make_for_it_signs_nobody_in(
    portal_gateway: PortalGateway, client: httpx.Client, forgery: str
) -> None:
    """The sign-in went to FreshMart: only FreshMart's client, with FreshMart's key, for this
    return URL and state, within its lifetime, signs the member in; Formosa Air's word (the
    member's account there is someone else's to the exchange) does not."""
    fleet = portal_gateway.partners.fleet
    member_ref = portal_gateway.partners.new_member("fresh-mart")
    portal_gateway.partners.add_member("formosa-air", member_ref)
    back = post_back(answer_partner(client, partner_page(client, "fresh-mart"), member_ref))
    ours, theirs = fleet["fresh-mart"].server.sign_in, fleet["formosa-air"].server.sign_in
    state, now = back.fields["state"], int(time.time())
    claims: dict[str, object] = {"sub": member_ref, "aud": back.url, "nonce": state}
    forged = {
        "another partner's own assertion": lambda: theirs.assertion(member_ref, back.url, state),
        "this partner's iss signed with another partner's key": lambda: forged_assertion(ours, theirs.key, **claims),
        "another partner's iss signed with this partner's key": lambda: forged_assertion(
            ours, ours.key, **claims, iss=theirs.client_id
        ),
        "expired": lambda: forged_assertion(ours, ours.key, **claims, iat=now - 900, exp=now - 600),
        "for another return URL": lambda: forged_assertion(ours, ours.key, **{**claims, "aud": back.url + "/x"}),
    }[forgery]()
    refused = back.send(client, assertion=forged)
    assert refused.status_code == 400 and "could not be verified" in refused.text
    assert "exchange_member" not in client.cookies
    assert client.get("/portal/").status_code == 303


def test_an_assertion_made_as_the_forged_ones_are_but_unchanged_signs_the_member_in(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """The control for the forgeries above: what refuses them is what each one changed."""
    member_ref = portal_gateway.partners.new_member("fresh-mart")
    back = post_back(answer_partner(client, partner_page(client, "fresh-mart"), member_ref))
    ours = portal_gateway.partners.fleet["fresh-mart"].server.sign_in
    made = forged_assertion(ours, ours.key, sub=member_ref, aud=back.url, nonce=back.fields["state"])
    assert back.send(client, assertion=made).status_code == 200
    assert client.get("/portal/").status_code == 200


def test_a_member_session_opens_no_console_page_and_a_staff_session_no_portal_page(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """Each front end reads only its own session cookie: a member's portal session is nobody
    to the consoles, and a console session (settlement staff, a partner's staff) nobody to
    the portal. Every page asks them to sign in (a GET) or is 401 (anything else, its CSRF
    token sent), and nothing is written."""
    gateway = portal_gateway.gateway
    database_url = gateway.settings.database_url
    pages = [(path, method) for path, method, page in web_pages(gateway.app) if not page.rule.is_public]

    def refused_everywhere_under(prefix: str, visitor: httpx.Client, token: str) -> None:
        before = rows_per_table(database_url)
        under = [(path, method) for path, method in pages if path.startswith(prefix)]
        assert len(under) > 10 and any(method == "POST" for _, method in under)
        for path, method in under:
            answer = visitor.request(method, path, headers={"X-CSRF-Token": token})
            if method == "GET":
                assert answer.status_code == 303, (path, answer.status_code)
                assert urlsplit(answer.headers["location"]).path == f"{prefix}sign-in", path
            else:
                assert answer.status_code == 401, (path, method, answer.status_code)
        assert rows_per_table(database_url) == before

    sign_in(client, "fresh-mart", portal_gateway.partners.new_member("fresh-mart", balance=1_000))
    refused_everywhere_under("/console/", client, csrf_token(client, "/portal/"))
    assert client.get("/portal/").status_code == 200, "the member's session still works"

    for person in (gateway.person(Role.SETTLEMENT), gateway.person(Role.PARTNER, "formosa-air")):
        with gateway.client() as staff:
            token = csrf_token(staff, "/console/sign-in")
            signed = staff.post(
                "/console/sign-in", data={"csrf_token": token, "username": person.username, "password": person.password}
            )
            assert signed.status_code == 303
            refused_everywhere_under("/portal/", staff, csrf_token(staff, "/console/"))
            assert staff.get("/console/").status_code == 200, "the staff session still works"
