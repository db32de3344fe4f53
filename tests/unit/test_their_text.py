"""Text a partner or a member controls, on a page: isolated from the page's own text, so that a
bidirectional override in it (U+202E) cannot reorder what the page says around it."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

import pytest

from exchange.web.formatting import balanced_bidi
from exchange.web.i18n import ENGLISH
from exchange.web.static import StaticAssets
from exchange.web.templating import TEMPLATES_DIR, Pages

RLO, PDF, LRI, PDI = "\u202e", "\u202c", "\u2066", "\u2069"


def render(source: str, **values: object) -> str:
    pages = Pages(StaticAssets(), ZoneInfo("Asia/Taipei"))
    return pages.env.from_string(source).render(language=ENGLISH, **values)


@pytest.mark.parametrize(
    ("text", "balanced"),
    [
        pytest.param("Gold", "Gold", id="plain"),
        pytest.param(f"{RLO}dloG", f"{RLO}dloG{PDF}", id="an override left open is closed"),
        pytest.param(f"{LRI}{RLO}x", f"{LRI}{RLO}x{PDF}{PDI}", id="nested, closed innermost first"),
        pytest.param(f"x{PDI}{RLO}y", f"x{RLO}y{PDF}", id="a stray PDI that would end the isolation is dropped"),
        pytest.param(f"x{PDF}y", "xy", id="a stray PDF is dropped"),
        pytest.param(f"{LRI}{RLO}x{PDI}y", f"{LRI}{RLO}x{PDI}y", id="a PDI closes its isolate's embeddings"),
    ],
)
def test_their_bidirectional_controls_are_balanced(text: str, balanced: str) -> None:
    assert balanced_bidi(text) == balanced


def test_their_text_is_isolated_escaped_and_closed() -> None:
    """In an element, a ``<bdi>``; where no element can be (a title), between FSI and PDI."""
    text = f"<b>{PDI}{RLO}exe.gnp"
    assert render("Tier: {{ t|theirs }}.", t=text) == f"Tier: <bdi>&lt;b&gt;{RLO}exe.gnp{PDF}</bdi>."
    assert render("{{ t|theirs(element=false) }}", t=text) == f"\u2068&lt;b&gt;{RLO}exe.gnp{PDF}{PDI}"
    assert render("[{{ t|theirs }}]", t=None) == "[]"


#: What a partner or a member chooses and the pages show: a reward's title and description, a
#: tier's name as a partner answered it, a member's or a partner's reference, a person's reason
#: or note. Each is shown through ``|theirs`` (a form's value attribute holds it as typed).
THEIRS = re.compile(
    r"(?<!=\")\{\{[^}]*(\.title|\.description|\breference|_ref|\.reason|sign_off_note|account\.tier|source_tier"
    r"|assessment\.(source|current)\.name|reward_id|titles\.get)\b[^}]*\}\}"
)


#: A ``{% trans %}`` block's header, whose bindings name its placeholders.
TRANS_HEADER = re.compile(r"\{%-?\s*trans\b(?P<bindings>[^%]*)%\}")


def bound_through_theirs(template: str, shown: re.Match[str]) -> bool:
    """``shown`` is a placeholder (``{{ name }}``) of a ``{% trans %}`` block whose header binds
    ``name`` through ``|theirs``."""
    header = next(reversed(list(TRANS_HEADER.finditer(template, 0, shown.start()))), None)
    if header is None or "endtrans" in template[header.end() : shown.start()]:
        return False
    name = shown.group(0).strip("{} ")
    bindings = dict(re.findall(r"(\w+)=([^,]+)", header.group("bindings")))
    return "|theirs" in bindings.get(name, "")


def test_every_text_a_partner_or_member_controls_is_shown_through_theirs() -> None:
    unguarded = [
        f"{path.relative_to(TEMPLATES_DIR)}: {shown.group(0)}"
        for path, template in ((path, path.read_text()) for path in TEMPLATES_DIR.rglob("*.html"))
        for shown in THEIRS.finditer(template)
        if "theirs" not in shown.group(0)
        and not bound_through_theirs(template, shown)
        and not shown.group(0).startswith(("{{ _(", "{{ ngettext("))  # the exchange's own words
        and "|urlencode" not in shown.group(0)  # in an address, not shown
        and "said(" not in shown.group(0)  # said: a reason read back into the exchange's words
        and "their_words(" not in shown.group(0)  # quoted through |theirs
        and "field_labels" not in shown.group(0)
    ]
    assert unguarded == []
