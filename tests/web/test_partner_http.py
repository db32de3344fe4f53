"""The partner console over HTTP: each page shows and changes only the signed-in partner's own
program, validation errors come back on their fields, and another partner's rows cannot be
reached by changing an address or a form value."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from exchange.auth.scopes import Role
from exchange.conversions.clearing import conversion_transaction
from exchange.db.database import Database
from exchange.ledger.accounts import ChartOfAccounts
from exchange.rewards.clearing import REVERSAL_KIND, redemption_transaction
from exchange.rewards.models import Redemption
from exchange.services.container import open_services
from exchange.settlement.break_kinds import Resolution
from exchange.settlement.breaks import ResolveRequest
from exchange.testing.clock import FrozenClock
from exchange.testing.databases import PostgresDatabases
from exchange.testing.kit import ExchangeKit
from exchange.web.partner import pricing as partner_pricing
from exchange.web.partner import rewards as partner_rewards
from exchange.web.partner.statements import BREAKS_SHOWN
from tests.api.conftest import post_last_month
from tests.web.conftest import Gateway, Person, run_async, start_gateway
from tests.web.paging import listed_once, pages_followed
from tests.web.portal_flows import recorded_as
from tests.web.test_console_http import form_token, signed_in

PARTNER = "/console/partner"
#: A request for the pages in Traditional Chinese.
CHINESE = {"accept-language": "zh-TW"}
REDEEM = """mutation($reward: ID!, $key: String!, $payWith: ID!) {
  redeemReward(rewardId: $reward, payWith: $payWith, idempotencyKey: $key) { id status memberId } }"""


def redeem_as_member(
    gateway: Gateway, reward_id: str, key: str, member_ref: str = "bob", *, pay_with: str = "harbor-bank"
) -> dict[str, str]:
    """A member of ``pay_with`` (a sandbox partner) redeems ``reward_id`` through GraphQL, paying
    with its points."""

    async def work() -> dict[str, str]:
        db = Database.from_url(gateway.settings.database_url)
        try:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
                kit = ExchangeKit(settings=gateway.settings, http=http, db=db)
                token = await kit.member_token(pay_with, member_ref)
                redeemed = await kit.data(REDEEM, token, reward=reward_id, key=key, payWith=pay_with)
                return dict(redeemed["redeemReward"])
        finally:
            await db.dispose()

    return run_async(work)


@pytest.fixture
def air(gateway: Gateway) -> Person:
    return gateway.person(Role.PARTNER, "formosa-air")


@pytest.fixture
def mart(gateway: Gateway) -> Person:
    return gateway.person(Role.PARTNER, "fresh-mart")


@pytest.fixture
def air_client(gateway: Gateway, air: Person) -> Iterator[httpx.Client]:
    with signed_in(gateway, air) as client:
        yield client


def post(client: httpx.Client, path: str, **form: str | list[str]) -> httpx.Response:
    return client.post(path, data={"csrf_token": form_token(client, "/console/"), **form})


def shows_ratio(page: str, ratio: str) -> bool:
    """Whether ``ratio`` stands alone on the page (not inside a time such as 15:34:13)."""
    return re.search(rf"(?<![\d:]){re.escape(ratio)}(?![\d:])", page) is not None


def field_error(page: str, name: str) -> str:
    match = re.search(rf'<p class="field__error" id="f-{re.escape(name)}-error">([^<]*)</p>', page)
    assert match is not None, f"no error on {name}"
    return match[1]


def test_a_fields_problem_names_the_forms_label_and_the_rule_in_the_readers_language(
    air_client: httpx.Client,
) -> None:
    token = form_token(air_client, "/console/")
    form = {"csrf_token": token, "fromProgram": "tune-stream", "ratio": "3:1", "bonusEvery": "100", "bonusPoints": "0"}
    chinese = air_client.post(f"{PARTNER}/rates", data=form, headers={"accept-language": "zh-TW"})
    assert chinese.status_code == 422
    # The form's own label, in Chinese, with the rule: not the API's field name, not English.
    assert field_error(chinese.text, "bonusPoints") == "階梯加贈：額外點數必須大於 0"
    assert '<a href="#f-bonusPoints">階梯加贈：額外點數必須大於 0</a>' in chinese.text, "the summary says the same"
    english = air_client.post(f"{PARTNER}/rates", data=form, headers={"accept-language": "en"})
    assert field_error(english.text, "bonusPoints") == "Step bonus: extra points must be greater than 0"

    form.update(ratio="three to one", bonusPoints="")
    refused = air_client.post(f"{PARTNER}/rates", data=form, headers={"accept-language": "zh-TW"})
    assert field_error(refused.text, "ratio") == "比率須先寫轉出點數，再寫轉入點數，例如 3:1"
    form.update(ratio="3:1", minimumPoints="many")
    refused = air_client.post(f"{PARTNER}/rates", data=form, headers={"accept-language": "zh-TW"})
    assert field_error(refused.text, "minimumPoints") == "最低點數必須是 -2,147,483,648 至 2,147,483,647 的整數"


def test_the_rates_page_lists_the_rates_into_the_partners_program_only(air_client: httpx.Client) -> None:
    page = air_client.get(f"{PARTNER}/rates")
    assert page.status_code == 200
    assert "Rates into your program" in page.text
    assert "Harbor Bank" in page.text and shows_ratio(page.text, "10:1"), "the declared rate from harbor-bank"
    assert "Set by the exchange" in page.text, "a declared rate is not the partner's to edit"
    assert "formosa-air-year-end-2026" in page.text
    # Programs by their names, not their ids: a promotion's sources, an edit link's hidden words.
    assert '<td data-label="From">FreshMart Rewards</td>' in page.text and ">fresh-mart</td>" not in page.text
    assert "the rate from TuneStream" in page.text and "the rate from tune-stream" not in page.text


def test_setting_a_rate_creates_a_version_and_a_bad_ratio_is_shown_on_its_field(
    gateway: Gateway, air_client: httpx.Client
) -> None:
    refused = post(air_client, f"{PARTNER}/rates", fromProgram="tune-stream", ratio="three to one")
    assert refused.status_code == 422
    assert "ratio" in field_error(refused.text, "ratio").lower() or field_error(refused.text, "ratio")
    assert 'value="three to one"' in refused.text, "what was typed is kept"
    odd = post(air_client, f"{PARTNER}/rates", fromProgram="tune-stream", ratio="3:1", bonusEvery="5000")
    assert odd.status_code == 422 and "Step bonus: extra points" in field_error(odd.text, "bonusEvery")
    declared = post(air_client, f"{PARTNER}/rates", fromProgram="harbor-bank", ratio="2:1")
    assert declared.status_code == 422 and "operator" in field_error(declared.text, "fromProgram")

    done = post(air_client, f"{PARTNER}/rates", fromProgram="tune-stream", ratio="4:1", minimumPoints="400")
    assert done.status_code == 303 and done.headers["location"] == f"{PARTNER}/rates?done=rate-set"
    listed = air_client.get(done.headers["location"]).text
    assert "The rate is set" in listed and shows_ratio(listed, "4:1")
    form = air_client.get(f"{PARTNER}/rates/edit", params={"fromProgram": "tune-stream"}).text
    assert 'value="4:1"' in form and 'value="400"' in form, "the form shows the rate in effect"

    cleared = post(air_client, f"{PARTNER}/rates/clear", fromProgram="tune-stream")
    assert cleared.status_code == 303
    assert not shows_ratio(air_client.get(f"{PARTNER}/rates").text, "4:1")


def test_the_preview_prices_without_storing_a_quote(gateway: Gateway, air_client: httpx.Client) -> None:
    async def quotes() -> int:
        from sqlalchemy import func, select

        from exchange.pricing.models import Quote
        from exchange.services.container import open_services

        async with open_services(gateway.settings) as services, services.db.transaction() as session:
            return int((await session.exec(select(func.count()).select_from(Quote))).one()[0])  # type: ignore[call-overload]

    before = run_async(quotes)
    fragment = air_client.get(
        f"{PARTNER}/rates/preview",
        params={"fromProgram": "harbor-bank", "points": "60000", "memberLevel": "0"},
        headers={"HX-Request": "true"},
    )
    assert fragment.status_code == 200 and "<html" not in fragment.text, "htmx gets the fragment alone"
    # 60,000 card points at 10:1 give 6,000 miles, and 1,000 bonus miles per 60,000.
    assert "Points out</dt><dd><strong>7,000 Miles</strong>" in fragment.text
    too_few = air_client.get(
        f"{PARTNER}/rates/preview",
        params={"fromProgram": "harbor-bank", "points": "5000"},
        headers={"HX-Request": "true"},
    )
    assert 'role="alert"' in too_few.text and "At least 10,000 points must be converted" in too_few.text, (
        "the pair's minimum is named"
    )
    whole = air_client.get(f"{PARTNER}/rates/preview", params={"fromProgram": "harbor-bank", "points": "x"})
    assert "<html" in whole.text and "whole number" in whole.text, "without htmx, a whole page"
    assert whole.status_code == 422 and too_few.status_code == 200, "htmx swaps in only a 2xx answer"
    # The rule of the points a conversion moves, not the range of the column an integer is kept in.
    for points in ("x", "0", "-5", "99999999999"):
        refused = air_client.get(f"{PARTNER}/rates/preview", params={"fromProgram": "harbor-bank", "points": points})
        assert "must be a whole number from 1 to 1,000,000,000" in html.unescape(refused.text), points
        assert "2,147,483,647" not in refused.text, points
    assert run_async(quotes) == before


@pytest.mark.parametrize(
    ("headers", "capped", "bonuses"),
    [
        ({}, "Cut from a bonus of 12 Miles, to stay within the value of the points in", "step 0, promotions 0, tier 5"),
        (CHINESE, "為不超過轉出點數的價值，自 12 ", "階梯 0、促銷 0、等級 5"),
    ],
)
def test_the_preview_names_the_points_the_value_cap_cut(
    air_client: httpx.Client, headers: dict[str, str], capped: str, bonuses: str
) -> None:
    """100 Wallet Pay points (100.00, less a 2.00 fee) give 245 miles; a Diamond member's 5% (12)
    would make them worth 102.80, so the preview pays 250 and names the 7 cut; at level 0 no line.
    (Wallet Pay, because no other test of the session runs a promotion from it into formosa-air.)"""

    def preview(level: int) -> str:
        params = {"fromProgram": "wallet-pay", "points": "100", "memberLevel": str(level)}
        fragment = air_client.get(f"{PARTNER}/rates/preview", params=params, headers={"HX-Request": "true", **headers})
        assert fragment.status_code == 200
        return html.unescape(fragment.text)

    diamond = preview(4)
    assert "<dd><strong>250 " in diamond and bonuses in diamond
    assert f"<dt>{capped}" in diamond and '</dt><dd id="value-cap">−7 ' in diamond
    base = preview(0)
    assert "<dd><strong>245 " in base and capped not in base and 'id="value-cap"' not in base


def test_a_promotion_is_created_with_its_errors_on_their_fields_and_ended(air_client: httpx.Client) -> None:
    bad = post(
        air_client,
        f"{PARTNER}/promotions",
        id="air-spring",
        bonusPercent="2000",
        endsAt="2099-01-01T00:00",
    )
    assert bad.status_code == 422 and "Bonus percent" in field_error(bad.text, "bonusPercent")
    backwards = post(
        air_client,
        f"{PARTNER}/promotions",
        id="air-spring",
        bonusPercent="12.5",
        startsAt="2099-02-01T00:00",
        endsAt="2099-01-01T00:00",
    )
    assert backwards.status_code == 422 and "after" in field_error(backwards.text, "endsAt")
    created = post(
        air_client,
        f"{PARTNER}/promotions",
        id="air-spring",
        bonusPercent="12.5",
        endsAt="2099-01-01T00:00",
        fromPrograms=["tune-stream", "fresh-mart"],
    )
    assert created.status_code == 303
    listed = air_client.get(f"{PARTNER}/rates").text
    assert "air-spring" in listed and "12.5%" in listed and "TuneStream, FreshMart Rewards" in listed
    ended = post(air_client, f"{PARTNER}/promotions/end", id="air-spring")
    assert ended.status_code == 303


def test_a_partner_cannot_end_another_partners_promotion_by_changing_the_form(
    gateway: Gateway, mart: Person, air_client: httpx.Client
) -> None:
    with signed_in(gateway, mart) as mart_client:
        refused = post(mart_client, f"{PARTNER}/promotions/end", id="formosa-air-year-end-2026")
        assert refused.status_code == 422 and "Nothing was changed" in refused.text
        assert "formosa-air-year-end-2026" not in mart_client.get(f"{PARTNER}/rates").text
    assert "formosa-air-year-end-2026" in air_client.get(f"{PARTNER}/rates").text
    listed = air_client.get(f"{PARTNER}/rates").text
    row = listed.split("formosa-air-year-end-2026")[1].split("</tr>")[0]
    assert "Ended" not in row, "still running"


#: A promotion's row on the rates page (in English), and the link to the earlier ones.
PROMOTION_ROW = re.compile(r'<th scope="row">([^<]+)</th>\s*<td data-label="Bonus">')
EARLIER_PROMOTIONS = re.compile(r'<a href="([^"]+)" rel="next" id="earlier-promotions">')


def test_the_rates_page_lists_the_latest_promotions_a_page_at_a_time_and_links_the_earlier(
    gateway: Gateway, mart: Person, air_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page read every promotion the program ever ran, and listed them all."""
    monkeypatch.setattr(partner_pricing, "PROMOTIONS_SHOWN", 2)
    ours = [f"air-paged-{month}" for month in (3, 4, 5, 6)]
    for promotion_id in ours:
        month = promotion_id.rsplit("-", 1)[1]
        created = post(
            air_client,
            f"{PARTNER}/promotions",
            id=promotion_id,
            bonusPercent="5",
            startsAt=f"2098-0{month}-01T00:00",
            endsAt="2099-01-01T00:00",
        )
        assert created.status_code == 303, created.text
    pages = pages_followed(air_client, f"{PARTNER}/rates", PROMOTION_ROW, EARLIER_PROMOTIONS)
    shown = [promotion for page in pages for promotion in page]
    assert listed_once(pages, 2, set(ours)) >= {"formosa-air-year-end-2026"}
    assert [promotion for promotion in shown if promotion in ours] == ours[::-1], "the latest start first"
    first = air_client.get(f"{PARTNER}/rates", headers=CHINESE).text
    last = air_client.get(f"{PARTNER}/rates", params={"after": pages[-2][-1]}, headers=CHINESE).text
    assert PROMOTION_ROW.findall(air_client.get(f"{PARTNER}/rates", params={"after": pages[-2][-1]}).text) == pages[-1]
    assert ">較早的促銷</a>" in first and 'id="latest-promotions"' not in first
    assert 'id="earlier-promotions"' not in last and ">最新的促銷</a>" in last
    assert air_client.get(f"{PARTNER}/rates?after=no-such-promotion").status_code == 404
    with signed_in(gateway, mart) as mart_client:
        # Another partner's promotion is no place in this partner's listing.
        assert mart_client.get(f"{PARTNER}/rates?after=formosa-air-year-end-2026").status_code == 404


def published(client: httpx.Client, **form: str) -> str:
    """Publish a reward through the form; its id."""
    response = post(client, f"{PARTNER}/rewards", **form)
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    assert location.endswith("?done=published")
    return location.split("/rewards/")[1].split("?")[0]


def test_the_forms_fields_ask_a_phone_for_its_number_keypad_and_cap_what_is_typed(air_client: httpx.Client) -> None:
    """The attributes reach the browser as written, not escaped into values it ignores."""
    form = air_client.get(f"{PARTNER}/rewards/new").text
    assert re.search(r'id="f-price" [^>]*inputmode="decimal"', form), form
    assert re.search(r'id="f-stock" [^>]*inputmode="numeric"', form)
    assert re.search(r'id="f-title" [^>]*maxlength="120"', form)
    assert "&#34;" not in form


def test_a_reward_is_published_repriced_restocked_and_withdrawn(air_client: httpx.Client) -> None:
    refused = post(air_client, f"{PARTNER}/rewards", title="Seat upgrade", price="-3", stock="10")
    assert refused.status_code == 422 and "greater than 0" in field_error(refused.text, "price")
    fine = post(air_client, f"{PARTNER}/rewards", title="Seat upgrade", price="0.001", stock="10")
    assert fine.status_code == 422 and field_error(fine.text, "price"), "finer than the currency's minor unit"
    reward_id = published(air_client, title="Seat upgrade", price="150.50", stock="10", perMemberLimit="1")
    page = air_client.get(f"{PARTNER}/rewards/{reward_id}").text
    assert "Seat upgrade" in page and "NT$150.50" in page and "Available" in page

    assert post(air_client, f"{PARTNER}/rewards/{reward_id}/price", price="120").status_code == 303
    assert post(air_client, f"{PARTNER}/rewards/{reward_id}/restock", units="5").status_code == 303
    too_many = post(air_client, f"{PARTNER}/rewards/{reward_id}/restock", units="0")
    assert too_many.status_code == 422 and "Units to add" in field_error(too_many.text, "units")
    page = air_client.get(f"{PARTNER}/rewards/{reward_id}").text
    assert "NT$120.00" in page and "<dd>15</dd>" in page

    assert post(air_client, f"{PARTNER}/rewards/{reward_id}/withdraw").status_code == 303
    page = air_client.get(f"{PARTNER}/rewards/{reward_id}?done=withdrawn").text
    assert "Withdrawn" in page and "Withdraw the reward" not in page
    listed = air_client.get(f"{PARTNER}/rewards").text
    assert reward_id in listed and "fresh-mart-coupon-100" not in listed, "only the partner's own rewards"


#: A reward's row on the rewards page, and the page's link to the next rewards.
REWARD_ROW = re.compile(r'<th scope="row"><a href="/console/partner/rewards/([^"]+)">')
NEXT_REWARDS = re.compile(r'<a href="(/console/partner/rewards\?after=[^"]+)" rel="next" id="more-rewards">')


def test_the_rewards_page_lists_a_page_of_the_partners_rewards_and_links_the_next(
    air_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partner_rewards, "REWARDS_SHOWN", 2)
    ours = {published(air_client, title=f"Paged reward {n}", price="10", stock="1") for n in range(3)}
    shown = listed_once(pages_followed(air_client, f"{PARTNER}/rewards", REWARD_ROW, NEXT_REWARDS), 2, ours)
    assert "formosa-air-lounge-pass" in shown and "fresh-mart-coupon-100" not in shown, "only the partner's own"
    assert air_client.get(f"{PARTNER}/rewards?after=no-such-reward").status_code == 404
    # Another partner's reward is no place in this partner's listing either (the page would hold all or none).
    assert air_client.get(f"{PARTNER}/rewards?after=fresh-mart-coupon-100").status_code == 404


def test_another_partners_reward_cannot_be_opened_or_changed_by_its_address(
    gateway: Gateway, air_client: httpx.Client, mart: Person
) -> None:
    theirs, nobodys = "fresh-mart-coupon-100", "no-such-reward"

    def answer(response: httpx.Response, reward_id: str) -> tuple[int, str]:
        return response.status_code, response.text.replace(reward_id, "<id>")

    for accept in ("text/html", "*/*"):
        headers = {"accept": accept}
        unknown = answer(air_client.get(f"{PARTNER}/rewards/{nobodys}", headers=headers), nobodys)
        assert unknown[0] == 404
        opened = answer(air_client.get(f"{PARTNER}/rewards/{theirs}", headers=headers), theirs)
        assert opened == unknown, "as if it did not exist"
    for action, form in (("price", {"price": "1"}), ("restock", {"units": "100"}), ("withdraw", {})):
        refused = answer(post(air_client, f"{PARTNER}/rewards/{theirs}/{action}", **form), theirs)
        assert refused == answer(post(air_client, f"{PARTNER}/rewards/{nobodys}/{action}", **form), nobodys), action
        assert refused[0] == 404
    with signed_in(gateway, mart) as mart_client:
        page = mart_client.get(f"{PARTNER}/rewards/{theirs}").text
        assert "NT$95.00" in page and "Available" in page, "unchanged"


def test_a_partner_cannot_confirm_or_cancel_a_redemption_that_is_not_its_own(air_client: httpx.Client) -> None:
    for action in ("confirm", "cancel"):
        refused = post(
            air_client, f"{PARTNER}/redemptions/{action}", redemptionId="00000000-0000-0000-0000-000000000000"
        )
        assert refused.status_code == 422 and "No redemption of yours has this id" in refused.text


def test_a_members_redemption_awaits_the_partners_confirmation_or_cancellation(partnered_gateway: Gateway) -> None:
    with signed_in(partnered_gateway, partnered_gateway.person(Role.PARTNER, "formosa-air")) as client:
        reward_id = published(client, title="Lounge day pass", price="50", stock="5")
        first = redeem_as_member(partnered_gateway, reward_id, "lounge-1")
        second = redeem_as_member(partnered_gateway, reward_id, "lounge-2")
        assert first["status"] == second["status"] == "COMPLETED"
        awaiting = client.get(f"{PARTNER}/redemptions").text
        assert first["id"] in awaiting and second["id"] in awaiting
        assert awaiting.count(f'<a href="{PARTNER}/rewards/{reward_id}"><bdi>Lounge day pass</bdi></a>') == 2, "titled"
        # The paying program by its name, not its id; the member's id there is that partner's
        # business (GraphQL's Redemption gives the member's exchange id instead), but a member
        # of the partner's own is its own.
        assert (
            '<td data-label="Paid with">Harbor Bank Card Rewards '
            f'<span class="muted">exchange member {first["memberId"]}</span>' in awaiting
        )
        assert "bob" not in awaiting, "another partner's member id"

        confirmed = post(client, f"{PARTNER}/redemptions/confirm", redemptionId=first["id"])
        assert confirmed.status_code == 303
        cancelled = post(client, f"{PARTNER}/redemptions/cancel", redemptionId=second["id"])
        assert cancelled.status_code == 303
        awaiting = client.get(f"{PARTNER}/redemptions").text
        assert first["id"] not in awaiting and second["id"] not in awaiting
        again = post(client, f"{PARTNER}/redemptions/confirm", redemptionId=first["id"])
        assert again.status_code == 303, "confirmed again (a form sent twice): answered as it stands"
        reversed_ = post(client, f"{PARTNER}/redemptions/confirm", redemptionId=second["id"])
        assert reversed_.status_code == 422 and "only a paid direct reward awaits delivery" in reversed_.text
        assert "is REVERS" not in reversed_.text, "no status as the API names it"
        token = form_token(client, "/console/")
        form = {"csrf_token": token, "redemptionId": second["id"]}
        chinese = client.post(f"{PARTNER}/redemptions/confirm", data=form, headers=CHINESE).text
        assert "此兌換不在等待交付" in chinese and "awaits delivery" not in chinese
        form = {"csrf_token": token, "redemptionId": first["id"]}
        delivered = client.post(f"{PARTNER}/redemptions/cancel", data=form, headers=CHINESE)
        assert delivered.status_code == 422 and "此兌換已無法取消" in delivered.text
        page = client.get(f"{PARTNER}/rewards/{reward_id}").text
        assert "Delivered" in page and "Cancelled" in page
        assert page.count('<td data-label="Paid with">Harbor Bank Card Rewards</td>') == 2
        assert "<dd>4</dd>" in page, "the cancelled redemption gave its unit back"

        # Reversed by the exchange (a delivery deadline passed, a paying partner gave the debit
        # back), not cancelled by anyone: the page said "Cancelled" for both.
        third = redeem_as_member(partnered_gateway, reward_id, "lounge-3")
        recorded_as(partnered_gateway, Redemption, third["id"], status="REVERSED", failure_code="PARTNER_REFUSED")
        row = (
            client.get(f"{PARTNER}/rewards/{reward_id}")
            .text.split(f"<code>{third['id'][:8]}</code>")[1]
            .split("</tr>")[0]
        )
        assert "Reversed, points given back" in row and "Cancelled" not in row

        own = redeem_as_member(partnered_gateway, reward_id, "lounge-own", "carol", pay_with="formosa-air")
        assert own["status"] == "COMPLETED", own
        awaiting = client.get(f"{PARTNER}/redemptions").text
        assert '<td data-label="Paid with">Formosa Air Miles <span class="muted"><bdi>carol</bdi></span>' in awaiting


def token_status(gateway: Gateway, client_id: str, secret: str) -> int:
    with gateway.client() as http:
        return http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        ).status_code


def issued_secret(page: str) -> tuple[str, str]:
    client_id = re.search(r"<dt>Client id</dt><dd><code>([^<]+)</code>", page)
    secret = re.search(r'id="client-secret">([^<]+)</code>', page)
    assert client_id is not None and secret is not None, "the secret is shown"
    return client_id[1], secret[1]


def test_a_client_is_created_with_its_secret_shown_once_rotated_and_revoked(
    gateway: Gateway, air_client: httpx.Client
) -> None:
    created = post(air_client, f"{PARTNER}/clients", scopes=["partner:read"])
    assert created.status_code == 200
    client_id, secret = issued_secret(created.text)
    assert client_id.startswith("formosa-air-")
    listing = air_client.get(f"{PARTNER}/access").text
    assert client_id in listing and secret not in listing, "shown once, never again"
    assert token_status(gateway, client_id, secret) == 200

    rotated = post(air_client, f"{PARTNER}/clients/rotate", clientId=client_id)
    same_id, new_secret = issued_secret(rotated.text)
    assert same_id == client_id and new_secret != secret
    assert token_status(gateway, client_id, secret) == 401, "the old secret stopped working"
    assert token_status(gateway, client_id, new_secret) == 200

    none = post(air_client, f"{PARTNER}/clients")
    assert none.status_code == 422 and "Scopes of a new client: choose at least one" in none.text
    with gateway.client() as http:
        token = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, new_secret))
    viewer = {
        "json": {"query": "{ viewer { clientId } }"},
        "headers": {"authorization": f"Bearer {token.json()['access_token']}"},
    }
    with gateway.client() as http:
        assert http.post("/graphql", **viewer).status_code == 200
    revoked = post(air_client, f"{PARTNER}/clients/revoke", clientId=client_id)
    assert revoked.status_code == 303
    assert "the tokens it holds, the member tokens it obtained included, are refused from now on" in (
        air_client.get(revoked.headers["location"]).text
    ), "the notice says what the check below shows"
    assert client_id not in air_client.get(f"{PARTNER}/access").text
    assert token_status(gateway, client_id, new_secret) == 401
    with gateway.client() as http:
        assert http.post("/graphql", **viewer).status_code == 401, "the tokens it holds end with the client"


def test_a_client_gets_the_member_scopes_ticked_or_those_its_scopes_give(air_client: httpx.Client) -> None:
    reporting, _ = issued_secret(post(air_client, f"{PARTNER}/clients", scopes=["partner:read"]).text)
    ticked = post(
        air_client, f"{PARTNER}/clients", scopes=["partner:read"], memberScopes=["member:read", "member:write"]
    )
    chosen, _ = issued_secret(ticked.text)
    listing = air_client.get(f"{PARTNER}/access").text
    for client_id, member_scopes in ((reporting, ["member:read"]), (chosen, ["member:read", "member:write"])):
        row = re.search(rf'<code>{client_id}</code></th>.*?<td data-label="Member tokens">(.*?)</td>', listing, re.S)
        assert row is not None and re.findall(r"<code>([^<]*)</code>", row[1]) == member_scopes
    # Each scope said in words, its name beside it.
    assert "Read the member's accounts <code>member:read</code>" in listing
    assert "讀取會員的帳戶 <code>member:read</code>" in air_client.get(f"{PARTNER}/access", headers=CHINESE).text
    refused = post(air_client, f"{PARTNER}/clients", scopes=["partner:read"], memberScopes=["partner:write"])
    assert refused.status_code == 422 and 'id="client-secret"' not in refused.text
    assert "Member tokens it may obtain: cannot hold partner:write" in field_error(refused.text, "memberScopes")
    unread = post(air_client, f"{PARTNER}/clients", scopes=["partner:read"], memberScopes=["member:write"])
    assert unread.status_code == 422 and 'id="client-secret"' not in unread.text
    assert "Member tokens it may obtain: must include member:read, without which a member cannot see" in field_error(
        unread.text, "memberScopes"
    )


def test_another_partners_client_cannot_be_rotated_or_revoked_by_changing_the_form(
    gateway: Gateway, air_client: httpx.Client, mart: Person
) -> None:
    with signed_in(gateway, mart) as mart_client:
        theirs, secret = issued_secret(post(mart_client, f"{PARTNER}/clients", scopes=["partner:read"]).text)
    assert theirs not in air_client.get(f"{PARTNER}/access").text
    for action in ("rotate", "revoke"):
        refused = post(air_client, f"{PARTNER}/clients/{action}", clientId=theirs)
        assert refused.status_code == 422 and "No OAuth client of yours has this id" in refused.text
        assert 'id="client-secret"' not in refused.text
    assert token_status(gateway, theirs, secret) == 200, "untouched"


def test_assertion_keys_are_added_from_a_jwk_refused_when_malformed_and_retired(
    gateway: Gateway, air_client: httpx.Client, mart: Person
) -> None:
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", parameters={"kid": "air-signing-1"})
    public = json.dumps(key.as_dict(private=False))
    bad = post(air_client, f"{PARTNER}/keys", publicKey='{"kty": "oct", "k": "c2VjcmV0"}')
    assert bad.status_code == 422 and "public key" in field_error(bad.text, "publicKey")
    assert "oct" in bad.text, "what was pasted is kept"
    # Why, in the reader's language: not the exchange's English after the field's label.
    form = {"csrf_token": form_token(air_client, "/console/"), "publicKey": "-----BEGIN PRIVATE KEY-----"}
    said = field_error(air_client.post(f"{PARTNER}/keys", data=form, headers=CHINESE).text, "publicKey")
    assert said == "要新增的公開金鑰：請貼上 RSA、P-256 或 Ed25519 的公開金鑰，格式為 JWK 或 PEM"
    assert post(air_client, f"{PARTNER}/keys", publicKey=public).status_code == 303
    assert "air-signing-1" in air_client.get(f"{PARTNER}/access").text

    with signed_in(gateway, mart) as mart_client:
        assert "air-signing-1" not in mart_client.get(f"{PARTNER}/access").text
        refused = post(mart_client, f"{PARTNER}/keys/retire", kid="air-signing-1")
        assert refused.status_code == 422 and "No assertion key of yours has this kid" in refused.text
        form = {"csrf_token": form_token(mart_client, "/console/"), "kid": "air-signing-1"}
        chinese = mart_client.post(f"{PARTNER}/keys/retire", data=form, headers=CHINESE).text
        assert "您沒有這個 kid 的斷言金鑰" in chinese and "no assertion key has kid" not in chinese
    assert "air-signing-1" in air_client.get(f"{PARTNER}/access").text, "still accepted"
    assert post(air_client, f"{PARTNER}/keys/retire", kid="air-signing-1").status_code == 303
    assert "air-signing-1" not in air_client.get(f"{PARTNER}/access").text


async def settle_last_month(gateway: Gateway) -> str:
    """Close the previous period with two conversions in it and import formosa-air's records:
    one break resolved, one open; the period's name."""
    db = Database.from_url(gateway.settings.database_url)
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            period = await post_last_month(ExchangeKit(settings=gateway.settings, http=http, db=db))
    finally:
        await db.dispose()
    async with open_services(gateway.settings) as services:
        await services.settlement.close(period, by="test")
        records = b"reference,amount\nconversion:c2,-1.00\nconversion:not-in-ledger,5.00\n"
        view = await services.settlement.import_records("formosa-air", period, io.BytesIO(records), by="test")
        first = (await services.settlement.breaks(view.reconciliation))[0]
        assert first.row.id is not None
        await services.settlement.resolve(
            ResolveRequest(first.row.id, Resolution.ACCEPT_LEDGER, "our file was wrong", "test")
        )
    return period


@pytest.fixture(scope="module")
def settled(postgres_databases: PostgresDatabases) -> Iterator[tuple[Gateway, str]]:
    """A gateway of its own (closing a period changes what every test of a gateway sees) with
    the previous period settled."""
    for gateway in start_gateway(postgres_databases):
        yield gateway, run_async(partial(settle_last_month, gateway))


def test_statements_are_the_partners_own_and_download_as_json_csv_and_a_verifiable_jws(
    settled: tuple[Gateway, str],
) -> None:
    gateway, period = settled
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        listing = client.get(f"{PARTNER}/statements").text
        assert period in listing and "1 break to resolve" in listing
        page = client.get(f"{PARTNER}/statements/{period}").text
        assert "conversion:c2" in page and "wallet-pay" in page

        document = client.get(f"{PARTNER}/statements/{period}/statement.json")
        assert document.headers["content-type"] == "application/json"
        assert document.json()["partner"] == "formosa-air" and document.json()["period"]["name"] == period
        assert "attachment" in document.headers["content-disposition"]
        rows = client.get(f"{PARTNER}/statements/{period}/statement.csv").text.splitlines()
        assert rows[1].startswith(f"formosa-air,{period},TWD,opening")
        signed = client.get(f"{PARTNER}/statements/{period}/statement.jws")
        assert signed.headers["content-type"] == "application/jose"
        with gateway.client() as http:
            keys = KeySet.import_key_set(http.get("/.well-known/statement-keys.json").json())
        assert json.loads(jws.deserialize_compact(signed.text, keys).payload) == document.json()
        liability = document.json()["coalitionLiability"]
        assert "<code>Asia/Taipei</code>" in page, "the page names the time zone that cuts the period"
        assert f"{liability['points']:,} points × NT$" in page, "and shows the coalition point's liability"

        assert client.get(f"{PARTNER}/statements/2001-01").status_code == 404, "a period it took no part in"
        assert client.get(f"{PARTNER}/statements/2001-01/statement.csv").status_code == 404, "nor its download"
        assert client.get(f"{PARTNER}/statements/{period}/statement.xml").status_code == 404


def test_the_books_page_shows_the_partners_own_figures_and_downloads_them_as_csv(
    settled: tuple[Gateway, str],
) -> None:
    gateway, period = settled
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        current = client.get(f"{PARTNER}/books")
        assert current.status_code == 303 and re.fullmatch(
            rf"{PARTNER}/books/\d{{4}}-\d{{2}}", current.headers["location"]
        )
        page = client.get(f"{PARTNER}/books/{period}").text
        assert f"Books for {period}" in page and "Converted out" in page and "3,000" in page
        assert "Issue budget" in page and "Coalition points" in page
        assert "a point, the value the period's closing fixed on" in page, "a closed period's values are fixed"
        under_way = client.get(current.headers["location"]).text
        assert "the period is open" in under_way, "an open one's follow today's"
        assert "has not begun" not in page + under_way
        later = client.get(f"{PARTNER}/books/2099-01").text
        assert "This period has not begun" in later and "expected to expire in it are a forecast" in later
        later_in_chinese = client.get(f"{PARTNER}/books/2099-01", headers=CHINESE).text
        assert "本期間尚未開始" in later_in_chinese and "預測值" in later_in_chinese
        exported = client.get(f"{PARTNER}/books/{period}/books.csv")
        assert exported.headers["content-type"].startswith("text/csv")
        assert f"formosa-air,{period},converted_out,3000,1200.00,TWD" in exported.text.splitlines()
        assert client.get(f"{PARTNER}/books/2026-13").status_code == 404
        # At either end of the calendar (the years 1970 to 8999), no link leads past it.
        for first_or_last, beyond, kept in (
            ("1970-01", "1969-12", f'href="{PARTNER}/books/1970-02"'),
            ("8999-12", "9000-01", f'href="{PARTNER}/books/8999-11"'),
        ):
            ends = client.get(f"{PARTNER}/books/{first_or_last}").text
            links = re.findall(rf'href="({PARTNER}/books/[^"]+)"', ends)
            assert kept in ends and not any(beyond in link for link in links), links
            assert all(client.get(html.unescape(link)).status_code == 200 for link in links), links
    with signed_in(gateway, gateway.person(Role.PARTNER, "wallet-pay")) as client:
        theirs = client.get(f"{PARTNER}/books/{period}/books.csv").text
        assert theirs.splitlines()[1].startswith(f"wallet-pay,{period},"), "the address names no partner: its own"


def test_the_reconciliation_shows_the_partners_breaks_and_their_resolution_read_only(
    settled: tuple[Gateway, str],
) -> None:
    gateway, period = settled
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        page = client.get(f"{PARTNER}/statements/{period}/reconciliation").text
        assert "conversion:not-in-ledger" in page and "In your records, not in the ledger" in page
        assert "our file was wrong" in page and "Ledger figure stands" in page
        assert "<strong>Open</strong>" in page
        assert "<form" not in page.split("<main")[1].split("</main>")[0], "nothing to change here"
    with signed_in(gateway, gateway.person(Role.PARTNER, "fresh-mart")) as client:
        theirs = client.get(f"{PARTNER}/statements/{period}/reconciliation").text
        assert "conversion:not-in-ledger" not in theirs and "No records imported" in theirs
        document = client.get(f"{PARTNER}/statements/{period}/statement.json").json()
        assert document["partner"] == "fresh-mart", "the address names no partner: always one's own"


def facts(page: str) -> dict[str, str]:
    """A page's facts list, each term with its value (tags dropped)."""
    found = re.findall(r"<dt>([^<]*)</dt><dd[^>]*>(.*?)</dd>", html.unescape(page), re.S)
    return {term: re.sub(r"<[^>]+>", "", value).strip() for term, value in found}


def test_the_reconciliation_shows_the_files_total_the_statements_net_and_the_difference_to_the_cent(
    settled: tuple[Gateway, str],
) -> None:
    """formosa-air's file says -1.00 and 5.00 (4.00); its statement's net is -30.00; the breaks
    (a mismatch of 29.00, a line of 5.00 the ledger lacks) account for the 34.00 between them."""
    gateway, period = settled
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        shown = facts(client.get(f"{PARTNER}/statements/{period}/reconciliation").text)
        statement = facts(client.get(f"{PARTNER}/statements/{period}").text)
        chinese = facts(client.get(f"{PARTNER}/statements/{period}/reconciliation", headers=CHINESE).text)
    assert (
        shown["Your file's total"],
        shown["The statement's net"],
        shown["Difference, which the breaks account for"],
    ) == ("NT$4.00", "-NT$30.00", "NT$34.00")
    assert statement["Net position"] == shown["The statement's net"], "the same figure on both pages"
    assert (chinese["您檔案的合計"], chinese["對帳單淨額"], chinese["差額（即各筆差異之和）"]) == (
        "NT$4.00",
        "-NT$30.00",
        "NT$34.00",
    )


def test_the_breaks_download_as_a_csv_a_spreadsheet_opens_each_with_what_to_do_next(
    settled: tuple[Gateway, str],
) -> None:
    gateway, period = settled
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        page = client.get(f"{PARTNER}/statements/{period}/reconciliation").text
        assert f'href="{PARTNER}/statements/{period}/breaks.csv"' in page
        report = client.get(f"{PARTNER}/statements/{period}/breaks.csv")
        assert report.headers["content-type"] == "text/csv; charset=utf-8"
        assert f'filename="breaks-formosa-air-{period}.csv"' in report.headers["content-disposition"]
        assert report.content.startswith(b"\xef\xbb\xbfpartner,period,break,kind,reference,")
        rows = {row["reference"]: row for row in csv.DictReader(io.StringIO(report.text.removeprefix("\ufeff")))}
        missing = rows["conversion:not-in-ledger"]
        assert (missing["kind"], missing["partner_amount"], missing["resolution"]) == ("MISSING_IN_LEDGER", "5.00", "")
        assert "another period" in missing["next_step"]
        assert rows["conversion:c2"]["resolution"] == "ACCEPT_LEDGER"
        assert rows["conversion:c2"]["reason"] == "our file was wrong"
    with signed_in(gateway, gateway.person(Role.PARTNER, "fresh-mart")) as client:
        assert client.get(f"{PARTNER}/statements/{period}/breaks.csv").status_code == 404, "no records of its own"


def test_a_breaks_next_step_is_said_in_the_readers_language_on_the_page_and_in_its_download(
    settled: tuple[Gateway, str],
) -> None:
    gateway, period = settled
    chinese = {"accept-language": "zh-TW"}
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        page = html.unescape(client.get(f"{PARTNER}/statements/{period}/reconciliation", headers=chinese).text)
        assert "下一步" in page and "帳本在本期間沒有這個參考編號的項目" in page
        assert "結算人員已處理，以帳本數字為準" in page, (
            "a break whose ledger figure stands asks the partner's books to follow"
        )
        assert "check the reference" not in page, "no English step on a Chinese page"
        report = client.get(f"{PARTNER}/statements/{period}/breaks.csv", headers=chinese)
        english = client.get(f"{PARTNER}/statements/{period}/breaks.csv", headers={"accept-language": "en"})
    text = report.text.removeprefix("\ufeff")
    assert text.splitlines()[0] == english.text.removeprefix("\ufeff").splitlines()[0], "the header stays as documented"
    rows = {row["reference"]: row for row in csv.DictReader(io.StringIO(text))}
    assert rows["conversion:not-in-ledger"]["next_step"].startswith("帳本在本期間沒有這個參考編號的項目")
    assert rows["conversion:not-in-ledger"]["kind"] == "MISSING_IN_LEDGER", "the file's codes stay codes"
    assert (
        rows["conversion:c2"]["next_step"]
        == "結算人員已處理，以帳本數字為準：請將您自己的帳目調整為對帳單中這個參考編號的金額；不會登錄任何分錄。"
    )


def test_a_reconciliation_page_past_a_garbage_cursor_is_refused_by_name_not_shown_as_the_first(
    settled: tuple[Gateway, str],
) -> None:
    gateway, period = settled
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        page = f"{PARTNER}/statements/{period}/reconciliation"
        for after in ("x", "9" * 30, "\u00b2", "", "-1", "1.5"):
            refused = client.get(page, params={"after": after})
            assert refused.status_code == 400, after
            assert "after must be the number a page's link gives" in html.unescape(refused.text), after
            assert "conversion:not-in-ledger" not in refused.text, "no first page in its place"
        assert "conversion:not-in-ledger" in client.get(page, params={"after": "0"}).text
        twice = client.get(page, params=[("after", "0"), ("after", "1")])
        assert twice.status_code == 400 and "after was sent 2 times: it takes one value" in twice.text


def test_the_reconciliation_counts_every_break_and_pages_past_the_first_ones(settled: tuple[Gateway, str]) -> None:
    gateway, period = settled
    lines = "".join(f"conversion:unknown-{number},1.00\n" for number in range(2 * BREAKS_SHOWN))

    async def import_wallet_pay_records() -> int:
        async with open_services(gateway.settings) as services:
            records = io.BytesIO(f"reference,amount\n{lines}".encode())
            view = await services.settlement.import_records("wallet-pay", period, records, by="test")
        return view.reconciliation.breaks

    breaks = run_async(import_wallet_pay_records)
    assert breaks > 2 * BREAKS_SHOWN >= 1000
    with signed_in(gateway, gateway.person(Role.PARTNER, "wallet-pay")) as client:
        first = client.get(f"{PARTNER}/statements/{period}/reconciliation").text
        assert f'Breaks <span class="muted">({breaks:,})</span>' in first, "the heading counts them all"
        assert first.count("<code><bdi>conversion:") == BREAKS_SHOWN
        shown, page = 0, first
        while True:
            shown += page.count("<code><bdi>conversion:")
            after = re.search(r'<a href="\?after=(\d+)">Next breaks</a>', page)
            if after is None:
                break
            page = client.get(f"{PARTNER}/statements/{period}/reconciliation", params={"after": after[1]}).text
        assert shown == breaks, "the next pages show the rest, each break once"

        listing = client.get(f"{PARTNER}/statements").text
        assert f"{breaks:,} breaks to resolve" in listing, "grouped as the amounts beside it are"
        chinese = client.get(f"{PARTNER}/statements", headers={"accept-language": "zh-TW"}).text
        assert f"{breaks:,} 筆差異待處理" in chinese


async def close_two_months_with_late_items(gateway: Gateway) -> tuple[str, str]:
    """Two months back, a redemption formosa-air paid for; that month closed, a conversion of it
    posted late and the redemption cancelled, both into last month, which closed too: (the
    earlier month, last month)."""
    now = datetime.now(UTC)
    async with open_services(gateway.settings, clock=FrozenClock(now)) as services:
        calendar = services.settlement.calendar
    last = calendar.latest_over(now)
    earlier = calendar.previous(last)
    during = calendar.starts_at(earlier) + timedelta(days=3)
    chart = ChartOfAccounts("TWD")
    late = conversion_transaction(
        chart=chart,
        transaction_id="t-late",
        conversion_id="late",
        source="wallet-pay",
        target="formosa-air",
        points_in=500,
        points_out=1_250,
        money_value_minor=50_000,
        fee_minor=1_000,
        effective_at=during,
    )
    redeemed = redemption_transaction(
        chart=chart,
        transaction_id="t-r1",
        redemption_id="r1",
        paying="formosa-air",
        publisher="fresh-mart",
        points=1_500,
        price_minor=60_000,
        fee_minor=600,
        effective_at=during,
    )
    past = FrozenClock(calendar.starts_at(last))
    async with open_services(gateway.settings, clock=past) as services, services.db.transaction() as session:
        await services.settlement.ledger.post_many(session, [redeemed])
    # Closed now: its statements are signed by the statement key the gateway made at its start.
    async with open_services(gateway.settings, clock=FrozenClock(now)) as services:
        await services.settlement.close(earlier, by="test")
    async with open_services(gateway.settings, clock=past) as services, services.db.transaction() as session:
        await services.settlement.ledger.post_many(session, [late])
        await services.settlement.ledger.reverse(
            session, "t-r1", transaction_id="t-r1-back", effective_at=services.clock.now(), kind=REVERSAL_KIND
        )
    async with open_services(gateway.settings, clock=FrozenClock(now)) as services:
        await services.settlement.close(last, by="test")
    return earlier, last


def test_a_statement_page_says_which_lines_are_late_and_what_a_reversal_reverses(
    postgres_databases: PostgresDatabases,
) -> None:
    for gateway in start_gateway(postgres_databases):
        earlier, last = run_async(partial(close_two_months_with_late_items, gateway))
        with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
            page = client.get(f"{PARTNER}/statements/{last}").text
            assert f"late: it happened in {earlier}" in page
            assert f"reverses t-r1 of {earlier}" in page
            assert page.count("late: it happened") == 1, "the conversion's line (its target pays no fee), no other"
            assert page.count("reverses t-r1") == 2, "the reward's price and its fee, given back"
            chinese = client.get(f"{PARTNER}/statements/{last}", headers={"accept-language": "zh-TW"}).text
            assert f"逾期入帳：發生於 {earlier}" in chinese and f"沖銷 {earlier} 的 t-r1" in chinese
            assert '<td data-label="Kind">Redemption cancelled</td>' in page, "the kind, in words"
            assert '<td data-label="種類">兌領取消</td>' in chinese
            before = client.get(f"{PARTNER}/statements/{earlier}").text
            assert "late: it happened" not in before and "reverses " not in before
        with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as client:
            staff = client.get(f"/console/settlement/{last}/statements/wallet-pay").text
            assert staff.count(f"late: it happened in {earlier}") == 2, "its conversion line and its fee line"
