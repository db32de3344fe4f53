"""Errors of the auth package that transports turn into OAuth or HTTP answers."""

from __future__ import annotations

import re

from exchange.errors import BadUserInput, Unauthenticated


class InvalidAccessToken(Unauthenticated):
    """A presented bearer token is unusable; ``message`` says why, for ``error_description``."""

    def __init__(self, description: str) -> None:
        super().__init__(description)


class AssertionRejected(BadUserInput):
    """A partner's member assertion is refused (bad signature, claims, or a replay)."""

    def __init__(self, description: str) -> None:
        super().__init__(description, field="assertion")


def oauth_description(text: str) -> str:
    """Text fit for an ``error_description``: RFC 6749 allows printable ASCII except ``"``
    and ``\\``, which also keeps it safe inside a ``WWW-Authenticate`` header."""
    return re.sub(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]", "?", text)
