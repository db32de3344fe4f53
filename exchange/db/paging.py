"""Keyset pages: a list read ``first`` rows at a time, each page after an opaque cursor that the
page before gave out (``nextCursor``), in one order that never skips or repeats a row while rows
are added.

A cursor holds where its page ended (the last row's values of the list's order, its unique id
last) and a check of those values, the list's name and its scope (whose rows it lists: the
member, the reward, the filters asked for). A cursor edited, cut, made up, or given out by
another list or for another scope fails the check and is refused, ``BAD_USER_INPUT`` naming the
argument that carried it, rather than silently starting a page somewhere else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import ColumnClause, ColumnElement, Integer, Select, literal, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Mapped
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from exchange.db.types import MAX_BIGINT, UTCDateTime
from exchange.errors import BadUserInput
from exchange.text import text_problem

#: The longest cursor a list gives out (the argument that takes one refuses longer).
CURSOR_LENGTH = 512
#: Why a cursor is refused: one the list did not give out (edited, cut, another list's).
NOT_A_CURSOR = "not a cursor this list gave out: pass a page's nextCursor, or null for the first page"

Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class Page(Generic[Row]):
    """Up to ``first`` rows in the list's order, and the cursor of the next page (``None``: the
    last page)."""

    items: Sequence[Row]
    next_cursor: str | None

    @classmethod
    def empty(cls) -> Page[Row]:
        return cls([], None)


@dataclass(frozen=True, slots=True)
class Keyset:
    """How a list is ordered: by ``columns``, the last of them unique (an id), all ascending or
    all descending. ``name`` is the list's own, checked in each of its cursors."""

    name: str
    columns: tuple[Mapped[Any] | ColumnElement[Any], ...]
    descending: bool

    @property
    def order(self) -> list[ColumnElement[Any]]:
        """The list's ORDER BY."""
        return [_attribute(column).desc() if self.descending else _attribute(column).asc() for column in self.columns]

    def _check(self, scope: object, values: list[Any]) -> str:
        text = json.dumps([self.name, scope, values], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def cursor(self, row: Any, scope: object) -> str:
        values = [_written(getattr(row, _attribute(column).key)) for column in self.columns]
        payload = json.dumps([values, self._check(scope, values)], separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode()

    def position(self, cursor: str, scope: object, field: str) -> list[Any]:
        """The values a cursor of this list and scope holds; any other cursor is refused. The
        check is no secret's: values made up with a check to match are still each of its
        column's type, so that the worst they do is start a page of the caller's own list
        somewhere else."""
        try:
            if len(cursor) > CURSOR_LENGTH:
                raise ValueError(cursor)
            values, check = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
            if not isinstance(values, list) or len(values) != len(self.columns) or check != self._check(scope, values):
                raise ValueError(cursor)
            return [_read(value, column) for value, column in zip(values, self.columns, strict=True)]
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, KeyError, OverflowError):
            raise BadUserInput(NOT_A_CURSOR, field=field) from None


def _attribute(column: Mapped[Any] | ColumnElement[Any]) -> InstrumentedAttribute[Any] | ColumnClause[Any]:
    """A model's attribute (``col(Model.field)``, typed ``Mapped``) or a select's column, as
    what both are: a column with a key and a type."""
    return cast("InstrumentedAttribute[Any] | ColumnClause[Any]", column)


def _written(value: Any) -> Any:
    return {"at": value.isoformat()} if isinstance(value, datetime) else value


def _read(value: Any, column: Mapped[Any] | ColumnElement[Any]) -> Any:
    """``value`` as written by :func:`_written`, if of ``column``'s type (else ValueError)."""
    # A time the calendar holds only before its offset is applied (0001-01-01T00:00+14:00) is
    # no cursor's: astimezone overflows (neither store could compare it).
    read = datetime.fromisoformat(value["at"]).astimezone(UTC) if isinstance(value, dict) else value
    sql_type = _attribute(column).type
    kind = datetime if isinstance(sql_type, UTCDateTime) else int if isinstance(sql_type, Integer) else str
    if type(read) is not kind or (isinstance(read, datetime) and read.tzinfo is None):
        raise ValueError(value)
    # Values neither store can compare — text with a NUL or an unpaired surrogate, an integer
    # past 64 bits — are no cursor's either: the check is public, so values a client made up
    # come this far, and the query would fail.
    if isinstance(read, str) and text_problem(read, CURSOR_LENGTH) is not None:
        raise ValueError(value)
    if isinstance(read, int) and not -MAX_BIGINT <= read <= MAX_BIGINT:
        raise ValueError(value)
    return read


async def read_page(
    session: AsyncSession,
    statement: SelectOfScalar[Row] | Select[Any],
    keyset: Keyset,
    *,
    scope: object,
    first: int,
    after: str | None,
    field: str = "after",
) -> Page[Row]:
    """``first`` rows of ``statement`` (a select of the list's rows, filtered to its scope) in
    ``keyset``'s order, after the cursor ``after``. ``scope`` (JSON values) is what filtered
    them: a cursor given out for another is refused. ``first`` is checked by the caller."""
    position = keyset.position(after, scope, field) if after is not None else None
    # A select of several tables' union answers rows of its columns, which SQLModel's exec does not type.
    rows = (await session.exec(following(statement, keyset, position, first))).all()  # type: ignore[call-overload]
    return page_of(rows, keyset, scope, first)


Statement = TypeVar("Statement", SelectOfScalar[Any], Select[Any])


def following(statement: Statement, keyset: Keyset, position: list[Any] | None, first: int) -> Statement:
    """``statement`` in ``keyset``'s order, after ``position`` (a cursor's values, or ``None``
    for the first page), limited to ``first`` rows and one more: :func:`page_of`'s input."""
    columns = keyset.columns
    if position is not None:
        ended = tuple_(
            *(literal(value, _attribute(column).type) for value, column in zip(position, columns, strict=True))
        )
        statement = statement.where(tuple_(*columns) < ended if keyset.descending else tuple_(*columns) > ended)
    return statement.order_by(*keyset.order).limit(first + 1)


def page_of(rows: Sequence[Row], keyset: Keyset, scope: object, first: int) -> Page[Row]:
    """The page of ``rows`` read by :func:`following` (up to ``first`` and one more, in order):
    the first ``first``, and a cursor after them if there was one more."""
    page = rows[:first]
    return Page(page, keyset.cursor(page[-1], scope) if len(rows) > first else None)
