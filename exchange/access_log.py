"""The gateway's logging configuration: uvicorn's access and error logs and the exchange's own,
in the chosen format (:mod:`exchange.observability.logs`), and no query-string value in the
access log.

A query string may carry what must never be written down: a credential a client put in the
URL by mistake (the gateway refuses it, but uvicorn logs the request line anyway) or a
member's data in a GraphQL GET. The access log keeps the path and each parameter's name and
writes ``***`` for every value; a part without ``=``, or a name that does not look like one
(too long, odd characters), is replaced whole.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from exchange.observability.logs import FORMATTERS, LogFormat

REDACTED = "***"
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]{1,32}")


def redact_query(path: str) -> str:
    """``path`` with every query value (and every odd-looking parameter) replaced by ``***``."""
    path, separator, query = path.partition("?")
    if not separator:
        return path
    return f"{path}?" + "&".join(_redact_parameter(part) for part in query.split("&"))


def _redact_parameter(part: str) -> str:
    name, equals, _ = part.partition("=")
    return f"{name}={REDACTED}" if equals and _PARAMETER_NAME.fullmatch(name) else REDACTED


class RedactQueryValues(logging.Filter):
    """Rewrites uvicorn's access records (client, method, path, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact_query(args[2]), args[3], args[4])
        return True


def uvicorn_log_config(log_format: LogFormat = "text", level: str | None = None) -> dict[str, Any]:
    """uvicorn's logging configuration with its access log's query values redacted and every
    line in ``log_format``; with a ``level``, the exchange's own loggers (``exchange.*``) are
    written at that level to standard error beside uvicorn's (as ``exchange serve`` runs;
    otherwise they propagate to the root logger, as in tests)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"] = {"exchange": {"()": FORMATTERS[log_format]}}
    config["filters"] = {"redact_query": {"()": RedactQueryValues}}
    for handler in config["handlers"].values():
        handler["formatter"] = "exchange"
    config["handlers"]["access"]["filters"] = ["redact_query"]
    if level is not None:
        config["loggers"]["exchange"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config
