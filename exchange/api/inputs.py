"""The one rule every string a client sends must keep, checked before any resolver runs.

Every ``String`` argument and input field declares its longest value next to it::

    idempotency_key: IdempotencyKey
    title: Annotated[str, Text(TITLE_LENGTH, min_length=1)]

(``ID`` values may declare one too, and are held to :data:`ID_LENGTH` otherwise). The limits
are the columns' own lengths, from the constants the models use, so SQLite holds the same
values PostgreSQL does. When the schema is built, :func:`enforce_input_rules` compiles each
field's arguments (input objects and lists included) into checks and runs them ahead of the
field's resolver: a string with a NUL, an unpaired surrogate, or more characters than its
limit is ``BAD_USER_INPUT`` naming the field (``input.title``), and nothing runs. A ``String``
declared without a limit stops the schema from being built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin

import strawberry
from graphql import (
    GraphQLArgument,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    default_field_resolver,
)

from exchange.db.types import MAX_BIGINT
from exchange.errors import BadUserInput
from exchange.idempotency import IDEMPOTENCY_KEY_LENGTH, IDEMPOTENCY_KEY_RULE, key_problem
from exchange.ledger.periods import PERIOD_LENGTH, overlong_period
from exchange.text import CHOSEN_ID_LENGTH, CHOSEN_ID_RULE, chosen_id_problem, text_problem

if TYPE_CHECKING:
    from strawberry.schema.schema import Schema

#: The longest id the exchange stores (programs, rewards, promotions; members' and
#: conversions' ids are shorter): a longer ``ID`` names nothing.
ID_LENGTH = 64
_STRAWBERRY_DEFINITION = "strawberry-definition"

#: ``Check(value, path)`` raises :class:`~exchange.errors.BadUserInput` for a value it refuses.
Check = Callable[[Any, str], None]


@dataclass(frozen=True)
class Text:
    """The declared limits of a string argument or input field (``Annotated[str, Text(…)]``)."""

    max_length: int
    min_length: int = 0
    printable: bool = False

    def problem(self, value: str) -> str | None:
        return text_problem(value, self.max_length, min_length=self.min_length, printable=self.printable)

    def describe(self) -> str:
        """The limit as the schema states it."""
        return f"At most {self.max_length} characters."

    def check(self, value: Any, path: str) -> None:
        if isinstance(value, str) and (problem := self.problem(value)):
            raise BadUserInput(f"{path} {problem}", field=path)


@dataclass(frozen=True)
class _IdempotencyKeyText(Text):
    """An idempotency key's declaration: the services' own rule, stated in the schema."""

    def problem(self, value: str) -> str | None:
        return key_problem(value)

    def describe(self) -> str:
        return f"Yours to choose: {IDEMPOTENCY_KEY_RULE}."


@dataclass(frozen=True)
class _ChosenIdText(Text):
    """The declaration of an id a partner chooses for what it publishes: the domain's own rule
    (:func:`~exchange.text.chosen_id_problem`), stated in the schema."""

    def problem(self, value: str) -> str | None:
        return chosen_id_problem(value)

    def describe(self) -> str:
        return f"Yours to choose: {CHOSEN_ID_RULE}."


@dataclass(frozen=True)
class _PeriodText(Text):
    """A settlement period's name: its limit, and the format the calendar checks."""

    def describe(self) -> str:
        return "A settlement period, `YYYY-MM` (its first month)."

    def check(self, value: Any, path: str) -> None:
        if isinstance(value, str) and (problem := overlong_period(value)):
            raise BadUserInput(problem, field=path)
        super().check(value, path)


def numeric_id(value: str, *, what: str, field: str) -> int:
    """A numeric row id (a break's, a delivery's) from its GraphQL ID: it fits 64 bits."""
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_BIGINT:
        raise BadUserInput(f"{what} is a number from 0 to {MAX_BIGINT}, not {value!r}", field=field)
    return int(value)


#: A client-chosen key that makes a write idempotent: one rule for every such key.
IdempotencyKey = Annotated[str, _IdempotencyKeyText(IDEMPOTENCY_KEY_LENGTH)]
#: The same, where a field takes one optionally (added after clients that send none).
OptionalIdempotencyKey = Annotated[str | None, _IdempotencyKeyText(IDEMPOTENCY_KEY_LENGTH)]
#: An id a partner chooses for a reward or a promotion it publishes.
ChosenId = Annotated[strawberry.ID, _ChosenIdText(CHOSEN_ID_LENGTH)]
#: A settlement period's name, ``YYYY-MM`` (its format is the calendar's to check).
PeriodName = Annotated[str, _PeriodText(PERIOD_LENGTH)]


def _declared(annotation: Any) -> Text | None:
    """The :class:`Text` an annotation carries, at any depth (``list[Annotated[…]] | None``)."""
    if get_origin(annotation) is Annotated:
        for marker in annotation.__metadata__:
            if isinstance(marker, Text):
                return marker
    for inner in get_args(annotation):
        if (found := _declared(inner)) is not None:
            return found
    return None


def _declaration(element: GraphQLArgument | GraphQLInputField) -> Text | None:
    """The element's declared limit, also written into its description (so the SDL shows it)."""
    definition = (element.extensions or {}).get(_STRAWBERRY_DEFINITION)
    annotation = getattr(definition, "type_annotation", None)
    declared = _declared(annotation.evaluate()) if annotation is not None else None
    if declared is not None:
        limit = declared.describe()
        element.description = f"{element.description} {limit}" if element.description else limit
    return declared


def _each(check: Check) -> Check:
    """``check`` on a value, or on each item of a list (``path[0]``, …)."""

    def run(value: Any, path: str) -> None:
        if isinstance(value, list):
            for index, item in enumerate(value):
                if item is not None:
                    check(item, f"{path}[{index}]")
        else:
            check(value, path)

    return run


class _Compiler:
    """Turns argument and input-field types into checks, each input type once."""

    def __init__(self) -> None:
        self._inputs: dict[str, Mapping[str, Check]] = {}

    def check_for(self, where: str, graphql_type: GraphQLInputType, declared: Text | None) -> Check | None:
        named = graphql_type
        while isinstance(named, (GraphQLNonNull, GraphQLList)):
            named = named.of_type
        if isinstance(named, GraphQLInputObjectType):
            fields = self._input_fields(named)
            return _each(_input_object(fields)) if fields else None
        if not isinstance(named, GraphQLScalarType) or named.name not in ("String", "ID"):
            return None
        if declared is None and named.name == "String":
            raise TypeError(f"{where} is a String without a declared limit: annotate it Annotated[str, Text(…)]")
        return _each((declared or Text(ID_LENGTH)).check)

    def _input_fields(self, input_type: GraphQLInputObjectType) -> Mapping[str, Check]:
        if input_type.name not in self._inputs:
            self._inputs[input_type.name] = {}  # a recursive input type meets itself as done
            checks = {
                name: check
                for name, field in input_type.fields.items()
                if (check := self.check_for(f"{input_type.name}.{name}", field.type, _declaration(field)))
            }
            self._inputs[input_type.name] = checks
        return self._inputs[input_type.name]


def _input_object(fields: Mapping[str, Check]) -> Check:
    def run(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for name, check in fields.items():
                if value.get(name) is not None:
                    check(value[name], f"{path}.{name}")

    return run


def _checked(resolve: Callable[..., Any], checks: Mapping[str, Check]) -> Callable[..., Any]:
    def checked_resolve(source: Any, info: Any, **arguments: Any) -> Any:
        for name, check in checks.items():
            if arguments.get(name) is not None:
                check(arguments[name], name)
        return resolve(source, info, **arguments)

    return checked_resolve


def enforce_input_rules(schema: Schema) -> None:
    """Make every field with string arguments check them before it resolves.

    Called once when the schema is built; raises ``TypeError`` for a ``String`` argument or
    input field declared without a limit.
    """
    compiler = _Compiler()
    for graphql_type in schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        for field_name, field in graphql_type.fields.items():
            checks = {
                name: check
                for name, argument in field.args.items()
                if (
                    check := compiler.check_for(
                        f"{graphql_type.name}.{field_name}({name})", argument.type, _declaration(argument)
                    )
                )
            }
            if checks:
                field.resolve = _checked(field.resolve or default_field_resolver, checks)
