"""The GraphQL schema, assembled from the root types and the cross-cutting extensions."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import strawberry
from graphql import GraphQLError
from graphql.validation.rules.overlapping_fields_can_be_merged import OverlappingFieldsCanBeMergedRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.types import ExecutionContext

from exchange.api.authentication import TokenRequired
from exchange.api.errors import log_unexpected, name_argument_paths
from exchange.api.expansion import FieldsMergeWithinBudget, within_fields_limit
from exchange.api.inputs import enforce_input_rules
from exchange.api.observed import NameTheOperation
from exchange.api.operations import OneOperationOrNamed
from exchange.api.permissions import Rule, enforce_field_rules
from exchange.api.roots import Mutation, Query
from exchange.api.scalars import SCALARS
from exchange.settings import Settings


class ExchangeValidationRules(AddValidationRules):
    """The specified validation rules and the exchange's limits, with graphql-core's check that
    fields merge replaced by one that first bounds its work
    (:class:`~exchange.api.expansion.FieldsMergeWithinBudget`)."""

    def on_operation(self) -> Iterator[None]:
        specified = self.execution_context.validation_rules
        kept = tuple(rule for rule in specified if rule is not OverlappingFieldsCanBeMergedRule)
        self.execution_context.validation_rules = (*kept, FieldsMergeWithinBudget, *self.validation_rules)
        yield


#: The longest document the parser and validation caches keep. Each keeps 1,024 documents, and a
#: document is as long as the request body allows (a mebibyte, most of it a comment or a string):
#: 1,024 different ones, sent by anyone, held two gigabytes in each process. Clients send the
#: same few short documents over and over; a longer one is parsed and validated afresh.
CACHED_DOCUMENT_LENGTH = 16_384


def _cached(execution_context: ExecutionContext) -> bool:
    return len(execution_context.query or "") <= CACHED_DOCUMENT_LENGTH


class ShortDocumentParserCache(ParserCache):
    """Strawberry's parser cache, for documents of at most :data:`CACHED_DOCUMENT_LENGTH`."""

    def on_parse(self) -> Iterator[None]:
        if _cached(self.execution_context):
            yield from super().on_parse()
        else:
            yield


class ShortDocumentValidationCache(ValidationCache):
    """Strawberry's validation cache, for documents of at most :data:`CACHED_DOCUMENT_LENGTH`."""

    def on_validate(self) -> Iterator[None]:
        if _cached(self.execution_context):
            yield from super().on_validate()
        else:
            yield


class ExchangeSchema(strawberry.Schema):
    """A schema whose every field has an authorization rule, whose every string argument is
    checked against its declared limit, whose errors name their field by the argument path the
    client wrote, and that logs only unexpected errors (with their trace).

    ``field_rules`` maps ``Type.field`` to its rule; a field declared without one refuses
    everyone (see :mod:`exchange.api.permissions`). Strings: :mod:`exchange.api.inputs`;
    ``Decimal`` and ``DateTime`` values: :mod:`exchange.api.scalars`.
    """

    def __init__(self, query: type, **kwargs: Any) -> None:
        super().__init__(query, scalar_overrides=SCALARS, **kwargs)
        self.field_rules: dict[str, Rule] = enforce_field_rules(self)
        enforce_input_rules(self)
        name_argument_paths(self._schema)

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        log_unexpected(errors)


def build_schema(settings: Settings) -> ExchangeSchema:
    return _schema_within(
        settings.max_query_fields, settings.max_query_depth, settings.max_query_aliases, settings.max_query_tokens
    )


@cache
def _schema_within(max_fields: int, max_depth: int, max_aliases: int, max_tokens: int) -> ExchangeSchema:
    """The schema with these query limits, built once per process for each set of them: it holds
    no state of its own, and building it costs about 100 ms, which every app made in one process
    (each test's gateway, a replica beside it) would pay again."""
    # The limits' validation rules are made once: validation results are cached per
    # (document, rules), so rules made anew for each request would never hit the cache.
    limit_rules = [
        within_fields_limit(
            max_fields,
            [
                *QueryDepthLimiter(max_depth=max_depth).validation_rules,
                *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
            ],
        )
    ]
    return ExchangeSchema(
        query=Query,
        mutation=Mutation,
        extensions=[
            # Clients send the same few documents over and over: parse and validate each once.
            lambda: ShortDocumentParserCache(maxsize=1024),
            lambda: ShortDocumentValidationCache(maxsize=1024),
            lambda: ExchangeValidationRules(limit_rules),
            lambda: MaxTokensLimiter(max_token_count=max_tokens),
            TokenRequired,
            OneOperationOrNamed,  # after TokenRequired: an ambiguous document is refused as such
            NameTheOperation,
        ],
    )
