"""One conversion is one trace: the GraphQL request (continuing the caller's trace), the saga's
steps, each partner call and the ledger posting, with the trace carried on to the partners in
``traceparent`` — seen through OpenTelemetry's in-memory exporter and by real sandbox partners."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from exchange.errors import ConfigurationError
from exchange.observability.tracing import configure_tracing, exporter_from
from exchange.testing.kit import ExchangeKit
from exchange.testing.sandboxes import SandboxFleet

LINK = """mutation($program: ID!, $ref: String!, $verification: String!) {
  linkAccount(programId: $program, memberRef: $ref, verification: $verification) { memberRef } }"""
QUOTE = """mutation($from: ID!, $to: ID!, $points: Int!) {
  createQuote(input: {fromProgram: $from, toProgram: $to, points: $points}) { id } }"""
EXECUTE = """mutation($quote: ID!, $key: String!) {
  executeConversion(quoteId: $quote, idempotencyKey: $key) { id status } }"""

#: The caller's trace: a W3C traceparent with a trace id and the caller's span id.
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def forget_the_tracer_provider() -> None:
    """OpenTelemetry sets its global provider once per process; tests after this one must find
    none set, as a gateway without tracing configured does. (Its own test utilities reset the
    same two private globals.)"""
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    forget_the_tracer_provider()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        forget_the_tracer_provider()


@pytest.fixture
async def partner_base_urls(sandboxes: SandboxFleet) -> dict[str, str]:
    await sandboxes.start("wallet-pay", "happy-card")
    return sandboxes.base_urls


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.span_id, "016x")


async def test_a_conversion_is_one_trace_carried_on_to_the_partners(
    spans: InMemorySpanExporter, kit: ExchangeKit, sandboxes: SandboxFleet
) -> None:
    alice = await kit.member_token("wallet-pay", "alice")
    await kit.data(LINK, alice, program="happy-card", ref="alice", verification="1111")
    quote = (await kit.data(QUOTE, alice, **{"from": "happy-card", "to": "wallet-pay", "points": 1000}))["createQuote"]
    token = await kit.member_token("happy-card", "alice")
    spans.clear()
    response = await kit.http.post(
        "/graphql",
        json={"query": EXECUTE, "variables": {"quote": quote["id"], "key": "traced"}},
        headers={"authorization": f"Bearer {token}", "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert response.json()["data"]["executeConversion"]["status"] == "COMPLETED"

    traced = [span for span in spans.get_finished_spans() if trace_id(span) == CALLER_TRACE]
    by_name = {span.name: span for span in traced}
    assert {
        "graphql executeConversion",
        "conversion DEBIT",
        "partner happy-card debit",
        "conversion CREDIT",
        "partner wallet-pay credit",
        "ledger post",
    } <= set(by_name)
    request = by_name["graphql executeConversion"]
    assert request.kind is trace.SpanKind.SERVER
    assert request.parent is not None and format(request.parent.span_id, "016x") == CALLER_SPAN
    for step, call in (
        ("conversion DEBIT", "partner happy-card debit"),
        ("conversion CREDIT", "partner wallet-pay credit"),
    ):
        assert by_name[call].parent is not None and by_name[call].parent.span_id == by_name[step].context.span_id
        assert by_name[step].attributes["exchange.saga.id"] == response.json()["data"]["executeConversion"]["id"]

    for program, call in (("happy-card", "partner happy-card debit"), ("wallet-pay", "partner wallet-pay credit")):
        sent = [
            seen["traceparent"] for seen in await sandboxes[program].admin.trace_headers() if seen["method"] == "POST"
        ]
        assert f"00-{CALLER_TRACE}-{span_id(by_name[call])}-01" in sent, sent


async def test_without_a_tracer_provider_partners_get_no_traceparent(kit: ExchangeKit, sandboxes: SandboxFleet) -> None:
    """Not even the caller's: with no span made, no trace context is current to pass on."""
    token = await kit.member_token("wallet-pay", "alice")
    response = await kit.http.post(
        "/graphql",
        json={"query": "{ me { accounts { balance } } }"},
        headers={"authorization": f"Bearer {token}", "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )
    assert response.json()["data"]["me"]["accounts"][0]["balance"] is not None
    seen = await sandboxes["wallet-pay"].admin.trace_headers()
    assert any(request["path"].startswith("/members/") for request in seen), seen
    assert all(request["traceparent"] is None for request in seen), seen


@pytest.mark.parametrize(
    ("environ", "exporter"),
    [
        ({}, None),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, None),
        ({"OTEL_TRACES_EXPORTER": "console"}, "ConsoleSpanExporter"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "OTLPSpanExporter"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "OTLPSpanExporter"),
    ],
)
def test_tracing_is_off_unless_the_standard_variables_name_an_exporter(
    environ: dict[str, str], exporter: str | None
) -> None:
    chosen = exporter_from(environ)
    assert (type(chosen).__name__ if chosen is not None else None) == exporter


def test_an_unknown_exporter_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_EXPORTER: 'jaeger'"):
        configure_tracing({"OTEL_TRACES_EXPORTER": "jaeger"})
