"""What the partner console's pages share: who may open them, the program they act for, and
reading a form's values into the plain values the services take.

Form fields are named as GraphQL names the same inputs (``bonusPercent``, ``fromProgram``), so
that a service's error, which names its field that way, is shown on the field it is about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

from exchange.auth.principal import Principal
from exchange.auth.rules import Rule, own_program, requires, source
from exchange.auth.scopes import Scope
from exchange.db.types import MAX_INTEGER
from exchange.errors import BadUserInput, ExchangeError
from exchange.money import DECIMAL_RULE, parse_decimal
from exchange.text import whole_number, without_thousands_commas
from exchange.web.access import NotAllowed
from exchange.web.console import CONSOLE_PATH
from exchange.web.field_rules import FieldProblem
from exchange.web.visitors import visitor_of

#: The partner console's pages, below the console's own path.
PARTNER_PATH = "/partner"
BASE = CONSOLE_PATH + PARTNER_PATH
#: Reading the partner's own pages; changing its own program.
READ = requires(Scope.PARTNER_READ)
WRITE = requires(Scope.PARTNER_WRITE)
#: A row (of any table with a ``program_id`` column) belongs to the caller's program.
OWN_ROW: Rule = own_program(source("program_id"))
#: The longest text a form field of these pages takes (ids, ratios, numbers); longer is refused.
MAX_FIELD = 200
#: The years a date field takes: a moment is stored in UTC, where a local time in year 1 or
#: 9999 may fall outside the calendar.
FIRST_YEAR, LAST_YEAR = 2, 9998


def partner_of(request: Request) -> Principal:
    """The signed-in partner staff member (the page's rule admitted them: they have a program)."""
    principal = visitor_of(request).principal
    if principal is None or principal.program_id is None:
        raise NotAllowed()
    return principal


def program_of(request: Request) -> str:
    program_id = partner_of(request).program_id
    assert program_id is not None
    return program_id


def ensure_own(request: Request, row: object, rule: Rule = OWN_ROW) -> None:
    """Refuse a row of another partner's program, whatever its id in the address said, as
    not found (404), exactly as an id nobody has: a different answer would tell a partner
    which ids its competitors use."""
    if not rule.allows(partner_of(request), row):
        raise HTTPException(status_code=404)


@dataclass
class Problems:
    """What was wrong with a form: a problem per field (said with the form's label for it), and
    a message for the whole form."""

    fields: dict[str, FieldProblem] = field(default_factory=dict)
    form: FieldProblem | None = None

    def add(self, error: ExchangeError) -> None:
        if error.field is not None and error.field not in self.fields:
            self.fields[error.field] = FieldProblem.of(error)
        elif self.form is None:
            self.form = FieldProblem.of(error)

    def __bool__(self) -> bool:
        return bool(self.fields) or self.form is not None


class FormValues:
    """A posted (or queried) form's text values, read into typed values or a field's error."""

    def __init__(self, values: FormData | Mapping[str, Any]) -> None:
        self.raw = {
            name: value.strip() for name, value in values.items() if isinstance(value, str) and name != "csrf_token"
        }

    def text(self, name: str, *, required: bool = False) -> str | None:
        value = self.raw.get(name, "")
        if len(value) > MAX_FIELD:
            raise BadUserInput(f"{name} must be at most {MAX_FIELD} characters", field=name)
        if not value:
            if required:
                raise BadUserInput(f"{name} is required", field=name)
            return None
        return value

    def required(self, name: str) -> str:
        value = self.text(name, required=True)
        assert value is not None
        return value

    def integer(self, name: str, *, least: int = -MAX_INTEGER - 1, most: int = MAX_INTEGER) -> int | None:
        """A whole number from ``least`` to ``most``: by default, any GraphQL's ``Int`` takes (32
        bits: the columns such numbers are stored in hold no more); a field with a narrower rule
        names it, so that a refusal states the field's own range, not the column's."""
        value = self.text(name)
        if value is None:
            return None
        number = whole_number(value, signed=True)
        if number is None or not least <= number <= most:
            raise BadUserInput(f"{name} must be a whole number from {least:,} to {most:,}, got {value!r}", field=name)
        return number

    def required_integer(self, name: str, *, least: int = -MAX_INTEGER - 1, most: int = MAX_INTEGER) -> int:
        value = self.integer(name, least=least, most=most)
        if value is None:
            raise BadUserInput(f"{name} is required", field=name)
        return value

    def decimal(self, name: str) -> Decimal:
        """A decimal as :func:`~exchange.money.parse_decimal` reads one, thousands commas allowed
        (only between groups of three digits)."""
        value = self.required(name)
        plain = without_thousands_commas(value)
        try:
            if plain is None:
                raise ValueError(value)
            return parse_decimal(plain)
        except ValueError:
            raise BadUserInput(
                f"{name} must be written in {DECIMAL_RULE}, such as 1,250.50, got {value!r}", field=name
            ) from None

    def moment(self, name: str, zone: ZoneInfo) -> datetime | None:
        """A ``datetime-local`` value, read in the settlement time zone (the one pages show)."""
        value = self.text(name)
        if value is None:
            return None
        try:
            local = datetime.fromisoformat(value)
        except ValueError:
            raise BadUserInput(f"{name} must be a date and time, got {value!r}", field=name) from None
        if local.tzinfo is not None:
            raise BadUserInput(f"{name} must be a local date and time, got {value!r}", field=name)
        if not FIRST_YEAR <= local.year <= LAST_YEAR:  # stored in UTC, year 1 or 9999 may not fit
            raise BadUserInput(f"{name} must be in the years {FIRST_YEAR} to {LAST_YEAR}, got {value!r}", field=name)
        return local.replace(tzinfo=zone)
