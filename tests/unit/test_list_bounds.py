"""No list in the schema grows without a bound a client can read: a list whose length a client,
a partner or the data's age can push up comes a page at a time (a ``first`` from 1 to a most
its description states), and any other list is bounded by what it lists, said below."""

from __future__ import annotations

import re

from graphql import (
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    get_nullable_type,
    is_list_type,
    value_from_ast,
)
from graphql import build_schema as parse_sdl

from exchange.api.schema import build_schema
from exchange.settings import Settings

SCHEMA = parse_sdl(build_schema(Settings()).as_str())
#: How every ``first`` says its range: the page pattern the API keeps everywhere.
FIRST_RANGE = re.compile(r"How many, from 1 to (\d[\d,]*) \(else `BAD_USER_INPUT`\)\.")

#: Lists without a page, each with what bounds it. A list added without a page fails the walk
#: until it gets one, or a bound and its entry here.
BOUNDED_BY: dict[str, str] = {
    # Closed sets the exchange defines.
    "OAuthClient.scopes": "the exchange's scopes",
    "OAuthClient.memberScopes": "the exchange's scopes",
    "Viewer.scopes": "the exchange's scopes",
    "WebhookSubscription.eventTypes": "the WebhookEventType values, each once",
    # What the operator declares: programs, tiers, the ladder.
    "Query.programs": "the coalition's programs, declared by its operator",
    "Coalition.ladder": "the declared tier ladder",
    "Program.tiers": "the program's declared tiers",
    # One per program of the coalition at most.
    "Member.linkedAccounts": "one account per program",
    "Member.accounts": "one account per program",
    "Program.incomingRates": "one rate per other program",
    "Promotion.fromPrograms": "programs, each once",
    "SettlementPeriod.positions": "one per participant (the programs and the exchange)",
    "SettlementPeriod.obligations": "one per pair of participants",
    "SettlementPeriod.statementsNotIssued": "one per participant",
    "Statement.counterparties": "one per other participant",
    "Query.webhookSubscriptions": "EXCHANGE_WEBHOOK_MAX_SUBSCRIPTIONS live ones per program (and for the staff tools)",
    "Program.assertionKeys": "MAX_ASSERTION_KEYS per program, refused past it",
    # Fixed by the rules that make them.
    "Conversion.route": "one leg, or two through the coalition point",
    "Quote.route": "one leg, or two through the coalition point",
    "RateVersion.bands": "MAX_BANDS, refused past it",
    "Member.expiringPoints": "one per lot date: a lot expires at the end of the year after it was earned",
}
#: Lists whose length nothing bounds yet but what makes them: known, and not to be copied.
NOT_BOUNDED_YET: dict[str, str] = {
    "Account.expiringPoints": "as many as the partner's answer holds (at most 1 MiB of it)",
    "QuoteBreakdown.promotions": "every promotion of the target running at the quote's moment",
}


def list_fields() -> dict[str, GraphQLField]:
    return {
        f"{name}.{field_name}": field
        for name, kind in SCHEMA.type_map.items()
        if isinstance(kind, GraphQLObjectType) and not name.startswith("__") and not name.endswith("Page")
        for field_name, field in kind.fields.items()
        if is_list_type(get_nullable_type(field.type)) or is_page(field)
    }


def is_page(field: GraphQLField) -> bool:
    """A type that holds a page's list and where the next one starts (``ConversionPage``): its
    list is as long as the ``first`` of the field that answers it."""
    kind = get_nullable_type(field.type)
    return isinstance(kind, GraphQLObjectType) and kind.name.endswith("Page")


def test_every_list_comes_in_pages_or_is_bounded_by_what_it_lists() -> None:
    unbounded = sorted(name for name, field in list_fields().items() if "first" not in field.args)
    assert [name for name in unbounded if name not in BOUNDED_BY | NOT_BOUNDED_YET] == []
    assert sorted(BOUNDED_BY | NOT_BOUNDED_YET) == unbounded, "an entry names a list that has a page now, or no list"


def test_every_page_says_how_many_it_takes_the_same_way() -> None:
    """``first``: a non-null Int with a default within the range its description states."""
    unsaid = []
    for name, field in list_fields().items():
        if (first := field.args.get("first")) is None:
            continue
        said = FIRST_RANGE.fullmatch(first.description or "")
        most = int(said.group(1).replace(",", "")) if said else 0
        default = value_from_ast(first.ast_node.default_value, first.type) if first.ast_node else None
        if not (isinstance(first.type, GraphQLNonNull) and isinstance(default, int) and 1 <= default <= most):
            unsaid.append(f"{name}(first): {first.description!r}, default {default!r}")
    assert unsaid == []
