"""A label's colon, or a sentence's full stop, and what follows it: English puts a space after
them, Chinese writes a full-width colon or stop whose own width is the space, and a space after
it shows as a gap ("剩餘時間： 1:00", "…更高等級。 您在…"). Every template writes such a lead-in
through ``lead_in``."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest

from exchange.web.i18n import ENGLISH, TRADITIONAL_CHINESE, Language
from exchange.web.said import PARTNER_SAID, Said
from exchange.web.static import StaticAssets
from exchange.web.templating import TEMPLATES_DIR, Pages, lead_in

#: A message (or a ``{% trans %}`` block) that ends in a colon or a sentence's stop, then white
#: space (a line break too), then more of the same line of text: not a block's tag, nor the end
#: of one, nor a statement. That space is one a Chinese full-width colon or stop must not get.
SPACED_LEAD_IN = re.compile(
    r"""(?:_\("[^"]*[.:!?]"\)\s*\}\}|_\('[^']*[.:!?]'\)\s*\}\}|[.:!?]\{%-? endtrans -?%\})\s+"""
    r"""(?!</|<(?:p|div|ul|ol|li|dl|dt|dd|h\d|table|tr|td|th|form|fieldset|legend|label|section|details|summary"""
    r"""|blockquote|nav|header|footer|main|select|option|input|button)\b|\{%-? *(?:end|else|elif)|\{#)\S"""
)


SAIDS = [
    Said("x", PARTNER_SAID, {"program": "FreshMart Rewards", "detail": "no such member"}),
    Said("x", "REJECTED", {"reason": "卡片掛失"}),
    Said("Something the exchange wrote in English."),
]


def said(s: Said, language: Language) -> str:
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    return str(pages.env.get_template("_said.html").make_module({"language": language}).said(s)).strip()


@pytest.mark.parametrize("s", SAIDS, ids=["partner-said", "rejected", "english-detail"])
def test_a_chinese_label_runs_into_what_it_introduces_and_an_english_one_has_its_space(s: Said) -> None:
    chinese, english = said(s, TRADITIONAL_CHINESE), said(s, ENGLISH)
    assert "：<" in chinese and "： " not in chinese, chinese
    if s.key is not None:  # in English the exchange's own words are said without a label
        assert ": <" in english, english


def test_no_template_writes_a_space_after_a_lead_ins_colon_or_stop_of_its_own() -> None:
    spaced = [
        f"{path.relative_to(TEMPLATES_DIR)}:{text[: found.start()].count(chr(10)) + 1}"
        for path in sorted(TEMPLATES_DIR.rglob("*.html"))
        for text in [path.read_text()]
        for found in SPACED_LEAD_IN.finditer(text)
    ]
    assert spaced == [], (
        "write the lead-in through |lead_in (or {% filter lead_in %}), nothing between it and what follows"
    )


@pytest.mark.parametrize(
    ("lead", "said"),
    [
        ("Time left:", "Time left: "),
        ("A match would not give you a higher tier there now.", "A match would not give you a higher tier there now. "),
        ("剩餘時間：", "剩餘時間："),
        ("目前比對無法讓您在該計畫獲得更高等級。", "目前比對無法讓您在該計畫獲得更高等級。"),
    ],
)
def test_a_lead_in_is_spaced_from_what_follows_only_after_an_english_stop_or_colon(lead: str, said: str) -> None:
    assert lead_in(lead) == said
