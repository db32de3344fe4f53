"""The root types, merged from the fields of each business capability (``exchange.api.fields``)."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types

from exchange.api.fields.access import AccessMutations, AccessQueries
from exchange.api.fields.accounts import AccountMutations
from exchange.api.fields.books import BooksQueries
from exchange.api.fields.catalog import CatalogQueries
from exchange.api.fields.conversions import ConversionMutations, ConversionQueries
from exchange.api.fields.members import MemberMutations, MemberQueries
from exchange.api.fields.pending import PendingQueries
from exchange.api.fields.pricing import PricingMutations
from exchange.api.fields.rewards import RewardMutations, RewardQueries
from exchange.api.fields.risk import RiskMutations, RiskQueries
from exchange.api.fields.settlement import SettlementMutations, SettlementQueries
from exchange.api.fields.tiers import TierMutations, TierQueries
from exchange.api.fields.webhooks import WebhookMutations, WebhookQueries

_QUERIES = merge_types(
    "Queries",
    (
        CatalogQueries,
        MemberQueries,
        ConversionQueries,
        TierQueries,
        RewardQueries,
        SettlementQueries,
        PendingQueries,
        BooksQueries,
        AccessQueries,
        RiskQueries,
        WebhookQueries,
    ),
)
_MUTATIONS = merge_types(
    "Mutations",
    (
        AccountMutations,
        MemberMutations,
        PricingMutations,
        ConversionMutations,
        TierMutations,
        RewardMutations,
        SettlementMutations,
        AccessMutations,
        RiskMutations,
        WebhookMutations,
    ),
)


@strawberry.type(
    description="What may be read. The catalog (`programs`, `program`, `rewards`, `reward`, `coalition`) is "
    "public; every other field needs a bearer token whose scopes and tenant allow it (else `FORBIDDEN` on "
    "that field)."
)
class Query(_QUERIES):  # type: ignore[misc,valid-type]  # merge_types returns a class built at run time
    pass


@strawberry.type(
    description="What may be changed; every mutation needs a bearer token. Conversions and redemptions "
    "(`executeConversion`, `redeemReward`) are idempotent by the `idempotencyKey` the client chooses: the same "
    "key and request again return the first result."
)
class Mutation(_MUTATIONS):  # type: ignore[misc,valid-type]  # merge_types returns a class built at run time
    pass
