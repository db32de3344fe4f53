"""Rewards in the portal over HTTP: a reward published through the rewards service, listed by
coalition level, redeemed once for a form sent twice, and shown in the history."""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from exchange.auth.scopes import Scope
from exchange.db.database import Database
from exchange.programs.models import Program
from exchange.rewards.catalog import RewardDraft
from exchange.rewards.models import Redemption, Reward
from exchange.sagas import doubt
from exchange.sandbox.faults import FaultKind
from exchange.services.container import open_services
from exchange.web.portal import rewards as portal_rewards
from tests.web.conftest import PortalGateway, run_async
from tests.web.paging import listed_once, pages_followed
from tests.web.portal_flows import (
    CSRF_FIELD,
    IDEMPOTENCY_FIELD,
    ask_quote,
    convert_form,
    language_link,
    linked_member,
    recorded_as,
    rows_per_table,
    sign_in,
    sign_in_by_link,
)
from tests.web.portal_partners import PIN, end_client, set_member_scopes, signing_in_as_a_client_with

_rewards = itertools.count(1)


@pytest.fixture
def client(portal_gateway: PortalGateway) -> Iterator[httpx.Client]:
    with portal_gateway.gateway.client() as client:
        yield client


def publish(
    portal_gateway: PortalGateway,
    program_id: str,
    title: str,
    *,
    price: str = "40",
    min_level: int = 0,
    per_member_limit: int | None = None,
) -> str:
    """A reward of ``program_id``, published as its partner does (RewardService.publish)."""
    reward_id = f"portal-test-{next(_rewards)}"

    async def run() -> str:
        async with open_services(portal_gateway.gateway.settings) as services:
            draft = RewardDraft(
                title=title,
                price=Decimal(price),
                stock=5,
                min_level=min_level,
                per_member_limit=per_member_limit,
                id=reward_id,
            )
            return (await services.rewards.publish(program_id, draft)).id

    return run_async(run)


#: The points price a reward page showed for paying with a program, which its form sends back.
SHOWN_POINTS = re.compile(r'<input type="hidden" name="(points_[a-z0-9-]+)" value="(\d+)">')


def redeem_form(client: httpx.Client, reward_id: str, pay_with: str) -> dict[str, str]:
    page = client.get(f"/portal/rewards/{reward_id}").text
    key, token = IDEMPOTENCY_FIELD.search(page), CSRF_FIELD.search(page)
    assert key is not None and token is not None, page
    return {"csrf_token": token[1], "idempotency_key": key[1], "pay_with": pay_with, **dict(SHOWN_POINTS.findall(page))}


def set_point_value(portal_gateway: PortalGateway, program_id: str, value: str) -> None:
    """What an operator's `partners load` does to ``program_id``'s point value."""

    async def run() -> None:
        db = Database.from_url(portal_gateway.gateway.settings.database_url)
        try:
            async with db.transaction() as session:
                await session.exec(  # type: ignore[call-overload]
                    update(Program).where(col(Program.id) == program_id).values(point_value=Decimal(value))
                )
        finally:
            await db.dispose()

    run_async(run)


def link_wallet_pay(client: httpx.Client, member_ref: str) -> None:
    """Link the member's Wallet Pay account, without signing in through it."""
    token = CSRF_FIELD.search(client.get("/portal/").text)
    assert token is not None
    link = {"csrf_token": token[1], "program": "wallet-pay", "member_ref": member_ref, "verification": PIN}
    assert client.post("/portal/accounts/link", data=link).status_code == 303


def paying_option(page: str, program_id: str) -> str:
    """The markup of one program's option on a reward page, its whitespace folded."""
    option = page.split(f'<input type="radio" name="pay_with" id="pay-{program_id}"')[1].split('<div class="option">')[
        0
    ]
    return " ".join(option.split())


def test_a_member_redeems_a_published_reward_once_for_a_double_submit_and_sees_it_in_the_history(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=50_000)
    sign_in(client, "fresh-mart", member_ref)
    reward_id = publish(portal_gateway, "formosa-air", "Window seat voucher")
    catalog = client.get("/portal/rewards")
    assert catalog.status_code == 200 and "Window seat voucher" in catalog.text
    page = client.get(f"/portal/rewards/{reward_id}").text
    points = re.search(r'<label for="pay-fresh-mart">([\d,]+) ', page)
    assert points is not None, page
    price = int(points[1].replace(",", ""))
    form = redeem_form(client, reward_id, "fresh-mart")
    first, again = (
        client.post(f"/portal/rewards/{reward_id}", data=form),
        client.post(f"/portal/rewards/{reward_id}", data=form),
    )
    assert first.status_code == again.status_code == 303
    assert partners.balance("fresh-mart", member_ref) == 50_000 - price
    history = client.get(first.headers["location"]).text
    assert history.count("Window seat voucher") == 1 and "Paid, awaiting delivery" in history


@pytest.mark.parametrize(
    ("language", "refused", "waiting"),
    [
        (
            "en",
            "Your redemption did not go through. It is listed below.",
            "Your redemption is in progress: the program you pay with has not answered yet.",
        ),
        ("zh-TW", "您的兌換未能完成，列於下方。", "您的兌換處理中：您用來支付的計畫尚未回覆。"),
    ],
    ids=["en", "zh-TW"],
)
def test_after_redeeming_the_history_says_how_the_redemption_stands_not_redeemed_whatever_became_of_it(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, refused: str, waiting: str
) -> None:
    """A form sent from a tab opened before the member spent their points (the partner refuses
    the debit), and one whose paying partner does not answer: the history said "Redeemed. It is
    listed below." over a row saying "Did not go through" and over one still in progress."""
    partners = portal_gateway.partners
    language_header = {"accept-language": language}
    poor = partners.new_member("fresh-mart", balance=100)
    sign_in(client, "fresh-mart", poor)
    reward_id = publish(portal_gateway, "formosa-air", "Lounge pass")
    form = {**redeem_form(client, reward_id, "fresh-mart"), "pay_with": "fresh-mart"}
    sent = client.post(f"/portal/rewards/{reward_id}", data=form)
    assert sent.status_code == 303
    page = html.unescape(client.get(sent.headers["location"], headers=language_header).text)
    assert page.split('id="redeemed">')[1].split("</p>")[0] == refused
    assert partners.balance("fresh-mart", poor) == 100

    client.cookies.clear()
    member_ref = partners.new_member("fresh-mart", balance=50_000)
    sign_in(client, "fresh-mart", member_ref)
    form = redeem_form(client, reward_id, "fresh-mart")
    fresh_mart = partners.fleet["fresh-mart"].admin
    partners.run(fresh_mart.set_faults(script=[FaultKind.HANG]))  # its debit, nothing applied
    try:
        sent = client.post(f"/portal/rewards/{reward_id}", data=form)
    finally:
        partners.run(fresh_mart.set_faults())
    assert sent.status_code == 303
    page = html.unescape(client.get(sent.headers["location"], headers=language_header).text)
    assert page.split('id="redeemed">')[1].split("</p>")[0].startswith(waiting)
    # Another's redemption, or none, named in the address: no notice at all.
    assert 'id="redeemed"' not in client.get("/portal/rewards/history", params={"redeemed": "nothing"}).text


@pytest.mark.parametrize(
    ("language", "said"),
    [
        (
            "en",
            "Each member may redeem this reward at most 1 time; your redemptions of it (in progress, "
            "waiting for review or done) already reach that.",
        ),
        ("zh-TW", "每位會員最多可兌換此獎勵 1 次；您對此獎勵的兌換（處理中、等候審核或已完成）已達此數。"),
    ],
    ids=["en", "zh-TW"],
)
def test_a_reward_redeemed_as_often_as_one_member_may_is_refused_saying_so_not_a_programs_monthly_points(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, said: str
) -> None:
    """A reward one member may redeem once, redeemed again from a second tab: the page said it
    would go over "the points the receiving program issues in a month, 1 point"."""
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=50_000)
    sign_in(client, "fresh-mart", member_ref)
    reward_id = publish(portal_gateway, "formosa-air", "Lounge pass", per_member_limit=1)
    first, second = redeem_form(client, reward_id, "fresh-mart"), redeem_form(client, reward_id, "fresh-mart")
    assert client.post(f"/portal/rewards/{reward_id}", data=first).status_code == 303
    refused = client.post(f"/portal/rewards/{reward_id}", data=second, headers={"accept-language": language})
    assert refused.status_code == 400
    problem = html.unescape(refused.text).split('id="problem"')[1]
    assert problem.split('<p class="muted">')[1].split("</p>")[0] == said
    assert partners.balance("fresh-mart", member_ref) == 50_000 - 408


CLOSED = {
    "en": {
        "sold-out": "None of this reward is left: it cannot be redeemed now.",
        "ended": "This reward can no longer be redeemed.",
        "level": "This reward needs the Platinum coalition level; your partners' tiers give you Member.",
    },
    "zh-TW": {
        "sold-out": "此獎勵已無剩餘：目前無法兌換。",
        "ended": "此獎勵已無法再兌換。",
        "level": "此獎勵需要 Platinum 聯盟等級；依您在各合作夥伴的等級，您目前為 Member。",
    },
}


@pytest.mark.parametrize("language", ["en", "zh-TW"])
@pytest.mark.parametrize("closed", ["sold-out", "ended", "level"])
def test_a_reward_that_cannot_be_redeemed_now_says_why_in_place_of_redeem_and_after_a_refusal(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, closed: str
) -> None:
    """A reward whose last unit another member redeemed, or whose availability ended, after the
    page was opened; one above the member's coalition level. The page offered Redeem, and the
    refusal came back with Redeem offered again under the exchange's English ("reward … is out
    of stock", "… needs coalition level 3; your partners report level 0")."""
    partners = portal_gateway.partners
    language_header = {"accept-language": language}
    member_ref = partners.new_member("fresh-mart", balance=50_000)
    sign_in(client, "fresh-mart", member_ref)
    reward_id = publish(portal_gateway, "formosa-air", "Lounge pass", min_level=3 if closed == "level" else 0)
    form = {**redeem_form(client, reward_id, "fresh-mart"), "pay_with": "fresh-mart", "points_fresh-mart": "408"}
    if closed == "sold-out":
        recorded_as(portal_gateway.gateway, Reward, reward_id, stock=0)
    elif closed == "ended":
        recorded_as(portal_gateway.gateway, Reward, reward_id, available_until=datetime.now(UTC) - timedelta(minutes=1))
    said = CLOSED[language][closed]
    for answer, status in (
        (client.get(f"/portal/rewards/{reward_id}", headers=language_header), 200),
        (client.post(f"/portal/rewards/{reward_id}", data=form, headers=language_header), 400),
    ):
        assert answer.status_code == status, answer.text
        page = html.unescape(answer.text)
        assert page.split('id="closed">')[1].split("</p>")[0] == said
        assert 'id="redeem"' not in page and 'id="problem"' not in page and "reward " + reward_id not in page
    assert partners.balance("fresh-mart", member_ref) == 50_000


def test_a_redemption_follows_the_partners_client_live_narrowed_widened_and_reset(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """The client that signed the member in is narrowed to member:read: the next redemption is
    refused and changes nothing; widened back it goes through without signing in again; once
    the client's secret is reset the session no longer redeems (it is signed out)."""
    partners, settings = portal_gateway.partners, portal_gateway.gateway.settings
    member_ref = partners.new_member("fresh-mart", balance=50_000)
    writes = frozenset({Scope.MEMBER_READ, Scope.MEMBER_WRITE})
    with signing_in_as_a_client_with(partners, settings, "fresh-mart", writes) as client_id:
        sign_in(client, "fresh-mart", member_ref)
    reward_id = publish(portal_gateway, "formosa-air", "Aisle seat voucher")
    form = redeem_form(client, reward_id, "fresh-mart")
    set_member_scopes(settings, client_id, frozenset({Scope.MEMBER_READ}))
    before = rows_per_table(settings.database_url)
    refused = client.post(f"/portal/rewards/{reward_id}", data=form)
    assert refused.status_code == 403 and "Not possible with this sign-in" in refused.text
    assert rows_per_table(settings.database_url) == before
    assert partners.balance("fresh-mart", member_ref) == 50_000
    set_member_scopes(settings, client_id, writes)
    assert client.post(f"/portal/rewards/{reward_id}", data=form).status_code == 303
    paid = partners.balance("fresh-mart", member_ref)
    assert paid < 50_000
    form = redeem_form(client, reward_id, "fresh-mart")
    end_client(settings, "fresh-mart", client_id, "reset")
    assert client.post(f"/portal/rewards/{reward_id}", data=form).status_code == 401
    assert partners.balance("fresh-mart", member_ref) == paid


def test_rewards_are_listed_by_the_coalition_level_they_need(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    sign_in(client, "fresh-mart", portal_gateway.partners.new_member("fresh-mart"))
    publish(portal_gateway, "wallet-pay", "Gold lounge evening", min_level=2)
    catalog = client.get("/portal/rewards").text
    higher = catalog.index("Gold lounge evening")
    assert "above your level" in catalog[:higher]
    # Nothing redeemed yet: the history says how to start.
    assert "Open a reward in the list of rewards" in client.get("/portal/rewards/history").text


#: A reward's card in the catalog, and the catalog's link to its next page.
CATALOG_CARD = re.compile(r'<li class="card" id="reward-([^"]+)">')
NEXT_REWARDS = re.compile(r'<a href="(/portal/rewards\?after=[^"]+)" rel="next" id="more-rewards">')


def test_the_catalog_lists_a_page_of_rewards_and_links_the_next_each_reward_once(
    portal_gateway: PortalGateway, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portal_rewards, "CATALOG_LENGTH", 2)
    sign_in(client, "fresh-mart", portal_gateway.partners.new_member("fresh-mart"))
    ours = {publish(portal_gateway, "wallet-pay", f"Paged reward {n}") for n in range(3)}
    listed_once(pages_followed(client, "/portal/rewards", CATALOG_CARD, NEXT_REWARDS), 2, ours)
    assert client.get("/portal/rewards?after=no-such-reward").status_code == 404
    assert client.get("/portal/rewards?after=a&after=b").status_code == 400


def test_paying_with_a_program_the_session_was_not_signed_in_through_is_refused(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=5_000)
    partners.add_member("wallet-pay", member_ref, balance=90_000)
    sign_in(client, "fresh-mart", member_ref)
    link_wallet_pay(client, member_ref)
    reward_id = publish(portal_gateway, "formosa-air", "Priority boarding")
    refused = client.post(f"/portal/rewards/{reward_id}", data=redeem_form(client, reward_id, "wallet-pay"))
    assert refused.status_code == 400
    assert partners.balance("wallet-pay", member_ref) == 90_000
    # Switching language keeps the program chosen (it preselected FreshMart, which the session spends).
    chinese = client.get(language_link(refused.text, "zh-TW")).text
    assert re.search(r'id="pay-wallet-pay" value="wallet-pay"\s+checked', chinese)
    assert not re.search(r'value="fresh-mart"\s+checked', chinese)
    # The refusal's sign-in brings the member back to the reward, to pay with wallet-pay this time.
    assert sign_in_by_link(client, refused.text, "wallet-pay", member_ref) == f"/portal/rewards/{reward_id}"


#: Markup a partner could write into a reward, in an element, an attribute and a script.
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"


@pytest.mark.parametrize("lang", ["en", "zh-TW"])
def test_a_partners_markup_in_a_reward_is_shown_as_text_in_either_language(
    portal_gateway: PortalGateway, client: httpx.Client, lang: str
) -> None:
    sign_in(client, "fresh-mart", portal_gateway.partners.new_member("fresh-mart"))
    reward_id = run_async(lambda: _publish_hostile(portal_gateway))
    for path in ("/portal/rewards", f"/portal/rewards/{reward_id}"):
        page = client.get(path, params={"lang": lang})
        assert page.status_code == 200, page.text
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path
    # Who offers the reward, not a conversion's source ("From" read "轉出", transferred out, in Chinese)
    offered_by = {"en": "Offered by", "zh-TW": "提供者"}[lang]
    assert f"<dt>{offered_by}</dt><dd>Wallet Pay Points</dd>" in page.text and "轉出" not in page.text


async def _publish_hostile(portal_gateway: PortalGateway) -> str:
    async with open_services(portal_gateway.gateway.settings) as services:
        draft = RewardDraft(
            title=HOSTILE, description=HOSTILE, price=Decimal(40), stock=5, min_level=0, id=f"hostile-{next(_rewards)}"
        )
        return (await services.rewards.publish("wallet-pay", draft)).id


@pytest.mark.parametrize(
    ("language", "short", "held"),
    [
        (
            "en",
            "You have 100 FreshMart Points, fewer than the 408 FreshMart Points this reward costs.",
            "You have 90,000 Wallet Points.",
        ),
        ("zh-TW", "您有 100 FreshMart Point，少於此獎勵所需的 408 FreshMart Point。", "您有 90,000 Wallet Point。"),
    ],
    ids=["en", "zh-TW"],
)
def test_a_program_holding_fewer_points_than_the_reward_costs_is_not_offered_and_the_page_says_so(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, short: str, held: str
) -> None:
    """100 FreshMart points for a reward costing 408: the page offered FreshMart, preselected
    (the program the member signed in with), and only the redemption's failure said the points
    were short."""
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=100)
    partners.add_member("wallet-pay", member_ref, balance=90_000)
    sign_in(client, "fresh-mart", member_ref)
    link_wallet_pay(client, member_ref)
    reward_id = publish(portal_gateway, "formosa-air", "Lounge pass")
    rows = rows_per_table(portal_gateway.gateway.settings.database_url)
    page = html.unescape(client.get(f"/portal/rewards/{reward_id}", headers={"accept-language": language}).text)
    fresh_mart, wallet_pay = paying_option(page, "fresh-mart"), paying_option(page, "wallet-pay")
    assert "disabled" in fresh_mart.split(">")[0] and short in fresh_mart
    assert "checked" in wallet_pay.split(">")[0] and held in wallet_pay, "the program that can pay is chosen"
    assert 'id="redeem"' in page and 'id="short"' not in page
    assert rows_per_table(portal_gateway.gateway.settings.database_url) == rows


@pytest.mark.parametrize(
    ("language", "unheld"),
    [
        ("en", "Programs where you hold no points are not listed: Coalition Points."),
        ("zh-TW", "未列出您沒有點數的計畫：Coalition Points。"),
    ],
    ids=["en", "zh-TW"],
)
def test_a_program_holding_no_points_is_named_once_under_the_choices_not_offered_disabled(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, unheld: str
) -> None:
    """A new member holds no Coalition Points: every reward page listed them as a disabled
    choice, short of the price, which the member can do nothing about there."""
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=5_000)
    sign_in(client, "fresh-mart", member_ref)
    reward_id = publish(portal_gateway, "formosa-air", "Lounge pass")
    page = html.unescape(client.get(f"/portal/rewards/{reward_id}", headers={"accept-language": language}).text)
    assert 'id="pay-coalition"' not in page
    assert page.split('id="unheld">')[1].split("</p>")[0] == unheld
    assert "checked" in paying_option(page, "fresh-mart").split(">")[0] and 'id="redeem"' in page


@pytest.mark.parametrize(
    ("language", "alert"),
    [("en", "You do not have enough points for this reward."), ("zh-TW", "您的點數不足以兌換這項獎勵。")],
    ids=["en", "zh-TW"],
)
def test_a_member_whose_programs_all_hold_too_few_points_is_told_so_and_offered_no_redeem(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, alert: str
) -> None:
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=100)
    sign_in(client, "fresh-mart", member_ref)
    reward_id = publish(portal_gateway, "formosa-air", "Museum tickets")
    page = html.unescape(client.get(f"/portal/rewards/{reward_id}", headers={"accept-language": language}).text)
    assert alert in page.split('id="short"')[1].split("</div>")[0]
    assert 'id="redeem"' not in page and 'name="pay_with" id="pay-fresh-mart" value="fresh-mart"' in page
    assert partners.balance("fresh-mart", member_ref) == 100


@pytest.mark.parametrize(
    ("language", "unchecked"),
    [
        ("en", "Your balance at FreshMart Rewards could not be checked just now"),
        ("zh-TW", "目前無法查詢您在 FreshMart Rewards 的餘額"),
    ],
    ids=["en", "zh-TW"],
)
def test_a_reward_page_whose_paying_partner_cannot_be_reached_says_the_balance_was_not_checked_and_redeems(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, unchecked: str
) -> None:
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=50_000)
    sign_in(client, "fresh-mart", member_ref)  # no page showing balances opened yet: none is cached
    reward_id = publish(portal_gateway, "formosa-air", "Concert seats")
    fresh_mart = partners.fleet["fresh-mart"].admin
    # One read failing: too few failures to open the exchange's circuit breaker for FreshMart.
    partners.run(fresh_mart.set_faults(percent={FaultKind.ERROR: 100}))
    try:
        page = client.get(f"/portal/rewards/{reward_id}", headers={"accept-language": language})
    finally:
        partners.run(fresh_mart.set_faults())
    assert page.status_code == 200, page.text
    option = paying_option(html.unescape(page.text), "fresh-mart")
    assert unchecked in option and "disabled" not in option.split(">")[0] and "checked" in option.split(">")[0]
    assert 'id="redeem"' in page.text and 'id="short"' not in page.text
    answered = html.unescape(client.get(f"/portal/rewards/{reward_id}").text)
    assert "You have 50,000 FreshMart Points." in paying_option(answered, "fresh-mart")
    assert (
        client.post(f"/portal/rewards/{reward_id}", data=redeem_form(client, reward_id, "fresh-mart")).status_code
        == 303
    )
    assert partners.balance("fresh-mart", member_ref) == 50_000 - 408


@pytest.mark.parametrize(
    ("language", "changed", "option"),
    [
        (
            "en",
            "The price in points changed from 408 to 816 before your redemption arrived. Nothing was changed: "
            "check the new prices below and redeem again if you still want this reward.",
            "816 FreshMart Points",
        ),
        (
            "zh-TW",
            "您的兌換送達前，點數價格已從 408 變為 816。未做任何變更：請查看下方的新價格，若仍想要這項獎勵，請再兌換一次。",
            "816 FreshMart Point",
        ),
    ],
    ids=["en", "zh-TW"],
)
def test_a_redemption_whose_points_price_changed_after_the_page_is_refused_and_shown_at_the_new_price(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, changed: str, option: str
) -> None:
    """The page showed 408 FreshMart points; an operator then halved a FreshMart point's value:
    the redeem was made at 816 points, which the member had never seen."""
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", balance=50_000)
    sign_in(client, "fresh-mart", member_ref)
    reward_id = publish(portal_gateway, "formosa-air", "Lounge pass")
    form = redeem_form(client, reward_id, "fresh-mart")
    assert form["points_fresh-mart"] == "408"
    set_point_value(portal_gateway, "fresh-mart", "0.05")
    try:
        _refused_then_redeemed_at_the_new_price(
            portal_gateway, client, member_ref, reward_id, form, language, changed, option
        )
    finally:  # the gateway serves the module's other tests
        set_point_value(portal_gateway, "fresh-mart", "0.1")


def _refused_then_redeemed_at_the_new_price(
    portal_gateway: PortalGateway,
    client: httpx.Client,
    member_ref: str,
    reward_id: str,
    form: dict[str, str],
    language: str,
    changed: str,
    option: str,
) -> None:
    partners = portal_gateway.partners
    rows = rows_per_table(portal_gateway.gateway.settings.database_url)
    refused = client.post(f"/portal/rewards/{reward_id}", data=form, headers={"accept-language": language})
    assert refused.status_code == 400
    page = html.unescape(refused.text)
    alert = " ".join(page.split('id="problem" data-refusal>')[1].split("</div>")[0].split())
    assert alert == f"<h2> {changed} </h2>", "both figures, in the page's language, and nothing more"
    assert option in paying_option(page, "fresh-mart") and "checked" in paying_option(page, "fresh-mart").split(">")[0]
    assert rows_per_table(portal_gateway.gateway.settings.database_url) == rows
    assert partners.balance("fresh-mart", member_ref) == 50_000
    key = IDEMPOTENCY_FIELD.search(refused.text)
    assert key is not None
    again = {**form, **dict(SHOWN_POINTS.findall(refused.text)), "idempotency_key": key[1]}
    assert client.post(f"/portal/rewards/{reward_id}", data=again).status_code == 303
    assert partners.balance("fresh-mart", member_ref) == 50_000 - 816


@pytest.mark.parametrize(
    ("language", "status", "said"),
    [
        (
            "en",
            "Reversed, points given back",
            "The program you paid with reversed the debit on its own before confirming it: nothing is left of it.",
        ),
        ("zh-TW", "已撤銷，點數已退回", "您用來支付的計畫在確認扣點前已自行將其沖回：這筆扣點已不存在。"),
    ],
    ids=["en", "zh-TW"],
)
def test_a_redemption_whose_paying_partner_gave_the_debit_back_on_its_own_says_so_not_cancelled(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, status: str, said: str
) -> None:
    """REVERSED because the paying program reverted its debit itself while it was in doubt
    (WRITE_GIVEN_BACK): the history said "Cancelled, points given back", as if the member had
    cancelled it, and gave no reason."""
    member_ref = portal_gateway.partners.new_member("fresh-mart", balance=50_000)
    sign_in(client, "fresh-mart", member_ref)
    reward_id = publish(portal_gateway, "formosa-air", "Lounge pass")
    assert client.post(f"/portal/rewards/{reward_id}", data=redeem_form(client, reward_id, "fresh-mart")).is_redirect
    found = re.search(r'<tr id="redemption-([0-9a-f-]+)">', client.get("/portal/rewards/history").text)
    assert found is not None
    recorded_as(
        portal_gateway.gateway,
        Redemption,
        found[1],
        status="REVERSED",
        failure_code="PARTNER_REFUSED",
        failure_message=doubt.WRITE_GIVEN_BACK.format(partner="paying", write="debit"),
    )
    page = html.unescape(client.get("/portal/rewards/history", headers={"accept-language": language}).text)
    row = page.split(f'<tr id="redemption-{found[1]}">')[1].split("</tr>")[0]
    assert status in row and "Cancelled" not in row and "取消" not in row
    assert row.split(f'id="failure-{found[1]}">')[1].split("</p>")[0] == said


REDEMPTION_ROW = re.compile(r'<tr id="redemption-([0-9a-f-]+)">')
OLDER_REDEMPTIONS = re.compile(r'<a href="(/portal/rewards/history\?after=[^"]+)" rel="next" id="older">([^<]+)</a>')


def redeemed_times(client: httpx.Client, reward_id: str, times: int) -> set[str]:
    """The ids of ``times`` redemptions of ``reward_id`` the signed-in member made."""
    made = set()
    for _ in range(times):
        answer = client.post(f"/portal/rewards/{reward_id}", data=redeem_form(client, reward_id, "fresh-mart"))
        assert answer.status_code == 303, answer.text
        made.add(answer.headers["location"].split("redeemed=")[1])
    return made


@pytest.mark.parametrize(
    ("language", "older", "newest", "refused"),
    [
        (
            "en",
            "Older redemptions",
            "Newest redemptions",
            "This link to older entries is not one the exchange gave out. Start again from the newest.",
        ),
        ("zh-TW", "較早的兌換", "最新的兌換", "這個較早紀錄的連結不是交換平台提供的。請從最新的紀錄重新開始。"),
    ],
    ids=["en", "zh-TW"],
)
def test_a_member_pages_to_older_redemptions_each_once_and_a_cursor_not_theirs_is_refused(
    portal_gateway: PortalGateway,
    client: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    language: str,
    older: str,
    newest: str,
    refused: str,
) -> None:
    """The history listed the newest 50 and no more: an older redemption was out of reach."""
    partners = portal_gateway.partners
    with portal_gateway.gateway.client() as other:
        sign_in(other, "fresh-mart", partners.new_member("fresh-mart", balance=50_000))
        (theirs,) = redeemed_times(other, publish(portal_gateway, "formosa-air", "Lounge pass"), 1)
    sign_in(client, "fresh-mart", partners.new_member("fresh-mart", balance=50_000))
    ours = redeemed_times(client, publish(portal_gateway, "formosa-air", "Lounge pass"), 5)  # its whole stock
    everything = REDEMPTION_ROW.findall(client.get("/portal/rewards/history").text)
    assert set(everything) == ours and 'id="older"' not in client.get("/portal/rewards/history").text

    monkeypatch.setattr(portal_rewards, "HISTORY_LENGTH", 2)
    pages = pages_followed(client, "/portal/rewards/history", REDEMPTION_ROW, OLDER_REDEMPTIONS)
    listed_once(pages, 2, ours)
    assert [shown for page in pages for shown in page] == everything, "newest first, as one long page lists them"
    headers = {"accept-language": language}
    first = html.unescape(client.get("/portal/rewards/history", headers=headers).text)
    link = OLDER_REDEMPTIONS.search(first)
    assert link is not None and link[2] == older and 'id="newest"' not in first
    last = first
    while (onward := OLDER_REDEMPTIONS.search(last)) is not None:
        last = html.unescape(client.get(onward[1], headers=headers).text)
    assert REDEMPTION_ROW.findall(last) == everything[4:] and 'id="older"' not in last
    assert f'<a href="/portal/rewards/history" id="newest">{newest}</a>' in last

    for cursor in (theirs, "no-such-redemption", "x" * 37):
        answer = client.get("/portal/rewards/history", params={"after": cursor}, headers=headers)
        assert answer.status_code == 400, cursor
        page = html.unescape(answer.text)
        assert page.split('id="problem"')[1].split('<p class="muted">')[1].split("</p>")[0] == refused
        assert not REDEMPTION_ROW.search(page) and 'id="no-redemptions"' not in page
        assert 'href="/portal/rewards/history" id="newest"' in page


def test_coalition_points_are_spent_on_the_portal_sessions_own_authority_and_said_to_need_no_sign_in(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """The exchange holds a member's coalition points, and the portal session spends them
    (``member:coalition``): no partner signs the member in for them, so the quote and the
    reward page told the member to sign in "with Coalition Points", a sign-in there is none of,
    while the conversion went through without one."""
    linked_member(portal_gateway, client)
    earned = ask_quote(client, "fresh-mart", "coalition", 1_000)
    assert client.post(earned, data=convert_form(client, earned)).status_code == 303

    spend = ask_quote(client, "coalition", "formosa-air", 50)
    quote_page = client.get(spend).text
    assert 'id="convert"' in quote_page and 'id="authority-hint"' not in quote_page
    # Formosa Air's miles, linked but not signed in with, still need its sign-in, and say so.
    assert 'id="authority-hint"' in client.get(ask_quote(client, "formosa-air", "fresh-mart", 3_000)).text

    page = html.unescape(client.get(f"/portal/rewards/{publish(portal_gateway, 'formosa-air', 'Lounge')}").text)
    assert "You have" in paying_option(page, "coalition") and "Needs a sign-in" not in paying_option(page, "coalition")
    assert "Needs a sign-in with Formosa Air Miles." in paying_option(page, "formosa-air")
    converted = client.post(spend, data=convert_form(client, spend))
    assert converted.status_code == 303 and "/portal/conversions/" in converted.headers["location"]
