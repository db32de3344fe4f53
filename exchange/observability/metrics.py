"""The gateway's Prometheus metrics, and their exposition at ``/metrics``.

Every metric the exchange records is declared here, in :data:`REGISTRY` (not prometheus-client's
global one, which holds the client's own process metrics), with labels whose values come from
closed sets: GraphQL root field names from the schema, program ids, partner calls, error codes,
ledger transaction kinds. No label ever carries a member, an id or query text.

Under ``exchange serve --workers N`` each worker process records into files in
``PROMETHEUS_MULTIPROC_DIR`` (``exchange serve`` makes and removes that directory) and whichever
worker answers a scrape adds every worker's figures up; with one worker the figures live in
memory. prometheus-client chooses between the two when it is first imported, from that
environment variable.

The saga gauges are figures of the database, the same for every process: they are read when
Prometheus scrapes (:mod:`exchange.sagas.figures`), not recorded by a periodic job. A scrape costs
one indexed query over the rows in flight, and only when someone scrapes; a job would query in
every process of every replica whether or not anyone looks, and a gauge written by a process that
has since died would linger in the multiprocess files.
"""

from __future__ import annotations

import glob
import logging
import os
import time
from collections import Counter as CountOf
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from exchange.db.availability import DatabaseUnavailable, SharedQuery
from exchange.db.commits import after_commit

logger = logging.getLogger("exchange.observability")

MULTIPROCESS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"

MetricKind = Literal["histogram", "gauge", "counter"]

REGISTRY = CollectorRegistry(auto_describe=True)

#: GraphQL answers take milliseconds; a conversion calls two partners and may take seconds.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUEST_DURATION = Histogram(
    "exchange_request_duration_seconds",
    "GraphQL requests by operation (the root fields asked for) and outcome (ok, error, refused).",
    ["operation", "outcome"],
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
ERRORS = Counter(
    "exchange_errors",
    "Errors the GraphQL endpoint answered, by extensions.code.",
    ["code"],
    registry=REGISTRY,
)
PARTNER_CALL_DURATION = Histogram(
    "exchange_partner_call_duration_seconds",
    "Calls to partners (each attempt) by program, call and outcome (ok, refused, unavailable, unknown).",
    ["program", "operation", "outcome"],
    buckets=_REQUEST_BUCKETS,
    registry=REGISTRY,
)
BREAKER_OPEN = Gauge(
    "exchange_partner_breaker_open",
    "Gateway processes whose circuit breaker to the partner is open or probing (1 each).",
    ["program"],
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
LEDGER_POSTINGS = Counter(
    "exchange_ledger_postings",
    "Transactions committed to the clearing ledger, by kind.",
    ["kind"],
    registry=REGISTRY,
)
RECOVERED_CLOSES = Counter(
    "exchange_recovered_closes",
    "Settlement periods left CLOSING by a closer that stopped, closed by a recovery pass "
    "(a gateway's job or exchange recover).",
    registry=REGISTRY,
)
BATCH_RESULT_MISMATCHES = Counter(
    "exchange_batch_result_mismatches",
    "Lines of batch-mode partners' result files whose points were not the credit's the exchange "
    "sent: not taken as its outcome, the partner asked about the credit instead.",
    registry=REGISTRY,
)

#: The sagas, by their metric label (``Saga.slug``): every one has a fault series from the start.
SAGAS = ("conversion", "redemption", "status_match")
SAGA_FAULTS = Counter(
    "exchange_saga_faults",
    "Saga rows whose driving (by a request, a partner's late word or a recovery pass) raised an unexpected "
    "error (a bug, not a partner's error or a database outage), by saga; each is put off until its retry "
    "back-off and logged with its id.",
    ["saga"],
    registry=REGISTRY,
)
for _saga in SAGAS:
    SAGA_FAULTS.labels(_saga)

#: The gauges read from the database at scrape time: name → (help, labels).
DATABASE_GAUGES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "exchange_saga_state": ("Sagas not yet final, by saga and state.", ("saga", "state")),
    "exchange_saga_oldest_pending_seconds": ("Age of the oldest saga not yet final (0: none).", ("saga",)),
    "exchange_recovery_backlog": (
        "Sagas not yet final that no request is driving: the recovery worker's to finish.",
        ("saga",),
    ),
}


@dataclass(frozen=True, slots=True)
class SagaFigures:
    """Where one saga stands, as the database counts it (:mod:`exchange.sagas.figures`)."""

    saga: str
    """The saga's name as a metric label: ``conversion``, ``status_match``, ``redemption``."""
    states: dict[str, int] = field(default_factory=dict)
    """Rows in each state that still has steps to run (every such state, zeros included)."""
    oldest_seconds: float = 0.0
    """Age of the oldest row not yet final; 0 when there is none."""
    backlog: int = 0
    """Rows not yet final that no request holds a lease on: the recovery worker's to finish."""


def served_metrics() -> dict[str, tuple[MetricKind, frozenset[str]]]:
    """Every metric ``/metrics`` serves, by the name PromQL asks for (a counter's ``_total``),
    with its type and labels: what the Grafana dashboard may query."""
    recorded: list[MetricWrapperBase] = [
        REQUEST_DURATION,
        ERRORS,
        PARTNER_CALL_DURATION,
        BREAKER_OPEN,
        LEDGER_POSTINGS,
        RECOVERED_CLOSES,
        BATCH_RESULT_MISMATCHES,
        SAGA_FAULTS,
    ]
    served: dict[str, tuple[MetricKind, frozenset[str]]] = {}
    for metric in recorded:
        kind: MetricKind = metric._type  # type: ignore[assignment]  # a str in prometheus-client's typing
        name = metric._name + ("_total" if kind == "counter" else "")
        served[name] = (kind, frozenset(metric._labelnames))
    for name, (_, labels) in DATABASE_GAUGES.items():
        served[name] = ("gauge", frozenset(labels))
    return served


class _DatabaseGauges(Collector):
    """The saga figures read for this scrape, as gauges."""

    def __init__(self, figures: Iterable[SagaFigures]) -> None:
        self.figures = list(figures)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        families = {
            name: GaugeMetricFamily(name, documentation, labels=list(labels))
            for name, (documentation, labels) in DATABASE_GAUGES.items()
        }
        for saga in self.figures:
            for state, count in sorted(saga.states.items()):
                families["exchange_saga_state"].add_metric([saga.saga, state], count)
            families["exchange_saga_oldest_pending_seconds"].add_metric([saga.saga], saga.oldest_seconds)
            families["exchange_recovery_backlog"].add_metric([saga.saga], saga.backlog)
        return families.values()


def exposition(figures: Iterable[SagaFigures] | None) -> bytes:
    """The text Prometheus scrapes: every process's recorded metrics (one process's, outside
    multiprocess mode) and the saga figures, unless they could not be read (``None``)."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get(MULTIPROCESS_DIRECTORY):
        _SizedFiles(registry)  # type: ignore[no-untyped-call]  # its constructor, untyped in prometheus-client
    else:
        registry.register(_Recorded())
    if figures is not None:
        registry.register(_DatabaseGauges(figures))
    return generate_latest(registry)


class _SizedFiles(multiprocess.MultiProcessCollector):
    """Every process's metric files, but those another process is creating at this instant,
    and the live gauges of a process that is gone.

    prometheus-client creates a process's file empty and then sizes it; a scrape that reads it
    in between fails (there is not even the header's length to read). A file that small holds
    no value yet, so leaving it out loses nothing: it counts from the next scrape on.

    A worker that stops drops its live gauges (:func:`forget_process`); one killed (uvicorn
    kills a worker that misses its health check, the kernel one out of memory) cannot, and its
    breakers' states were added in for as long as the gateway ran: a breaker open at its death
    showed open for good."""

    def collect(self) -> Iterable[Metric]:
        files = [
            path
            for path in glob.glob(os.path.join(self._path, "*.db"))
            if _sized(path) and not _live_gauges_of_a_dead_process(path)
        ]
        return self.merge(files, accumulate=True)  # type: ignore[no-untyped-call,no-any-return]  # untyped in prometheus-client


def _sized(path: str) -> bool:
    try:
        return os.path.getsize(path) >= _HEADER_BYTES
    except FileNotFoundError:  # a dead process's live gauges, removed since the listing
        return False


def _live_gauges_of_a_dead_process(path: str) -> bool:
    """Whether ``path`` holds the live gauges (``gauge_live…_<pid>.db``, prometheus-client's
    name) of a process that no longer runs."""
    kind, _, pid = os.path.basename(path).removesuffix(".db").rpartition("_")
    if not kind.startswith("gauge_live") or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it runs, as another user
        return False
    return False


#: A metric file's header: the length in use and padding (prometheus-client's ``MmapedDict``).
_HEADER_BYTES = 8


class _Recorded(Collector):
    """This process's own metrics (single-process mode)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def forget_process(pid: int) -> None:
    """Drop a process's live gauges (its breakers' states) when it stops, in multiprocess mode;
    its counters and histograms stay counted."""
    if os.environ.get(MULTIPROCESS_DIRECTORY):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # untyped in prometheus-client


def count_ledger_postings(session: AsyncSession, kinds: Iterable[str]) -> None:
    """Count transactions of ``kinds`` posted in ``session``, when it commits: a metric of what
    was written counts only what stayed written."""
    counts = CountOf(kinds)
    if not counts:
        return

    def record() -> None:
        for kind, posted in counts.items():
            LEDGER_POSTINGS.labels(kind).inc(posted)

    after_commit(session, record)


def count_recovered_closes(periods: int) -> None:
    """Periods a recovery pass closed after their closer stopped (committed already)."""
    RECOVERED_CLOSES.inc(periods)


def count_batch_result_mismatch() -> None:
    """A result-file line whose points were not those sent (:mod:`exchange.conversions.batches`)."""
    BATCH_RESULT_MISMATCHES.inc()


def count_saga_fault(saga: str) -> None:
    """A row of ``saga`` (its slug) whose driving raised an unexpected error."""
    SAGA_FAULTS.labels(saga).inc()


def observe_partner_call(program: str, operation: str, outcome: str, started: float) -> None:
    """One attempt at a partner call, begun at ``started`` (``time.perf_counter()``)."""
    PARTNER_CALL_DURATION.labels(program, operation, outcome).observe(time.perf_counter() - started)


def set_breaker_open(program: str, is_open: bool) -> None:
    BREAKER_OPEN.labels(program).set(1 if is_open else 0)


def observe_request(operation: str, outcome: str, started: float) -> None:
    """One GraphQL request, begun at ``started`` (``time.perf_counter()``)."""
    REQUEST_DURATION.labels(operation, outcome).observe(time.perf_counter() - started)


def count_errors(codes: Iterable[str]) -> None:
    for code in codes:
        ERRORS.labels(code).inc()


#: Headers a reverse proxy adds (and a client cannot take away) to what it forwards.
PROXY_HEADERS = ("x-forwarded-for", "forwarded")


class MetricsEndpoint:
    """``GET /metrics``: the exposition, with the saga figures ``read_figures`` gives when the
    database answers within :attr:`figures_timeout` seconds. Otherwise (an outage, a failover,
    a slow database) the scrape still answers, without those gauges: the recorded metrics
    matter most then.

    Prometheus scrapes each pod directly. A request that came through a reverse proxy (the
    public ingress) is answered 404 as if the path did not exist, by the gateway's own handler
    of such addresses (in the API's JSON shape): the metrics name no member, but they show
    partners' volumes and failures, which are no business of the internet.
    """

    def __init__(self, read_figures: Callable[[], Awaitable[Iterable[SagaFigures]]], figures_timeout: float = 2.0):
        self.figures = SharedQuery(read_figures)
        self.figures_timeout = figures_timeout

    async def answer(self, request: Request) -> Response:
        if any(header in request.headers for header in PROXY_HEADERS):
            raise HTTPException(status_code=404)  # answered as any address nothing serves
        figures: Iterable[SagaFigures] | None
        try:
            figures = await self.figures.within(self.figures_timeout)
        except (TimeoutError, DatabaseUnavailable) as exc:
            logger.warning("metrics: the saga figures are left out of this scrape (%s)", type(exc).__name__)
            figures = None
        return Response(exposition(figures), media_type=CONTENT_TYPE_LATEST)
