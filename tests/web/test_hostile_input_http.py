"""Input no page takes, sent as a hostile client sends it: answered with a 4xx that names the
value and the rule (never a 500), and nothing changes. The guard refuses what no page takes
(a NUL, a file, a body that is not a small form) before any page runs; the forms' own readers
refuse numbers and dates their columns cannot hold, on their fields."""

from __future__ import annotations

import html
import itertools
from collections.abc import Iterator

import httpx
import pytest

from exchange.auth.scopes import Role
from tests.web.conftest import Gateway
from tests.web.test_console_http import form_token, signed_in
from tests.web.test_partner_http import PARTNER, field_error, post

_titles = itertools.count(1)


@pytest.fixture
def partner(gateway: Gateway) -> Iterator[httpx.Client]:
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        yield client


def refusal(response: httpx.Response) -> str:
    """The reason a refused request's page gives."""
    text = html.unescape(response.text)
    assert "Nothing was changed" in text, text
    return text


def published(client: httpx.Client, title: str) -> bool:
    return title in client.get(f"{PARTNER}/rewards").text


def test_a_nul_in_an_address_a_query_or_a_form_is_refused_by_name_before_the_page_runs(
    gateway: Gateway, partner: httpx.Client
) -> None:
    title = f"nul-{next(_titles)}"
    form = post(partner, f"{PARTNER}/rewards", title=f"{title}\x00", price="5", stock="3")
    assert form.status_code == 400 and "title holds a NUL character" in refusal(form)
    assert not published(partner, title)
    query = partner.get(f"{PARTNER}/rates/preview", params={"fromProgram": "harbor\x00bank", "points": "60000"})
    assert query.status_code == 400 and "fromProgram holds a NUL character" in refusal(query)
    address = partner.get(f"{PARTNER}/rewards/a%00b")
    assert address.status_code == 400 and "reward_id holds a NUL character" in refusal(address)
    with gateway.client() as anonymous:
        token = form_token(anonymous)
        sign_in = anonymous.post("/console/sign-in", data={"csrf_token": token, "username": "a\x00b", "password": "x"})
        assert sign_in.status_code == 400 and "username holds a NUL character" in refusal(sign_in)


def test_a_body_that_is_not_a_small_form_of_text_is_refused_unread(partner: httpx.Client) -> None:
    title = f"body-{next(_titles)}"
    fields = {"title": title, "price": "5", "stock": "3"}
    token = {"X-CSRF-Token": form_token(partner, "/console/")}
    as_json = partner.post(f"{PARTNER}/rewards", json=fields, headers=token)
    assert as_json.status_code == 415 and "not application/json" in refusal(as_json)
    too_large = partner.post(f"{PARTNER}/rewards", data={**fields, "description": "x" * 100_000}, headers=token)
    assert too_large.status_code == 413 and "Too much was sent" in too_large.text
    a_file = partner.post(f"{PARTNER}/rewards", data=fields, files={"description": ("d.txt", b"text")}, headers=token)
    assert a_file.status_code == 400 and "description must be text, not a file" in refusal(a_file)
    assert not published(partner, title)


def test_a_field_of_one_value_sent_twice_is_refused_by_name_and_a_list_of_ticks_keeps_its_repeats(
    gateway: Gateway, partner: httpx.Client
) -> None:
    title = f"twice-{next(_titles)}"
    twice = post(partner, f"{PARTNER}/rewards", title=title, price=["5", "500"], stock="3")
    assert twice.status_code == 400 and "price was sent 2 times: it takes one value" in refusal(twice)
    assert not published(partner, title)
    with gateway.client() as anonymous:
        token = form_token(anonymous)
        sign_in = anonymous.post(
            "/console/sign-in", data={"csrf_token": token, "username": ["a", "b"], "password": "x"}
        )
        assert sign_in.status_code == 400 and "username was sent 2 times" in refusal(sign_in)
    ticked = post(
        partner,
        f"{PARTNER}/promotions",
        id=f"ticked-{next(_titles)}",
        bonusPercent="5",
        endsAt="2099-01-01T00:00",
        fromPrograms=["tune-stream", "fresh-mart"],
    )
    assert ticked.status_code == 303
    repeated = post(partner, f"{PARTNER}/promotions", id=["p1", "p2"], bonusPercent="5", endsAt="2099-01-01T00:00")
    assert repeated.status_code == 400 and "id was sent 2 times" in refusal(repeated)


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("stock", "\u00b2", "must be a whole number"),  # str.isdigit says yes, int() says no
        ("minLevel", "--5", "must be a whole number"),
        ("perMemberLimit", "2147483648", "from -2,147,483,648 to 2,147,483,647"),  # an INTEGER column
        ("availableFrom", "0001-01-01T00:00", "in the years 2 to 9998"),  # before year 1 in UTC
        ("price", "5e1", "must be a number"),  # Decimal() reads 50
        ("price", "\uff15", "must be a number"),  # a fullwidth 5
        ("price", "1,2.50", "must be a number"),  # a comma that groups no thousands
        ("stock", "1,2,3", "must be a whole number"),  # not 123
    ],
)
def test_a_number_or_date_its_column_cannot_hold_is_refused_on_its_field(
    partner: httpx.Client, field: str, value: str, rule: str
) -> None:
    title = f"number-{next(_titles)}"
    refused = post(partner, f"{PARTNER}/rewards", **{"title": title, "price": "5", "stock": "3", field: value})
    assert refused.status_code == 422 and rule in html.unescape(field_error(refused.text, field))
    assert not published(partner, title)


def test_a_ratio_beyond_what_one_conversion_moves_is_refused_and_the_preview_still_prices(
    partner: httpx.Client,
) -> None:
    refused = post(partner, f"{PARTNER}/rates", fromProgram="tune-stream", ratio=f"1:{10**30}")
    assert refused.status_code == 422 and "from 1 to 1,000,000,000" in field_error(refused.text, "ratio")
    preview = partner.get(f"{PARTNER}/rates/preview", params={"fromProgram": "tune-stream", "points": "1000"})
    assert preview.status_code == 200


@pytest.mark.parametrize(
    "chosen",
    [
        "r" * 65,  # longer than the column: was a 500
        "a?b",  # its link opened reward a
        "a/b",  # its link opened no page
        "a b",
        "..",
        "\u202eevil",  # turns the text after it around
    ],
)
def test_an_id_a_partner_chooses_is_refused_on_its_field_unless_it_reads_as_itself_in_an_address(
    partner: httpx.Client, chosen: str
) -> None:
    title = f"chosen-{next(_titles)}"
    reward = post(partner, f"{PARTNER}/rewards", id=chosen, title=title, price="5", stock="3")
    assert reward.status_code == 422 and "letters, digits" in html.unescape(field_error(reward.text, "id"))
    assert not published(partner, title)
    promotion = post(
        partner,
        f"{PARTNER}/promotions",
        id=chosen,
        bonusPercent="10",
        startsAt="2031-01-01T00:00",
        endsAt="2031-02-01T00:00",
    )
    assert promotion.status_code == 422 and "letters, digits" in html.unescape(field_error(promotion.text, "id"))
    assert f'<th scope="row">{html.escape(chosen)}</th>' not in partner.get(f"{PARTNER}/rates").text


def test_an_id_that_keeps_the_rule_is_the_reward_s_address(partner: httpx.Client) -> None:
    title = f"chosen-{next(_titles)}"
    reward_id = f"Spring_2031.v-{next(_titles)}"
    reward = post(partner, f"{PARTNER}/rewards", id=reward_id, title=title, price="5", stock="3")
    assert reward.status_code == 303 and reward.headers["location"].startswith(f"{PARTNER}/rewards/{reward_id}?")
    assert title in partner.get(reward.headers["location"]).text


def test_a_reward_title_that_shows_nothing_or_other_text_than_it_holds_is_refused_on_its_field(
    partner: httpx.Client,
) -> None:
    """A title members see as written: one of only invisible characters is blank, and a
    direction control (U+202E) shows the text after it backwards; each is refused on the title
    in the reader's language, and nothing is published."""
    for title, english, chinese in [
        ("\u200b\u200b", "Title shows nothing", "看起來是空白的"),
        (
            f"Tea \u202e00.01 {next(_titles)}",
            "a direction control, U+202E, at character 5",
            "第 5 個字元是文字方向控制字元 U+202E",
        ),
    ]:
        for language, said in (("en", english), ("zh-TW", chinese)):
            token = form_token(partner, "/console/")
            form = {"csrf_token": token, "title": title, "price": "5", "stock": "3"}
            refused = partner.post(f"{PARTNER}/rewards", data=form, headers={"accept-language": language})
            assert refused.status_code == 422, refused.text
            assert said in html.unescape(field_error(refused.text, "title"))
        assert not published(partner, title)
