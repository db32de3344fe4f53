"""Rendering the pages: one Jinja2 environment, translated per request, with Babel's formats.

Templates say every word through gettext (``{{ _("…") }}``, ``{% trans %}``), which looks the
message up in the visitor's language; the filters format for that language too:

* ``amount|money(currency)`` — a ``Decimal`` amount of a :class:`~exchange.money.Currency` (or
  an ISO code), exact (see :mod:`exchange.web.formatting`);
* ``points|points`` — a whole number of points; ``points|points(program)`` follows it with
  what that many of the program's points are called (``1 Mile``, ``12,000 Miles``; on a
  Chinese page ``12,000 Mile``, the name as declared);
  ``points|points_of(program)`` also says whose points they are where that name does not
  (``3,000 Miles (Formosa Air)``, ``1,000 Coalition Points``): for an amount the page names no
  program beside;
* ``text|exchange_text`` — a text the exchange wrote, for the ``said`` macro of ``_said.html``;
* ``text|theirs`` — a text a partner or a member wrote or chose (a tier's or a reward's name,
  a reference, a reason, a note), isolated from the page's own (``<bdi>``, its bidirectional
  controls balanced): a right-to-left override in it (U+202E) cannot reorder the page around
  it. ``text|theirs(element=false)`` isolates it with FSI and PDI for where no element can
  (a ``<title>``, an SVG ``<text>``, an ``<option>``);
* ``moment|moment`` and ``moment|day`` — an aware datetime in the settlement time zone, which
  every page names (``zone_name``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel.lists import format_list
from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from exchange.money import Currency
from exchange.programs.models import Program
from exchange.web.formatting import (
    Form,
    balanced_bidi,
    format_day,
    format_moment,
    format_money,
    format_points,
    format_points_of,
    format_zone,
    isolated_text,
    point_unit,
)
from exchange.web.i18n import LANGUAGES, Language
from exchange.web.said import Said
from exchange.web.static import StaticAssets
from exchange.web.visitors import visitor_of

TEMPLATES_DIR = Path(__file__).with_name("templates")
LANGUAGE_PARAMETER = "lang"


def _language(context: Context) -> Language:
    language = context["language"]
    assert isinstance(language, Language)
    return language


#: A Chinese character (CJK ideographs and their extension A).
CHINESE = re.compile("[\u3400-\u9fff]")
#: A letter or digit of the Latin alphabet, as names, ids and field names are written.
LATIN = re.compile("[A-Za-z0-9]")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _text_of(value: object) -> str:
    return value.striptags() if isinstance(value, Markup) else str(value)


def set_apart(message: str, variables: Mapping[str, object]) -> str:
    """``message`` (a translation, with ``%(name)s`` placeholders) with a space between each
    placeholder and a Chinese character beside it where its value's text begins or ends with
    a Latin letter or digit: a name, an id or a field name with no Chinese label is set off from
    Chinese text by a space (``after 必須是…``, never ``after必須是…``), as Taiwan's common style
    does, while a Chinese label stays joined to it (``期間必須是…``). Every message a page
    says passes here, so no translation needs to guess what its placeholders will hold."""

    def spaced(found: re.Match[str]) -> str:
        name = found.group(1)
        if name not in variables:
            return found.group(0)
        text = _text_of(variables[name]).strip()
        before = message[found.start() - 1 : found.start()]
        after = message[found.end() : found.end() + 1]
        lead = " " if CHINESE.match(before) and LATIN.match(text[:1]) else ""
        trail = " " if CHINESE.match(after) and LATIN.match(text[-1:]) else ""
        return f"{lead}{found.group(0)}{trail}"

    return PLACEHOLDER.sub(spaced, message)


def _formatted(context: Context, message: str, variables: dict[str, Any]) -> str:
    """Jinja's newstyle formatting (every message is %-formatted, variables or none), each
    value set apart from Chinese text around it (:func:`set_apart`)."""
    spaced = set_apart(message, variables)
    return (Markup(spaced) if context.eval_ctx.autoescape else spaced) % variables


@pass_context
def _gettext(context: Context, message: str, /, **variables: Any) -> str:
    return _formatted(context, _language(context).translations.gettext(message), variables)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, count: int, /, **variables: Any) -> str:
    variables.setdefault("num", count)
    return _formatted(context, _language(context).translations.ngettext(singular, plural, count), variables)


#: Full-width punctuation (as Chinese writes a colon) carries its own space: none follows it.
FULL_WIDTH_ENDS = ("：", "，", "；", "。")


def lead_in(label: str) -> str:
    """A label that leads into what follows it on the same line, with the space that English
    puts after its colon (``Time left: 0:58``), and none after a full-width colon, whose own
    width is the space (``剩餘時間：0:58``, never ``剩餘時間： 0:58``). A template writes the
    label through it and what follows with no white space between (``{{ _("Time left:")|lead_in
    }}<span>``), so that no language's label is followed by another language's spacing."""
    return label if label.endswith(FULL_WIDTH_ENDS) else label + " "


def _exchange_text(text: str) -> Said:
    """A text the exchange wrote (a refusal's message), for ``_said.html``'s ``said`` to say in
    the page's language: programs in it stay named by their ids."""
    return Said.of(text, {})


def their_text(text: object, element: bool = True) -> Markup:
    """``|theirs``: ``text`` (escaped) isolated from the page's own text around it; nothing
    for ``None``."""
    if text is None:
        return Markup()
    if element:
        return Markup("<bdi>{}</bdi>").format(balanced_bidi(str(text)))
    return Markup.escape(isolated_text(str(text)))


@dataclass(frozen=True, slots=True)
class Place:
    """Where a page shown for a POST (a refused form) is, for its language links to lead back
    to it as it is: the address whose GET shows it (``path``; the request's by default, when
    the form posts to its own page) with what the form held (``fields``) as query parameters,
    which that page reads back into the form. An empty field is left out."""

    fields: Mapping[str, str]
    path: str | None = None


def language_url(request: Request, language: Language, place: Place | None = None) -> str:
    """This page's address, asking for ``language`` (other query parameters kept, and ``place``'s
    fields over them; at ``place``'s path if it has one)."""
    fields = place.fields if place is not None else {}
    kept = [(name, value) for name, value in request.query_params.multi_items() if name not in fields]
    given = [(name, value) for name, value in fields.items() if value]
    query = [(name, value) for name, value in [*kept, *given] if name != LANGUAGE_PARAMETER]
    query.append((LANGUAGE_PARAMETER, language.tag))
    path = place.path if place is not None and place.path is not None else request.url.path
    return f"{path}?{urlencode(query)}"


class Pages:
    """Renders templates for a request: the visitor's language, session and CSRF token are in
    every page's context (``language``, ``principal``, ``csrf_token``), and the name of the time
    zone its moments are shown in (``zone_name``)."""

    def __init__(self, assets: StaticAssets, zone: ZoneInfo) -> None:
        self.zone = zone
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # Newstyle gettext, formatted here (not by Jinja's wrapper) to set values apart.
        self.env.newstyle_gettext = True  # type: ignore[attr-defined]  # added by the i18n extension
        self.env.globals.update(gettext=_gettext, ngettext=_ngettext)
        self.env.globals.update(static_url=assets.url, languages=LANGUAGES)
        self.env.filters.update(
            money=self._money,
            points=self._points,
            points_of=self._points_of,
            moment=self._moment,
            day=self._day,
            listing=self._listing,
            exchange_text=_exchange_text,
            theirs=their_text,
            lead_in=lead_in,
        )

    def render(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        place: Place | None = None,
    ) -> HTMLResponse:
        """``template`` for ``request``. ``place``: where a page shown for a POST is, for its
        language links to keep the reader's place and input (:class:`Place`)."""
        visitor = visitor_of(request)
        html = self.env.get_template(template).render(
            request=request,
            language=visitor.language,
            principal=visitor.principal,
            csrf_token=visitor.csrf_token,
            zone_name=format_zone(self.zone, visitor.language.locale),
            language_url=lambda language: language_url(request, language, place),
            **(context or {}),
        )
        return HTMLResponse(html, status_code=status_code, headers=dict(headers or {}))

    def macro(self, request: Request, template: str, name: str) -> Callable[..., str]:
        """The macro ``name`` of ``template`` as plain text in the visitor's language: for words
        a page sends other than as HTML (a cell of a CSV download, a refusal a script shows).
        Its elements go (a ``<bdi>`` isolating someone else's words among them: the text they
        quote writes its direction controls as escapes, :func:`exchange.text.quoted`), and its
        runs of white space become one space."""
        module = self.env.get_template(template).make_module({"language": visitor_of(request).language})
        found = getattr(module, name)
        return lambda *args: Markup(found(*args)).striptags()

    @pass_context
    def _money(self, context: Context, amount: Decimal, currency: Currency | str) -> str:
        return format_money(amount, currency, _language(context).locale)

    @pass_context
    def _points(self, context: Context, points: int, program: Program | None = None) -> str:
        shown = format_points(points, _language(context).locale)
        return shown if program is None else f"{shown} {point_unit(program, points, _language(context).locale)}"

    @pass_context
    def _points_of(self, context: Context, points: int, program: Program) -> str:
        return format_points_of(program, points, _language(context).locale)

    @pass_context
    def _listing(self, context: Context, items: Iterable[str]) -> str:
        """Several names as one phrase in the page's language (``A, B and C``; ``A、B和C``)."""
        return format_list(list(items), locale=_language(context).locale)

    @pass_context
    def _moment(self, context: Context, moment: datetime, form: Form = "medium") -> str:
        return format_moment(moment, self.zone, _language(context).locale, form)

    @pass_context
    def _day(self, context: Context, day: date | datetime, form: str = "medium") -> str:
        return format_day(day, self.zone, _language(context).locale, form)
