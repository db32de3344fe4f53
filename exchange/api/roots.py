"""The root types, merged from the fields of each business capability (``exchange.api.fields``)."""

from __future__ import annotations

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

Query = merge_types(
    "Query",
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
Mutation = merge_types(
    "Mutation",
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
