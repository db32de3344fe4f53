"""The settlement console in a real browser: staff close last month, look at the netting
picture, check a statement's signature, upload a partner's file, resolve its breaks in bulk and
sign off; then the same pages in Traditional Chinese at a phone's width."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from exchange.auth.scopes import Role
from exchange.testing.databases import PostgresDatabases
from tests.web.conftest import PHONE, Gateway, Person, open_context
from tests.web.settlement_month import RECORDS, settling_gateway

Screenshot = Callable[[Page, str], Path]


@pytest.fixture(scope="module")
def settling(postgres_databases: PostgresDatabases) -> Iterator[tuple[Gateway, str]]:
    yield from settling_gateway(postgres_databases)


def sign_in(page: Page, person: Person) -> None:
    page.goto("/console/sign-in")
    page.locator("#username").fill(person.username)
    page.locator("#password").fill(person.password)
    page.locator("#password").press("Enter")
    expect(page).to_have_url(re.compile(r"/console/$"))


WIDEST = """[...document.querySelectorAll("body *")]
  .filter((e) => !e.closest(".table-wrap") && e.getBoundingClientRect().right > document.documentElement.clientWidth)
  .slice(0, 3).map((e) => e.tagName + "." + e.className + " " + e.getBoundingClientRect().right)"""


def no_sideways_scroll(page: Page, label: str) -> None:
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    wide = page.evaluate(WIDEST)
    assert overflow <= 0, f"{label} scrolls sideways by {overflow} px: {wide}"
    # Nor does a table keep columns out of sight in a sideways scroll of its own: on a phone each row stacks.
    tables = page.evaluate("[...document.querySelectorAll('.table-wrap')].map(t => t.scrollWidth - t.clientWidth)")
    assert all(hidden <= 0 for hidden in tables), f"a table of {label} scrolls sideways: {tables}"


#: fresh-mart's reconciliation of RECORDS: its file's 86.50 (98.00 - 24.00 + 5.00 + 7.50), the
#: statement's net 45.00 (98.00 - 40.00 - 25.00 + 12.00) and the 41.50 its five breaks make.
FRESH_MART_TOTALS = {
    "en": {
        "Total of the partner's file": "NT$86.50",
        "The statement's net": "NT$45.00",
        "Difference, which the breaks account for": "NT$41.50",
    },
    "zh-TW": {"夥伴檔案的合計": "NT$86.50", "對帳單淨額": "NT$45.00", "差額（即各筆差異之和）": "NT$41.50"},
}


def fact(page: Page, term: str) -> Locator:
    """The value of a facts list's ``term``."""
    return page.locator(".facts > div").filter(has=page.locator("dt", has_text=term)).locator("dd")


def test_staff_close_the_month_check_netting_upload_resolve_in_bulk_and_sign_off(
    browser: Browser, settling: tuple[Gateway, str], screenshot: Screenshot, tmp_path: Path
) -> None:
    gateway, month = settling
    staff = gateway.person(Role.SETTLEMENT)
    context = open_context(browser, gateway)
    try:
        page = context.new_page()
        sign_in(page, staff)
        page.get_by_role("link", name="Settlement").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Settlement periods")
        expect(page.get_by_label("Period", exact=True)).to_have_value(month)
        screenshot(page, "periods")
        page.get_by_role("button", name="Close the period").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Closing {month}")
        expect(page.locator("#job-progress .notice")).to_contain_text(f"Period {month} is closed.", timeout=20_000)
        expect(page.locator("#job-bar")).to_have_attribute("value", "100")
        screenshot(page, "closed")

        page.get_by_role("link", name="See its netting picture and statements").click()
        expect(page.locator("svg[role=img]")).to_have_count(2)
        totals = page.locator(".totals")
        expect(totals).to_contain_text("NT$207.00")  # gross
        expect(totals).to_contain_text("Multilateral netting")
        gross = int(page.locator(".totals > div").first.locator("dd.muted").inner_text().split()[0])
        expect(page.locator("svg").nth(0).locator("line")).to_have_count(gross)  # an arrow per obligation
        screenshot(page, "netting")

        page.get_by_role("link", name="Statement of FreshMart Rewards").click()
        expect(page.locator("#signature-result")).to_contain_text("The signature is valid", timeout=10_000)
        screenshot(page, "statement")

        page.go_back()
        page.get_by_role("link", name="Reconcile the records of FreshMart Rewards").click()
        # A refusal quotes the file as it is: "$&" (or "$'", "$`") in it is no pattern of the page's script.
        refused = tmp_path / "refused.csv"
        refused.write_text(RECORDS.replace(",98.00,", ",$&98.00,"))
        page.get_by_label("Records file (CSV)").set_input_files(refused)
        page.get_by_role("button", name="Upload and compare").click()
        expect(page.locator("#upload-status")).to_contain_text(
            "The file was refused: Line 2: amount '$&98.00' is not an amount in TWD"
        )
        records = tmp_path / "fresh-mart.csv"
        records.write_text(RECORDS)
        page.get_by_label("Records file (CSV)").set_input_files(records)
        page.get_by_role("button", name="Upload and compare").click()
        expect(page.locator(".notice")).to_contain_text("imported and compared with the ledger")
        expect(page.locator("#open-breaks")).to_have_text("5")
        # The file's total, the statement's net and the breaks' difference, as fresh-mart's console words them.
        for term, amount in FRESH_MART_TOTALS["en"].items():
            expect(fact(page, term)).to_have_text(amount)
        screenshot(page, "uploaded")

        page.get_by_label("Class", exact=True).select_option("MISSING_IN_LEDGER")
        page.get_by_role("button", name="Filter").click()
        for box in page.get_by_role("checkbox").all():
            box.check()
        page.get_by_label("Reason", exact=True).fill("not ours: fresh-mart confirmed")
        page.get_by_role("button", name="Resolve").click()
        expect(page.locator(".notice")).to_contain_text("2 breaks resolved.")
        expect(page.locator("#open-breaks")).to_have_text("3")

        page.get_by_label("Class", exact=True).select_option("")
        page.get_by_role("button", name="Filter").click()
        page.get_by_label("Every open break the filter shows, on every page").check()
        page.get_by_label("Reason", exact=True).fill("agreed in the monthly call")
        page.get_by_role("button", name="Resolve").click()
        expect(page.locator(".notice")).to_contain_text("3 breaks resolved.")
        expect(page.get_by_role("table").last).to_contain_text("not ours: fresh-mart confirmed")
        screenshot(page, "resolved")

        page.get_by_label("Note (optional)").fill("all agreed")
        page.get_by_role("button", name="Sign off the period for this partner").click()
        expect(page.locator(".notice").first).to_contain_text("signed off for this partner")
        screenshot(page, "signed-off")
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()

    phone = open_context(browser, gateway, locale="zh-TW", viewport=PHONE)
    try:
        page = phone.new_page()
        sign_in(page, staff)
        for label, path, heading in (
            ("zh-TW-phone-periods", "/console/settlement/", "結算期間"),
            ("zh-TW-phone-netting", f"/console/settlement/{month}", f"{month} 期間"),
            ("zh-TW-phone-statement", f"/console/settlement/{month}/statements/fresh-mart", "對帳單"),
            ("zh-TW-phone-reconciliation", f"/console/settlement/{month}/reconciliations/fresh-mart", "對帳"),
        ):
            page.goto(path)
            expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
            if label.endswith("statement"):
                expect(page.locator("#signature-result")).to_contain_text("簽章有效", timeout=10_000)
            no_sideways_scroll(page, label)
            if label.endswith("reconciliation"):
                for term, amount in FRESH_MART_TOTALS["zh-TW"].items():
                    expect(fact(page, term)).to_have_text(amount)
                    box = fact(page, term).bounding_box()
                    assert box is not None and box["x"] + box["width"] <= PHONE["width"], f"{term} in sight"
            screenshot(page, label)
        expect(page.locator(".notice").first).to_contain_text("簽核")
        assert page.evaluate("window.__cspViolations") == []
    finally:
        phone.close()
