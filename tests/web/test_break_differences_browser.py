"""Each break's difference on both consoles' reconciliation pages, in a real browser: settlement
staff's and the partner's own, in English on a desktop and in Traditional Chinese at a phone's
width, for a file with a cent off, a repeated line, a line the ledger lacks and a reference left
out; the differences add up to the difference the totals show."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from exchange.auth.scopes import Role
from exchange.services.container import open_services
from exchange.settings import Settings
from exchange.testing.databases import PostgresDatabases
from tests.web.conftest import DESKTOP, PHONE, Gateway, console_sign_in, open_context, run_async
from tests.web.settlement_month import settling_gateway
from tests.web.test_settlement_browser import fact, no_sideways_scroll

Screenshot = Callable[[Page, str], Path]

#: fresh-mart's file (its ledger: c1 98.00, c2 -40.00, c4 -25.00, c5 12.00): c1 and c2 agree; c4
#: a cent off; c1 again; x1, which the ledger lacks; c5 left out. 136.01 against a net of 45.00.
RECORDS = (
    b"reference,amount,counterparty\n"
    b"conversion:c1,98.00,wallet-pay\n"
    b"conversion:c4,-24.99,formosa-air\n"
    b"conversion:c1,98.00,wallet-pay\n"
    b"conversion:x1,5.00,formosa-air\n"
    b"conversion:c2,-40.00,wallet-pay\n"
)
#: Each break's reference with its (file's amount, ledger's amount, difference) as shown: a
#: repeated line's difference is its whole amount, and the ledger's amount of its reference is
#: the first line's, said to be compared there (``REPEAT``, by language); a reference left out
#: takes the ledger's amount off.
SHOWN = {
    "conversion:c4": ("-NT$24.99", "-NT$25.00", "NT$0.01"),
    "conversion:c1": ("NT$98.00", "NT$98.00 {repeat}", "NT$98.00"),
    "conversion:x1": ("NT$5.00", "", "NT$5.00"),
    "conversion:c5": ("", "NT$12.00", "-NT$12.00"),
}
TOTAL = "NT$91.01"
REPEAT = {"en": "(compared on the reference's first line)", "zh-TW": "（已於此參考編號的第一行比對）"}


@dataclass(frozen=True)
class Console:
    """A console's reconciliation page of fresh-mart, as its reader signs in and sees it."""

    role: Role
    path: str
    rows: str
    """The break table's rows."""
    words: dict[str, tuple[str, str, str, str]]
    """Per language: the (file's amount, ledger's amount, difference) columns' names, and the
    totals' difference."""


STAFF = Console(
    Role.SETTLEMENT,
    "/console/settlement/{month}/reconciliations/fresh-mart",
    "#resolve table tbody tr",
    {
        "en": ("Partner's amount", "Ledger's amount", "Difference", "Difference, which the breaks account for"),
        "zh-TW": ("夥伴金額", "帳本金額", "差額", "差額（即各筆差異之和）"),
    },
)
PARTNER = Console(
    Role.PARTNER,
    "/console/partner/statements/{month}/reconciliation",
    ".partner-table tbody tr",
    {
        "en": ("Your amount", "Ledger's amount", "Difference", "Difference, which the breaks account for"),
        "zh-TW": ("您的金額", "帳本金額", "差額", "差額（即各筆差異之和）"),
    },
)


async def close_and_import(settings: Settings, month: str) -> None:
    async with open_services(settings) as services:
        await services.settlement.close(month, by="test")
        await services.settlement.import_records("fresh-mart", month, io.BytesIO(RECORDS), by="test")


@pytest.fixture(scope="module")
def reconciled(postgres_databases: PostgresDatabases) -> Iterator[tuple[Gateway, str]]:
    """A gateway of its own with last month closed and fresh-mart's RECORDS imported."""
    for gateway, month in settling_gateway(postgres_databases):
        run_async(partial(close_and_import, gateway.settings, month))
        yield gateway, month


def amount(shown: str) -> Decimal:
    """``-NT$1,234.50`` as -1234.50."""
    return Decimal(shown.replace("NT$", "").replace(",", ""))


def cell(row: Locator, label: str) -> Locator:
    return row.locator(f'td[data-label="{label}"]')


@pytest.mark.parametrize("console", [STAFF, PARTNER], ids=["staff", "partner"])
@pytest.mark.parametrize(
    ("language", "viewport"), [("en", DESKTOP), ("zh-TW", PHONE)], ids=["en-desktop", "zh-TW-phone"]
)
def test_each_break_shows_its_difference_and_the_differences_add_up_to_the_total(
    browser: Browser,
    reconciled: tuple[Gateway, str],
    screenshot: Screenshot,
    console: Console,
    language: str,
    viewport: dict[str, int],
) -> None:
    gateway, month = reconciled
    mine, ledgers, difference, total = console.words[language]
    context = open_context(browser, gateway, locale=language, viewport=viewport)
    try:
        page = context.new_page()
        console_sign_in(page, gateway.person(console.role, None if console.role is Role.SETTLEMENT else "fresh-mart"))
        page.goto(console.path.format(month=month))
        rows = page.locator(console.rows)
        expect(rows).to_have_count(len(SHOWN))
        differences = []
        for reference, (file_amount, ledger_amount, its_difference) in SHOWN.items():
            row = rows.filter(has_text=reference)
            expect(cell(row, mine)).to_have_text(file_amount)
            expect(cell(row, ledgers)).to_have_text(ledger_amount.format(repeat=REPEAT[language]))
            expect(cell(row, difference)).to_have_text(its_difference)
            differences.append(amount(cell(row, difference).inner_text()))
        expect(fact(page, total)).to_have_text(TOTAL)
        assert sum(differences) == amount(fact(page, total).inner_text()), "the breaks account for the difference"

        shown = cell(rows.first, difference)
        if viewport is DESKTOP:
            # A column of figures like the amounts beside it: named in the table's head, right-aligned.
            expect(page.locator("thead th.number").filter(has_text=difference)).to_have_count(1)
            assert shown.evaluate("e => getComputedStyle(e).textAlign") == "right"
        else:
            # The row stacks: the cell says its column's name before the figure, all in sight.
            assert shown.evaluate("e => getComputedStyle(e, '::before').content") == f'"{difference}"'
            for row in rows.all():
                box = cell(row, difference).bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
        # Every column in sight at either width: at the desktop's, the staff's ten are too many
        # for the page's column of text, and the table takes the window's width instead.
        screenshot(page, "breaks")
        no_sideways_scroll(page, console.path)
        assert page.evaluate("window.__cspViolations") == []
    finally:
        context.close()
