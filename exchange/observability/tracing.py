"""OpenTelemetry traces across a conversion's hops: the GraphQL request, each saga step, each
partner call (whose ``traceparent`` header carries the trace on to the partner) and the ledger
posting.

The code asks for spans everywhere (:func:`span`); until a tracer provider is set none is made,
which costs nothing, and no ``traceparent`` is sent (not even a caller's, passed on). :func:`configure_tracing`
sets one up from OpenTelemetry's standard variables, and only when they ask for it:
``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``; ``none`` or unset: off) or an
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (then OTLP over HTTP,
which needs the ``otlp`` extra: ``pip install 'coalition-points-exchange[otlp]'``).
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name the service (default
``coalition-exchange``); the exporter reads its own variables (headers, timeout, …).

What leaves the process is redacted as the logs are (:func:`~exchange.observability.logs.redact`):
an exception recorded on a span (its message and trace, and the span's status) may quote a URL
with its password, a token or a secret as well as a log line may, so every span passes
:class:`RedactingExporter` on its way out, whatever recorded it.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import Literal

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status
from opentelemetry.util.types import Attributes, AttributeValue

from exchange.errors import ConfigurationError
from exchange.observability.logs import redact

TRACER = "exchange"
DEFAULT_SERVICE_NAME = "coalition-exchange"


#: What :func:`span` gives while tracing is off: no span, and none made current.
_NO_SPAN: AbstractContextManager[trace.Span] = nullcontext(trace.INVALID_SPAN)


def tracing_on() -> bool:
    """Whether a tracer provider is set (:func:`configure_tracing`, or a test's): until one
    is, spans would record nothing."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Attributes = None,
    continuing: Mapping[str, str] | None = None,
) -> AbstractContextManager[trace.Span]:
    """A span of the exchange's tracer, current for the ``with`` block; ``continuing``: the
    headers of the request whose trace (its ``traceparent``) the span continues.

    While tracing is off, nothing is made: OpenTelemetry's non-recording spans cost about 13 µs
    each, and a conversion asks for eight. So no trace context is current either, and none,
    not even a caller's, is sent on to a partner."""
    if not tracing_on():
        return _NO_SPAN
    parent = None if continuing is None else propagate.extract(continuing)
    return tracer().start_as_current_span(name, context=parent, kind=kind, attributes=attributes)


def tracer() -> trace.Tracer:
    """The exchange's tracer, from whichever provider is set (none: spans record nothing)."""
    return _tracer_of(trace.get_tracer_provider())


@lru_cache(maxsize=4)
def _tracer_of(provider: trace.TracerProvider) -> trace.Tracer:
    """``provider``'s tracer of the exchange, made once (OpenTelemetry's API makes a new one at
    every asking, and a conversion asks several times)."""
    return provider.get_tracer(TRACER)


def chosen_exporter(environ: Mapping[str, str]) -> Literal["otlp", "console"] | None:
    """Which span exporter OpenTelemetry's variables ask for, or None: tracing stays off. Raises
    ConfigurationError for one the exchange cannot run: ``exchange serve`` asks before it starts
    its workers, each of which would otherwise fail on it with a trace, be restarted, and fail
    again, the gateway listening and serving no one."""
    names = [name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if names == ["none"] or (not names and not endpoint):
        return None
    name = names[0] if names else "otlp"
    if name == "console":
        return "console"
    if name != "otlp":
        raise ConfigurationError(f"OTEL_TRACES_EXPORTER: {name!r} is not one of otlp, console, none")
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'coalition-points-exchange[otlp]'"
        ) from None
    return "otlp"


def exporter_from(environ: Mapping[str, str]) -> SpanExporter | None:
    """The span exporter OpenTelemetry's variables ask for (:func:`chosen_exporter`), or None."""
    chosen = chosen_exporter(environ)
    if chosen is None:
        return None
    if chosen == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def _redacted_value(value: AttributeValue) -> AttributeValue:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return tuple(redact(item) if isinstance(item, str) else item for item in value)
    return value


def _redacted_attributes(attributes: Attributes) -> dict[str, AttributeValue] | None:
    return None if attributes is None else {name: _redacted_value(value) for name, value in attributes.items()}


def redacted_span(span: ReadableSpan) -> ReadableSpan:
    """``span`` with every text it carries redacted: its attributes, its events' (an exception's
    ``exception.message`` and ``exception.stacktrace``) and its status's description."""
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description))
    return ReadableSpan(
        name=redact(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_redacted_attributes(span.attributes),
        events=[Event(event.name, _redacted_attributes(event.attributes), event.timestamp) for event in span.events],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingExporter(SpanExporter):
    """``exporter``, sent every span redacted (:func:`redacted_span`)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([redacted_span(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def tracer_provider(exporter: SpanExporter, service_name: str = DEFAULT_SERVICE_NAME) -> TracerProvider:
    """A provider that exports its spans, in batches and redacted, through ``exporter``."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(RedactingExporter(exporter)))
    return provider


def configure_tracing(environ: Mapping[str, str]) -> bool:
    """Send this process's spans where ``environ`` says (see the module's docstring); whether
    tracing is now on."""
    exporter = exporter_from(environ)
    if exporter is None:
        return False
    trace.set_tracer_provider(tracer_provider(exporter, environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME))
    return True


def flush_traces() -> None:
    """Export the spans still buffered (at shutdown), if a provider that buffers is set."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()


def inject_trace_context(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` (W3C Trace Context) to outgoing ``headers``;
    nothing when no span records."""
    if tracing_on():
        propagate.inject(headers)
