"""Money and moments as a person reads them, by the rules of their locale (CLDR, via Babel).

Amounts are exact: no digit is rounded away for display (an amount finer than the currency's
usual digits shows all of its digits), and a float is refused. Moments are shown in the
settlement time zone, the one whose calendar bounds periods and caps.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date as babel_format_date
from babel.dates import format_time as babel_format_time
from babel.dates import get_date_format, get_datetime_format, get_timezone_name
from babel.numbers import format_currency, format_decimal, get_currency_symbol

from exchange.money import Currency
from exchange.programs.models import Program

#: How long a date (or a moment's date) is written, as CLDR names its forms.
Form = Literal["full", "long", "medium", "short"]

#: A currency symbol that several currencies share.
BARE_DOLLAR = "$"


def format_money(amount: Decimal, currency: Currency | str, locale: Locale) -> str:
    """``amount`` of ``currency`` (a :class:`Currency` or an ISO 4217 code), e.g. ``NT$1,234.50``.

    A locale may write its own dollar as a bare ``$`` (Taiwan's CLDR data does, for TWD), which
    names no currency to a partner or staff member who also deals in US dollars: such an amount
    takes the symbol English gives the currency (``NT$``) instead.
    """
    if not isinstance(amount, Decimal):
        raise TypeError(f"money is a Decimal, not {type(amount).__name__}")
    code = currency.code if isinstance(currency, Currency) else currency
    shown = format_currency(amount, code, locale=locale, decimal_quantization=False)
    if get_currency_symbol(code, locale) == BARE_DOLLAR and (named := get_currency_symbol(code, "en")) != BARE_DOLLAR:
        shown = shown.replace(BARE_DOLLAR, named, 1)
    return shown


def format_points(points: int, locale: Locale) -> str:
    """A whole number of points with the locale's grouping, e.g. ``12,000``."""
    if isinstance(points, bool) or not isinstance(points, int):
        raise TypeError(f"points are an int, not {type(points).__name__}")
    return format_decimal(points, locale=locale)


def point_unit(program: Program, points: int, locale: Locale) -> str:
    """What ``points`` of ``program`` are called on a page in ``locale``.

    The names are declared in English (``Mile``, ``Miles``): a language that has plural forms
    takes the one English grammar picks for ``points``; one that has none (Chinese) says the
    name as declared, never an English plural inside its own sentence.
    """
    if not locale.plural_form.tags:
        return program.point_name
    return program.point_name if abs(points) == 1 else program.point_name_plural


def point_owner(program: Program) -> str | None:
    """Whose points ``program``'s are, said after an amount of them (:func:`format_points_of`):
    its name less a last word its point's name ends in (``Formosa Air`` of ``Formosa Air
    Miles``, whose point is the ``Mile``); ``None`` when the point's name begins with the
    program's own first word, and so says whose it is already (``Coalition Points``, whose point
    is the ``Coalition Point``; ``FreshMart Rewards``, whose point is the ``FreshMart Point``),
    so that no name is said twice (never ``1,000 Coalition Points of Coalition Points``, nor
    ``1,000 FreshMart Points (FreshMart Rewards)``)."""
    words = program.name.split()
    first = words[0].casefold()
    if any(point.split()[0].casefold() == first for point in (program.point_name, program.point_name_plural)):
        return None
    endings = {program.point_name.split()[-1].casefold(), program.point_name_plural.split()[-1].casefold()}
    if len(words) > 1 and words[-1].casefold() in endings:
        words.pop()
    return " ".join(words)


def format_points_of(program: Program, points: int, locale: Locale) -> str:
    """``points`` of ``program`` with what they are called and, where that does not say it,
    whose they are: ``3,000 Miles (Formosa Air)``, ``1,000 Notes (TuneStream)``, but
    ``1,000 Wallet Points`` and ``1,000 Coalition Points``. The one way a page names an amount with its program."""
    shown = f"{format_points(points, locale)} {point_unit(program, points, locale)}"
    owner = point_owner(program)
    return shown if owner is None else f"{shown} ({owner})"


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a moment to show must be timezone-aware (the exchange keeps UTC)")
    return moment


def format_moment(moment: datetime, zone: ZoneInfo, locale: Locale, form: Form = "medium") -> str:
    """Date and time of ``moment`` in ``zone`` to the minute, e.g. ``Dec 1, 2026, 8:30 PM``: the
    date in ``form``, the time always short. No page's reader acts on a second (a quote's
    countdown counts them itself); the exact instant stays in a ``<time datetime>`` and in the
    downloads."""
    local = _aware(moment).astimezone(zone)
    return (
        str(get_datetime_format(form, locale=locale))
        .replace("'", "")
        .replace("{0}", babel_format_time(local, "short", locale=locale))
        .replace("{1}", _date(local.date(), form, locale))
    )


#: A short date in the order every reader reads alike (ISO 8601's), for a language whose own
#: short date does not put the year first: CLDR's English one, ``11/3/26``, is 11 March to most
#: of the world, and the exchange's readers are in Taipei, Europe and elsewhere.
YEAR_FIRST = "yyyy-MM-dd"


def _date(day: date, form: Form, locale: Locale) -> str:
    if form == "short" and not str(get_date_format("short", locale=locale).pattern).startswith("y"):
        return babel_format_date(day, YEAR_FIRST, locale=locale)
    return babel_format_date(day, form, locale=locale)


def format_zone(zone: ZoneInfo, locale: Locale) -> str:
    """The name of ``zone`` a reader knows, e.g. ``Taiwan Time``, ``台北時間``; ``UTC`` for UTC
    (which has no region for CLDR to name)."""
    if zone.key in {"UTC", "Etc/UTC", "Etc/GMT", "GMT"}:
        return "UTC"
    return get_timezone_name(zone, "long", zone_variant="generic", locale=locale)


def format_day(day: date | datetime, zone: ZoneInfo, locale: Locale, form: str = "medium") -> str:
    """The calendar day of ``day`` (a moment is first placed in ``zone``)."""
    if isinstance(day, datetime):
        day = _aware(day).astimezone(zone).date()
    return babel_format_date(day, form, locale=locale)


#: Bidirectional controls that open a scope (embeddings and overrides; isolates) and close one.
_EMBEDDINGS = frozenset("\u202a\u202b\u202d\u202e")
_ISOLATES = frozenset("\u2066\u2067\u2068")
_POP_EMBEDDING = "\u202c"
_POP_ISOLATE = "\u2069"
#: First strong isolate and pop directional isolate: a text's own paragraph inside another's.
_FSI, _PDI = "\u2068", "\u2069"


def balanced_bidi(text: str) -> str:
    """``text`` with every bidirectional scope it opens closed at its end, and every closer it
    has without an opener of its own dropped.

    Isolated in an element (``<bdi>``) or between FSI and PDI, a text's unclosed override ends
    with it; but a stray PDI of its own would end the isolation around it early and let what
    follows (an override included) reorder the page after it."""
    kept: list[str] = []
    opened: list[str] = []
    for char in text:
        if char in _EMBEDDINGS or char in _ISOLATES:
            opened.append(char)
        elif char == _POP_EMBEDDING:
            if not opened or opened[-1] not in _EMBEDDINGS:
                continue  # closes nothing of its own (an embedding cannot close across an isolate)
            opened.pop()
        elif char == _POP_ISOLATE:
            if not any(scope in _ISOLATES for scope in opened):
                continue
            while opened.pop() not in _ISOLATES:  # a PDI closes the embeddings inside its isolate too
                pass
        kept.append(char)
    kept.extend(_POP_ISOLATE if scope in _ISOLATES else _POP_EMBEDDING for scope in reversed(opened))
    return "".join(kept)


def isolated_text(text: str) -> str:
    """``text`` (a partner's or a member's) between FSI and PDI, balanced: for where no element
    can isolate it (a page's title, an SVG label, a select's option)."""
    return f"{_FSI}{balanced_bidi(text)}{_PDI}"
