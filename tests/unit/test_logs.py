"""Log lines: credentials blanked whatever the format, the request's and saga's ids carried from
the context, request ids taken from the caller only when well-formed, and GraphQL operations named
for metrics by their root field only."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from graphql import parse

from exchange.api.observed import operation_label
from exchange.observability.logs import JsonFormatter, TextFormatter, log_context, redact
from exchange.observability.requests import request_id_from

JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(
    ("line", "logged"),
    [
        ("authorization: Bearer opaque-token-value", "authorization: ***"),
        ("sent Basic dXNlcjpzM2NyM3Q=", "sent Basic ***"),
        (f"assertion {JWT} refused", "assertion *** refused"),
        ("client_id=exchange&client_secret=s3cr3t&scope=points", "client_id=exchange&client_secret=***&scope=points"),
        ('{"pin": "4931", "points": 100}', '{"pin": "***", "points": 100}'),
        ("{'Access-Token': 'abc123', 'program': 'wallet-pay'}", "{'Access-Token': '***', 'program': 'wallet-pay'}"),
        ("verification=1111 refused", "verification=*** refused"),
        ("PASSWORD: hunter2", "PASSWORD: ***"),
        ("verification_code=493817 refused", "verification_code=*** refused"),
        ('{"member_pin": "4931", "newPassword": "pw"}', '{"member_pin": "***", "newPassword": "***"}'),
        ("webhook_secret=whsec_c2VjcmV0LWJ5dGVz", "webhook_secret=***"),
        ("subscribed with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "subscribed with ***"),
        ("webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDDq5VKi0= v1,bm9wZQ==", "webhook-signature: ***"),
        ("signed v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDDq5VKi0= late", "signed v1,*** late"),
        (
            "cannot connect to postgresql+psycopg://exchange:s3cr3t@db.internal/exchange",
            "cannot connect to postgresql+psycopg://exchange:***@db.internal/exchange",
        ),
        ("GET https://user:p%40ss@hooks.example/in", "GET https://user:***@hooks.example/in"),
        # A password holding a raw @ is blanked to the last one; a user name alone may be a key.
        ("GET https://user:p@ss@hooks.example/in", "GET https://user:***@hooks.example/in"),
        ("GET https://sk_live_4eC39HqLyjWDarjtT1@partner.example/x failed", "GET https://***@partner.example/x failed"),
        ("POST https://partner.example/in?from=a@b.example", "POST https://partner.example/in?from=a@b.example"),
        ("code=NOT_FOUND field=quoteId", "code=NOT_FOUND field=quoteId"),
        ("conversion cv_8f2c finished: COMPLETED", "conversion cv_8f2c finished: COMPLETED"),
    ],
)
def test_credentials_are_blanked_and_the_rest_kept(line: str, logged: str) -> None:
    assert redact(line) == logged


def record(message: str, *args: object, exc_info: bool = False) -> logging.LogRecord:
    return logging.LogRecord(
        "exchange.test", logging.WARNING, __file__, 1, message, args, sys.exc_info() if exc_info else None
    )


def test_a_json_line_carries_the_context_and_no_secret() -> None:
    with log_context(request_id="r-1"), log_context(conversion_id="cv_1"):
        line = JsonFormatter().format(record("token %s refused for %s", JWT, "alice"))
    entry = json.loads(line)
    assert entry["message"] == "token *** refused for alice"
    assert (entry["request_id"], entry["conversion_id"]) == ("r-1", "cv_1")
    assert (entry["level"], entry["logger"]) == ("warning", "exchange.test")
    assert entry["time"].endswith("+00:00") and isinstance(entry["process"], int)


def test_a_trace_is_redacted_too() -> None:
    secret = "s3cr3t-in-a-trace"
    try:
        raise ValueError("token refused: client_secret=" + secret)
    except ValueError:
        entry = json.loads(JsonFormatter().format(record("failed", exc_info=True)))
        text = TextFormatter().format(record("failed", exc_info=True))
    assert "s3cr3t-in-a-trace" not in entry["exception"] and "client_secret=***" in entry["exception"]
    assert "s3cr3t-in-a-trace" not in text and text.count("\n") > 1


def test_a_json_line_is_unicode_even_for_an_unpaired_surrogate() -> None:
    """A lone surrogate (which a client's JSON may hold) was written as the JSON escape
    ``\\ud800``, which strict parsers (Rust's serde_json) refuse: the line was lost."""
    record = logging.LogRecord("exchange.api", logging.WARNING, __file__, 1, "refused: %s", ("a\ud800b",), None)
    message = json.loads(JsonFormatter().format(record))["message"]
    assert message == "refused: a\\ud800b"  # a backslash and letters, as the text format writes it
    message.encode("utf-8")  # what a strict parser needs: Unicode text


def test_a_value_with_a_newline_cannot_forge_a_text_line() -> None:
    """What a client sent (a path, a program id) may be formatted into a message; in the text
    format its line breaks are written escaped, so the line cannot be followed by a forged one.
    A trace keeps its lines."""
    forged = "x\r\n2026-12-02 12:00:00,000 CRITICAL exchange.auth admin signed in"
    line = TextFormatter().format(record("POST /partners/%s/callbacks refused", forged))
    assert "\n" not in line and "\r" not in line
    assert "x\\r\\n2026-12-02" in line
    try:
        raise ValueError("boom")
    except ValueError:
        traced = TextFormatter().format(record("failed", exc_info=True))
    assert traced.count("\n") > 1


def test_an_exception_s_message_cannot_forge_a_text_line_of_the_trace() -> None:
    """An exception's message may quote what a partner or a client sent: a line break in it,
    in the exception or in one it was raised from or while handling, is written escaped, so no
    line of the trace reads as an entry of its own. The trace keeps its own lines."""
    forged = "x\r\n2026-12-02 12:00:00,000 CRITICAL exchange.auth admin signed in"
    try:
        try:
            raise ValueError(f"the partner answered {forged}")
        except ValueError as cause:
            raise RuntimeError(f"while handling: {forged}") from cause
    except RuntimeError as error:
        error.add_note(f"noted: {forged}")
        traced = TextFormatter().format(record("failed", exc_info=True))
    lines = traced.split("\n")
    assert not any(line.startswith("2026-12-02") for line in lines), traced
    assert all("\r" not in line for line in lines)
    assert "ValueError: the partner answered x\\r\\n2026-12-02 12:00:00,000 CRITICAL" in traced
    assert "RuntimeError: while handling: x\\r\\n2026-12-02" in traced and "noted: x\\r\\n2026" in traced
    assert "The above exception was the direct cause of the following exception:" in lines
    assert sum(line.startswith("Traceback (most recent call last):") for line in lines) == 2


@pytest.mark.parametrize(
    ("sent", "written"),
    [
        pytest.param("\x1b[2J\x1b[1;1H", "\\x1b[2J\\x1b[1;1H", id="a terminal's escape (clear the screen)"),
        pytest.param("\x1b]8;;http://evil/\x07click\x1b]8;;\x07", "\\x1b]8;;http://evil/\\x07click", id="a link"),
        pytest.param("\x9b31m", "\\x9b31m", id="a C1 control"),
        pytest.param("\u202eevil\u202c", "\\u202eevil\\u202c", id="a bidirectional override"),
        pytest.param("a\u2028b\x85c\x0bd", "a\\u2028b\\x85c\\x0bd", id="what some readers take as a line end"),
    ],
)
def test_a_partners_words_cannot_drive_the_terminal_reading_a_text_log(sent: str, written: str) -> None:
    """A partner's refusal (or a client's path) formatted into a message, or quoted by an
    exception's message in a trace, is written with what is not printable escaped, as the
    CLI writes it: it can neither forge a line nor clear, recolour or reorder what a person
    reading the log with ``tail -f`` sees."""
    line = TextFormatter().format(record("partner wallet-pay refused debit: %s", sent))
    assert line.isprintable() and written in line
    try:
        raise ValueError(f"partner wallet-pay refused debit: {sent}")
    except ValueError:
        traced = TextFormatter().format(record("failed", exc_info=True))
    assert all(part.isprintable() for part in traced.split("\n")) and written in traced
    assert traced.count("\n") > 1, "a trace keeps its own lines"


def test_a_text_line_ends_with_its_context_and_outside_it_has_none() -> None:
    with log_context(request_id="r-2"):
        inside = TextFormatter().format(record("hello"))
    outside = TextFormatter().format(record("hello"))
    assert inside.endswith("WARNING exchange.test hello request_id=r-2")
    assert outside.endswith("WARNING exchange.test hello")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("3f1c2a9e-0b7d-4c1e-9a51-2d3e4f5a6b7c", True),
        ("01HZX3K5Q8J2M4N6P8R0T2V4W6", True),
        (None, False),
        ("", False),
        ("two words", False),
        ("x" * 129, False),
        ("id\r\nforged: header", False),
        ('{"json": true}', False),
    ],
)
def test_a_callers_request_id_is_kept_only_when_well_formed(given: str | None, kept: bool) -> None:
    chosen = request_id_from(given)
    assert (chosen == given) is kept
    assert len(chosen) >= 1


@pytest.mark.parametrize(
    ("document", "operation_name", "label"),
    [
        ("{ me { accounts { balance } } }", None, "me"),
        (
            'mutation { executeConversion(quoteId: "q-secret-id", idempotencyKey: "k") { id } }',
            None,
            "executeConversion",
        ),
        ("{ a: programs { id } b: programs { name } }", None, "programs"),
        ("{ a: programs { id } b: programs { name } me { id } }", None, "(several)"),
        ("query One { me { id } } query Two { programs { id } }", "Two", "programs"),
        ("query One { me { id } } query Two { programs { id } }", None, "(none)"),
        ("{ ...Root } fragment Root on Query { me { id } }", None, "(none)"),
    ],
)
def test_an_operation_is_named_by_its_root_fields_only(document: str, operation_name: str | None, label: str) -> None:
    assert operation_label(parse(document), operation_name) == label
