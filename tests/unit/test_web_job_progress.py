"""What a closing job's page says once it has stopped: a job that failed while issuing the
statements failed after the period closed, and says so."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from exchange.services.settlement import ISSUING_STATEMENTS
from exchange.settlement.models import JobState, SettlementJob
from exchange.web.i18n import ENGLISH, TRADITIONAL_CHINESE, Language
from exchange.web.settlement import job_context
from exchange.web.static import StaticAssets
from exchange.web.templating import Pages

ERROR = "an unexpected error: see the gateway log"


def progress(step: str, language: Language = ENGLISH) -> str:
    job = SettlementJob(
        id="j1",
        kind="close-period",
        subject="2026-11",
        state=JobState.FAILED.value,
        progress=95,
        step=step,
        requested_by="alice",
        requested_at=datetime(2026, 12, 1, tzinfo=UTC),
        error=ERROR,
    )
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    template = pages.env.get_template("console/settlement/job_progress.html")
    return template.render(**job_context(job), language=language)


def test_a_job_that_failed_while_issuing_says_the_period_is_closed_and_what_to_do() -> None:
    page = progress(ISSUING_STATEMENTS)
    assert "Closing failed" not in page
    assert "Period 2026-11 is closed, but not every statement was issued" in page
    assert ERROR in page and 'href="/console/settlement/2026-11"' in page
    assert "2026-11 期間已結算，但尚有對帳單未簽發。" in progress(ISSUING_STATEMENTS, TRADITIONAL_CHINESE)


@pytest.mark.parametrize("step", ["closing", "netting"])
def test_a_job_that_failed_before_the_period_closed_says_closing_failed(step: str) -> None:
    page = progress(step)
    assert "Closing failed" in page and ERROR in page and "is closed" not in page
