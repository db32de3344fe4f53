"""The web front end's languages: English (the templates' own) and Traditional Chinese.

A visitor's language is, in order: the one they picked with the switch (``?lang=``, kept in a
cookie), the first of their browser's ``Accept-Language`` that we speak (any Chinese is read
as Traditional Chinese, the coalition's), and English.

Messages live in ``i18n/<locale>/LC_MESSAGES/messages.po``; they are compiled in memory when
first needed, so that no build step stands between a checkout (or a wheel) and the pages.
``make messages`` extracts the templates' messages and updates the catalogs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from gettext import NullTranslations
from pathlib import Path

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

I18N_DIR = Path(__file__).with_name("i18n")
DOMAIN = "messages"


@dataclass(frozen=True)
class Language:
    """A language the pages speak: its BCP 47 tag (``lang=``, ``?lang=``), its Babel locale,
    and the name of its catalog's directory."""

    tag: str
    locale: Locale
    catalog: str

    @property
    def name(self) -> str:
        """The language's name in itself, as a switch shows it."""
        return self.locale.get_display_name(self.locale) or self.tag

    @property
    def translations(self) -> NullTranslations:
        return translations(self.tag)


ENGLISH = Language("en", Locale.parse("en"), "en")
TRADITIONAL_CHINESE = Language("zh-TW", Locale.parse("zh-TW", sep="-"), "zh_TW")
LANGUAGES: tuple[Language, ...] = (ENGLISH, TRADITIONAL_CHINESE)
DEFAULT = ENGLISH
_BY_PRIMARY_SUBTAG = {"en": ENGLISH, "zh": TRADITIONAL_CHINESE}


def language_named(tag: str | None) -> Language | None:
    """The language whose tag is ``tag`` (any case), if we speak it."""
    if tag:
        for language in LANGUAGES:
            if language.tag.lower() == tag.strip().lower():
                return language
    return None


def from_accept_language(header: str | None) -> Language | None:
    """The first language of an ``Accept-Language`` header (by quality, then order) we speak."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, parameters = part.strip().partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, index, tag.strip().lower()))
    for _quality, _index, tag in sorted(ranked):
        if (language := _BY_PRIMARY_SUBTAG.get(tag.split("-")[0])) is not None:
            return language
    return None


def catalog_path(language: Language) -> Path:
    return I18N_DIR / language.catalog / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(tag: str) -> NullTranslations:
    """The compiled catalog of the language tagged ``tag``; English needs none."""
    language = language_named(tag)
    if language is None or language is DEFAULT:
        return NullTranslations()
    with catalog_path(language).open("rb") as po:
        catalog = read_po(po, locale=language.locale, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)
