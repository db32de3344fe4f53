"""The GraphQL schema, assembled from the root types and the cross-cutting extensions."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError
from graphql.validation.rules.overlapping_fields_can_be_merged import OverlappingFieldsCanBeMergedRule
from strawberry.extensions import (
    MaxAliasesLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.types import ExecutionContext

from exchange.api.authentication import refuse_without_token
from exchange.api.errors import log_unexpected, name_argument_paths
from exchange.api.expansion import FieldsMergeWithinBudget, within_fields_limit
from exchange.api.inputs import enforce_input_rules
from exchange.api.observed import name_the_operation
from exchange.api.operations import refuse_several_unnamed
from exchange.api.permissions import Rule, enforce_field_rules
from exchange.api.roots import Mutation, Query
from exchange.api.scalars import SCALARS
from exchange.settings import Settings


class RequestChecks(SchemaExtension):
    """The exchange's own rules for every request, all in one extension: Strawberry wraps each
    hook of each extension in a context manager of its own at every request (about 9 µs a hook),
    and each of these only acts before its phase begins.

    Before parsing and validation: the document's token limit, and the specified validation
    rules with the exchange's limits (``limit_rules``), graphql-core's check that fields merge
    replaced by one that first bounds its work
    (:class:`~exchange.api.expansion.FieldsMergeWithinBudget`). Before execution, in this
    order: an operation selecting protected fields without a token is refused
    (:func:`~exchange.api.authentication.refuse_without_token`), then a document of several
    operations without ``operationName`` (:func:`~exchange.api.operations.refuse_several_unnamed`:
    an ambiguous document is refused as such), and the operation is named for the metrics
    (:func:`~exchange.api.observed.name_the_operation`)."""

    def __init__(self, limit_rules: tuple[type[ASTValidationRule], ...], max_tokens: int) -> None:
        self.limit_rules = limit_rules
        self.max_tokens = max_tokens

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self.max_tokens
        kept = tuple(rule for rule in context.validation_rules if rule is not OverlappingFieldsCanBeMergedRule)
        context.validation_rules = (*kept, FieldsMergeWithinBudget, *self.limit_rules)
        yield

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        refuse_without_token(context)
        refuse_several_unnamed(context)
        name_the_operation(context)
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
    limit_rules = (
        within_fields_limit(
            max_fields,
            [
                *QueryDepthLimiter(max_depth=max_depth).validation_rules,
                *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
            ],
        ),
    )
    return ExchangeSchema(
        query=Query,
        mutation=Mutation,
        extensions=[
            # Clients send the same few documents over and over: parse and validate each once.
            lambda: ShortDocumentParserCache(maxsize=1024),
            lambda: ShortDocumentValidationCache(maxsize=1024),
            lambda: RequestChecks(limit_rules, max_tokens),
        ],
    )
