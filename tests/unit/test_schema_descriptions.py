"""The schema explains itself: GraphiQL's docs pane and schema.graphql are where a partner's
developer first reads what a type, a value, a field or an argument means."""

from __future__ import annotations

import re

from graphql import GraphQLEnumType, GraphQLInputObjectType, GraphQLInterfaceType, GraphQLObjectType
from graphql import build_schema as parse_sdl

from exchange.api.schema import build_schema
from exchange.settings import Settings

SCHEMA = parse_sdl(build_schema(Settings()).as_str())
#: What the schema adds to a string's description by itself (its limit): no description alone.
ONLY_A_LIMIT = re.compile(r"At most \d+ characters\.")
OWN_TYPES = {
    name: kind
    for name, kind in SCHEMA.type_map.items()
    if not name.startswith("__") and name not in ("String", "Int", "Float", "Boolean", "ID")
}


def test_every_type_and_every_enum_value_is_described() -> None:
    silent = []
    for name, kind in OWN_TYPES.items():
        if not kind.description:
            silent.append(name)
        if isinstance(kind, GraphQLEnumType):
            silent += [f"{name}.{value}" for value, defined in kind.values.items() if not defined.description]
    assert silent == []


def silent_about(description: str | None) -> bool:
    return not description or ONLY_A_LIMIT.fullmatch(description) is not None


def test_every_field_argument_and_input_field_is_described() -> None:
    """Beyond the limit a string's declaration adds (:mod:`exchange.api.inputs`)."""
    silent = []
    for name, kind in OWN_TYPES.items():
        if isinstance(kind, (GraphQLObjectType, GraphQLInterfaceType)):
            for field_name, field in kind.fields.items():
                if silent_about(field.description):
                    silent.append(f"{name}.{field_name}")
                silent += [
                    f"{name}.{field_name}({argument_name})"
                    for argument_name, argument in field.args.items()
                    if silent_about(argument.description)
                ]
        elif isinstance(kind, GraphQLInputObjectType):
            silent += [
                f"{name}.{field_name}" for field_name, field in kind.fields.items() if silent_about(field.description)
            ]
    assert silent == []


def test_a_books_figure_says_its_value_is_the_one_the_books_give_not_always_todays() -> None:
    """A closed period's books are valued at the values its closing fixed (PartnerBooks.pointValue,
    pointValuesFixedAt): the figure's description must not tell a partner it is today's value."""
    description = SCHEMA.type_map["PointsFigure"].description or ""
    assert "PartnerBooks.pointValue" in description and "closing fixed" in description, description
