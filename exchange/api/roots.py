"""The root types, merged from the fields of each business capability (``exchange.api.fields``)."""

from __future__ import annotations

from strawberry.tools import merge_types

from exchange.api.fields.access import AccessMutations, AccessQueries
from exchange.api.fields.catalog import CatalogQueries
from exchange.api.fields.members import MemberQueries
from exchange.api.fields.settlement import SettlementMutations, SettlementQueries

Query = merge_types("Query", (CatalogQueries, MemberQueries, AccessQueries, SettlementQueries))
Mutation = merge_types("Mutation", (AccessMutations, SettlementMutations))
