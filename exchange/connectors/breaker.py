"""A circuit breaker per partner, so that a dead partner costs milliseconds, not a timeout.

Closed: calls go through; ``failure_threshold`` consecutive failures open the circuit.
Open: calls fail at once with :class:`~exchange.connectors.errors.CircuitOpen` until
``cooldown`` seconds have passed since it opened.
Half-open: one call (the probe) goes through while every other still fails fast; the probe's
success closes the circuit, its failure opens it again for another cool-down.

A refusal with a contract code is a success here: the partner is up and answering. Time comes
from an injected monotonic timer, so tests move it instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, *, failure_threshold: int, cooldown: float, timer: Callable[[], float]) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._timer = timer
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._timer() - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open, True only for the one probe."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.failure_threshold:
            self._opened_at = self._timer()
            self._probing = False

    def release(self) -> None:
        """A call that was allowed ended without telling anything about the partner.

        (It was cancelled, say.) A probe gives its turn back so that another call can probe.
        """
        self._probing = False
