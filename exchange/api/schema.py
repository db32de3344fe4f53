"""The GraphQL schema, assembled from the root types and the cross-cutting extensions."""

from __future__ import annotations

from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter

from exchange.api.errors import ErrorMapping, ExchangeSchema
from exchange.api.queries import Query
from exchange.settings import Settings


def build_schema(settings: Settings) -> ExchangeSchema:
    return ExchangeSchema(
        query=Query,
        extensions=[
            lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
            lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
            lambda: MaxAliasesLimiter(max_alias_count=settings.max_query_aliases),
            ErrorMapping,
        ],
    )
