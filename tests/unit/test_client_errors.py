"""Whose fault an error is decides its code: the request's is typed and says what to change;
the exchange's own is masked as INTERNAL_SERVER_ERROR and logged with its trace."""

from __future__ import annotations

import logging

import pytest
from graphql import GraphQLField, GraphQLInt, GraphQLObjectType, GraphQLSchema, graphql

from exchange.api.errors import log_unexpected, to_client_error
from exchange.api.schema import build_schema
from exchange.settings import Settings


async def test_a_result_its_type_cannot_represent_is_the_exchanges_fault(caplog: pytest.LogCaptureFixture) -> None:
    schema = GraphQLSchema(GraphQLObjectType("Query", {"points": GraphQLField(GraphQLInt, resolve=lambda *_: 2**40)}))
    result = await graphql(schema, "{ points }")
    assert result.errors is not None
    with caplog.at_level(logging.ERROR, logger="exchange.api"):
        log_unexpected(result.errors)
    error = to_client_error(result.errors[0])
    assert (error.message, error.extensions) == ("Unexpected error.", {"code": "INTERNAL_SERVER_ERROR"})
    assert "cannot represent" in caplog.text


@pytest.mark.parametrize("variables", [{}, {"id": "\x00"}])
async def test_a_variable_the_document_never_uses_is_a_validation_failure(variables: dict[str, str]) -> None:
    """The document is wrong whatever the value: not BAD_USER_INPUT naming the variable (a
    value that does not fit its variable is: tests/api/test_graphql_http.py)."""
    result = await build_schema(Settings()).execute("query($id: ID) { programs { id } }", variable_values=variables)
    assert result.errors is not None
    assert [to_client_error(error).extensions for error in result.errors] == [{"code": "GRAPHQL_VALIDATION_FAILED"}]
