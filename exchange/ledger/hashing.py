"""The hashes that make the ledger tamper-evident.

``request_digest`` covers what a client asked to post (so a repeat can be recognised and a
different request under the same id refused); ``chain_digest`` links a transaction to the
one before it in its chain; ``anchor_digest`` links a period's close, which names the head of
every chain of the period, to the close before it. Both are recomputed from stored rows by the verifier, so they must depend
only on values the database keeps exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _field(value: str | None) -> str:
    """A length-prefixed field: unambiguous whatever characters the value holds."""
    return "-;" if value is None else f"{len(value)}:{value};"


def request_digest(
    *,
    transaction_id: str,
    kind: str,
    reference: str,
    effective_at: datetime,
    reverses: str | None,
    legs: Iterable[tuple[str, str, int]],
) -> str:
    """SHA-256 over the canonical form of a posting request; legs are (account code, unit, amount).

    The canonical form writes each field length-prefixed, in a fixed order, legs last, so
    that no two different requests share it.
    """
    canonical = "".join(
        (
            _field(transaction_id),
            _field(kind),
            _field(reference),
            _field(_timestamp(effective_at)),
            _field(reverses),
            *(f"{_field(code)}{_field(unit)}{amount};" for code, unit, amount in legs),
        )
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_digest(*, seq: int, prev_hash: str, request_hash: str, period: str) -> str:
    return hashlib.sha256(f"{seq}|{prev_hash}|{request_hash}|{period}".encode()).hexdigest()


def anchor_heads(heads: Iterable[tuple[int, int, int, str]]) -> str:
    """The canonical form of a period's chain heads: (shard, transactions, seq, hash), by shard."""
    return ";".join(f"{shard}:{transactions}:{seq}:{chained}" for shard, transactions, seq, chained in sorted(heads))


def anchor_digest(*, prev_hash: str, period: str, heads: str) -> str:
    return hashlib.sha256(f"{prev_hash}|{period}|{heads}".encode()).hexdigest()
