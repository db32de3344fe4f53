"""Status matches in the portal over HTTP, against real sandbox partners: the preview reads
both tiers live, the request pushes the tier to the target partner."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx
import pytest

from exchange.sandbox.faults import FaultKind
from tests.web.conftest import PortalGateway
from tests.web.portal_flows import csrf_token, language_link, sign_in
from tests.web.portal_partners import PIN


@pytest.fixture
def client(portal_gateway: PortalGateway) -> Iterator[httpx.Client]:
    with portal_gateway.gateway.client() as client:
        yield client


def test_a_member_previews_a_status_match_requests_it_and_the_partner_holds_the_tier(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    partners = portal_gateway.partners
    member_ref = gold_shopper_linked_at_wallet_pay(portal_gateway, client)

    offered = client.get("/portal/status-match").text
    assert 'value="fresh-mart"' in offered and 'value="wallet-pay"' in offered
    assert 'value="coalition"' not in offered, "the coalition point grants no status to match"
    assert "then Preview to see what a match would give you" in offered  # the empty list says what to do

    refused = client.get("/portal/status-match", params={"from_program": "wallet-pay", "to_program": "fresh-mart"})
    assert 'id="not-granted"' in refused.text and 'id="request-match"' not in refused.text
    # Why, in the page's language: not the exchange's English reason.
    chinese = client.get(
        "/portal/status-match",
        params={"from_program": "wallet-pay", "to_program": "fresh-mart"},
        headers={"accept-language": "zh-TW"},
    ).text
    why = chinese.split('id="not-granted">')[1].split("</p>")[0]
    assert "比對無法讓您在該計畫獲得更高等級" in why and "FreshMart Rewards 不提供等級比對。" in why, why
    assert "grants no status matches" not in why

    preview = client.get("/portal/status-match", params={"from_program": "fresh-mart", "to_program": "wallet-pay"})
    assert preview.status_code == 200
    assert '<dd id="matched-tier">Premium</dd>' in preview.text and "Gold Shopper" in preview.text
    form = {
        "csrf_token": csrf_token(client, "/portal/status-match"),
        "from_program": "fresh-mart",
        "to_program": "wallet-pay",
        "claimed_tier": "Gold Shopper",
    }
    requested = client.post("/portal/status-match", data=form)
    assert requested.status_code == 303
    listed = client.get(requested.headers["location"]).text
    assert "was requested" in listed and "Active" in listed
    members = partners.run(partners.fleet["wallet-pay"].admin.members())["members"]
    assert next(m for m in members if m["member_ref"] == member_ref)["tier"] == "Premium"


def test_a_link_whose_program_is_a_sentence_gets_a_refusal_that_does_not_say_the_sentence(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    sign_in(client, "fresh-mart", portal_gateway.partners.new_member("fresh-mart"))
    spoof = "Your account is locked. Call 0800-000-000 to keep your points"
    refused = client.get("/portal/status-match", params={"from_program": "fresh-mart", "to_program": spoof})
    assert refused.status_code == 400 and "no program has the id given" in refused.text
    assert "Call 0800" not in refused.text


def test_switching_language_after_a_request_was_refused_keeps_the_programs_chosen(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """The language links of the page a refused request answered held no input: switching
    language showed the form empty, the pair the member had chosen gone."""
    gold_shopper_linked_at_wallet_pay(portal_gateway, client)
    form = {"csrf_token": csrf_token(client, "/portal/status-match"), "from_program": "wallet-pay"}
    refused = client.post("/portal/status-match", data={**form, "to_program": "fresh-mart"})
    assert refused.status_code == 400
    chinese = client.get(language_link(refused.text, "zh-TW")).text
    assert 'id="match-from" name="from_program" required>\n      <option value="fresh-mart">' in chinese
    assert '<option value="wallet-pay" selected>' in chinese.split('id="match-to"')[0]
    assert '<option value="fresh-mart" selected>' in chinese.split('id="match-to"')[1]
    assert "比對無法讓您在該計畫獲得更高等級" in chinese, "the pair previewed, in Chinese"


@pytest.mark.parametrize(
    ("language", "refused", "too_soon"),
    [
        (
            "en",
            "You were matched into this program less than 12 months ago. Nothing was changed: "
            "your matches are listed below.",
            "You were matched into Wallet Pay Points less than 12 months ago: the next match there is possible from ",
        ),
        (
            "zh-TW",
            "您在過去 12 個月內已比對至此計畫。未做任何變更：您的等級比對列於下方。",
            "您在過去 12 個月內已比對至 Wallet Pay Points：下次可比對的日期為 ",
        ),
    ],
    ids=["en", "zh-TW"],
)
def test_a_match_requested_twice_or_previewed_while_in_progress_says_when_the_next_is_possible(
    portal_gateway: PortalGateway, client: httpx.Client, language: str, refused: str, too_soon: str
) -> None:
    """Wallet Pay does not answer the push, so the match is in progress and the member's tier
    there is still Regular. The request sent again (a double click) was refused under the
    exchange's English ("… the next match is possible from 2027-12-04T18:31:09.529958+00:00"),
    and the preview still offered Request this match, which that refusal met."""
    partners = portal_gateway.partners
    gold_shopper_linked_at_wallet_pay(portal_gateway, client)
    language_header = {"accept-language": language}
    pair = {"from_program": "fresh-mart", "to_program": "wallet-pay"}
    form = {"csrf_token": csrf_token(client, "/portal/status-match"), **pair, "claimed_tier": "Gold Shopper"}
    wallet_pay = partners.fleet["wallet-pay"].admin
    partners.run(wallet_pay.set_faults(script=[FaultKind.HANG]))
    try:
        assert client.post("/portal/status-match", data=form).status_code == 303
    finally:
        partners.run(wallet_pay.set_faults())
    again = client.post("/portal/status-match", data=form, headers=language_header)
    preview = client.get("/portal/status-match", params=pair, headers=language_header)
    assert (again.status_code, preview.status_code) == (400, 200)
    problem = html.unescape(again.text).split('id="problem"')[1].split("</div>")[0]
    assert problem.split("<h2>")[1].split("</h2>")[0].strip() == refused and "possible from" not in problem
    for page in (html.unescape(again.text), html.unescape(preview.text)):
        assert page.split('id="too-soon">')[1].startswith(too_soon)
        assert 'id="request-match"' not in page and 'id="matched-tier"' not in page


def test_the_request_form_sent_twice_requests_once_and_answers_both_times_with_the_match(
    portal_gateway: PortalGateway, client: httpx.Client
) -> None:
    """The form as the preview renders it (its key made for that rendering): a double click
    sends it twice, and the second answer is the first's, not a refusal as too soon."""
    gold_shopper_linked_at_wallet_pay(portal_gateway, client)
    preview = client.get("/portal/status-match", params={"from_program": "fresh-mart", "to_program": "wallet-pay"})
    request_form = preview.text.split('<form method="post" action="/portal/status-match">')[1].split("</form>")[0]
    form = dict(re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', request_form))
    assert set(form) == {"csrf_token", "from_program", "to_program", "claimed_tier", "idempotency_key"}
    answers = [client.post("/portal/status-match", data=form) for _ in range(2)]
    assert [(answer.status_code, answer.headers["location"]) for answer in answers] == [
        (303, "/portal/status-match?notice=requested")
    ] * 2
    listed = client.get("/portal/status-match").text
    assert listed.count('<td data-label="Matched at">Wallet Pay Points</td>') == 1
    # Rendered again, the preview offers no second request: one match a year.
    again = client.get("/portal/status-match", params={"from_program": "fresh-mart", "to_program": "wallet-pay"})
    assert 'id="too-soon"' in again.text


def gold_shopper_linked_at_wallet_pay(portal_gateway: PortalGateway, client: httpx.Client) -> str:
    """A FreshMart Gold Shopper signed in through FreshMart, their Wallet Pay account linked."""
    partners = portal_gateway.partners
    member_ref = partners.new_member("fresh-mart", tier="Gold Shopper")
    partners.add_member("wallet-pay", member_ref)
    sign_in(client, "fresh-mart", member_ref)
    link = {"csrf_token": csrf_token(client, "/portal/"), "program": "wallet-pay", "member_ref": member_ref}
    assert client.post("/portal/accounts/link", data={**link, "verification": PIN}).status_code == 303
    return member_ref
