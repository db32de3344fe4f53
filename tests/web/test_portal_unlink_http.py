"""Unlinking an account in the portal over HTTP: each card offers it unless a rule keeps the
account linked, a page asks to confirm, and the answer says what happened, in English and in
Traditional Chinese."""

from __future__ import annotations

import html
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from exchange.conversions.models import Conversion
from tests.web.conftest import PortalGateway
from tests.web.portal_flows import CSRF_FIELD, ask_quote, convert_form, csrf_token, linked_member, recorded_as


@pytest.fixture
def client(portal_gateway: PortalGateway) -> Iterator[httpx.Client]:
    with portal_gateway.gateway.client() as client:
        yield client


def confirm(client: httpx.Client, program_id: str, member_ref: str) -> httpx.Response:
    """Send the confirm page's form (the CSRF token from the page, the account named)."""
    page = client.get(f"/portal/accounts/{program_id}/unlink", follow_redirects=True)
    token = CSRF_FIELD.search(page.text)
    assert token is not None
    form = {"csrf_token": token[1], "member_ref": member_ref}
    return client.post(f"/portal/accounts/{program_id}/unlink", data=form)


def test_a_member_unlinks_an_account_after_confirming_and_a_repeat_says_it_was_done(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    member_ref = linked_member(portal_gateway, client)
    home = client.get("/portal/").text
    assert "4,000" in home
    # Formosa Air's card offers it; FreshMart (signed in with) and the coalition point do not.
    assert 'id="unlink-formosa-air" href="/portal/accounts/formosa-air/unlink"' in home
    assert 'id="unlink-fresh-mart"' not in home and 'id="unlink-coalition"' not in home
    page = client.get("/portal/accounts/formosa-air/unlink")
    assert page.status_code == 200
    assert 'id="unlink-confirm"' in page.text and 'id="unlink-cancel" href="/portal/"' in page.text
    assert member_ref in page.text.split('id="unlink-member-ref">')[1].split("</dd>")[0]
    assert "4,000" in client.get("/portal/").text, "opening the confirmation unlinks nothing"

    unlinked = confirm(client, "formosa-air", member_ref)
    assert unlinked.status_code == 303 and unlinked.headers["location"] == "/portal/?notice=unlinked"
    home = client.get(unlinked.headers["location"]).text
    assert "The account is unlinked." in home and "4,000" not in home
    assert client.get("/portal/accounts/formosa-air/unlink").status_code == 404  # nothing linked there to ask about

    # The same form sent again (a second tab, a double click): said so, nothing changed.
    again = client.post(
        "/portal/accounts/formosa-air/unlink",
        data={"csrf_token": csrf_token(client, "/portal/"), "member_ref": member_ref},
    )
    assert again.status_code == 303 and again.headers["location"] == "/portal/?notice=unlinked-already"
    assert "That account was unlinked already" in client.get(again.headers["location"]).text


def test_the_confirmation_and_its_answer_are_in_traditional_chinese(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    member_ref = linked_member(portal_gateway, client)
    client.headers["accept-language"] = "zh-TW"
    home = client.get("/portal/").text
    assert 'aria-label="取消連結您的 Formosa Air Miles 帳戶">取消連結</a>' in home
    page = client.get("/portal/accounts/formosa-air/unlink").text
    assert "取消連結此帳戶" in page and "保持連結" in page
    unlinked = confirm(client, "formosa-air", member_ref)
    assert "帳戶已取消連結" in client.get(unlinked.headers["location"]).text


def test_the_account_signed_in_with_stays_linked_and_a_form_sent_anyway_is_refused(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    member_ref = linked_member(portal_gateway, client)
    page = client.get("/portal/accounts/fresh-mart/unlink").text
    assert 'id="unlink-kept"' in page and "You signed in with FreshMart Rewards" in page
    assert 'id="unlink-confirm"' not in page
    refused = client.post(
        "/portal/accounts/fresh-mart/unlink",
        data={"csrf_token": csrf_token(client, "/portal/"), "member_ref": member_ref},
    )
    assert refused.status_code == 409
    assert "This account stays linked. Nothing was changed." in html.unescape(refused.text)
    assert "5,000" in client.get("/portal/").text


def test_an_account_with_a_conversion_in_progress_is_refused_saying_so(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    member_ref = linked_member(portal_gateway, client)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    converted = client.post(quote_page, data=convert_form(client, quote_page))
    conversion_id = converted.headers["location"].rsplit("/", 1)[1]
    # Left waiting at the credit, due again only tomorrow (the recovery worker leaves it be).
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    recorded_as(
        portal_gateway.gateway,
        Conversion,
        conversion_id,
        status="PENDING",
        step="CREDIT",
        next_attempt_at=tomorrow,
        finished_at=None,
    )
    refused = confirm(client, "formosa-air", member_ref)
    assert refused.status_code == 409
    assert "A conversion, redemption or status match through this account is still in progress." in html.unescape(
        refused.text
    )
    assert 'id="unlink-confirm"' in refused.text, "the form stays, to send once the conversion is done"
    client.headers["accept-language"] = "zh-TW"
    chinese = confirm(client, "formosa-air", member_ref)
    assert chinese.status_code == 409 and "此帳戶仍有點數轉換、兌換或等級比對在處理中。" in chinese.text
    assert 'id="account-formosa-air"' in client.get("/portal/").text


def test_a_quote_whose_account_is_unlinked_shows_it_cannot_be_converted_any_more(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """The quote's countdown and its Convert button stayed live after the account it converts
    into was unlinked, until Convert was refused: the page, shown again, says so at once."""
    member_ref = linked_member(portal_gateway, client)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    form = convert_form(client, quote_page)
    assert '<div id="quote-live">' in client.get(quote_page).text
    assert confirm(client, "formosa-air", member_ref).status_code == 303
    shown = client.get(quote_page)
    assert shown.status_code == 200
    for page in (shown.text, client.get(quote_page, headers={"accept-language": "zh-TW"}).text):
        assert 'id="unlinked"' in page and 'id="to-accounts" href="/portal/"' in page
        assert 'id="quote-live"' not in page and 'id="convert"' not in page and "countdown.js" not in page
    assert "Your Formosa Air Miles account was unlinked after this quote was priced." in html.unescape(shown.text)
    # Convert sent from the page as it was still refuses, now in the same words (not the API's).
    refused = client.post(quote_page, data=form)
    assert refused.status_code == 400 and 'id="unlinked"' in refused.text
    assert "linkAccount" not in refused.text and 'id="quote-live"' not in refused.text
