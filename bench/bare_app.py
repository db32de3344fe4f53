"""The floor for a GraphQL request on this stack: Strawberry on Starlette under uvicorn, one
trivial field, no database, no auth. ``conversion_throughput.py`` serves it as its baseline."""

from __future__ import annotations

import strawberry
from starlette.applications import Starlette
from starlette.routing import Route
from strawberry.asgi import GraphQL


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


app = Starlette(routes=[Route("/graphql", GraphQL(strawberry.Schema(query=Query)), methods=["GET", "POST"])])
