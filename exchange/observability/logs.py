"""The gateway's logs: one line per record, as text or JSON, carrying the request and saga it
belongs to, and never a secret.

What a record belongs to is kept in a context variable (:func:`log_context`): the request id
(:mod:`exchange.observability.requests`) and the id of the saga being driven (``conversion_id``,
``redemption_id``, ``status_match_id``). Tasks started inside inherit it, so every line written
on a request's behalf names it, whichever module wrote it.

Secrets are kept out twice. The code does not log them: tokens, client secrets, PINs and
verification codes are never formatted into a message. And every formatted line (message and
trace alike) passes :func:`redact`, which blanks what looks like a credential: an
``Authorization`` scheme and its value, a JWT, a webhook secret or signature, a URL's password
(or its user name, when it has no password), and the value of any ``name=value`` or
``"name": value`` pair whose name is a credential's (``access_token``, ``client_secret``,
``password``, ``pin``, ``webhook_secret``, ``verification_code``, …).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from exchange.text import one_line

LogFormat = Literal["text", "json"]

REDACTED = "***"

_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar("exchange_log_context", default=MappingProxyType({}))

#: Names whose values are credentials, in any case, with ``-`` or ``_``; also as the last word
#: of a longer name (``webhook_secret``, ``member-pin``, ``newPassword``), and before ``code``
#: (``verification_code``).
_SECRET_NAMES = (
    r"authorization|proxy[-_]authorization|cookie|set[-_]cookie|access[-_]token|refresh[-_]token|id[-_]token|"
    r"token|client[-_]secret|secret|password|passwd|passcode|pin|otp|totp|assertion|api[-_]key|verification|"
    r"signature"
)
_SECRET_PAIR = re.compile(
    rf"""(?ix)
    (?P<name>["']?\b(?:[a-z0-9]+[-_]|(?-i:[a-z0-9]+(?=[A-Z])))*(?:{_SECRET_NAMES})(?:[-_]?code)?\b["']?\s*[:=]\s*)
    (?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|(?:Bearer|Basic)\s+[^\s,;&"']+|
      v1,[^\s"']+(?:\s+v1,[^\s"']+)*|[^\s,;&"'}}\]]+)
    """
)
_SCHEME = re.compile(r"(?i)\b(Bearer|Basic|DPoP)\s+[A-Za-z0-9._~+/=-]{8,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
#: A webhook signing secret (``whsec_``…) and a Standard Webhooks signature (``v1,`` and base64).
_WEBHOOK_SECRET = re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}")
_WEBHOOK_SIGNATURE = re.compile(r"\bv1,[A-Za-z0-9+/]{16,}={0,2}")
#: A URL's ``userinfo@`` (a database's, a webhook's, a partner's), to the last ``@`` before its
#: path, so a password holding a raw ``@`` is not cut short.
_URL_USERINFO = re.compile(r"(?i)(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^\s/?#]*)@")


def _blank_userinfo(found: re.Match[str]) -> str:
    """``user:***@`` keeps the user name operators need; a user name alone is blanked, as it
    may be a key itself (``https://sk_live_…@host``)."""
    user, colon, _ = found.group("userinfo").partition(":")
    return f"{found.group('scheme')}{user}:{REDACTED}@" if colon else f"{found.group('scheme')}{REDACTED}@"


def redact(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``***``."""
    text = _JWT.sub(REDACTED, text)
    text = _WEBHOOK_SECRET.sub(REDACTED, text)
    text = _WEBHOOK_SIGNATURE.sub(f"v1,{REDACTED}", text)
    text = _URL_USERINFO.sub(_blank_userinfo, text)
    text = _SCHEME.sub(lambda found: f"{found.group(1)} {REDACTED}", text)

    def blank(found: re.Match[str]) -> str:
        value = found.group("value")
        quote = value[0] if value[:1] in ("'", '"') else ""
        return f"{found.group('name')}{quote}{REDACTED}{quote}"

    return _SECRET_PAIR.sub(blank, text)


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Every record written inside (in this task, and tasks it starts) carries ``fields``."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> Mapping[str, str]:
    return _CONTEXT.get()


def _exception_texts(error: BaseException | None) -> Iterator[str]:
    """The message and the notes of ``error`` and of every exception the trace shows with it
    (what it was raised from or while handling, and a group's members), as the trace writes
    them."""
    seen: set[int] = set()
    waiting = [error]
    while waiting:
        current = waiting.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        try:
            message = str(current)
        except Exception:  # a broken __str__: the trace writes "<exception str() failed>" instead
            message = ""
        yield message
        yield from (note for note in getattr(current, "__notes__", ()) if isinstance(note, str))
        waiting += [current.__cause__, current.__context__]
        if isinstance(current, BaseExceptionGroup):
            waiting += current.exceptions


def _each_line(text: str) -> str:
    return "\n".join(one_line(line) for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    """``time level logger message key=value…``, redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line without its trace, as one line (:func:`~exchange.text.one_line`): a message
        may hold what a client or a partner sent, which must not start a line of its own nor
        drive the terminal of whoever reads the log (the JSON format escapes it too)."""
        return one_line(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        """The trace, each of its lines as one line, and each exception's message and notes
        (which may quote a partner or a client) within one: a line break in them would begin a
        line of the trace that reads as a log entry of its own."""
        trace = super().formatException(ei)
        for text in _exception_texts(ei[1]):
            if (escaped := one_line(text)) != text:
                trace = trace.replace(text, escaped)
        return _each_line(trace)

    def formatStack(self, stack_info: str) -> str:
        return _each_line(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = " ".join(f"{key}={value}" for key, value in current_context().items())
        if context:
            first, newline, rest = line.partition("\n")
            line = f"{first} {context}{newline}{rest}"
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``process``
    (the worker's pid), ``message``,
    the context's fields (``request_id``, ``conversion_id``, …) and ``exception`` (its trace);
    every string redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": record.process,
            "message": record.getMessage(),
            **current_context(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(
            {key: _unicode(redact(value)) if isinstance(value, str) else value for key, value in entry.items()}
        )


def _unicode(text: str) -> str:
    """``text`` with an unpaired surrogate (a client's ``"\\ud800"`` in JSON, decoded) written as
    its escape in letters, as the text format writes it: JSON-encoded as it was, it became the
    escape ``\\ud800`` itself, which Python reads back but a strict parser (Rust's serde_json, for
    one) refuses, losing the line."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


FORMATTERS: Mapping[LogFormat, type[logging.Formatter]] = {"text": TextFormatter, "json": JsonFormatter}
