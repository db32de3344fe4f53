"""What any text from outside must be before it is stored, compared or sent on, and reading a
whole number a person typed.

PostgreSQL refuses a NUL in a string and psycopg cannot encode an unpaired surrogate, while
SQLite stores both, and stores a string longer than its column too. So every string a client
sends (GraphQL arguments, OAuth form values, assertion claims) is checked here first, against
the same limits on both stores: the column's own length, from the constant its model uses.

JSON from outside (a GraphQL request body, a JWK, a JWT's claims before they are verified) is
read by :func:`json_value`, which refuses what Python's reader fails on in ways no caller
expects, as the ``ValueError`` every JSON caller already handles.
"""

from __future__ import annotations

import json
import re
import unicodedata
from string import Formatter
from typing import Any

#: The longest id a partner may choose for what it publishes (a reward, a promotion): their
#: columns' length.
CHOSEN_ID_LENGTH = 64
#: The rule for such an id, in the words errors and the schema use. The id is written into
#: pages' addresses (``/portal/rewards/<id>``) and read back by people, so it holds only
#: characters that mean nothing in a URL path (``a?b`` linked to reward ``a``, ``a/b`` to no
#: page, ``..`` to the page above) and that look like themselves.
CHOSEN_ID_RULE = f"1 to {CHOSEN_ID_LENGTH} ASCII letters, digits, '.', '_' or '-', beginning with a letter or digit"
_CHOSEN_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{CHOSEN_ID_LENGTH - 1}}}")


def one_line(text: str) -> str:
    """``text`` as part of one line a person reads on a terminal (a log line, a CLI listing's
    field): what is not printable (a line break, a tab, a terminal's escape, a C1 control, a
    bidirectional override, U+2028) written as its Python escape. Such text may be a partner's
    or a client's own words, which must neither forge a line nor drive the reader's terminal."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def plural(noun: str) -> str:
    """English plural of ``noun`` (its last word, for a noun of several): ``status matches``,
    ``deliveries``, ``rate versions``; of each, for nouns joined by "or" (``conversions or
    redemptions``). The nouns a count goes with here are regular."""
    if " or " in noun:
        return " or ".join(plural(each) for each in noun.split(" or "))
    if noun.endswith(("s", "x", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and len(noun) > 1 and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def counted(count: int, noun: str, *, grouped: bool = False) -> str:
    """``count`` and its noun, singular for one and plural otherwise: ``1 break``, ``2 breaks``,
    ``0 deliveries``, ``1 status match``; ``grouped``, the count with thousands commas
    (``1,500 points``). One helper so that no message says "1 transactions"."""
    shown = f"{count:,}" if grouped else str(count)
    return f"{shown} {noun if count == 1 else plural(noun)}"


def fill(template: str, **values: object) -> str:
    """``template`` (``str.format`` fields) written with ``values``; a field whose format spec is
    a noun (``{points:point}``) is a count (an ``int``, or as written, ``"1,500"``) written with
    that noun, thousands grouped, by :func:`counted`: ``fill("at least {points:point}",
    points=1)`` is ``at least 1 point``."""
    parts = []
    for literal, name, noun, _ in Formatter().parse(template):
        parts.append(literal)
        if name is not None:
            value = values[name]
            if not noun:
                parts.append(str(value))
            elif isinstance(value, int):
                parts.append(counted(value, noun, grouped=True))
            elif isinstance(value, str):  # as a template's reader read it back: 1,500
                parts.append(counted(int(value.replace(",", "")), noun, grouped=True))
            else:
                raise TypeError(f"{{{name}:{noun}}} is a count, not {value!r}")
    return "".join(parts)


def counted_pattern(name: str, noun: str, number: str = "[0-9][0-9,]*") -> str:
    """A regular expression that reads back a count :func:`counted` wrote with ``noun`` (``1
    point`` and ``1,500 points`` alike), the count as written (``number``) in group ``name``:
    how a template's ``{name:noun}`` field (:func:`fill`) is read back."""
    return f"(?P<{name}>{number}) (?:{re.escape(noun)}|{re.escape(plural(noun))})"


def text_problem(value: str, max_length: int, *, min_length: int = 0, printable: bool = False) -> str | None:
    """Why ``value`` cannot be taken, in words (``None``: it can).

    ``printable`` also refuses control characters and other unprintable ones (for ids and
    keys a person reads back); a NUL and an unpaired surrogate are refused always.
    """
    if len(value) > max_length:
        return f"must be at most {max_length} characters, got {len(value)}"
    if len(value) < min_length:
        return f"must be at least {min_length} characters" if min_length > 1 else "must not be empty"
    if "\x00" in value:
        return "holds a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "holds an unpaired surrogate: it is not Unicode text"
    if printable and not value.isprintable():
        return "must be printable characters only"
    return None


#: Characters that reorder the text around them when it is shown: the Arabic letter mark,
#: left-to-right and right-to-left marks, and bidirectional embeddings, overrides and isolates.
#: Text holding one can show as other text than it is ("Trojan Source": a title whose price
#: reads backwards), on a page, in a terminal and in a partner's own front end alike.
DIRECTION_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def shown_text_problem(value: str, *, lines: bool = False) -> str | None:
    """Why ``value``, text shown to people as its author wrote it (a reward's title or
    description, a webhook subscription's description), cannot be taken (``None``: it can): a
    control character (an escape that drives a terminal, a line break in what is one line;
    ``lines`` allows line breaks and tabs, as a form's text area sends them), or a direction
    control (:data:`DIRECTION_CONTROLS`), named with where it is."""
    for at, character in enumerate(value, start=1):
        if character in DIRECTION_CONTROLS:
            return (
                f"holds a direction control, U+{ord(character):04X}, at character {at}: "
                "it reorders the text around it when shown"
            )
        if unicodedata.category(character) == "Cc" and not (lines and character in "\r\n\t"):
            return f"holds a control character, U+{ord(character):04X}, at character {at}"
    return None


#: The most characters of someone else's value a message quotes: a field may be kilobytes long.
QUOTED_CHARACTERS = 80


def quoted(value: str, *, most: int = QUOTED_CHARACTERS) -> str:
    """``value`` (a partner's, a member's) as a message of the exchange quotes it: between
    quotes as ``repr`` writes it, its first ``most`` characters and, past them, how many it
    has. ``repr`` writes every character that shows nothing or moves others as its escape
    (``\\u202e``): controls, direction controls, line and paragraph separators, unpaired
    surrogates. A value with a right-to-left override so cannot reorder the message around
    it, wherever the message goes (a GraphQL error, the command line, a file); a page isolates
    it too (``|theirs``), for text in a right-to-left script."""
    if len(value) <= most:
        return repr(value)
    return f"{value[:most]!r}… ({len(value)} characters)"


def escaped(value: str) -> str:
    """``value`` written as :func:`quoted` writes it, without the quotes: for a value a message
    gives back unquoted, such as an amount as it should have been written."""
    return "".join(character if character.isprintable() else repr(character)[1:-1] for character in value)


def shows_nothing(value: str) -> bool:
    """Whether ``value`` shows as blank: only spaces and characters that show as nothing
    (a zero-width space, a soft hyphen, U+FEFF: Unicode's format characters)."""
    return all(character.isspace() or unicodedata.category(character) == "Cf" for character in value)


def chosen_id_problem(value: str) -> str | None:
    """Why ``value`` breaks :data:`CHOSEN_ID_RULE`, in words (``None``: it keeps it)."""
    if _CHOSEN_ID.fullmatch(value):
        return None
    return f"must be {CHOSEN_ID_RULE}" + (f", got {len(value)}" if len(value) > CHOSEN_ID_LENGTH else "")


def ascii_digits(text: str) -> int | None:
    """The number ``text`` writes in ASCII digits alone (no sign, comma or space), else ``None``.

    ``str.isdigit`` alone is not the test: it admits ``²`` and other digits ``int`` refuses.
    """
    return int(text) if text.isascii() and text.isdigit() else None


def without_thousands_commas(text: str) -> str | None:
    """``text`` with its thousands commas taken out, if it has any only there (``1,250.50``:
    groups of three digits before the point, the first of one to three); ``None`` for a comma
    anywhere else (``1,2,3`` is no number, not 123). Text without a comma comes back as it is."""
    if "," not in text:
        return text
    whole, point, fraction = text.partition(".")
    sign = whole[:1] if whole[:1] == "-" else ""
    groups = whole[len(sign) :].split(",")
    if not 1 <= len(groups[0]) <= 3 or any(len(group) != 3 for group in groups[1:]) or "," in fraction:
        return None
    return sign + "".join(groups) + point + fraction


#: Full-width digits and comma, as a Chinese or Japanese keyboard (a phone's, in full-width
#: mode) types them: their ASCII forms. Only these, not NFKC, which would read a superscript
#: ``10²`` as ``102``. (An ideographic space around them is whitespace to ``str.strip``.)
_NARROWED = str.maketrans({**{chr(0xFF10 + digit): str(digit) for digit in range(10)}, "\uff0c": ","})


def narrowed_digits(text: str) -> str:
    """``text`` with its full-width digits and commas (``１，０００``) written in ASCII
    (``1,000``), for :func:`whole_number` to read what a person typed as they see it."""
    return text.translate(_NARROWED)


def whole_number(text: str, *, max_digits: int = 18, signed: bool = False) -> int | None:
    """The whole number ``text`` writes (``None``: it writes none): ASCII digits, at most
    ``max_digits`` of them, with thousands commas (:func:`without_thousands_commas`) and spaces
    around allowed, and a leading minus if ``signed``. ``-0`` is 0, as GraphQL's ``Int`` and
    JSON read it: a form takes what the API takes for the same field."""
    digits = without_thousands_commas(text.strip())
    if digits is None:
        return None
    negative = signed and digits.startswith("-")
    unsigned = digits[1:] if negative else digits
    number = ascii_digits(unsigned) if len(unsigned) <= max_digits else None
    return None if number is None else -number if negative else number


def json_value(text: str | bytes, **options: Any) -> Any:
    """``json.loads(text, **options)``, failing only with ``ValueError``.

    Python's reader raises ``RecursionError`` for arrays or objects nested deeper than the
    interpreter's recursion limit (a few kilobytes of ``[`` reach it), and a bare ``ValueError``
    (no ``JSONDecodeError``) naming an interpreter setting for an integer of more than 4,300
    digits. Both are malformed input: here each is a ``ValueError`` saying so in the client's
    terms, and an integer longer than :data:`MAX_JSON_INTEGER_DIGITS` digits is refused.

    An object naming a key twice, at any depth, is refused too (:func:`_unique_keys`).
    """
    try:
        return json.loads(text, **{"parse_int": _integer, "object_pairs_hook": _unique_keys, **options})
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The object, unless it names a key twice. Python's reader keeps the last value, another
    reader (a proxy, a firewall, a partner's logger) may keep the first (RFC 8259 §4 leaves it
    open), so the two would act on different requests: such an object means nothing certain.
    Checked as the object is read, in the same pass."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} appears more than once in an object")
            seen.add(key)
    return value


#: The most digits a JSON integer from outside may have: far more than any count or id needs.
MAX_JSON_INTEGER_DIGITS = 100


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_JSON_INTEGER_DIGITS:
        raise ValueError(f"a JSON integer has more than {MAX_JSON_INTEGER_DIGITS} digits")
    return int(digits)
