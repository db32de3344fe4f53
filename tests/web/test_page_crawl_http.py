"""Every page a visitor reaches by following links answers below 500 and shows no traceback, in
English and in Traditional Chinese: staff of each role, a partner and a member, each from their
home page, on a gateway whose data has a settled period, conversions, a quote, a status match and
a redemption. The pages' messages are %-formatted even without variables (newstyle gettext), so a
branch no test renders can fail only when a real visitor reaches it; the crawl renders every one
the data reaches, and the cases after it the ones the sample data cannot. The sample programs'
names are in Latin letters, so the crawl in Chinese also finds one run into Chinese text."""

from __future__ import annotations

import html
import itertools
import re
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import httpx
import pytest
from sqlmodel import SQLModel, col, select

from exchange.auth.scopes import Role
from exchange.connectors.errors import REFUSED
from exchange.conversions.models import Conversion, ConversionStatus
from exchange.db.database import Database
from exchange.errors import ErrorCode
from exchange.rewards.models import CancelledBy, Redemption, RedemptionStatus
from exchange.risk import reasons
from exchange.sagas import doubt
from exchange.services import holds
from exchange.services.container import open_services
from exchange.testing.databases import PostgresDatabases
from exchange.tiers.models import MatchStatus, StatusMatch
from tests.factories import conversion
from tests.web.conftest import Gateway, PortalGateway, run_async, start_portal_gateway
from tests.web.portal_flows import ask_quote, convert_form, csrf_token, recorded_as, sign_in
from tests.web.portal_partners import PIN
from tests.web.test_console_http import signed_in
from tests.web.test_partner_http import PARTNER, settle_last_month
from tests.web.test_portal_rewards_http import publish, redeem_form

#: The most pages one crawl visits: far more than the data links to, a stop should a page link
#: to ever more pages (a cursor that never runs out).
MAX_PAGES = 400
LANGUAGES = {"en": {"accept-language": "en"}, "zh-TW": {"accept-language": "zh-TW"}}
#: Where a page links to (``href``) or fetches a fragment from (htmx's ``hx-get``).
LINK = re.compile(r'(?:href|hx-get)="([^"#]*)')
#: Paths a crawl does not follow: they end the session, or leave for a partner's sign-in page.
NOT_FOLLOWED = re.compile(r"/sign-out|/logout|^/portal/sign-in/")


#: A Latin letter run straight into a Chinese character, or one into it. A Chinese page sets a
#: name written in Latin letters (a program's, a tier's, a unit's) off from Chinese text by a
#: space, as Taiwan's common style does; full-width punctuation beside it takes none.
GLUED = re.compile(r"[A-Za-z][\u3400-\u9fff]|[\u3400-\u9fff][A-Za-z]")
#: The elements that break a page's text into lines (a cell, an item, a paragraph): text on
#: either side of one is not run together on the screen.
BLOCKS = re.compile(
    r"</?(?:address|article|aside|br|caption|dd|details|div|dl|dt|fieldset|figcaption|figure|footer|form|h[1-6]|header|"
    r"hr|input|label|legend|li|main|nav|ol|option|p|section|select|summary|table|tbody|td|textarea|tfoot|th|thead|"
    r"title|tr|ul)\b[^>]*>"
)


def glued_text(page: str) -> list[str]:
    """The lines of ``page``'s text (what a reader sees, as the blocks break it) that run a Latin
    letter and a Chinese character together."""
    page = re.sub(r"(?s)<(script|style)\b.*?</\1>", "", page)
    text = html.unescape(re.sub(r"<[^>]*>", "", BLOCKS.sub("\n", page)))
    return [line.strip() for line in text.splitlines() if GLUED.search(line)]


@dataclass
class Crawl:
    #: Each address visited, with its answer's status.
    visited: dict[str, int]
    #: Each HTML page's lines that run a Latin letter into a Chinese character (:func:`glued_text`).
    glued: dict[str, list[str]]

    def failures(self) -> list[str]:
        return [f"{status} {address}" for address, status in self.visited.items() if status >= 500]


#: The most addresses of one shape (digits aside) a crawl visits: the books link each month to
#: the next and the previous without end; a few of them show a closed, an open and a future one.
PER_SHAPE = 4


def same_site(address: str, href: str) -> str | None:
    """Where ``href`` on the page at ``address`` leads, if a crawl follows it: a console or
    portal address, its fragment and language choice dropped (the crawl asks for its language
    in every request)."""
    target = urlsplit(urljoin(address, html.unescape(href)))
    if target.scheme or target.netloc or NOT_FOLLOWED.search(target.path):
        return None
    if not target.path.startswith(("/console/", "/portal/")):
        return None
    query = urlencode([(name, value) for name, value in parse_qsl(target.query) if name != "lang"])
    return target.path + (f"?{query}" if query else "")


def shape(address: str) -> str:
    return re.sub(r"\d+", "#", address)


def crawl(client: httpx.Client, starts: tuple[str, ...], headers: dict[str, str]) -> Crawl:
    """Follow every same-site link from ``starts`` (redirects too), each address once."""
    visited: dict[str, int] = {}
    glued: dict[str, list[str]] = {}
    shapes: Counter[str] = Counter()
    waiting = deque(starts)
    while waiting and len(visited) < MAX_PAGES:
        address = waiting.popleft()
        if address in visited or shapes[shape(address)] >= PER_SHAPE:
            continue
        shapes[shape(address)] += 1
        response = client.get(address, headers=headers)
        visited[address] = response.status_code
        assert "Traceback" not in response.text, address
        if response.is_redirect:
            links = [response.headers["location"]]
        elif response.headers.get("content-type", "").startswith("text/html"):
            links = LINK.findall(response.text)
            if lines := glued_text(response.text):
                glued[address] = lines
        else:
            links = []
        waiting.extend(target for link in links if (target := same_site(address, link)) is not None)
    return Crawl(visited, glued)


@pytest.fixture(scope="module")
def crawled(postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PortalGateway]:
    """A gateway of its own (its period is closed) with sandbox partners, the previous period
    settled (formosa-air's records imported: one break resolved, one open)."""
    for portal in start_portal_gateway(postgres_databases, tmp_path_factory.mktemp("crawl-sandboxes")):
        run_async(partial(settle_last_month, portal.gateway))
        yield portal


@dataclass
class Member:
    client: httpx.Client
    #: The page of the quote they have open, which no page links to.
    quote: str


@pytest.fixture(scope="module")
def member(crawled: PortalGateway) -> Iterator[Member]:
    """A member signed in through FreshMart with Formosa Air and Wallet Pay linked, who has
    converted once, has a quote open, has matched their status and redeemed a reward."""
    partners = crawled.partners
    member_ref = partners.new_member("fresh-mart", balance=50_000, tier="Gold Shopper")
    partners.add_member("formosa-air", member_ref, balance=4_000)
    partners.add_member("wallet-pay", member_ref, balance=2_000)
    with crawled.gateway.client() as client:
        sign_in(client, "fresh-mart", member_ref)
        for program in ("formosa-air", "wallet-pay"):
            link = {"csrf_token": csrf_token(client, "/portal/"), "program": program, "member_ref": member_ref}
            assert client.post("/portal/accounts/link", data={**link, "verification": PIN}).status_code == 303
        quote_page = ask_quote(client, "fresh-mart", "formosa-air", 1_000)
        assert client.post(quote_page, data=convert_form(client, quote_page)).status_code == 303
        open_quote = ask_quote(client, "fresh-mart", "formosa-air", 2_000)
        match = {
            "csrf_token": csrf_token(client, "/portal/status-match"),
            "from_program": "fresh-mart",
            "to_program": "wallet-pay",
            "claimed_tier": "Gold Shopper",
        }
        assert client.post("/portal/status-match", data=match).status_code == 303
        reward_id = publish(crawled, "formosa-air", "Window seat voucher")
        redeemed = client.post(f"/portal/rewards/{reward_id}", data=redeem_form(client, reward_id, "fresh-mart"))
        assert redeemed.status_code == 303, redeemed.text
        yield Member(client, open_quote)


#: Each kind of console visitor: their role, their program, and a page deep in what they may
#: open that the crawl must reach (so a crawl cut short by a broken link does not pass).
VISITORS = {
    "settlement": (Role.SETTLEMENT, None, "/reconciliations/formosa-air/breaks.csv"),
    "admin": (Role.ADMIN, None, "/console/"),
    "partner formosa-air": (Role.PARTNER, "formosa-air", "/reconciliation"),
    "partner fresh-mart": (Role.PARTNER, "fresh-mart", "/books.csv"),
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("visitor", VISITORS)
def test_every_console_page_a_visitor_reaches_answers_without_a_server_error(
    crawled: PortalGateway, member: Member, visitor: str, language: str
) -> None:
    role, program_id, deep = VISITORS[visitor]
    with signed_in(crawled.gateway, crawled.gateway.person(role, program_id)) as client:
        done = crawl(client, ("/console/",), LANGUAGES[language])
    assert done.failures() == []
    assert done.glued == {}
    assert any(address.endswith(deep) for address in done.visited), done.visited
    assert len(done.visited) < MAX_PAGES, "the crawl stopped before it ran out of links"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_portal_page_a_member_reaches_answers_without_a_server_error(member: Member, language: str) -> None:
    done = crawl(member.client, ("/portal/", member.quote), LANGUAGES[language])
    assert done.failures() == []
    assert done.glued == {}
    assert any(address.startswith("/portal/conversions/") for address in done.visited), done.visited
    assert len(done.visited) < MAX_PAGES, "the crawl stopped before it ran out of links"


def answers(client: httpx.Client, *addresses: str) -> None:
    """Each address answers below 500 without a traceback, in either language."""
    for address, headers in itertools.product(addresses, LANGUAGES.values()):
        response = client.get(address, headers=headers)
        assert response.status_code < 500 and "Traceback" not in response.text, (address, headers)


def only_id(gateway: Gateway, model: type[SQLModel]) -> str:
    """The id of the one ``model`` row on the gateway (the member's conversion, redemption, match)."""

    async def read() -> str:
        db = Database.from_url(gateway.settings.database_url)
        try:
            async with db.transaction() as session:
                return str((await session.exec(select(col(model.id)))).one())  # type: ignore[attr-defined]
        finally:
            await db.dispose()

    return run_async(read)


#: Why a saga row failed, as the sagas and the staff's review write it (code, message).
FAILURES = (
    ("PARTNER_REFUSED", REFUSED.format(program="formosa-air", call="credit", detail="account closed")),
    (ErrorCode.PARTNER_UNAVAILABLE.value, "partner formosa-air did not answer: timed out"),
    ("PARTNER_REFUSED", doubt.WRITE_GIVEN_BACK.format(partner="target", write="credit")),
    ("PARTNER_REFUSED", doubt.WRITE_NOT_APPLIED.format(partner="source", write="debit", state="VOIDED")),
    (doubt.CONTRADICTED, doubt.WRITE_CONTRADICTED.format(partner="paying", write="debit")),
    (holds.REJECTED, reasons.REJECTED.text(reason="larger than this member converts")),
    (holds.EXPIRED, "not reviewed in time"),
)


@pytest.mark.parametrize("status", list(ConversionStatus))
def test_a_conversion_in_each_state_the_saga_leaves_is_shown_to_its_member_and_staff_without_a_server_error(
    crawled: PortalGateway, member: Member, status: ConversionStatus
) -> None:
    conversion_id = only_id(crawled.gateway, Conversion)
    ended = status in (ConversionStatus.FAILED, ConversionStatus.REVERSED, ConversionStatus.COMPLETED)
    with signed_in(crawled.gateway, crawled.gateway.person(Role.SETTLEMENT)) as staff:
        for code, message in FAILURES if ended else [(None, None)]:
            recorded_as(
                crawled.gateway, Conversion, conversion_id, status=status, failure_code=code, failure_message=message
            )
            answers(member.client, "/portal/", "/portal/conversions", f"/portal/conversions/{conversion_id}")
            answers(staff, "/console/risk/", "/console/partners-waiting")


@pytest.mark.parametrize("cancelled_by", [None, *CancelledBy])
@pytest.mark.parametrize("status", list(RedemptionStatus))
def test_a_redemption_in_each_state_is_shown_to_its_member_and_its_publisher_without_a_server_error(
    crawled: PortalGateway, member: Member, status: RedemptionStatus, cancelled_by: CancelledBy | None
) -> None:
    redemption_id = only_id(crawled.gateway, Redemption)
    ended = status in (RedemptionStatus.FAILED, RedemptionStatus.REVERSING, RedemptionStatus.REVERSED)
    with signed_in(crawled.gateway, crawled.gateway.person(Role.PARTNER, "formosa-air")) as publisher:
        for code, message in FAILURES if ended else [(None, None)]:
            recorded_as(
                crawled.gateway,
                Redemption,
                redemption_id,
                status=status,
                cancelled_by=cancelled_by,
                failure_code=code,
                failure_message=message,
            )
            answers(member.client, "/portal/rewards/history", "/portal/rewards")
            answers(publisher, "/console/partner/redemptions", "/console/partner/rewards")


@pytest.mark.parametrize("status", list(MatchStatus))
def test_a_status_match_in_each_state_is_shown_without_a_server_error(
    crawled: PortalGateway, member: Member, status: MatchStatus
) -> None:
    recorded_as(crawled.gateway, StatusMatch, only_id(crawled.gateway, StatusMatch), status=status)
    answers(member.client, "/portal/status-match", "/portal/status-match?from_program=fresh-mart&to_program=wallet-pay")


def issue_miles(gateway: Gateway, name: str, miles: int) -> None:
    """``miles`` issued to Formosa Air's members today, as a conversion into it posts them."""

    async def post() -> None:
        now = datetime.now(UTC)
        async with open_services(gateway.settings) as services, services.db.transaction() as session:
            await services.settlement.ledger.post_many(
                session, [conversion(name, "wallet-pay", "formosa-air", 1, 0, points=(miles, miles), at=now)]
            )

    run_async(post)


def test_the_books_say_the_budgets_warning_and_its_exhaustion_in_either_language(crawled: PortalGateway) -> None:
    """Formosa Air budgets 3,200,000 TWD a month: 6,400,000 miles at 0.4 TWD is 80 %, 8,000,000 all of it."""
    gateway = crawled.gateway
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as client:
        books = client.get(f"{PARTNER}/books").headers["location"]
        issue_miles(gateway, "to-80", 6_400_000)
        warned = {language: client.get(books, headers=headers) for language, headers in LANGUAGES.items()}
        assert warned["en"].status_code == warned["zh-TW"].status_code == 200
        assert "80 % of the budget reached" in warned["en"].text and "已達預算的 80 %" in warned["zh-TW"].text
        issue_miles(gateway, "to-100", 1_600_000)
        exhausted = {language: client.get(books, headers=headers) for language, headers in LANGUAGES.items()}
        assert "Budget exhausted" in exhausted["en"].text and "預算已用盡" in exhausted["zh-TW"].text


def page_period(client: httpx.Client) -> str:
    """The settled period, as the partner's list of statements links to it."""
    found = re.search(r'href="/console/partner/statements/(\d{4}-\d{2})"', client.get(f"{PARTNER}/statements").text)
    assert found is not None
    return found[1]


def terms(page: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]*>", "", term)).strip() for term in re.findall(r"(?s)<dt>(.*?)</dt>", page)]


def column_headings(page: str) -> list[list[str]]:
    """Each table's column headings, as a reader sees them."""
    return [
        [
            html.unescape(re.sub(r"<[^>]*>", "", heading)).strip()
            for heading in re.findall(r"(?s)<th\b[^>]*>(.*?)</th>", head)
        ]
        for head in re.findall(r"(?s)<thead>(.*?)</thead>", page)
    ]


#: A statement's figures as both consoles name and order them, by language.
FIGURES = {
    "en": ["Opening position", "Receivable, gross", "Payable, gross", "Net position", "Closing position"],
    "zh-TW": ["期初部位", "應收總額", "應付總額", "淨部位", "期末部位"],
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_both_consoles_name_a_statements_figures_alike_and_in_the_same_order(
    crawled: PortalGateway, language: str
) -> None:
    """Settlement staff read "Carried in, Owed, gross, Owing, gross" where the partner's finance
    team read "Opening position, Payable, Receivable", in another order, of the same figures."""
    gateway, headers = crawled.gateway, LANGUAGES[language]
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as partner:
        period = page_period(partner)
        listing = partner.get(f"{PARTNER}/statements", headers=headers).text
        own = partner.get(f"{PARTNER}/statements/{period}", headers=headers).text
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as staff:
        positions = staff.get(f"/console/settlement/{period}", headers=headers).text
        theirs = staff.get(f"/console/settlement/{period}/statements/formosa-air", headers=headers).text
    figures = FIGURES[language]
    for page in (own, theirs):
        said = terms(page)
        assert figures[0] in said, said
        assert said[said.index(figures[0]) :][: len(figures)] == figures
    columns = figures[1:4]  # receivable, payable, net: after what each row is (a period, a participant, a counterparty)
    for page in (listing, positions, own):
        (table,) = [headings for headings in column_headings(page) if columns[0] in headings]
        assert table[1:4] == columns, table
    # The lines too: the partner's finance team read "Reference, Kind, Counterparty, When,
    # Amount" where staff read "When, Reference, Kind, Counterparty, Amount".
    (own_lines,), (their_lines,) = (
        [table for table in column_headings(page) if len(table) == 5] for page in (own, theirs)
    )
    assert own_lines == their_lines and len(set(own_lines)) == 5, (own_lines, their_lines)


def test_the_period_pages_links_say_to_a_screen_reader_whose_statement_and_records_they_open(
    crawled: PortalGateway,
) -> None:
    """A screen reader read "Statement The exchange" and "Reconcile Formosa Air Miles"."""
    gateway = crawled.gateway
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as partner:
        period = page_period(partner)
    hidden = '<span class="visually-hidden">'
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as staff:
        english = staff.get(f"/console/settlement/{period}").text
        chinese = staff.get(f"/console/settlement/{period}", headers=LANGUAGES["zh-TW"]).text
    assert f"Statement{hidden} of the exchange itself</span>" in english
    assert f"Statement{hidden} of Formosa Air Miles</span>" in english
    assert f"Reconcile{hidden} the records of Formosa Air Miles</span>" in english
    # In Chinese the statement's owner comes before the word the link shows: read whole, the
    # link says 交換平台本身的對帳單 once, where it said 對帳單：交換平台本身的對帳單.
    assert f"{hidden}交換平台本身的</span>對帳單</a>" in chinese
    assert f"{hidden}Formosa Air Miles 的</span>對帳單</a>" in chinese


def test_a_refusal_on_a_chinese_page_sets_a_field_name_off_from_the_chinese(crawled: PortalGateway) -> None:
    """The crawl follows links, which never lead to a refusal: a cursor no link gave is refused
    naming its field, ``after``, which has no Chinese label, and ran it into the Chinese
    ("after必須是…")."""
    gateway, chinese = crawled.gateway, LANGUAGES["zh-TW"]
    with signed_in(gateway, gateway.person(Role.PARTNER, "formosa-air")) as partner:
        period = page_period(partner)
        refusals = [partner.get(f"{PARTNER}/statements/{period}/reconciliation?after=x", headers=chinese)]
    with signed_in(gateway, gateway.person(Role.SETTLEMENT)) as staff:
        refusals.append(staff.get(f"/console/settlement/{period}/statements/formosa-air?after=x", headers=chinese))
        refusals.append(staff.get(f"/console/settlement/{period}/reconciliations/formosa-air?after=x", headers=chinese))
    for refused in refusals:
        assert refused.status_code == 400
        assert "after 必須是" in refused.text
        assert glued_text(refused.text) == []
