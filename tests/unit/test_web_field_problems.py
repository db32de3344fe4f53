"""A form field's error, read back into the rule the exchange wrote it from, so that a page
says it with the form's label in its reader's language (exchange.web.field_rules)."""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from markupsafe import Markup
from starlette.datastructures import FormData

from exchange.auth.assertions import MAX_ASSERTION_KEYS, TooManyAssertionKeys
from exchange.errors import BadUserInput, ExchangeError
from exchange.ledger.periods import SettlementCalendar
from exchange.money import Currency
from exchange.pricing.promotions import PromotionTerms
from exchange.pricing.rates import RateTerms
from exchange.settlement.errors import (
    BreakNotFound,
    ExchangeNotReconciled,
    JobNotFound,
    MalformedRecords,
    NoSuchParticipant,
    NotReconciled,
    PartnerSignedOff,
    ResolutionConflict,
    ResolvedBreaksWouldBeLost,
    UnresolvedBreaks,
)
from exchange.settlement.records import (
    BLOCK_BYTES,
    MAX_LINE_BYTES,
    RecordReader,
    total_out_of_range,
    totals_row,
    trailer_row,
)
from exchange.settlement.statements import CSV_COLUMNS
from exchange.text import CHOSEN_ID_LENGTH
from exchange.web import settlement as settlement_pages
from exchange.web.access import BadRequest
from exchange.web.field_rules import RULES, FieldProblem
from exchange.web.i18n import ENGLISH, TRADITIONAL_CHINESE
from exchange.web.partner.forms import FormValues
from exchange.web.static import StaticAssets
from exchange.web.templating import Pages, set_apart


def chosen_id_refused(value: str) -> None:
    """A promotion whose id is ``value``, checked."""
    now = datetime(2027, 1, 1, tzinfo=UTC)
    PromotionTerms(value, "fresh-mart", Decimal(10), now, now + timedelta(days=1)).check()


def raising(error: ExchangeError) -> None:
    raise error


def problem_of(check: Callable[[], object]) -> FieldProblem:
    with pytest.raises(ExchangeError) as refused:
        check()
    return FieldProblem.of(refused.value)


@pytest.mark.parametrize(
    ("check", "rule", "values"),
    [
        (lambda: FormValues({"stock": "x"}).integer("stock"), "WHOLE_NUMBER", {"least": -(2**31), "most": 2**31 - 1}),
        (lambda: FormValues({}).required("title"), "REQUIRED", {}),
        (lambda: FormValues({"price": "5e1"}).decimal("price"), "DECIMAL", None),
        (lambda: FormValues({"a": "0001-01-01T00:00"}).moment("a", ZoneInfo("UTC")), "YEARS", None),
        (lambda: RateTerms(ratio="3:1", bonus_every=10, bonus_points=0).override(), "POSITIVE", {"got": "0"}),
        (lambda: RateTerms(ratio="three").override(), "RATIO", None),
        (lambda: RateTerms(ratio="0:1").override(), "RATIO_SIDES", None),
        (lambda: RateTerms(ratio="3:1", bonus_every=10).override(), "BONUS_PAIR", None),
        (lambda: chosen_id_refused("a b"), "CHOSEN_ID", {"least": 1, "most": CHOSEN_ID_LENGTH}),
        (lambda: chosen_id_refused("r" * 65), "CHOSEN_ID", {"least": 1, "most": CHOSEN_ID_LENGTH}),
        (lambda: raising(TooManyAssertionKeys()), "KEY_LIMIT", {"most": MAX_ASSERTION_KEYS}),
    ],
)
def test_a_services_error_on_a_field_is_read_back_into_its_rule(
    check: Callable[[], object], rule: str, values: dict[str, object] | None
) -> None:
    problem = problem_of(check)
    assert problem.rule == rule, problem.text
    if values is not None:
        assert {name: problem.values[name] for name in values} == values


def test_a_money_amount_finer_than_the_currency_is_read_as_its_rule() -> None:
    with pytest.raises(ValueError) as refused:
        Currency("TWD", 0).to_minor(Decimal("1.5"))
    assert FieldProblem.of(BadUserInput(str(refused.value), field="price")).rule == "MINOR_UNIT"


def test_a_text_no_rule_wrote_keeps_its_field_and_words() -> None:
    problem = FieldProblem.of(BadUserInput("member tokens cannot hold partner:write", field="memberScopes"))
    assert (problem.field, problem.rule, problem.text) == (
        "memberScopes",
        None,
        "member tokens cannot hold partner:write",
    )


def test_a_rule_naming_another_field_is_not_read_as_this_ones() -> None:
    assert FieldProblem.of(BadUserInput("units is required", field="stock")).rule is None


#: Files a partner uploads that are refused, one for each reason the records reader gives.
REFUSED_FILES = [
    b"",
    b"\nreference,amount\nr,1\n",
    b"ref,amount\n",
    b"reference,amount,Amount\nr,1,2\n",
    (",".join(CSV_COLUMNS) + "\n").encode(),
    b"reference\tamount\nr\t1\n",
    "reference,amount\nr,1\n".encode("utf-16"),
    b"reference;amount\nr;1234,50\n",
    b"reference,amount\rr,1\r",
    b"reference,amount\nr,1\nreference,amount\n",
    b"amount,reference\n1,r\nreference,amount\n",
    b"reference,amount\nr,1\n\nr2,2\n",
    b"reference,amount\nr,1,2\n",
    b"reference,amount\nr,1,\n",
    b"sep=;\nreference;amount\nr;1,50\n",
    b"reference,amount,\nr,1\n",
    b"reference,amount\nr,-1234,50\n",
    b"reference,amount\nr,1.234\n",
    b"reference,amount\nr,(3.00)\n",
    b"reference,amount\nr,3.00-\n",
    b"reference,amount\nr,3.00 CR\n",
    b"reference,amount\nr,+3.00\n",
    "reference,amount\nr,\u22123.00\n".encode(),
    b"reference,amount\nr,NaN\n",
    b'reference,amount\nr," $-   "\n',
    b"reference,amount\nr,NT$12.50\n",
    b'reference,amount\nr,"1.234,50"\n',
    b"reference,amount\nr,12.5.0\n",
    b"reference,amount,currency\nr,1,USD\n",
    b"reference,amount,partner\nr,1,wallet-pay\n",
    b"reference,amount,period\nr,1,Nov-26\n",
    b"reference,amount\n,5\n",
    b"reference,amount\nconversion:a ,5\n",
    "reference,amount\nconversion:\u200ba,5\n".encode(),
    b'reference,amount\nab"c,5\n',
    b'reference,amount\n"ab"c,5\n',
    b'reference,amount\n"conversion:a\r\nb",5\n',
    b"reference,amount\nr\t1,5\n",
    b"reference,amount,counterparty\nr,5,Wallet Pay\n",
    b"reference,amount,date\nr,5,2026-02-30\n",
    b"reference,amount,date\nr,5,30/11/2026\n",
    b"reference,amount\nr\xff,2\n",
    b"reference,amount\nr,1\n" + b"x" * (MAX_LINE_BYTES + BLOCK_BYTES) + b",1\n",
    b'reference,note,amount\nr,"x\n' + b"y\n" * MAX_LINE_BYTES + b"z,1\n",
    b'reference,note,amount\nr,"open,1\n',
    b'reference,note,amount\nr,say "hi",1\n',
    b'reference,amount\nr,"12,50"\n',
    b"reference,amount\nr,1,234.50\n",
    b'reference,amount\nr,"1,234.50"\n',
]


@pytest.mark.parametrize("data", REFUSED_FILES, ids=range(len(REFUSED_FILES)))
def test_why_a_records_file_is_refused_is_said_in_the_readers_language(data: bytes) -> None:
    """The settlement console's upload said the reader's English reason on a Chinese page."""
    with pytest.raises(MalformedRecords) as refused:
        for _ in RecordReader(io.BytesIO(data), Currency("TWD", 2), partner="fresh-mart", period="2026-11").batches():
            pass
    problem = FieldProblem.of(refused.value)
    assert problem.rule is not None and problem.rule.startswith("RECORDS_"), problem.text
    assert problem.values["line"] == refused.value.line
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    labels = pages.env.get_template("console/settlement/_labels.html")
    said = str(labels.make_module({"language": TRADITIONAL_CHINESE}).refusal(problem)).strip()
    assert said.startswith(f"第 {refused.value.line:,} 行：") and said.endswith("未匯入任何內容。"), said
    assert refused.value.reason not in said
    assert not re.search(r"\b(the|is|line|must|field|header|write)\b", said), said  # column names stay


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (NoSuchParticipant("nobody", "2026-11"), "'nobody' 未參與 2026-11 期間的結算"),
        (
            NoSuchParticipant("fresh-mart", "2026-11", took_part=[]),
            "'fresh-mart' 未參與 2026-11 期間的結算；至今也未參與任何已結算的期間",
        ),
        (
            NoSuchParticipant("fresh-mart", "2026-08", took_part=["2026-10", "2026-09"]),
            "'fresh-mart' 未參與 2026-08 期間的結算；它參與結算的期間（由近至遠）：2026-10, 2026-09",
        ),
        (JobNotFound("job-1"), "沒有這個 ID 的結算工作"),
        (NotReconciled("fresh-mart", "2026-11"), "此夥伴在 2026-11 期間尚未匯入任何紀錄：請先匯入並對帳，再簽核"),
        (UnresolvedBreaks("fresh-mart", "2026-11", 2), "尚有 2 筆差異未處理：請先在本頁的差異清單中處理"),
        (BreakNotFound(7), "沒有 ID 為 7 的差異"),
        (ExchangeNotReconciled(), "交換平台沒有自己的對帳：它的各行是夥伴對帳單的另一方，已由夥伴各自的對帳比對"),
        (ResolutionConflict(7), "差異 7 已用其他方式處理：請將它從選取中移除（差異清單列出每筆的處理方式）"),
        (
            PartnerSignedOff("fresh-mart", "2026-11"),
            "此夥伴的 2026-11 期間已簽核：其紀錄已定案；之後發現的差異請在下一個未結算期間對帳",
        ),
        (
            MalformedRecords(6, totals_row("合計", "-70.03", lines=None, partner="fresh-mart", period="2026-11")),
            "第 6 行：reference 欄的 '合計' 看來是合計列：其金額 -70.03 正是上方所有紀錄的總和，"
            "而帳本在 2026-11 期間沒有 fresh-mart 的這個參考編號；請刪除這一列：檔案只放紀錄。未匯入任何內容。",
        ),
        (
            MalformedRecords(
                1_005,
                totals_row("小計", "36.97", lines=(1_002, 1_004), partner="fresh-mart", period="2026-11", more=2),
            ),
            "第 1,005 行：reference 欄的 '小計' 看來是小計列：其金額 36.97 正是第 1,002 至 1,004 行紀錄的總和，"
            "而帳本在 2026-11 期間沒有 fresh-mart 的這個參考編號；請刪除這一列：檔案只放紀錄（其下還有 2 列也是這樣的列）。未匯入任何內容。",
        ),
        (
            MalformedRecords(1_206, trailer_row("Rows", 1_204, partner="fresh-mart", period="2026-11")),
            "第 1,206 行：reference 欄的 'Rows' 看來是筆數列：其金額 1,204 正是上方紀錄的筆數，"
            "而帳本在 2026-11 期間沒有 fresh-mart 的這個參考編號；請刪除這一列：檔案只放紀錄。未匯入任何內容。",
        ),
        (
            MalformedRecords(9, total_out_of_range("1999999999999999.98")),
            "第 9 行：amount 欄：到這一行為止的金額總和 1999999999999999.98 超過 15 位整數，任何金額或總和都不能這麼大；"
            "請檢查上方的金額。未匯入任何內容。",
        ),
        (
            ResolvedBreaksWouldBeLost("fresh-mart", "2026-11", field="csv"),
            "此夥伴的對帳已有差異處理完畢：匯入新檔案會重新開啟這些差異。請改為處理目前檔案中尚未處理的差異",
        ),
        (
            # The point's records are written from the book: no file is sent, none is named.
            ResolvedBreaksWouldBeLost("coalition", "2026-11", field=None),
            "聯盟點數的對帳已有差異處理完畢：再次依帳簿對帳會重新開啟這些差異。請改為處理目前對帳中尚未處理的差異",
        ),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, ExchangeError) else "",
)
def test_a_settlement_refusal_is_said_in_the_readers_language(error: ExchangeError, said: str) -> None:
    """The settlement console said these as the exchange's English after a Chinese label."""
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    labels = pages.env.get_template("console/settlement/_labels.html")
    shown = labels.make_module({"language": TRADITIONAL_CHINESE}).refusal(FieldProblem.of(error))
    assert html.unescape(re.sub("</?bdi>", "", str(shown))).strip() == said  # isolation: tested on its own


def test_no_rule_makes_a_possessive_of_a_name_it_is_given() -> None:
    """The services' English these rules read back names partners and breaks: "coalition's period",
    "EXCHANGE's" or "Formosa Air Miles's" read wrong, and no possessive of a name reads well for
    every name, so none is made ("the period 2026-11 of fresh-mart")."""
    assert [rule.template for rule in RULES if re.search(r"\}['’]s\b", rule.template)] == []
    assert PartnerSignedOff("coalition", "2026-11").message.startswith("the period 2026-11 of coalition is signed off")


#: Bidirectional controls: marks, embeddings, overrides, isolates (Unicode's Bidi_Control).
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

HOSTILE_FILES = [
    "reference,amount\nr,+1\u202e2\n",
    "reference,amount\nr,\u22121\u202e2\n",
    "reference,amount\nr,\u202e12\n",
    "reference,amount\nr\u202eeversed,12\n",
    "reference,amount,date\nr,12,\u05d0\u202e 2026\n",
    "reference,amount,counterparty\nr,12,\u2067x\n",
    "reference,amount,period\nr,12,\u05d9\u05d5\u05dd-11\n",
    "reference\u202e,amount\nr,12\n",
]


@pytest.mark.parametrize("data", HOSTILE_FILES, ids=range(len(HOSTILE_FILES)))
def test_what_a_records_refusal_quotes_from_the_file_cannot_reorder_the_reason(data: str) -> None:
    """A value with a right-to-left override (U+202E) reordered the reason a settlement clerk
    read, wherever it went: the API's message escapes every direction control, and the page
    isolates what it quotes from the file (``<bdi>``), for text in a right-to-left script too."""
    with pytest.raises(MalformedRecords) as refused:
        for _ in RecordReader(
            io.BytesIO(data.encode()), Currency("TWD", 2), partner="fresh-mart", period="2026-11"
        ).batches():
            pass
    assert not BIDI_CONTROLS.search(refused.value.reason), refused.value.reason
    problem = FieldProblem.of(refused.value)
    assert problem.rule is not None and problem.rule.startswith("RECORDS_"), problem.text
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    labels = pages.env.get_template("console/settlement/_labels.html")
    for language in (TRADITIONAL_CHINESE, ENGLISH):
        shown = str(labels.make_module({"language": language}).refusal(problem))
        assert not BIDI_CONTROLS.search(re.sub("<bdi>.*?</bdi>", "", shown)), shown
        quoted = [value for name, value in problem.values.items() if name in ("got", "instead")]
        for value in quoted:
            assert f"<bdi>{html.escape(str(value), quote=False)}</bdi>" in shown.replace("&#39;", "'"), shown


def test_a_participant_without_a_position_names_at_most_six_periods_it_took_part_in() -> None:
    took_part = [f"2026-{month:02}" for month in range(12, 5, -1)]  # seven: the query asks one more than named
    assert str(NoSuchParticipant("fresh-mart", "2026-01", took_part=took_part)) == (
        "'fresh-mart' took no part in settling period 2026-01; the periods it took part in, latest first:"
        " 2026-12, 2026-11, 2026-10, 2026-09, 2026-08, 2026-07, …"
    )
    assert str(NoSuchParticipant("fresh-mart", "2026-01", took_part=took_part[:6])).endswith("2026-08, 2026-07")


@pytest.mark.parametrize(("unresolved", "words"), [(1, "1 unresolved break:"), (2, "2 unresolved breaks:")])
def test_unresolved_breaks_are_counted_in_words_and_read_back_with_their_number(unresolved: int, words: str) -> None:
    error = UnresolvedBreaks("fresh-mart", "2026-11", unresolved)
    problem = FieldProblem.of(error)
    assert (words in str(error), problem.rule, problem.values["least"]) == (True, "UNRESOLVED_BREAKS", unresolved)
    assert (problem.values["partner"], problem.values["period"]) == ("fresh-mart", "2026-11")


def test_unresolved_breaks_say_how_to_resolve_them_on_the_console_graphql_and_the_cli() -> None:
    """One message serves all three: "resolve every break first" named no way to do it."""
    said = str(UnresolvedBreaks("fresh-mart", "2026-11", 2))
    assert said == (
        "the period 2026-11 of fresh-mart has 2 unresolved breaks: resolve every break of its reconciliation first "
        "(on the settlement console's reconciliation page, with resolveBreaks, or with exchange settle resolve; "
        "exchange settle breaks --partner fresh-mart --unresolved 2026-11 lists them)"
    )
    # A name said twice is read back only when both say the same.
    other = said.replace("--partner fresh-mart", "--partner happy-card")
    assert FieldProblem.of(ExchangeError(other)).rule is None


def refused(work: Callable[[], object]) -> ExchangeError:
    """What ``work`` is refused with."""
    with pytest.raises(ExchangeError) as raised:
        work()
    return raised.value


QUARTERS = SettlementCalendar(ZoneInfo("Asia/Taipei"), months=3)


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (refused(lambda: QUARTERS.parse("1969-12")), "期間必須在 1970 至 8999 年之間"),
        (
            refused(lambda: QUARTERS.parse("2026-02")),
            "期間必須是期間的起始月份：每個期間為 3 個月，起始於 01, 04, 07, 10 月",
        ),
        (
            refused(lambda: settlement_pages._selection(FormData([("scope", "selected"), ("break", "x")]))),
            "差異以其編號選取，與清單中的勾選框相同",
        ),
        (
            refused(lambda: settlement_pages._selection(FormData([("scope", "filter"), ("kind", "NOPE")]))),
            "沒有名為 'NOPE' 的差異類別：請選擇篩選條件中的類別",
        ),
        (
            refused(lambda: settlement_pages._field(FormData([("reason", "a\x00b")]), "reason")),
            "原因含有 NUL 字元：請移除",
        ),
        (
            refused(lambda: settlement_pages._field(FormData([("adjust_against", "x" * 501)]), "adjust_against")),
            "調整的交易對手最多 500 個字元",
        ),
    ],
)
def test_a_refusal_only_a_hand_made_form_reaches_is_said_in_the_readers_language(
    error: ExchangeError, said: str
) -> None:
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    labels = pages.env.get_template("console/settlement/_labels.html")
    shown = labels.make_module({"language": TRADITIONAL_CHINESE}).refusal(FieldProblem.of(error))
    assert html.unescape(re.sub("</?bdi>", "", str(shown))).strip() == said  # isolation: tested on its own


@pytest.mark.parametrize(
    ("labels", "said"),
    [({}, "after 必須是頁面連結所給的數字"), ({"after": "游標"}, "游標必須是頁面連結所給的數字")],
    ids=["api-name", "chinese-label"],
)
def test_a_field_name_with_no_chinese_label_is_set_off_from_the_chinese_around_it(
    labels: dict[str, str], said: str
) -> None:
    """A cursor refused on a Chinese page said "after必須是…": the field's API name, which no
    label translates, ran into the Chinese of the message; a Chinese label stays joined."""
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    module = pages.env.get_template("_field_problem.html").make_module({"language": TRADITIONAL_CHINESE})
    refused = BadRequest("after must be the number a page's link gives, in at most 18 digits", field="after")
    assert str(module.field_problem(FieldProblem.of(refused), labels)).strip() == said


def test_every_value_a_message_is_given_is_set_apart_from_chinese_beside_it_when_it_is_latin() -> None:
    values = {"name": Markup("<bdi>fresh-mart</bdi>"), "count": 3, "label": "期間", "tail": "2026-11"}
    assert (
        set_apart("%(name)s的%(count)s筆，%(label)s為%(tail)s。", values)
        == "%(name)s 的 %(count)s 筆，%(label)s為 %(tail)s。"
    )
    assert set_apart("%(name)s 的（%(tail)s）", values) == "%(name)s 的（%(tail)s）"  # spaced, or full-width beside
    assert set_apart("Period %(tail)s of %(name)s", values) == "Period %(tail)s of %(name)s"
