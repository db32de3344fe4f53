"""The access log's request paths: query values never written, parameter names kept."""

from __future__ import annotations

import logging

import pytest

from exchange.access_log import RedactQueryValues, redact_query


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/graphql", "/graphql"),
        ("/oauth/token?client_secret=s3cr3t", "/oauth/token?client_secret=***"),
        ("/graphql?query=%7Bme%7Bid%7D%7D&access_token=eyJ.x.y", "/graphql?query=***&access_token=***"),
        ("/graphql?s3cr3t-bare-value", "/graphql?***"),
        ("/graphql?a=1;token=s3cr3t", "/graphql?a=***"),
        ("/graphql?" + "k" * 43 + "=v", "/graphql?***"),
        ("/graphql?na%20me=v&=v&x==y", "/graphql?***&***&x=***"),
    ],
)
def test_query_values_are_never_logged(path: str, logged: str) -> None:
    assert redact_query(path) == logged


def test_the_filter_rewrites_uvicorns_access_record() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "POST", "/oauth/token?client_secret=s3cr3t", "1.1", 400),
        None,
    )
    assert RedactQueryValues().filter(record)
    assert record.getMessage() == '127.0.0.1:5000 - "POST /oauth/token?client_secret=*** HTTP/1.1" 400'
