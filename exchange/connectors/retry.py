"""Which failed attempts are worth another try, and how long to wait before it.

Every call of the contract is idempotent: reads by nature, writes because the partner keys
them by the exchange's operation id and answers a repeat with the first result. So no call
is unsafe to repeat; what decides is whether a repeat can help:

* retried — the request never reached the partner (connection refused, token endpoint down
  or answering nonsense), or the partner is done with it and answered badly: a 5xx, a
  dropped connection, a malformed body. A repeat of a write that was applied returns the
  applied result, which turns an unknown outcome into a known one; a repeat refused as a
  conflict does not (the partner holds another request under the id: the first try, applied
  otherwise than sent, may be it), and the call stays an unknown outcome.
* not retried — a refusal (the same request gets the same refusal); an open circuit (the
  breaker exists to stop calls); refused credentials (the same credentials fail again; the
  one token refetch after a 401 is separate); and any timeout, connecting or waiting for the
  answer: the partner is slow or black-holed, the caller's time is spent, and the first
  attempt may still be running there. After a timeout on a write, the saga's recovery asks
  the partner for the operation's status instead.

A retry resends exactly the same request: same operation id, same body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from exchange.connectors.errors import (
    CircuitOpen,
    PartnerAuthenticationFailed,
    PartnerConnectTimeout,
    PartnerError,
    PartnerNotConfigured,
    PartnerRefusal,
    PartnerTimeout,
)

_FINAL = (
    PartnerRefusal,
    CircuitOpen,
    PartnerAuthenticationFailed,
    PartnerNotConfigured,
    PartnerTimeout,
    PartnerConnectTimeout,
)


def worth_retrying(error: PartnerError) -> bool:
    return not isinstance(error, _FINAL)


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries; exponential backoff from ``backoff`` seconds, with jitter.

    The wait before try n+1 is ``backoff * 2**(n-1)`` scaled by a factor in [0.5, 1) drawn from
    ``random`` (so that many callers do not retry in step).
    """

    attempts: int
    backoff: float
    random: Callable[[], float]

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        return self.backoff * float(2 ** (attempt - 1)) * (0.5 + self.random() / 2)
