"""A count in a message the exchange writes (a refusal, a risk reason, a partner's answer) reads
right for one and for many, in English and, where a page reads it back, in zh_TW: never
"1 points", "1 seconds" or "1 fields"."""

from __future__ import annotations

import io
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from exchange.coalition.errors import CoalitionRefusal, exceeds, insufficient
from exchange.errors import ExchangeError
from exchange.federation.link_attempts import TooManyLinkAttempts
from exchange.members.authority import AuthorityRequired, Refusal
from exchange.money import Currency
from exchange.pricing import limits
from exchange.pricing.errors import LimitExceeded
from exchange.programs.models import Program
from exchange.risk import reasons
from exchange.risk.policy import Per, Velocity, duration
from exchange.settlement.errors import MalformedRecords
from exchange.settlement.records import RecordReader
from exchange.text import counted, fill
from exchange.web.field_rules import FieldProblem
from exchange.web.i18n import ENGLISH, TRADITIONAL_CHINESE, Language
from exchange.web.said import Said
from exchange.web.static import StaticAssets
from exchange.web.templating import Pages

PROGRAMS = {"fresh-mart": Program(id="fresh-mart", name="FreshMart Rewards")}


def said(text: str, language: Language) -> str:
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    module = pages.env.get_template("_said.html").make_module({"language": language})
    return " ".join(str(module.said(Said.of(text, PROGRAMS))).split())


def test_counted_names_nouns_joined_by_or_in_the_plural_each() -> None:
    assert counted(1, "conversion or redemption") == "1 conversion or redemption"
    assert counted(2, "conversion or redemption") == "2 conversions or redemptions"
    assert counted(1_500, "point", grouped=True) == "1,500 points"


def test_a_templates_count_takes_its_noun_in_the_singular_only_for_one() -> None:
    assert fill("at least {points:point} of {program}", points=1, program="x") == "at least 1 point of x"
    assert fill("at least {points:point} of {program}", points=3_000, program="x") == "at least 3,000 points of x"
    assert fill("at least {points:point}", points="3,000") == "at least 3,000 points"  # as read back
    with pytest.raises(TypeError):
        fill("at least {points:point}", points=None)


@pytest.mark.parametrize(
    ("minimum", "english", "chinese"),
    [
        (1, "At least 1 point must be converted.", "至少須轉換 1 點。"),
        (3_000, "At least 3,000 points must be converted.", "至少須轉換 3,000 點。"),
    ],
)
def test_a_minimum_refused_reads_right_for_one_and_many(minimum: int, english: str, chinese: str) -> None:
    with pytest.raises(LimitExceeded) as refused:
        limits.AmountRule(minimum, 1).check(0)
    assert refused.value.message == english[0].lower() + english[1:-1]
    assert said(refused.value.message, ENGLISH) == english
    assert said(refused.value.message, TRADITIONAL_CHINESE) == chinese


@pytest.mark.parametrize(
    ("limit", "english", "chinese"),
    [
        (1, "above 1 point: waits for staff review", "超過 1 點：等候人員審核"),
        (2_000, "above 2,000 points: waits for staff review", "超過 2,000 點：等候人員審核"),
    ],
)
def test_a_hold_reads_right_for_one_and_many(limit: int, english: str, chinese: str) -> None:
    written = reasons.HELD_ABOVE.text(limit=limit)
    assert written == english
    assert said(written, ENGLISH) == english
    assert said(written, TRADITIONAL_CHINESE) == chinese


@pytest.mark.parametrize(
    ("count", "points", "window", "made", "over_points", "english", "chinese"),
    [
        (
            1,
            None,
            timedelta(seconds=1),
            2,
            False,
            "fresh-mart allows at most 1 conversion or redemption per member in 1 second; "
            "this would make 2 conversions or redemptions",
            "FreshMart Rewards 規定每會員在 1 秒 內最多 1 筆轉換或兌換；此筆將達 2 筆轉換或兌換",
        ),
        (
            None,
            1,
            timedelta(minutes=1),
            1_500,
            True,
            "fresh-mart allows at most 1 point per member in 1 minute; this would make 1,500 points",
            "FreshMart Rewards 規定每會員在 1 分鐘 內最多 1 點；此筆將達 1,500 點",
        ),
        (
            2,
            1,
            timedelta(seconds=90),
            3,
            False,
            "fresh-mart allows at most 2 conversions or redemptions or 1 point per member in 90 seconds; "
            "this would make 3 conversions or redemptions",
            "FreshMart Rewards 規定每會員在 90 秒 內最多 2 筆轉換或兌換或 1 點；此筆將達 3 筆轉換或兌換",
        ),
    ],
)
def test_a_velocity_refusal_reads_right_for_one_and_many(
    count: int | None,
    points: int | None,
    window: timedelta,
    made: int,
    over_points: bool,
    english: str,
    chinese: str,
) -> None:
    rule = Velocity(per=Per.MEMBER, window=window, max_count=count, max_points=points)
    written = reasons.velocity("fresh-mart", rule, made=made, over_points=over_points)
    assert written == english
    assert said(written, ENGLISH) == english.replace("fresh-mart", "FreshMart Rewards")
    assert said(written, TRADITIONAL_CHINESE) == chinese


@pytest.mark.parametrize(("span", "written"), [(timedelta(seconds=1), "1 second"), (timedelta(days=2), "2 days")])
def test_a_window_is_written_with_its_unit_counted(span: timedelta, written: str) -> None:
    assert duration(span) == written


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (insufficient("alice", 1, 5), "member alice has 1 coalition point, 5 asked"),
        (insufficient("alice", 2, 5), "member alice has 2 coalition points, 5 asked"),
        (exceeds("op-1", 1), "1 point of op-1 is left to reverse"),
        (exceeds("op-1", 0), "0 points of op-1 are left to reverse"),
    ],
)
def test_the_coalition_points_refusals_count_right(error: CoalitionRefusal, message: str) -> None:
    assert error.detail == message


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (TooManyLinkAttempts(1), "too many verifications failed lately: try again in 1 second"),
        (TooManyLinkAttempts(30), "too many verifications failed lately: try again in 30 seconds"),
        (
            AuthorityRequired("fresh-mart", Refusal.CONSENT_OTHER_POINTS, field="f", points=5, consented=1),
            "this consent is for 1 point of fresh-mart, not 5",
        ),
    ],
)
def test_api_refusals_count_right(error: ExchangeError, message: str) -> None:
    assert error.message == message


@pytest.mark.parametrize(
    ("line", "english", "chinese"),
    [
        ("r2", "1 field, but the header names 2", "此行有 1 個欄位，但標題列列出 2 個"),
        ("r2,1,x", "3 fields, but the header names 2", "此行有 3 個欄位，但標題列列出 2 個"),
    ],
)
def test_a_records_line_with_too_few_or_many_fields_reads_right(line: str, english: str, chinese: str) -> None:
    with pytest.raises(MalformedRecords) as refused:
        reader = RecordReader(
            io.BytesIO(f"reference,amount\n{line}\n".encode()), Currency("TWD", 2), partner="p", period="2026-11"
        )
        for batch in reader.batches():
            batch.rows(reader.format)
    assert english in refused.value.message
    problem = FieldProblem.of(refused.value)
    assert problem.rule == "RECORDS_FIELDS"
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    for language, text in ((ENGLISH, f"the line has {english}"), (TRADITIONAL_CHINESE, chinese)):
        module = pages.env.get_template("_field_problem.html").make_module({"language": language})
        assert text in " ".join(str(module.records_reason(problem.rule, problem.values)).split())
