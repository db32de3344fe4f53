"""A label's colon and what follows it: English puts a space after its colon, Chinese writes a
full-width colon whose own width is the space, and a space after it shows as a gap
("剩餘時間： 1:00"). Every template writes such a label through ``lead_in``."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest

from exchange.web.i18n import ENGLISH, TRADITIONAL_CHINESE, Language
from exchange.web.said import PARTNER_SAID, Said
from exchange.web.static import StaticAssets
from exchange.web.templating import TEMPLATES_DIR, Pages

#: A label that ends in a colon (a message, or a ``{% trans %}`` block), then white space, then
#: more of the line: the space a Chinese full-width colon must not be given.
SPACED_LABEL = re.compile(r"""(?:_\("[^"]*:"\)\s*\}\}|_\('[^']*:'\)\s*\}\}|:\{%-? endtrans -?%\})[ \t]+\S""")

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


def test_no_template_writes_a_space_after_a_labels_colon_of_its_own() -> None:
    spaced = [
        f"{path.relative_to(TEMPLATES_DIR)}:{text[: found.start()].count(chr(10)) + 1}"
        for path in sorted(TEMPLATES_DIR.rglob("*.html"))
        for text in [path.read_text()]
        for found in SPACED_LABEL.finditer(text)
    ]
    assert spaced == [], "write the label through |lead_in, with nothing between it and what follows"
