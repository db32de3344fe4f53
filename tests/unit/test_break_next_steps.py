"""What a break's row tells the partner to do next, in the API's English and on the pages (and
their break report) in either language: once staff let the ledger stand, to bring the partner's
own books in line with the statement; once they adjusted, to list the adjustment in the records
of the period it was posted into."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from markupsafe import Markup

from exchange.settlement.break_kinds import BreakKind, Resolution
from exchange.settlement.break_report import NextStep, next_step
from exchange.settlement.models import BreakResolution
from exchange.web.i18n import ENGLISH, TRADITIONAL_CHINESE, Language
from exchange.web.static import StaticAssets
from exchange.web.templating import Pages


def resolved(resolution: Resolution, break_id: int = 5) -> BreakResolution:
    return BreakResolution(
        break_id=break_id,
        reconciliation_id="r",
        resolution=resolution,
        reason="checked",
        resolved_by="mei",
        resolved_at=datetime(2026, 12, 5, tzinfo=UTC),
        amount=40 if resolution == Resolution.ADJUST else None,
    )


def on_a_page(step: NextStep, language: Language) -> str:
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    module = pages.env.get_template("_next_step.html").make_module({"language": language})
    return str(Markup(module.next_step(step)).unescape().strip())


def test_an_adjusted_break_asks_for_its_adjustment_in_the_next_periods_records() -> None:
    step = next_step(BreakKind.AMOUNT_MISMATCH, resolved(Resolution.ADJUST, break_id=17))
    assert step == NextStep("ADJUSTED", reference="break:17", by="mei")
    assert "break:17" in step.english and "belongs in your records of that period" in step.english
    chinese = on_a_page(step, TRADITIONAL_CHINESE)
    assert "break:17" in chinese and "應列入您該期間的紀錄" in chinese


def test_a_break_whose_ledger_figure_stands_asks_the_partners_books_to_follow_the_statement() -> None:
    """Staff let the ledger stand because the partner's figure was wrong: "nothing to do" left
    the partner's own books wrong."""
    step = next_step(BreakKind.MISSING_IN_PARTNER, resolved(Resolution.ACCEPT_LEDGER))
    assert step.english.startswith("Resolved by settlement staff, the ledger's figure standing: bring your own books")
    assert on_a_page(step, TRADITIONAL_CHINESE).startswith("結算人員已處理，以帳本數字為準：請將您自己的帳目調整")


@pytest.mark.parametrize(
    ("kind", "says", "chinese"),
    [
        (BreakKind.MISSING_IN_LEDGER, "the statement has no item of this reference in this period, so remove", "刪除"),
        (BreakKind.DUPLICATE, "remove the repeated line from your records", "重複的那一行"),
    ],
)
def test_a_line_the_statement_lacks_or_repeats_is_removed_from_the_partners_books_once_the_ledger_stands(
    kind: BreakKind, says: str, chinese: str
) -> None:
    """The statement has no amount of such a line to follow ("bring your own books in line with
    the statement's amount" had the partner look for one)."""
    step = next_step(kind, resolved(Resolution.ACCEPT_LEDGER))
    assert says in step.english and "the statement's amount" not in step.english
    assert chinese in on_a_page(step, TRADITIONAL_CHINESE)
    assert next_step(kind, resolved(Resolution.ACCEPT_LEDGER), book=True).key == "RESOLVED"  # staff's own words


@pytest.mark.parametrize(
    "step",
    [
        NextStep("ADJUSTED", reference="break:3"),
        NextStep("RESOLVED"),
        NextStep("RESOLVED_NOT_IN_LEDGER"),
        NextStep("RESOLVED_DUPLICATE"),
        NextStep("IN_OTHER_PERIODS", ("2026-12",)),
        *(NextStep(kind.value) for kind in BreakKind if kind != BreakKind.MATCHED),
        NextStep("ADJUSTED", reference="break:3", by="console:mei", book=True),
        NextStep("RESOLVED", by="cli:mei", book=True),
        NextStep("IN_OTHER_PERIODS", ("2026-12",), book=True),
        *(NextStep(kind.value, book=True) for kind in BreakKind if kind != BreakKind.MATCHED),
    ],
    ids=lambda step: f"{step.key}{'-book' if step.book else ''}",
)
def test_a_page_in_english_says_each_step_as_the_api_does(step: NextStep) -> None:
    assert on_a_page(step, ENGLISH) == step.english


def test_a_break_of_the_coalition_points_records_says_what_settlement_staff_do() -> None:
    """The exchange wrote those records from its own book of the point: no partner explains a
    break there, so neither the API nor a page asks one to."""
    step = next_step(BreakKind.MISSING_IN_PARTNER, None, book=True)
    assert step.english.startswith("The ledger posted this reference to the point and the book of the point")
    assert "your records" not in step.english
    assert on_a_page(step, TRADITIONAL_CHINESE).startswith("帳本已將這個參考編號登錄於聯盟點數")


def test_a_resolved_break_of_the_coalition_points_records_says_who_resolved_it_and_how() -> None:
    """Settlement staff read these: one of them picking up the month learns whose call each was,
    and which adjustment to look for, not only that nothing is left to do."""
    adjusted = next_step(BreakKind.AMOUNT_MISMATCH, resolved(Resolution.ADJUST, break_id=9), book=True)
    assert adjusted.english == (
        "Resolved by mei with an adjustment, break:9, posted into the next open period, on whose statement of "
        "the point it is: nothing is left to do."
    )
    assert on_a_page(adjusted, TRADITIONAL_CHINESE).startswith("已由 mei 以調整分錄 break:9 處理")
    stood = next_step(BreakKind.MISSING_IN_PARTNER, resolved(Resolution.ACCEPT_LEDGER), book=True)
    assert stood.english == (
        "Resolved by mei, the ledger's figure standing: nothing was posted, and nothing is left to do."
    )
    assert on_a_page(stood, TRADITIONAL_CHINESE).startswith("已由 mei 處理，以帳本數字為準")
