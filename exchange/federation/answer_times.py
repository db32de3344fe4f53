"""How long each partner has lately taken to answer, so the federated view asks the slowest first.

The view lasts as long as its slowest call, and the calls go out one after another: each
takes the process some CPU to build and send before the next can. Asking the partner that
answers slowest first starts the call that decides the view's latency without waiting behind
the others; the fast ones, sent after it, still land before it does. A partner never asked
yet counts as the slowest, so it goes first until its time is known.
"""

from __future__ import annotations

import math


class AnswerTimes:
    """A moving average of each partner's answer time (seconds), by program id."""

    #: Weight of the newest answer: about the last ten answers count.
    WEIGHT = 0.2

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    def record(self, program_id: str, seconds: float) -> None:
        earlier = self._seconds.get(program_id)
        self._seconds[program_id] = seconds if earlier is None else earlier + self.WEIGHT * (seconds - earlier)

    def expected(self, program_id: str) -> float:
        """The partner's recent answer time; infinite for one never asked."""
        return self._seconds.get(program_id, math.inf)
