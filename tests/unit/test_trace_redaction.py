"""What a span carries out of the process is redacted as a log line is: an exception recorded on
a span (its message, its trace, the span's status) quotes no password, token or secret."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from exchange.observability.tracing import tracer_provider

#: A failure whose message quotes credentials: a partner's URL with its password, a query's
#: token, a client secret in a form.
FAILURE = (
    "POST https://exchange:hunter2@partner.test/oauth/token?access_token=tok-123 failed: client_secret=sk-456 refused"
)
SECRETS = ("hunter2", "tok-123", "sk-456")


class PartnerBroke(Exception):
    pass


def test_an_exception_recorded_on_a_span_is_exported_redacted() -> None:
    exported = InMemorySpanExporter()
    provider = tracer_provider(exported, "test")
    with (
        pytest.raises(PartnerBroke),
        provider.get_tracer("test").start_as_current_span("partner call", attributes={"url": FAILURE}) as span,
    ):
        span.add_event("retry", {"why": FAILURE, "tries": 2, "urls": (FAILURE, FAILURE)})
        raise PartnerBroke(FAILURE)
    provider.force_flush()
    [finished] = exported.get_finished_spans()
    retry, exception = finished.events
    shown = [
        finished.status.description or "",
        str(finished.attributes),
        str(retry.attributes),
        str(exception.attributes),
    ]
    assert finished.status.status_code is StatusCode.ERROR
    assert exception.attributes is not None and "exception.stacktrace" in exception.attributes
    assert [secret for secret in SECRETS for text in shown if secret in text] == []
    assert "https://exchange:***@partner.test" in str(exception.attributes["exception.message"])
    assert retry.attributes is not None and retry.attributes["tries"] == 2  # only text is touched
    provider.shutdown()
