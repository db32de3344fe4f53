"""What any text from outside must be before it is stored, compared or sent on.

PostgreSQL refuses a NUL in a string and psycopg cannot encode an unpaired surrogate, while
SQLite stores both, and stores a string longer than its column too. So every string a client
sends (GraphQL arguments, OAuth form values, assertion claims) is checked here first, against
the same limits on both stores: the column's own length, from the constant its model uses.
"""

from __future__ import annotations


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
