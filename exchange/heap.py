"""The garbage collector's settings for a serving process.

A worker builds a large, long-lived heap at start-up (modules, the GraphQL schema, the ORM's
mappers, the app) and then allocates many short-lived objects per request. With CPython's
defaults every 700 net allocations start a young collection, the survivors are soon promoted,
and each full collection walks the whole start-up heap again: under the conversion benchmark
(bench/conversion_throughput.py, 2 workers) collections took about a tenth of each worker's
CPU, full ones about 110 ms each. Freezing what start-up built takes it out of every later
collection, and collecting young objects less often lets most of a request's objects die by
reference count first; measured the same way, collection time fell to about a third.
"""

from __future__ import annotations

import gc

#: Net allocations of container objects between young collections (CPython's default: 700).
#: A request allocates thousands; at this size its cyclic garbage waits a few MB at most.
YOUNG_COLLECTION_THRESHOLD = 20_000
#: Young collections between middle-aged ones, and those between full ones (defaults: 10, 10).
MIDDLE_COLLECTION_THRESHOLD = 20
FULL_COLLECTION_THRESHOLD = 100


def settle_for_serving() -> None:
    """Collect once, freeze the survivors (the start-up heap) and space collections out: for a
    process about to serve requests for its lifetime. Not for tests or short commands, whose
    frozen objects would never be collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, MIDDLE_COLLECTION_THRESHOLD, FULL_COLLECTION_THRESHOLD)
