"""Every domain package's tables, imported in one place so ``SQLModel.metadata`` is whole.

Alembic's environment and the migration drift test import this module; application code
imports the models it needs from their own packages.
"""

from exchange.auth.models import (
    ClientAuthFailure,
    OAuthClient,
    PartnerAssertionKey,
    RevokedToken,
    SigningKey,
    UsedAssertion,
)
from exchange.books.models import BudgetCrossing
from exchange.coalition.models import (
    CoalitionDraw,
    CoalitionExpiry,
    CoalitionLiability,
    CoalitionLot,
    CoalitionOperation,
)
from exchange.conversions.models import Conversion, CreditBatch, CreditBatchLine
from exchange.ledger.models import (
    LedgerAccount,
    LedgerArchivedBalance,
    LedgerBalance,
    LedgerChainHead,
    LedgerCloseAnchor,
    LedgerEntry,
    LedgerShard,
    LedgerTransaction,
    LedgerTransactionKey,
    OutstandingPoints,
    SettlementPeriod,
)
from exchange.members.models import DebitConsent, LinkedAccount, Member, UnlinkedAccount
from exchange.people.models import Person, WebSession
from exchange.people.portal_models import MemberWebSession
from exchange.pricing.models import LimitUsage, PricingRevision, Promotion, Quote, RateVersion
from exchange.programs.models import (
    CoalitionLevel,
    CoalitionSettings,
    Program,
    ProgramTier,
)
from exchange.rewards.models import Redemption, Reward
from exchange.risk.models import RiskDecision
from exchange.settlement.models import (
    BreakResolution,
    Reconciliation,
    ReconciliationBreak,
    SettlementJob,
    SettlementObligation,
    SettlementPosition,
    StatementKey,
)
from exchange.tiers.models import StatusMatch
from exchange.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription

__all__ = [
    "BreakResolution",
    "BudgetCrossing",
    "ClientAuthFailure",
    "CoalitionDraw",
    "CoalitionExpiry",
    "CoalitionLevel",
    "CoalitionLiability",
    "CoalitionLot",
    "CoalitionOperation",
    "CoalitionSettings",
    "Conversion",
    "CreditBatch",
    "CreditBatchLine",
    "DebitConsent",
    "LedgerAccount",
    "LedgerArchivedBalance",
    "LedgerBalance",
    "LedgerChainHead",
    "LedgerCloseAnchor",
    "LedgerEntry",
    "LedgerShard",
    "LedgerTransaction",
    "LedgerTransactionKey",
    "LimitUsage",
    "LinkedAccount",
    "Member",
    "MemberWebSession",
    "OAuthClient",
    "OutstandingPoints",
    "PartnerAssertionKey",
    "Person",
    "PricingRevision",
    "Program",
    "ProgramTier",
    "Promotion",
    "Quote",
    "RateVersion",
    "Reconciliation",
    "ReconciliationBreak",
    "Redemption",
    "RevokedToken",
    "Reward",
    "RiskDecision",
    "SettlementJob",
    "SettlementObligation",
    "SettlementPeriod",
    "SettlementPosition",
    "SigningKey",
    "StatementKey",
    "StatusMatch",
    "UnlinkedAccount",
    "UsedAssertion",
    "WebSession",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookSubscription",
]
