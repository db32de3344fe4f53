"""Converting in the portal over HTTP, against real sandbox partners: in time, twice from one
form, after the quote ran out, and without the source program's authority."""

from __future__ import annotations

import base64
import html
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from exchange.auth.scopes import Scope
from exchange.conversions.models import Conversion
from exchange.db.database import Database
from exchange.members.models import Member
from exchange.pricing.models import Quote
from exchange.sagas import doubt
from exchange.sandbox.faults import FaultKind
from exchange.web.portal import convert
from tests.web import portal_flows
from tests.web.conftest import PortalGateway, run_async
from tests.web.portal_flows import (
    CSRF_FIELD,
    QUOTE_PATH,
    ask_quote,
    convert_form,
    csrf_token,
    pair_limits,
    recorded_as,
    rows_per_table,
    sign_in,
    sign_in_by_link,
)
from tests.web.portal_partners import PIN, end_client, set_member_scopes, signing_in_as_a_client_with


@pytest.fixture
def client(portal_gateway: PortalGateway) -> Iterator[httpx.Client]:
    with portal_gateway.gateway.client() as client:
        yield client


def linked_member(
    portal_gateway: PortalGateway, client: httpx.Client, *, also_sign_in: bool, air_tier: str | None = None
) -> str:
    """A member signed in through FreshMart (5,000 points) with Formosa Air linked (4,000 miles,
    at ``air_tier``, the partner's default if none); no page showing their balances opened yet,
    so none is cached."""
    member_ref = portal_flows.linked_member(portal_gateway, client, air_tier=air_tier, csrf_page="/portal/convert")
    if also_sign_in:
        sign_in(client, "formosa-air", member_ref, token_path="/portal/")
    return member_ref


def expire(portal_gateway: PortalGateway, quote_page: str) -> None:
    """Let the quote's time run out (as if its minutes had passed)."""
    match = QUOTE_PATH.match(quote_page)
    assert match is not None

    async def run() -> None:
        db = Database.from_url(portal_gateway.gateway.settings.database_url)
        try:
            async with db.transaction() as session:
                past = datetime.now(UTC) - timedelta(seconds=1)
                await session.exec(update(Quote).where(col(Quote.id) == match[1]).values(expires_at=past))  # type: ignore[call-overload]
        finally:
            await db.dispose()

    run_async(run)


def selected(page: str, select_id: str) -> list[str]:
    """The values a select of ``page`` has selected."""
    options = page.split(f'<select id="{select_id}"')[1].split("</select>")[0]
    return re.findall(r'<option value="([^"]+)" selected>', options)


def test_the_convert_form_starts_from_the_program_the_member_signed_in_with_and_to_another(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """It started from the first program by name, the coalition point (none held by a new
    member): on a phone, a quote for points the member did not have, unless they changed it."""
    linked_member(portal_gateway, client, also_sign_in=False)
    page = client.get("/portal/convert").text
    assert selected(page, "from-program") == ["fresh-mart"]
    assert selected(page, "to-program") == ["coalition"], "the first program other than FreshMart"
    # What the member chose stands (a link from a quote's Change the amount, a refused form).
    chosen = client.get("/portal/convert", params={"from_program": "formosa-air", "to_program": "fresh-mart"}).text
    assert selected(chosen, "from-program") == ["formosa-air"] and selected(chosen, "to-program") == ["fresh-mart"]
    # Only the program to convert from chosen (Formosa Air, second by name): the other is not
    # the same program again, as the second by name used to be.
    only_from = client.get("/portal/convert", params={"from_program": "formosa-air"}).text
    assert selected(only_from, "from-program") == ["formosa-air"] and selected(only_from, "to-program") == ["coalition"]


@pytest.mark.parametrize(
    ("language", "rules"),
    [
        (
            "en",
            {
                "coalition": "From Coalition Points: any number of points.",
                "formosa-air": "From Formosa Air Miles: at least 3,000 Miles, in steps of 1,000.",
                "fresh-mart": "From FreshMart Rewards: at least 200 FreshMart Points, in steps of 10.",
            },
        ),
        (
            "zh-TW",
            {
                "coalition": "從 Coalition Points 轉出：點數不限。",
                "formosa-air": "從 Formosa Air Miles 轉出：至少 3,000 Mile，以 1,000 為單位。",
                "fresh-mart": "從 FreshMart Rewards 轉出：至少 200 FreshMart Point，以 10 為單位。",
            },
        ),
    ],
    ids=["en", "zh-TW"],
)
def test_the_convert_form_says_each_programs_minimum_and_step_before_a_quote_is_asked(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, rules: dict[str, str]
) -> None:
    """Formosa Air converts at least 3,000 miles in steps of 1,000: the member learnt it only
    from the refusal of the quote they asked for. Every program the form offers says its rule,
    from the catalog (no partner asked), and the points field points at them."""
    linked_member(portal_gateway, client, also_sign_in=False)
    page = html.unescape(client.get("/portal/convert", headers={"accept-language": language}).text)
    shown = dict(re.findall(r'<li id="rule-([a-z0-9-]+)">(.*?)</li>', page.split('id="amount-rules">')[1]))
    assert {program: " ".join(rule.split()) for program, rule in shown.items()} == rules
    assert 'aria-describedby="amount-rules"' in page.split('id="points"')[1].split(">")[0]


@pytest.mark.parametrize(
    ("language", "rule"),
    [
        ("en", "From Wallet Pay Points into Formosa Air Miles: at least 10,000 Wallet Points, in steps of 10,000."),
        ("zh-TW", "從 Wallet Pay Points 轉入 Formosa Air Miles：至少 10,000 Wallet Point，以 10,000 為單位。"),
    ],
    ids=["en", "zh-TW"],
)
def test_the_convert_form_says_a_pairs_own_stricter_rule_which_the_quote_checks(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, rule: str
) -> None:
    """A pair's rate may set its own minimum and step (Wallet Pay into Formosa Air: at least
    10,000, in steps of 10,000): the form said Wallet Pay's own (at least 10, any step), and the
    member learnt the pair's from the refusal of the quote they asked for."""
    member_ref = linked_member(portal_gateway, client, also_sign_in=False)
    portal_gateway.partners.add_member("wallet-pay", member_ref, balance=50_000)
    form = {"csrf_token": csrf_token(client, "/portal/convert"), "program": "wallet-pay", "member_ref": member_ref}
    assert client.post("/portal/accounts/link", data={**form, "verification": PIN}).status_code == 303
    headers = {"accept-language": language}
    with pair_limits(
        portal_gateway.gateway.settings.database_url,
        "wallet-pay",
        "formosa-air",
        minimum_points=10_000,
        increment=10_000,
    ):
        page = html.unescape(client.get("/portal/convert", headers=headers).text)
        rules = page.split('id="amount-rules">')[1].split("</ul>")[0]
        shown = dict(re.findall(r'<li id="rule-([a-z0-9-]+)">(.*?)</li>', rules, re.S))
        assert " ".join(shown.pop("wallet-pay-to-formosa-air").split()) == rule
        assert set(shown) == {"coalition", "formosa-air", "fresh-mart", "wallet-pay"}, (
            "no pair without a rule of its own"
        )
        # The rule shown is the one the quote checks.
        asked = {"from_program": "wallet-pay", "to_program": "formosa-air", "points": "15000"}
        refused = client.post("/portal/convert", data={"csrf_token": csrf_token(client, "/portal/convert"), **asked})
        assert (
            refused.status_code == 400 and "in steps of 10,000" in html.unescape(refused.text).split('id="problem"')[1]
        )
    assert "wallet-pay-to-formosa-air" not in client.get("/portal/convert").text, "the pair's own rule cleared"


@pytest.mark.parametrize(
    ("language", "empty", "converted", "reversed_"),
    [
        ("en", "You have not converted points yet.", "Converted", "Reversed, points given back"),
        ("zh-TW", "您尚未轉換過點數。", "轉換完成", "已撤銷，點數已退回"),
    ],
    ids=["en", "zh-TW"],
)
def test_a_member_finds_their_conversions_again_newest_first_each_leading_to_its_page(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, empty: str, converted: str, reversed_: str
) -> None:
    """A conversion was found again only through the address its outcome was shown at: the
    portal listed none, so a member checking their month had nowhere to look."""
    linked_member(portal_gateway, client, also_sign_in=False)
    headers = {"accept-language": language}
    assert empty in html.unescape(client.get("/portal/conversions", headers=headers).text)
    outcomes = []
    for points in (1_000, 2_000):
        quote_page = ask_quote(client, "fresh-mart", "formosa-air", points)
        outcomes.append(client.post(quote_page, data=convert_form(client, quote_page)).headers["location"])
    recorded_as(
        portal_gateway.gateway,
        Conversion,
        outcomes[0].rsplit("/", 1)[1],
        status="REVERSED",
        failure_code="PARTNER_REFUSED",
    )
    assert 'href="/portal/conversions"' in client.get(outcomes[1]).text
    page = html.unescape(client.get("/portal/conversions", headers=headers).text)
    rows = re.findall(r'<tr id="conversion-([0-9a-f-]+)">(.*?)</tr>', page, re.S)
    assert [f"/portal/conversions/{row_id}" for row_id, _ in rows] == outcomes[::-1], "newest first"
    newest, oldest = (" ".join(re.sub(r"<[^>]+>", " ", cells).split()) for _, cells in rows)
    assert "2,000 FreshMart Point" in newest and "(Formosa Air)" in newest and converted in newest
    assert "1,000 FreshMart Point" in oldest and reversed_ in oldest


@pytest.mark.parametrize(
    ("language", "older", "newest"),
    [("en", "Older conversions", "Newest conversions"), ("zh-TW", "較早的轉換", "最新的轉換")],
)
def test_a_member_pages_to_older_conversions_by_the_cursor_graphql_pages_with(
    portal_gateway: PortalGateway,
    client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    language: str,
    older: str,
    newest: str,
) -> None:
    """The history listed the newest 50 and no more: an older conversion was out of reach."""
    monkeypatch.setattr(convert, "HISTORY_LENGTH", 2)
    linked_member(portal_gateway, client, also_sign_in=False)
    outcomes = []
    for points in (1_000, 1_500, 2_000):
        quote_page = ask_quote(client, "fresh-mart", "formosa-air", points)
        outcomes.append(client.post(quote_page, data=convert_form(client, quote_page)).headers["location"])
    headers = {"accept-language": language}

    def listed(page: str) -> list[str]:
        return [f"/portal/conversions/{row_id}" for row_id in re.findall(r'<tr id="conversion-([0-9a-f-]+)">', page)]

    first = html.unescape(client.get("/portal/conversions", headers=headers).text)
    assert listed(first) == outcomes[:0:-1] and newest not in first
    link = re.search(r'<a href="([^"]+)" rel="next" id="older">([^<]+)</a>', first)
    assert link is not None and link[2] == older
    second = html.unescape(client.get(link[1], headers=headers).text)
    assert listed(second) == outcomes[:1] and 'id="older"' not in second
    assert f'<a href="/portal/conversions" id="newest">{newest}</a>' in second


@pytest.mark.parametrize(
    ("language", "said"),
    [
        ("en", "This link to older entries is not one the exchange gave out. Start again from the newest."),
        ("zh-TW", "這個較早紀錄的連結不是交換平台提供的。請從最新的紀錄重新開始。"),
    ],
)
@pytest.mark.parametrize(
    "after",
    [
        base64.urlsafe_b64encode(b"9999-12-31T00:00:00|x").decode(),  # no offset: no time a cursor holds
        "forged",
        base64.urlsafe_b64encode(f"2026-01-01T00:00:00+00:00|{'x' * 200}".encode()).decode(),  # longer than any
    ],
    ids=["naive", "not-base64", "too-long"],
)
def test_a_forged_cursor_is_refused_as_graphql_refuses_it_and_lists_nothing(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, said: str, after: str
) -> None:
    linked_member(portal_gateway, client, also_sign_in=False)
    answer = client.get("/portal/conversions", params={"after": after}, headers={"accept-language": language})
    assert answer.status_code == 400
    page = html.unescape(answer.text)
    assert page.split('id="problem"')[1].split('<p class="muted">')[1].split("</p>")[0] == said
    assert "<tr id=" not in page and 'id="no-conversions"' not in page
    assert 'href="/portal/conversions" id="newest"' in page


def test_a_member_converts_in_time_and_both_partners_balances_change_once_for_a_double_submit(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    page = client.get(quote_page).text
    assert 'data-expires-at="' in page and "Convert now" in page
    assert 'id="source-balance">5,000 FreshMart Points' in page and 'id="short"' not in page
    form = convert_form(client, quote_page)
    first = client.post(quote_page, data=form)
    again = client.post(quote_page, data=form)  # the same rendered form, sent twice
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    outcome = client.get(first.headers["location"])
    assert outcome.status_code == 200 and "Converted" in outcome.text
    assert partners.balance("fresh-mart", member_ref) == 4_000
    assert partners.balance("formosa-air", member_ref) > 4_000
    gained = partners.balance("formosa-air", member_ref) - 4_000
    assert f"{gained:,}" in outcome.text
    assert 'id="again"' not in outcome.text
    # Each amount says whose points they are once (not "1,000 FreshMart Points of FreshMart Rewards").
    chinese = client.get(first.headers["location"], headers={"accept-language": "zh-TW"}).text
    assert f"1,000 FreshMart Point 已轉換為 {gained:,} Mile (Formosa Air)。" in chinese


@pytest.mark.parametrize(
    ("language", "already"),
    [("en", "You had already converted with this quote"), ("zh-TW", "您已用這份報價轉換過了")],
    ids=["en", "zh-TW"],
)
def test_a_quote_converted_from_its_page_rendered_again_leads_to_its_conversion_and_converts_once(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, already: str
) -> None:
    """The member went back to the quote's page (or reloaded it) after converting and pressed
    Convert now again: its form, rendered anew, holds a new key. The page said 'This could not be
    done. Check what you entered' over 'quote <uuid> was already executed as conversion <uuid>'
    and offered Convert now again; it leads to the conversion, saying nothing moved twice."""
    partners = portal_gateway.partners
    member_ref = linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    first = client.post(quote_page, data=convert_form(client, quote_page))
    assert first.status_code == 303
    rows = rows_per_table(portal_gateway.gateway.settings.database_url)
    again = client.post(quote_page, data=convert_form(client, quote_page))
    assert again.status_code == 303
    assert again.headers["location"] == f"{first.headers['location']}?again=1"
    page = client.get(again.headers["location"], headers={"accept-language": language})
    assert page.status_code == 200 and already in html.unescape(page.text)
    assert "was already executed" not in page.text
    assert rows_per_table(portal_gateway.gateway.settings.database_url) == rows
    assert partners.balance("fresh-mart", member_ref) == 4_000


@pytest.mark.parametrize(
    ("language", "capped", "included"),
    [
        ("en", "Cut from a bonus of 12 Miles, to stay within the value of the points in", "Bonus included"),
        ("zh-TW", "為不超過轉出點數的價值，自 12 ", "已含加碼"),
    ],
)
def test_a_quote_shows_the_points_the_value_cap_cut_only_when_it_cut_some(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, capped: str, included: str
) -> None:
    """A Diamond member's 5% tier bonus on 245 miles (12) would make 1,000 FreshMart points
    (100.00) pay 257 miles, worth 102.80: the quote pays the 250 they are worth, a bonus of 5,
    and names the 7 cut from the bonus of 12 (so that the lines add up: 12 less 7 is the 5
    included). A member at the base tier gets no bonus and sees no such line."""
    language_header = {"accept-language": language}
    linked_member(portal_gateway, client, also_sign_in=False, air_tier="Diamond")
    page = html.unescape(
        client.get(ask_quote(client, "fresh-mart", "formosa-air", 1_000), headers=language_header).text
    )
    assert 'id="points-out">250 ' in page
    assert f"<dt>{included}</dt><dd>5 " in page, "the tier bonus left after the cut"
    assert f"<dt>{capped}" in page and '</dt><dd id="value-cap">−7 ' in page
    with portal_gateway.gateway.client() as other:
        linked_member(portal_gateway, other, also_sign_in=False)
        uncut = other.get(ask_quote(other, "fresh-mart", "formosa-air", 1_000), headers=language_header).text
    assert 'id="points-out">245 ' in uncut
    assert 'id="value-cap"' not in uncut and capped not in uncut


def test_after_the_quote_ran_out_the_page_asks_for_a_new_quote_and_nothing_moves(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    form = convert_form(client, quote_page)
    expire(portal_gateway, quote_page)
    refused = client.post(quote_page, data=form)
    assert refused.status_code == 400
    assert '<div id="quote-live" hidden>' in refused.text
    assert '<div id="quote-expired" hidden' not in refused.text and "Ask for a new quote" in refused.text
    assert partners.balance("fresh-mart", member_ref) == 5_000
    assert '<div id="quote-live" hidden>' in client.get(quote_page).text
    assert QUOTE_PATH.match(ask_quote(client, "fresh-mart", "formosa-air", 1_000))


def test_a_quote_whose_tier_bonus_the_members_tiers_no_longer_earn_asks_for_a_new_quote_and_nothing_moves(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """A Diamond member's quote carries a tier bonus; their tiers then change (as a status match's
    end or an unlink moves them): converting is refused as a quote run out, saying why."""
    partners = portal_gateway.partners
    member_ref = linked_member(portal_gateway, client, also_sign_in=False, air_tier="Diamond")
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    form = convert_form(client, quote_page)
    match = QUOTE_PATH.match(quote_page)
    assert match is not None

    async def tiers_change() -> None:
        db = Database.from_url(portal_gateway.gateway.settings.database_url)
        try:
            async with db.transaction() as session:
                quote = await session.get(Quote, match[1])
                assert quote is not None and quote.tier_bonus_points > 0
                moved = update(Member).where(col(Member.id) == quote.member_id)
                await session.exec(moved.values(tier_activity=col(Member.tier_activity) + 1))  # type: ignore[call-overload]
        finally:
            await db.dispose()

    run_async(tiers_change)
    # Shown again, the page says so at once: no countdown to a Convert that would be refused.
    shown = client.get(quote_page).text
    assert '<div id="quote-live" hidden>' in shown and 'id="tiers-changed"' in shown
    refused = client.post(quote_page, data=form)
    assert refused.status_code == 400
    assert '<div id="quote-live" hidden>' in refused.text and 'id="tiers-changed"' in refused.text
    assert partners.balance("fresh-mart", member_ref) == 5_000


def test_converting_points_of_a_program_the_session_was_not_signed_in_through_is_refused(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "formosa-air", "fresh-mart", 3_000)
    assert "converting its points will ask you to" in client.get(quote_page).text
    refused = client.post(quote_page, data=convert_form(client, quote_page))
    assert refused.status_code == 400
    assert "Sign in with Formosa Air Miles to spend its points" in refused.text
    assert "are spent only when Formosa Air Miles says so" in refused.text
    assert partners.balance("formosa-air", member_ref) == 4_000
    # The refusal's sign-in brings the member back to the quote, to convert it this time.
    assert sign_in_by_link(client, refused.text, "formosa-air", member_ref) == quote_page
    converted = client.post(quote_page, data=convert_form(client, quote_page))
    assert converted.status_code == 303
    assert partners.balance("formosa-air", member_ref) == 1_000


READ_ONLY = frozenset({Scope.MEMBER_READ})


def test_a_session_through_a_partner_whose_member_tokens_only_read_changes_nothing(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """FreshMart's client lets the member tokens it obtains only read: a portal session it
    signed in may look, and every page that would change something says why it cannot."""
    partners, settings = portal_gateway.partners, portal_gateway.gateway.settings
    member_ref = partners.new_member("fresh-mart", balance=5_000)
    partners.add_member("formosa-air", member_ref, balance=4_000)
    with signing_in_as_a_client_with(partners, settings, "fresh-mart", READ_ONLY):
        sign_in(client, "fresh-mart", member_ref)
    home = client.get("/portal/")
    assert home.status_code == 200 and "5,000" in home.text and "you can spend its points" not in home.text
    token = csrf_token(client, "/portal/")
    before = rows_per_table(settings.database_url)
    changes = {
        "/portal/convert": {"from_program": "fresh-mart", "to_program": "formosa-air", "points": "3000"},
        "/portal/accounts/link": {"program": "formosa-air", "member_ref": member_ref, "verification": PIN},
        "/portal/status-match": {"from_program": "fresh-mart", "to_program": "formosa-air"},
        "/portal/rewards/any-reward": {"pay_with": "fresh-mart", "idempotency_key": "k" * 24},
        "/portal/rewards/history/any-redemption/cancel": {},
    }
    for path, form in changes.items():
        refused = client.post(path, data={"csrf_token": token, **form})
        assert refused.status_code == 403 and "Not possible with this sign-in" in refused.text, path
        assert 'href="/portal/sign-in"' in refused.text
    assert client.get("/portal/convert").status_code == 403
    assert rows_per_table(settings.database_url) == before
    assert partners.balance("fresh-mart", member_ref) == 5_000


def test_a_session_spends_only_through_a_partner_whose_member_tokens_may_write(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """Formosa Air's sign-in may spend, FreshMart's (read only) may not: the session converts
    Formosa Air's miles, and FreshMart's points are refused saying why, without offering the
    sign-in the member has done already."""
    partners, settings = portal_gateway.partners, portal_gateway.gateway.settings
    member_ref = partners.new_member("formosa-air", balance=4_000)
    partners.add_member("fresh-mart", member_ref, balance=5_000)
    sign_in(client, "formosa-air", member_ref)
    form = {"csrf_token": csrf_token(client, "/portal/"), "program": "fresh-mart", "member_ref": member_ref}
    assert client.post("/portal/accounts/link", data={**form, "verification": PIN}).status_code == 303
    with signing_in_as_a_client_with(partners, settings, "fresh-mart", READ_ONLY):
        sign_in(client, "fresh-mart", member_ref, token_path="/portal/")
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 3_000)
    refused = client.post(quote_page, data=convert_form(client, quote_page))
    assert refused.status_code == 400 and "lets its members only look here" in refused.text
    assert 'href="/portal/sign-in/fresh-mart' not in refused.text
    assert partners.balance("fresh-mart", member_ref) == 5_000
    quote_page = ask_quote(client, "formosa-air", "fresh-mart", 3_000)
    assert client.post(quote_page, data=convert_form(client, quote_page)).status_code == 303
    assert partners.balance("formosa-air", member_ref) == 1_000


WRITES = frozenset({Scope.MEMBER_READ, Scope.MEMBER_WRITE})


def signed_in_through_a_client_of_its_own(portal_gateway: PortalGateway, client: httpx.Client) -> tuple[str, str]:
    """A member signed in through FreshMart (5,000 points), whose sandbox signed them in as a
    client made for the test (so that the test may narrow, delete or reset it without touching
    other tests' sign-ins), with Formosa Air linked (4,000 miles): the member and the client."""
    partners, settings = portal_gateway.partners, portal_gateway.gateway.settings
    member_ref = partners.new_member("fresh-mart", balance=5_000)
    partners.add_member("formosa-air", member_ref, balance=4_000)
    with signing_in_as_a_client_with(partners, settings, "fresh-mart", WRITES) as client_id:
        sign_in(client, "fresh-mart", member_ref)
    form = {"csrf_token": csrf_token(client, "/portal/"), "program": "formosa-air", "member_ref": member_ref}
    assert client.post("/portal/accounts/link", data={**form, "verification": PIN}).status_code == 303
    return member_ref, client_id


def test_a_session_follows_its_partners_client_narrowed_and_widened_again_without_signing_in_again(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """The client that signed the member in is narrowed to member:read after the sign-in: the
    session's next conversion of FreshMart's points is refused and changes nothing, as the
    client's member tokens would be; widened back, the same form converts."""
    partners, settings = portal_gateway.partners, portal_gateway.gateway.settings
    member_ref, client_id = signed_in_through_a_client_of_its_own(portal_gateway, client)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    form = convert_form(client, quote_page)
    set_member_scopes(settings, client_id, READ_ONLY)
    before = rows_per_table(settings.database_url)
    refused = client.post(quote_page, data=form)
    assert refused.status_code == 403 and "Not possible with this sign-in" in refused.text
    assert client.get("/portal/").status_code == 200  # it still reads
    assert rows_per_table(settings.database_url) == before
    assert partners.balance("fresh-mart", member_ref) == 5_000
    set_member_scopes(settings, client_id, WRITES)
    assert client.post(quote_page, data=form).status_code == 303
    assert partners.balance("fresh-mart", member_ref) == 4_000
    assert partners.balance("formosa-air", member_ref) > 4_000


@pytest.mark.parametrize("how", ["revoke", "reset"])
def test_a_program_whose_client_was_deleted_or_reset_after_the_sign_in_no_longer_vouches(
    portal_gateway: PortalGateway, client: httpx.Client, how: str
) -> None:
    """FreshMart's client is deleted, or its secret reset, after it signed the member in: the
    session no longer spends FreshMart's points (and offers its sign-in again), changing
    nothing, as that client's member tokens end; Formosa Air, whose client still vouches,
    still converts."""
    partners, settings = portal_gateway.partners, portal_gateway.gateway.settings
    member_ref, client_id = signed_in_through_a_client_of_its_own(portal_gateway, client)
    sign_in(client, "formosa-air", member_ref, token_path="/portal/")
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    form = convert_form(client, quote_page)
    end_client(settings, "fresh-mart", client_id, how)
    before = rows_per_table(settings.database_url)
    refused = client.post(quote_page, data=form)
    assert refused.status_code == 400 and 'href="/portal/sign-in/fresh-mart?' in refused.text
    assert rows_per_table(settings.database_url) == before
    assert partners.balance("fresh-mart", member_ref) == 5_000
    quote_page = ask_quote(client, "formosa-air", "fresh-mart", 3_000)
    assert client.post(quote_page, data=convert_form(client, quote_page)).status_code == 303
    assert partners.balance("formosa-air", member_ref) == 1_000


@pytest.mark.parametrize("signed_in_through_formosa_air", [True, False])
def test_a_program_whose_account_was_unlinked_elsewhere_no_longer_vouches_even_linked_again(
    portal_gateway: PortalGateway, client: httpx.Client, signed_in_through_formosa_air: bool
) -> None:
    """The member unlinks their FreshMart account in another session (signed in through Formosa
    Air), and links it again there: the first session, signed in through FreshMart before, no
    longer spends FreshMart's points, as a member token FreshMart asserted then ends. Signed in
    through Formosa Air as well, it goes on with Formosa Air's (and offers FreshMart's sign-in
    again); signed in through FreshMart alone, it is signed out. Either way nothing changes."""
    partners, settings = portal_gateway.partners, portal_gateway.gateway.settings
    member_ref, _ = signed_in_through_a_client_of_its_own(portal_gateway, client)
    if signed_in_through_formosa_air:
        sign_in(client, "formosa-air", member_ref, token_path="/portal/")
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    form = convert_form(client, quote_page)
    with portal_gateway.gateway.client() as elsewhere:
        sign_in(elsewhere, "formosa-air", member_ref)
        unlink = {"csrf_token": csrf_token(elsewhere, "/portal/accounts/fresh-mart/unlink"), "member_ref": member_ref}
        assert elsewhere.post("/portal/accounts/fresh-mart/unlink", data=unlink).status_code == 303
        link = {"csrf_token": csrf_token(elsewhere, "/portal/"), "program": "fresh-mart", "member_ref": member_ref}
        assert elsewhere.post("/portal/accounts/link", data={**link, "verification": PIN}).status_code == 303
    before = rows_per_table(settings.database_url)
    refused = client.post(quote_page, data=form)
    assert partners.balance("fresh-mart", member_ref) == 5_000
    if signed_in_through_formosa_air:
        assert refused.status_code == 400 and 'href="/portal/sign-in/fresh-mart?' in refused.text
        assert rows_per_table(settings.database_url) == before
        quote_page = ask_quote(client, "formosa-air", "fresh-mart", 3_000)
        assert client.post(quote_page, data=convert_form(client, quote_page)).status_code == 303
        assert partners.balance("formosa-air", member_ref) == 1_000
    else:
        assert refused.status_code == 401
        after = rows_per_table(settings.database_url)
        assert after.pop("member_web_session") == before.pop("member_web_session") - 1 and after == before
        assert client.get("/portal/").status_code == 303


@pytest.mark.parametrize("how", ["revoke", "reset"])
def test_a_session_whose_only_client_was_deleted_or_reset_is_signed_out(
    portal_gateway: PortalGateway, client: httpx.Client, how: str
) -> None:
    """No client vouches for the member any more: the session ends, its next post is refused
    and changes nothing, and the portal asks the member to sign in again."""
    partners, settings = portal_gateway.partners, portal_gateway.gateway.settings
    member_ref, client_id = signed_in_through_a_client_of_its_own(portal_gateway, client)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    form = convert_form(client, quote_page)
    end_client(settings, "fresh-mart", client_id, how)
    before = rows_per_table(settings.database_url)
    refused = client.post(quote_page, data=form)
    assert refused.status_code == 401
    after = rows_per_table(settings.database_url)
    assert after.pop("member_web_session") == before.pop("member_web_session") - 1 and after == before
    assert client.get("/portal/").status_code == 303
    assert partners.balance("fresh-mart", member_ref) == 5_000


def test_a_quote_or_conversion_of_someone_else_is_not_found(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    with portal_gateway.gateway.client() as other:
        sign_in(other, "fresh-mart", portal_gateway.partners.new_member("fresh-mart"))
        for path in (quote_page, "/portal/convert/quotes/not-a-quote", "/portal/conversions/not-a-conversion"):
            for accept in ("text/html", "*/*"):
                response = other.get(path, headers={"accept": accept})
                assert response.status_code == 404 and "There is no page at this address." in response.text
                # The portal's page, with the member still signed in: not the console's, as if
                # nobody were.
                assert 'action="/portal/sign-out"' in response.text, (path, accept)


def test_points_out_of_range_are_refused_naming_the_range_and_kept_in_the_form(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    linked_member(portal_gateway, client, also_sign_in=False)
    rows = rows_per_table(portal_gateway.gateway.settings.database_url)
    for points in ("-3", "99999999999999", "12.5", "", "abc", "1e3", "1,0,0,0", "10²"):
        form = {"from_program": "fresh-mart", "to_program": "formosa-air", "points": points}
        refused = client.post("/portal/convert", data={**form, "csrf_token": csrf_token(client, "/portal/convert")})
        assert refused.status_code == 400
        assert (
            "Write the points as a whole number in digits, such as 1000 or 1,000, from 1 to 1,000,000,000."
            in refused.text
        ), points
        assert f'maxlength="15" value="{points}"' in refused.text
    chinese = client.post(
        "/portal/convert",
        headers={"accept-language": "zh-TW"},
        data={**form, "points": "1.5", "csrf_token": csrf_token(client, "/portal/convert")},
    )
    # Said in Chinese, not the exchange's English quoted as English.
    assert "請以數字寫出整數點數，例如 1000 或 1,000，範圍為 1 至 1,000,000,000 點。" in chinese.text
    assert 'lang="en"' not in chinese.text.split('id="problem"')[1].split("</div>")[0]
    # A whole number out of the range is refused by the exchange's own check, said as plainly.
    for points, language, said in (
        ("99999999999", "en", "Points are converted from 1 to 1,000,000,000 at a time."),
        ("0", "en", "Points are converted from 1 to 1,000,000,000 at a time."),
        ("99999999999", "zh-TW", "每次可轉換 1 至 1,000,000,000 點。"),
    ):
        refused = client.post(
            "/portal/convert",
            headers={"accept-language": language},
            data={**form, "points": points, "csrf_token": csrf_token(client, "/portal/convert")},
        )
        problem = refused.text.split('id="problem"')[1].split("</div>")[0]
        assert refused.status_code == 400 and said in html.unescape(problem), (points, language)
        assert 'lang="en"' not in problem and "got" not in problem, (points, language)
    # Its language link shows the form again as filled in, not empty.
    english = "/portal/convert?from_program=fresh-mart&amp;to_program=formosa-air&amp;points=1.5&amp;lang=en"
    assert f'href="{english}"' in chinese.text
    assert rows_per_table(portal_gateway.gateway.settings.database_url) == rows


@pytest.mark.parametrize(
    ("points", "language", "said"),
    [
        ("150", "en", ["The program does not convert this amount.", "At least 200 points must be converted."]),
        ("205", "en", ["The program does not convert this amount.", "Points are converted in steps of 10."]),
        ("150", "zh-TW", ["該計畫不接受這個轉換數量。未做任何變更。", "至少須轉換 200 點。"]),
    ],
    ids=["below-minimum", "not-a-step", "below-minimum-zh"],
)
def test_points_below_the_programs_minimum_or_between_its_steps_are_refused_saying_what_it_converts(
    portal_gateway: PortalGateway, client: httpx.Client, points: str, language: str, said: list[str]
) -> None:
    """The headline said 'This goes over a limit of the program' over 'At least 200 points must be
    converted': the member had asked for too few."""
    linked_member(portal_gateway, client, also_sign_in=False)
    rows = rows_per_table(portal_gateway.gateway.settings.database_url)
    form = {"from_program": "fresh-mart", "to_program": "formosa-air", "points": points}
    refused = client.post(
        "/portal/convert",
        headers={"accept-language": language},
        data={**form, "csrf_token": csrf_token(client, "/portal/convert")},
    )
    assert refused.status_code == 400
    problem = " ".join(html.unescape(refused.text.split('id="problem"')[1].split("</div>")[0]).split())
    assert all(words in problem for words in said), problem
    assert "goes over" not in problem and "超過" not in problem
    assert f'value="{points}"' in refused.text
    assert rows_per_table(portal_gateway.gateway.settings.database_url) == rows


@pytest.mark.parametrize("typed", ["１０００", "１，０００", "１,０００"], ids=["digits", "comma", "ascii-comma"])
def test_points_typed_in_full_width_digits_as_a_chinese_keyboard_types_them_are_read_as_digits(
    portal_gateway: PortalGateway, client: httpx.Client, typed: str
) -> None:
    """A phone's keyboard in Chinese types full-width digits: the page refused １０００ saying
    points must be a whole number, which the member had written."""
    linked_member(portal_gateway, client, also_sign_in=False)
    form = {"from_program": "fresh-mart", "to_program": "formosa-air", "points": typed}
    asked = client.post("/portal/convert", data={**form, "csrf_token": csrf_token(client, "/portal/convert")})
    assert asked.status_code == 303, asked.text
    assert 'id="points-in">1,000 FreshMart Points' in client.get(asked.headers["location"]).text


@pytest.mark.parametrize(
    ("language", "balance", "short"),
    [
        ("en", "5,000 FreshMart Points", "You have 5,000 FreshMart Points, fewer than the 6,000 FreshMart Points"),
        ("zh-TW", "5,000 FreshMart Point", "您有 5,000 FreshMart Point，少於這份報價要轉換的 6,000 FreshMart Point"),
    ],
    ids=["en", "zh-TW"],
)
def test_a_quote_for_more_points_than_the_member_holds_says_so_and_offers_to_change_the_amount(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, balance: str, short: str
) -> None:
    """6,000 of the 5,000 FreshMart points held: the quote offered Convert now, and converting
    recorded a failed conversion whose page said it did not go through."""
    member_ref = linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 6_000)
    rows = rows_per_table(portal_gateway.gateway.settings.database_url)
    page = html.unescape(client.get(quote_page, headers={"accept-language": language}).text)
    assert f'id="source-balance">{balance}' in page
    assert short in " ".join(page.split('id="short"')[1].split("</div>")[0].split())
    assert 'id="convert"' not in page and 'name="idempotency_key"' not in page
    assert "data-expires-at" not in page and 'id="new-quote"' not in page, "no countdown to convert in"
    change = '<a class="button" id="change-amount" href="/portal/convert?from_program=fresh-mart&to_program=formosa-air&points=6000">'
    assert change in page
    assert rows_per_table(portal_gateway.gateway.settings.database_url) == rows
    assert portal_gateway.partners.balance("fresh-mart", member_ref) == 5_000


@pytest.mark.parametrize(
    ("language", "unchecked"),
    [("en", "Could not be checked just now"), ("zh-TW", "目前無法查詢")],
    ids=["en", "zh-TW"],
)
def test_a_quote_whose_source_program_cannot_be_reached_says_the_balance_was_not_checked_and_converts(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, unchecked: str
) -> None:
    partners = portal_gateway.partners
    member_ref = linked_member(portal_gateway, client, also_sign_in=False)
    # A conversion first: its quote cached the tiers the next quote prices with, and its end
    # made the balances cached stale; so FreshMart is asked only for the balance of the next
    # quote's page, one read failing (too few failures to open the exchange's circuit breaker
    # for FreshMart, which other tests would meet).
    converted = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    assert client.post(converted, data=convert_form(client, converted)).status_code == 303
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    fresh_mart = partners.fleet["fresh-mart"].admin
    partners.run(fresh_mart.set_faults(percent={FaultKind.ERROR: 100}))
    try:
        page = html.unescape(client.get(quote_page, headers={"accept-language": language}).text)
    finally:
        partners.run(fresh_mart.set_faults())
    assert f'id="source-balance">{unchecked}' in page
    assert 'id="balance-unchecked"' in page and 'id="short"' not in page and 'id="convert"' in page
    answered = client.get(quote_page).text
    assert 'id="source-balance">4,000 FreshMart Points' in answered and 'id="balance-unchecked"' not in answered
    assert client.post(quote_page, data=convert_form(client, quote_page)).status_code == 303
    assert partners.balance("fresh-mart", member_ref) == 3_000


def test_a_conversion_the_partner_refused_shows_the_partners_own_words_on_a_chinese_page(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    member_ref = linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 6_000)  # more than the 5,000 points held
    # Its page offers no Convert now; a form sent anyway (from a tab open before) reaches FreshMart.
    token = CSRF_FIELD.search(client.get(quote_page).text)
    assert token is not None
    form = {"csrf_token": token[1], "idempotency_key": secrets.token_urlsafe(24)}
    converted = client.post(quote_page, data=form)
    assert converted.status_code == 303, converted.text
    page = html.unescape(client.get(converted.headers["location"], headers={"accept-language": "zh-TW"}).text)
    failure = page.split('id="failure">')[1].split("</p>")[0]
    # FreshMart's words, quoted as FreshMart's: not the exchange's English around them.
    assert failure == (
        f'FreshMart Rewards 的原話：<q class="own-words" lang=""><bdi>member {member_ref} has 5000 points, 6000 asked</bdi></q>'
    )
    assert portal_gateway.partners.balance("fresh-mart", member_ref) == 5_000
    # Nothing moved, and the page says so: no points given back that were never taken, no
    # "you gave" or fee for a conversion that gave and charged nothing.
    english = html.unescape(client.get(converted.headers["location"], headers={"accept-language": "en"}).text)
    for shown, outcome, asked in (
        (page, "沒有轉換任何點數：您的帳戶未被扣除任何點數。", "<dt>您要求轉換</dt>"),
        (english, "Nothing was converted: no points were taken from your account.", "<dt>You asked to convert</dt>"),
    ):
        assert " ".join(shown.split('id="outcome">')[1].split("</p>")[0].split()) == outcome
        assert asked in shown and "NT$" not in shown.split('class="facts"')[1].split("</dl>")[0]


@pytest.mark.parametrize(
    ("language", "headline", "said"),
    [
        (
            "en",
            "Your conversion was reversed",
            "The program you converted from reversed the debit on its own before confirming it: nothing is left of it.",
        ),
        ("zh-TW", "您的轉換已撤銷", "轉出的計畫在確認扣點前已自行將其沖回：這筆扣點已不存在。"),
    ],
)
def test_a_conversion_whose_source_gave_the_debit_back_on_its_own_says_so_not_too_late(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, headline: str, said: str
) -> None:
    """REVERSED because the source reverted its debit itself while it was in doubt: the page
    said the source had confirmed the debit too late and the exchange reversed it."""
    linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    outcome = client.post(quote_page, data=convert_form(client, quote_page)).headers["location"]
    recorded_as(
        portal_gateway.gateway,
        Conversion,
        outcome.rsplit("/", 1)[1],
        status="REVERSED",
        failure_code="PARTNER_REFUSED",
        failure_message=doubt.WRITE_GIVEN_BACK.format(partner="source", write="debit"),
    )
    page = html.unescape(client.get(outcome, headers={"accept-language": language}).text)
    assert headline in page.split("<h1>")[1].split("</h1>")[0]
    assert page.split('id="failure">')[1].split("</p>")[0] == said


def test_a_conversion_that_stood_after_its_target_contradicted_itself_says_so_on_a_chinese_page(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """COMPLETED with PARTNER_CONTRADICTED (the target credited another amount and would not
    take it back): the page said nothing of it, and the saga's reason was English only."""
    linked_member(portal_gateway, client, also_sign_in=False)
    quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
    outcome = client.post(quote_page, data=convert_form(client, quote_page)).headers["location"]
    stood = doubt.WRITE_STANDS.format(
        partner="target",
        write="credit",
        contradiction="its points is 2000, the exchange sent 1000",
        refusal="partner formosa-air refused REVERSE: not enough miles",
    )

    recorded_as(
        portal_gateway.gateway,
        Conversion,
        outcome.rsplit("/", 1)[1],
        failure_code=doubt.CONTRADICTED,
        failure_message=stood,
    )
    page = html.unescape(client.get(outcome, headers={"accept-language": "zh-TW"}).text)
    assert "轉換完成" in page.split("<h1>")[1].split("</h1>")[0]
    failure = page.split('id="failure">')[1].split("</p>")[0]
    assert (
        failure
        == "轉入的計畫記錄的加點與交換平台送出的不同，且未能收回：您的轉換依送出的內容成立，差額由交換平台與該計畫結算。"
    )


def test_the_accounts_page_says_when_the_members_coalition_points_expire(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """Coalition points lapse at the end of the year after they were earned; the exchange, not
    a partner, holds them, so only the portal can tell the member when (GraphQL's
    expiringPoints), and it did not."""
    member_ref = portal_gateway.partners.new_member("fresh-mart", balance=5_000)
    sign_in(client, "fresh-mart", member_ref)
    assert 'id="expiring"' not in client.get("/portal/").text  # none held: nothing to say
    earned = ask_quote(client, "fresh-mart", "coalition", 1_000)
    assert client.post(earned, data=convert_form(client, earned)).status_code == 303
    accounts = client.get("/portal/").text
    held = re.search(r'<dd class="balance">([\d,]+) Coalition Points</dd>', accounts)
    assert held is not None
    # The point's one tier, which every member holds, is no tier of the member's to show.
    coalition_card = accounts.split('id="account-coalition"')[1].split("</dl>")[0]
    assert 'class="tier"' not in coalition_card and 'class="tier"' in accounts
    # Nor is its account's member id, the exchange's own id of the member: nothing they know.
    assert "Member id" not in coalition_card and "Member id" in accounts
    # At 00:00 on 1 January after the year after this one, in the point's time zone.
    lapse = datetime.now(ZoneInfo("Asia/Taipei")).year + 2
    english = " ".join(client.get("/portal/").text.split('id="expiring">')[1].split("</ul>")[0].split())
    moment = f'<time datetime="{lapse - 1}-12-31T16:00:00+00:00">'
    assert english == (
        f"<li>{held[1]} Coalition Points expire at {moment}Jan 1, {lapse}, 12:00 AM</time>, unless spent before.</li>"
    )
    chinese = client.get("/portal/", headers={"accept-language": "zh-TW"}).text.split('id="expiring">')[1]
    assert f"{held[1]} Coalition Point 將於 {moment}{lapse}年1月1日 午夜12:00</time> 到期，請在此之前使用。" in chinese
