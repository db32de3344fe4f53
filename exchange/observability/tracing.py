"""OpenTelemetry traces across a conversion's hops: the GraphQL request, each saga step, each
partner call (whose ``traceparent`` header carries the trace on to the partner) and the ledger
posting.

The code asks OpenTelemetry's API for spans everywhere; until a tracer provider is set they are
non-recording and cost next to nothing, and no ``traceparent`` is sent. :func:`configure_tracing`
sets one up from OpenTelemetry's standard variables, and only when they ask for it:
``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``; ``none`` or unset: off) or an
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (then OTLP over HTTP,
which needs the ``otlp`` extra: ``pip install 'coalition-points-exchange[otlp]'``).
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` name the service (default
``coalition-exchange``); the exporter reads its own variables (headers, timeout, …).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from exchange.errors import ConfigurationError

TRACER = "exchange"
DEFAULT_SERVICE_NAME = "coalition-exchange"


def tracer() -> trace.Tracer:
    """The exchange's tracer, from whichever provider is set (none: spans record nothing)."""
    return trace.get_tracer(TRACER)


def exporter_from(environ: Mapping[str, str]) -> SpanExporter | None:
    """The span exporter OpenTelemetry's variables ask for, or None: tracing stays off."""
    names = [name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()]
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if names == ["none"] or (not names and not endpoint):
        return None
    name = names[0] if names else "otlp"
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ConfigurationError(f"OTEL_TRACES_EXPORTER: {name!r} is not one of otlp, console, none")
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigurationError(
            "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'coalition-points-exchange[otlp]'"
        ) from None
    return OTLPSpanExporter()


def configure_tracing(environ: Mapping[str, str]) -> bool:
    """Send this process's spans where ``environ`` says (see the module's docstring); whether
    tracing is now on."""
    exporter = exporter_from(environ)
    if exporter is None:
        return False
    name = environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def flush_traces() -> None:
    """Export the spans still buffered (at shutdown), if a provider that buffers is set."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush()


def inject_trace_context(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` (W3C Trace Context) to outgoing ``headers``;
    nothing when no span records."""
    propagate.inject(headers)


def extract_trace_context(headers: Mapping[str, str]) -> Context:
    """The caller's trace context from incoming ``headers``, to continue its trace."""
    return propagate.extract(headers)
