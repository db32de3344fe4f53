"""Whether two spellings of a person's name are the same name: the member's and a partner's.

Partners keep names as their members once typed them; the member types it again at the
exchange. The comparison forgives what is only spelling:

* **width and compatibility forms** (NFKC): full-width ``ＡＢＣ`` is ``ABC``, ideographic
  spaces are spaces;
* **case** (``casefold``): ``CHEN`` is ``chen``;
* **spacing and punctuation**: ``O'Brien`` is ``OBrien``, ``Chen-Mei`` is ``Chen Mei``, and in
  a name written in CJK characters spaces do not count at all (``王 小明`` is ``王小明``);
* **order of Latin names**: given name first or family name first (``Chen Mei`` is
  ``MEI CHEN``): the words, as a multiset, must be the same.

It does not forgive a different name: a missing or extra word, another letter, or a name in
another script (``Chen Mei`` is not ``陳美``: transliteration is out of scope). Traditional
and simplified characters are not folded either (``陳`` is not ``陈``): no table of variants is
applied, so a partner's record in the other script is a mismatch the member must correct.
"""

from __future__ import annotations

import unicodedata

#: Categories that separate the words of a name: spaces and punctuation of every kind.
_SEPARATORS = ("Z", "P", "S", "C")


def _is_cjk(character: str) -> bool:
    """Characters of scripts written without spaces between the parts of a name."""
    name = unicodedata.name(character, "")
    return name.startswith(("CJK ", "HANGUL ", "HIRAGANA ", "KATAKANA "))


def name_key(name: str) -> tuple[str, ...]:
    """The comparable form of ``name``: its words, folded and sorted.

    A name with CJK characters is one word of its characters alone (spaces and punctuation
    dropped), so its parts keep their order; a Latin name's words are sorted, so either order
    of given and family name gives the same key.
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    if any(_is_cjk(character) for character in folded):
        return ("".join(c for c in folded if not unicodedata.category(c).startswith(_SEPARATORS)),)
    words: list[str] = []
    word: list[str] = []
    for character in folded + " ":
        category = unicodedata.category(character)
        if category.startswith(("Z", "C")) or character in "-‐‑–—,/·":
            if word:
                words.append("".join(word))
                word = []
        elif not category.startswith(("P", "S")):
            word.append(character)
    return tuple(sorted(words))


def same_name(given: str, recorded: str) -> bool:
    """Whether ``given`` (the member's) and ``recorded`` (the partner's) are the same name."""
    key = name_key(given)
    return bool(key) and key == name_key(recorded)
