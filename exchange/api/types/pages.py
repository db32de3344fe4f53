"""One page shape for the lists that come a page at a time after a cursor: ``items`` and the
``nextCursor`` to pass as the list's ``after`` (``exchange.db.paging``); ``RedemptionPage``,
``StatusMatchPage``, … as Strawberry names each list's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Generic, Protocol, TypeVar

import strawberry

from exchange.api.inputs import Text
from exchange.api.permissions import PUBLIC, authorize_fields
from exchange.db.paging import CURSOR_LENGTH

Row = TypeVar("Row", covariant=True)
Item = TypeVar("Item")


class Paged(Protocol[Row]):
    """A page as the services answer it (``exchange.db.paging.Page``)."""

    @property
    def items(self) -> Sequence[Row]: ...

    @property
    def next_cursor(self) -> str | None: ...


#: The ``after`` of every list that answers a :class:`Page`.
After = Annotated[
    str | None,
    Text(CURSOR_LENGTH),
    strawberry.argument(
        description="A page's `nextCursor` (any other, or one of another list or filters, is "
        "`BAD_USER_INPUT`); null: from the first."
    ),
]


@authorize_fields(PUBLIC)  # what the field that answers a page allows, its items' own rules
@strawberry.type(description="One page of a list, in the list's order, and where the next one starts.")
class Page(Generic[Item]):
    items: list[Item] = strawberry.field(description="At most `first` of them, in the list's order.")
    next_cursor: str | None = strawberry.field(description="Pass as `after` for the next page; null at the end.")

    @classmethod
    def of(cls, page: Paged[Row], item: Callable[[Row], Item]) -> Page[Item]:
        return cls(items=[item(row) for row in page.items], next_cursor=page.next_cursor)


def replaced_by_page(field: str) -> str:
    """The deprecation of a list that ``field`` answers a page at a time."""
    return f"Use `{field}`: the same list, a page at a time after the cursor `after`."
