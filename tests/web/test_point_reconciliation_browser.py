"""Staff reconcile the coalition point in the settlement console, in a real browser: no partner
sends its records, so its reconciliation page offers no upload but a button that writes them
from the exchange's own book of the point (as `exchange settle reconcile-point` does) and then
shows how they compared, as after an upload, worded for staff reconciling the exchange's book of
the point with its ledger, with whoever pressed it recorded as the importer (pressed again, the
same book is the same file, and nothing is imported anew). In both languages,
at a desktop's width and a phone's."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from exchange.auth.scopes import Role
from exchange.services.container import open_services
from exchange.testing.databases import PostgresDatabases
from tests.factories import conversion
from tests.web.conftest import PHONE, Gateway, console_sign_in, open_context, run_async
from tests.web.settlement_month import settling_gateway
from tests.web.test_settlement_browser import fact

Screenshot = Callable[[Page, str], Path]
POINT = "coalition"
#: What the pages say, by language: the button, the notice after it, the importer's fact, the
#: records' fact and what it says, the summary's heading, the records' total, the breaks'
#: next-step column and what it says of a reference the ledger posted and the book has not.
SAID = {
    "en": (
        "Reconcile from the exchange's own book of the point",
        "written from the exchange's own book",
        "Imported by",
        "Records",
        "Written from the exchange's own book of the point",
        "How the book of the point compared with the ledger",
        "Total of the book of the point",
        "What staff do next",
        "the book of the point holds no applied operation of it",
    ),
    "zh-TW": (
        "依交換平台自有的聯盟點數帳簿對帳",
        "已依交換平台自有的聯盟點數帳簿寫出",
        "匯入者",
        "紀錄來源",
        "依交換平台自有的聯盟點數帳簿寫出",
        "聯盟點數帳簿與帳本的比對結果",
        "聯盟點數帳簿合計",
        "結算人員的下一步",
        "聯盟點數帳簿卻沒有它已套用的作業",
    ),
}
#: What a partner's page says of the partner's file, which the point's must not, by language.
PARTNERS_WORDS = {
    "en": (
        "Total of the partner's file",
        "The partner's next step",
        "Partner's amount",
        "Missing in the partner's file",
    ),
    "zh-TW": ("夥伴檔案的合計", "夥伴的下一步", "夥伴金額", "夥伴檔案中沒有"),
}
#: The start of what a partner's break report tells the partner to do about a reference the
#: statement has and its records lack, which the point's must not say, by language.
PARTNERS_NEXT_STEP = {"en": "The statement has this reference and your records do not", "zh-TW": "對帳單有這個參考編號"}
#: What the page says pressing the button again does: with the book unchanged, nothing (it said
#: the reconciliation was replaced), by language.
PRESSED_AGAIN = {
    "en": "while the book is unchanged, they are the same records, and the reconciliation stays as it is",
    "zh-TW": "帳簿未變時，紀錄相同，這次對帳維持原樣",
}


async def spend_the_point_and_close(gateway: Gateway, period: str) -> None:
    """A conversion out of the point that the ledger posts and the point's book has no
    operation of (posted by hand), then ``period`` closed: one break to show."""
    async with open_services(gateway.settings) as services:
        settlement = services.settlement
        during = settlement.calendar.starts_at(period) + timedelta(days=12)
        async with services.db.transaction() as session:
            await settlement.ledger.post_many(session, [conversion("p1", POINT, "fresh-mart", 1_500, 30, at=during)])
        await settlement.close(period, by="test")


@pytest.fixture(scope="module")
def point_month(postgres_databases: PostgresDatabases) -> Iterator[tuple[Gateway, str]]:
    for gateway, period in settling_gateway(postgres_databases):
        run_async(partial(spend_the_point_and_close, gateway, period))
        yield gateway, period


@pytest.mark.parametrize("language", ["en", "zh-TW"])
def test_staff_reconcile_the_point_from_its_own_book_with_a_button(
    browser: Browser, point_month: tuple[Gateway, str], screenshot: Screenshot, language: str
) -> None:
    gateway, period = point_month
    button, notice, imported_by, records, from_book, heading, total, next_step, missing = SAID[language]
    staff = gateway.person(Role.SETTLEMENT)
    context = open_context(browser, gateway, locale=language)
    try:
        page = context.new_page()
        console_sign_in(page, staff)
        page.goto(f"/console/settlement/{period}")
        page.locator(f"a[href='/console/settlement/{period}/reconciliations/{POINT}']").click()
        expect(page.get_by_role("button", name=button)).to_be_visible()
        expect(page.locator("#records")).to_have_count(0)  # no file to upload: staff have none
        expect(page.locator("main")).to_contain_text(PRESSED_AGAIN[language])
        screenshot(page, "before")

        page.get_by_role("button", name=button).click()
        expect(page.get_by_role("status").first).to_contain_text(notice)
        expect(page.locator("#open-breaks")).to_have_text("1")
        # Whoever pressed it first: the same book again is the same file, answered by the
        # reconciliation it made (the other language's run, on this module's month, may come first).
        expect(fact(page, imported_by)).to_contain_text(re.compile(r"console:settlement-\d+"))
        first_importer = fact(page, imported_by).inner_text()
        expect(fact(page, records)).to_have_text(from_book)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        expect(fact(page, total)).to_be_visible()
        breaks = page.get_by_role("table").first
        expect(breaks).to_contain_text("conversion:p1")
        # The ledger posted it, the book has no operation of it: said to staff, not to a partner.
        expect(breaks.locator("th", has_text=next_step)).to_have_count(1)
        expect(breaks.locator(f'td[data-label="{next_step}"]')).to_contain_text(missing)
        for words in PARTNERS_WORDS[language]:
            expect(page.locator("main")).not_to_contain_text(words)
        screenshot(page, "reconciled")

        # Pressed again, the book's records are the same file: nothing is imported anew.
        page.get_by_role("button", name=button).click()
        expect(page.get_by_role("status").first).to_contain_text(notice)
        expect(fact(page, imported_by)).to_have_text(first_importer)
        expect(page.locator("#open-breaks")).to_have_text("1")

        # Its break report says the same next step, in the page's language, to staff.
        report = page.evaluate("async (u) => await (await fetch(u)).text()", page.url.split("?")[0] + "/breaks.csv")
        (row,) = csv.DictReader(io.StringIO(report.lstrip("\ufeff")))
        assert row["reference"] == "conversion:p1"
        assert missing in row["next_step"]
        assert PARTNERS_NEXT_STEP[language] not in row["next_step"]

        page.set_viewport_size(PHONE)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px on a phone"
        tables = page.evaluate("[...document.querySelectorAll('.table-wrap')].map(t => t.scrollWidth - t.clientWidth)")
        assert tables and max(tables) <= 0, f"a table scrolls sideways on a phone: {tables}"
        screenshot(page, "reconciled-phone")
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()


def test_a_participant_other_than_the_point_has_no_book_to_reconcile_from(
    browser: Browser, point_month: tuple[Gateway, str]
) -> None:
    gateway, period = point_month
    context = open_context(browser, gateway)
    try:
        page = context.new_page()
        console_sign_in(page, gateway.person(Role.SETTLEMENT))
        page.goto(f"/console/settlement/{period}/reconciliations/fresh-mart")
        expect(page.get_by_label("Records file (CSV)")).to_be_visible()
        expect(page.get_by_role("button", name=SAID["en"][0])).to_have_count(0)
        csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
        answer = page.request.post(
            f"/console/settlement/{period}/reconciliations/fresh-mart/from-book", form={"csrf_token": csrf or ""}
        )
        assert answer.status == 404
    finally:
        context.close()
