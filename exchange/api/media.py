"""The media types GraphQL over HTTP answers in."""

from __future__ import annotations

from starlette.datastructures import Headers

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"


def accepts_graphql_response_json(headers: Headers) -> bool:
    accept = headers.get("accept", "")
    return any(part.split(";")[0].strip() == GRAPHQL_RESPONSE_JSON for part in accept.split(","))


def response_media_type(headers: Headers) -> str:
    return GRAPHQL_RESPONSE_JSON if accepts_graphql_response_json(headers) else "application/json"
