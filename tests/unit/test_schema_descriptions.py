"""The schema explains itself: GraphiQL's docs pane and schema.graphql are where a partner's
developer first reads what a type or a value means."""

from __future__ import annotations

from graphql import GraphQLEnumType
from graphql import build_schema as parse_sdl

from exchange.api.schema import build_schema
from exchange.settings import Settings


def test_every_type_and_every_enum_value_is_described() -> None:
    schema = parse_sdl(build_schema(Settings()).as_str())
    silent = []
    for name, kind in schema.type_map.items():
        if name.startswith("__") or name in ("String", "Int", "Float", "Boolean", "ID"):
            continue
        if not kind.description:
            silent.append(name)
        if isinstance(kind, GraphQLEnumType):
            silent += [f"{name}.{value}" for value, defined in kind.values.items() if not defined.description]
    assert silent == []
