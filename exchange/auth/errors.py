"""Errors of the auth package that transports turn into OAuth or HTTP answers."""

from __future__ import annotations

from exchange.errors import BadUserInput, Unauthenticated


class InvalidAccessToken(Unauthenticated):
    """A presented bearer token is unusable; ``message`` says why, for ``error_description``."""

    def __init__(self, description: str) -> None:
        super().__init__(description)


class AssertionRejected(BadUserInput):
    """A partner's member assertion is refused (bad signature, claims, or a replay)."""

    def __init__(self, description: str) -> None:
        super().__init__(description, field="assertion")
