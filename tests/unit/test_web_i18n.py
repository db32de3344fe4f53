"""The pages' languages: which one a visitor gets, and that every message is translated."""

from __future__ import annotations

import re

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from exchange.web.i18n import (
    DEFAULT,
    ENGLISH,
    I18N_DIR,
    TRADITIONAL_CHINESE,
    catalog_path,
    from_accept_language,
    language_named,
    translations,
)
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-TW,zh;q=0.9,en;q=0.8", TRADITIONAL_CHINESE),
        ("en-US,en;q=0.9,zh-TW;q=0.8", ENGLISH),
        ("fr-FR, zh-Hant;q=0.7, en;q=0.5", TRADITIONAL_CHINESE),
        ("en;q=0.4, zh-HK;q=0.6", TRADITIONAL_CHINESE),
        ("zh-CN", TRADITIONAL_CHINESE),
        ("ZH-tw", TRADITIONAL_CHINESE),
        ("zh-TW;q=0, en", ENGLISH),
        ("de, fr;q=0.5", None),
        ("", None),
        (None, None),
        ("zh-TW;q=nonsense, en;q=0.1", ENGLISH),
    ],
)
def test_the_first_spoken_language_of_accept_language_wins(header: str | None, expected: object) -> None:
    assert from_accept_language(header) is expected


def test_the_switch_names_languages_by_their_tags_in_any_case() -> None:
    assert language_named("zh-tw") is TRADITIONAL_CHINESE
    assert language_named("en") is ENGLISH
    assert language_named("fr") is None
    assert language_named(None) is None


def _template_messages() -> set[str | tuple[str, ...]]:
    with (I18N_DIR / "babel.cfg").open() as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)
    return {
        message for _file, _line, message, _comments, _context in extract_from_dir(REPO_ROOT, method_map, options_map)
    }


def test_every_message_of_the_templates_is_translated_into_traditional_chinese() -> None:
    with catalog_path(TRADITIONAL_CHINESE).open("rb") as po:
        catalog = read_po(po)
    messages = _template_messages()
    assert len(messages) > 30
    for message in messages:
        key = message[0] if isinstance(message, tuple) else message
        entry = catalog.get(key)
        assert entry is not None, f"{key!r} is not in the zh_TW catalog: run `make messages` and translate it"
        assert not entry.fuzzy, f"{key!r} is marked fuzzy in the zh_TW catalog"
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        assert all(strings), f"{key!r} has no zh_TW translation"


def test_no_message_makes_a_possessive_of_a_name_it_is_given() -> None:
    """ "Formosa Air Miles's say-so" reads wrong, and a name's possessive has no form that reads
    well for every name: a message puts a name where no "'s" follows it."""
    possessives = [
        key
        for message in _template_messages()
        for key in (message if isinstance(message, tuple) else (message,))
        if key and re.search(r"%\(\w+\)s['’]s\b", key)
    ]
    assert possessives == []


def test_every_message_and_its_translation_format_as_the_pages_format_them() -> None:
    """The pages' gettext is Jinja's newstyle one: every message is a %-format string, formatted
    even with no variables, so a bare ``%`` ("80 % of") fails the page; and a translation must
    take the same placeholders as its message."""
    with catalog_path(TRADITIONAL_CHINESE).open("rb") as po:
        catalog = read_po(po)
    checked = 0
    for entry in catalog:
        if not entry.id:
            continue
        ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        names = {name for text in ids for name in re.findall(r"%\((\w+)\)", text)} | (
            {"num"} if len(ids) > 1 else set()
        )
        values = dict.fromkeys(names, "7")
        for text in (*ids, *strings):
            try:
                text % values
            except (TypeError, ValueError, KeyError) as error:
                pytest.fail(f"{text!r} (message {ids[0]!r}) does not format as a page formats it: {error}")
        for string in strings:
            assert set(re.findall(r"%\((\w+)\)", string)) <= names, f"{string!r} names a placeholder {ids[0]!r} lacks"
        checked += 1
    assert checked > 100


def test_translations_are_read_from_the_catalog_and_english_needs_none() -> None:
    assert translations(TRADITIONAL_CHINESE.tag).gettext("Sign out") == "登出"
    assert translations(DEFAULT.tag).gettext("Sign out") == "Sign out"


def test_who_decided_and_when_a_decision_is_due_read_differently_in_zh_tw() -> None:
    """The risk log's "Decided by" names a person; a held conversion's "Decision due by" a time.
    One msgid served both, and the console's column of deciders was headed "review deadline"."""
    chinese = translations(TRADITIONAL_CHINESE.tag)
    assert chinese.gettext("Decided by") == "決定者"
    assert chinese.gettext("Decision due by") == chinese.gettext("Decide by") == "審核期限"
