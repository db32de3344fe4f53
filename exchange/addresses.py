"""The shape of a web address the exchange is given to call or to send to, read one way for
every such address (a partner's endpoints in its declaration, a webhook subscription's URL);
each caller refuses the faults its rule forbids, in its own words."""

from __future__ import annotations

from enum import Enum
from urllib.parse import SplitResult, urlsplit


class Fault(Enum):
    NOT_ABSOLUTE = "no scheme or no host"
    SPACE = "a whitespace character"
    CONTROL = "a character that is neither printable nor whitespace"
    FRAGMENT = "a #fragment"
    CREDENTIALS = "a user name or password"
    QUERY = "a ?query"


def read_address(url: str) -> tuple[SplitResult | None, frozenset[Fault]]:
    """``url``'s parts and its faults; no parts when it cannot be read as a URL at all (a port
    that is not a number from 0 to 65535, a broken IPv6 host)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not one
    except ValueError:
        return None, frozenset()
    faults = {
        Fault.NOT_ABSOLUTE: not parts.scheme or not parts.hostname,
        Fault.SPACE: any(character.isspace() for character in url),
        Fault.CONTROL: any(not (character.isprintable() or character.isspace()) for character in url),
        Fault.FRAGMENT: bool(parts.fragment),
        Fault.CREDENTIALS: parts.username is not None or parts.password is not None,
        Fault.QUERY: bool(parts.query),
    }
    return parts, frozenset(fault for fault, found in faults.items() if found)
