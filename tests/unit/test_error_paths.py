"""``extensions.field`` is the path of the argument as the client wrote it: the domain names an
input by its request's name for it, and the schema puts it under the argument holding it."""

from __future__ import annotations

import pytest

from exchange.api.errors import ArgumentPaths
from exchange.api.schema import build_schema
from exchange.settings import Settings


@pytest.fixture(scope="module")
def mutation_fields() -> dict[str, ArgumentPaths]:
    mutation = build_schema(Settings())._schema.mutation_type
    assert mutation is not None
    return {name: ArgumentPaths.of(field) for name, field in mutation.fields.items()}


@pytest.mark.parametrize(
    ("operation", "named", "path"),
    [
        ("createQuote", "toProgram", "input.toProgram"),
        ("createQuote", "points", "input.points"),
        ("setConversionRate", "bands[1].ratio", "input.bands[1].ratio"),
        ("clearConversionRate", "fromProgram", "fromProgram"),
        ("publishReward", "programId", "programId"),
        ("publishReward", "title", "input.title"),
        ("resolveBreak", "adjustment.amount", "adjustment.amount"),
        ("executeConversion", "quoteId", "quoteId"),
        ("executeConversion", "points", None),  # no argument of executeConversion: left out
        ("executeConversion", None, None),
    ],
)
def test_a_domain_name_becomes_the_argument_path(
    mutation_fields: dict[str, ArgumentPaths], operation: str, named: str | None, path: str | None
) -> None:
    assert mutation_fields[operation].path(named) == path
