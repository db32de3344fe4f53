"""The schema walk: every field of the GraphQL schema, against every role.

The matrix below is the API's access policy, reviewed like schema.graphql: a field added
without a rule, or whose rule grants other access than listed here, fails this test. Each
entry lists who may resolve the field: ``anyone`` (no token needed), or roles, where
``partner:own`` means only for the partner's own program and ``member:own`` only for the
member themself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from graphql import GraphQLNonNull, GraphQLObjectType

from exchange.api.permissions import Access, Rule, Unruled
from exchange.api.schema import ExchangeSchema, build_schema
from exchange.auth.principal import Principal
from exchange.auth.scopes import ROLE_SCOPES, Role
from exchange.settings import Settings

ANYONE = "anyone"
TOKEN = "partner member settlement admin"
PARTNER_OWN_OR_MEMBER_OWN = "partner:own member:own"
KEY_MANAGERS = "partner:own admin"
MEMBER_OWN_OR_SETTLEMENT = "member:own settlement"
PRICING_OWNERS = "partner:own settlement admin"
STAFF = "settlement"
STAFF_OR_PARTNER = "partner settlement"
STAFF_OR_OWNER = "partner:own settlement"
WEBHOOK_OWNERS = "partner:own settlement admin"
#: By a subscription's id: the service answers "not found" for another partner's subscription.
WEBHOOK_BY_ID = "partner settlement admin"

EXPECTED: dict[str, str] = {
    "Query.programs": ANYONE,
    "Query.program": ANYONE,
    "Query.coalition": ANYONE,
    "Query.viewer": TOKEN,
    "Query.me": "member",
    "Query.member": "partner",
    "Query.clients": "admin",
    "Mutation.registerAssertionKey": KEY_MANAGERS,
    "Mutation.removeAssertionKey": KEY_MANAGERS,
    **{
        f"Program.{name}": ANYONE
        for name in ("id", "name", "kind", "category", "pointName", "pointNamePlural", "pointValue", "limits", "tiers")
    },
    "Program.linkedAccounts": "partner:own",
    "Program.assertionKeys": KEY_MANAGERS,
    **{
        f"ConversionLimits.{name}": ANYONE
        for name in (
            "minimumPoints",
            "increment",
            "memberDailyCap",
            "memberMonthlyCap",
            "memberYearlyCap",
            "monthlyIssueBudget",
        )
    },
    "Tier.name": ANYONE,
    "Tier.level": ANYONE,
    "Coalition.settlementCurrency": ANYONE,
    "Coalition.currencyMinorUnits": ANYONE,
    "Coalition.ladder": ANYONE,
    "Coalition.point": ANYONE,
    **{f"CoalitionPoint.{name}": ANYONE for name in ("programId", "expiry", "timezone", "breakage")},
    "CoalitionTierLevel.level": ANYONE,
    "CoalitionTierLevel.name": ANYONE,
    **{f"Member.{name}": PARTNER_OWN_OR_MEMBER_OWN for name in ("id", "createdAt", "linkedAccounts")},
    **{
        f"LinkedAccount.{name}": PARTNER_OWN_OR_MEMBER_OWN
        for name in ("memberId", "memberRef", "linkedAt", "establishedBy", "program")
    },
    **{f"AssertionKey.{name}": KEY_MANAGERS for name in ("kid", "keyType", "publicJwk", "createdAt", "removedAt")},
    **{
        f"Viewer.{name}": TOKEN
        for name in ("role", "subject", "clientId", "programId", "memberId", "assertedBy", "scopes", "expiresAt")
    },
    **{
        f"OAuthClient.{name}": "admin"
        for name in ("clientId", "role", "programId", "scopes", "memberScopes", "createdAt")
    },
    # The federated view and linking accounts: the member alone.
    "Mutation.linkAccount": "member",
    "Mutation.unlinkAccount": "member",
    **{
        f"UnlinkedAccount.{name}": "member:own"
        for name in ("program", "memberRef", "linkedAt", "unlinkedAt", "alreadyUnlinked")
    },
    # Consents to debit a program's points: the member alone.
    "Mutation.authorizeDebit": "member",
    **{f"DebitConsent.{name}": "member:own" for name in ("id", "program", "points", "expiresAt")},
    "Member.accounts": "member:own",
    "Member.coalitionLevel": "member:own",
    "Member.expiringPoints": "member:own",
    **{f"ExpiringCoalitionPoints.{name}": "member:own" for name in ("points", "expiresAt")},
    **{
        f"Account.{name}": "member:own"
        for name in ("memberRef", "balance", "tier", "level", "tierExpiresAt", "expiringPoints", "error", "program")
    },
    **{f"ExpiringPoints.{name}": ANYONE for name in ("points", "expiresOn")},
    **{f"AccountError.{name}": ANYONE for name in ("code", "message")},
    # Quotes and conversions: the member's own; settlement staff read any.
    "Mutation.createQuote": "member",
    "Mutation.executeConversion": "member",
    "Query.conversion": "member settlement",
    "Query.conversions": "member",
    **{
        f"Quote.{name}": MEMBER_OWN_OR_SETTLEMENT
        for name in (
            "id",
            "pointsIn",
            "pointsOut",
            "fee",
            "moneyValue",
            "rateVersion",
            "breakdown",
            "route",
            "expiresAt",
            "createdAt",
            "fromProgram",
            "toProgram",
        )
    },
    **{
        f"Conversion.{name}": MEMBER_OWN_OR_SETTLEMENT
        for name in (
            "id",
            "status",
            "quoteId",
            "idempotencyKey",
            "pointsIn",
            "pointsOut",
            "fee",
            "moneyValue",
            "rateVersion",
            "failure",
            "route",
            "createdAt",
            "updatedAt",
            "finishedAt",
            "heldUntil",
            "fromProgram",
            "toProgram",
        )
    },
    **{f"ConversionFailure.{name}": MEMBER_OWN_OR_SETTLEMENT for name in ("code", "message")},
    # A page allows what the field that answers it allows; its items keep their own rules.
    **{
        f"{page}.{name}": ANYONE
        for page in (
            "ConversionPage",
            "PendingOperationPage",
            "RedemptionPage",
            "RetryingOperationPage",
            "RiskDecisionPage",
            "StatementLinePage",
            "StatusMatchPage",
            "WebhookAttemptPage",
            "WebhookDeliveryPage",
        )
        for name in ("items", "nextCursor")
    },
    **{
        f"QuoteBreakdown.{name}": ANYONE
        for name in (
            "basePoints",
            "stepBonusPoints",
            "promotionBonusPoints",
            "tierBonusPoints",
            "valueCapPoints",
            "promotions",
            "memberLevel",
            "tierBonusPercent",
        )
    },
    **{f"AppliedPromotion.{name}": ANYONE for name in ("id", "bonusPercent")},
    # A leg shows under its quote or conversion, whose rule it inherits.
    **{
        f"QuoteLeg.{name}": ANYONE
        for name in ("pointsIn", "pointsOut", "moneyValue", "fee", "rateVersion", "fromProgram", "toProgram")
    },
    **{f"Money.{name}": ANYONE for name in ("amount", "currency")},
    # Rates and promotions into a program: its partner manages them; staff read them.
    **{
        f"Mutation.{name}": "partner:own"
        for name in ("setConversionRate", "clearConversionRate", "createPromotion", "endPromotion")
    },
    "Program.incomingRates": PRICING_OWNERS,
    "Program.promotions": PRICING_OWNERS,
    **{
        f"RateVersion.{name}": PRICING_OWNERS
        for name in (
            "id",
            "version",
            "fromProgramId",
            "toProgramId",
            "effectiveFrom",
            "effectiveTo",
            "origin",
            "createdBy",
            "sourcePointValue",
            "targetPointValue",
            "feePercent",
            "feeFixed",
            "fixedFee",
            "bands",
            "bonusEvery",
            "bonusPoints",
            "minimumPoints",
            "increment",
            "memberDailyCap",
            "memberMonthlyCap",
            "memberYearlyCap",
        )
    },
    **{f"RateBand.{name}": ANYONE for name in ("fromPoints", "pointsIn", "pointsOut")},
    **{
        f"Promotion.{name}": PRICING_OWNERS
        for name in ("id", "programId", "bonusPercent", "startsAt", "endsAt", "fromPrograms", "origin", "createdBy")
    },
    # Status matches: members preview and request; the target program's partner reports
    # challenge progress (its own matches only, checked by the service).
    "Query.statusMatchPreview": "member",
    "Query.statusMatches": "member",
    "Query.statusMatchPage": "member",
    "Mutation.requestStatusMatch": "member",
    "Mutation.recordStatusMatchActivity": "partner",
    **{
        f"StatusMatchPreview.{name}": "member:own"
        for name in (
            "fromProgram",
            "toProgram",
            "sourceTier",
            "currentTier",
            "outcome",
            "granted",
            "reason",
            "level",
            "tier",
            "expiresAt",
            "challenge",
            "nextMatchPossibleAt",
        )
    },
    **{f"StatusMatchChallenge.{name}": ANYONE for name in ("points", "activities", "extendDays")},
    **{
        f"StatusMatch.{name}": PARTNER_OWN_OR_MEMBER_OWN
        for name in (
            "id",
            "memberId",
            "fromProgram",
            "toProgram",
            "sourceTier",
            "tier",
            "status",
            "expiresAt",
            "extended",
            "challenge",
            "pointsEarned",
            "activitiesDone",
            "failureCode",
            "failureMessage",
            "createdAt",
        )
    },
    # Rewards: a public catalog; a redemption is its member's and its publisher's.
    "Query.rewards": ANYONE,
    "Query.reward": ANYONE,
    "Query.redemptionQuote": "member",
    "Query.redemptions": "member",
    "Query.redemptionPage": "member",
    "Query.rewardRedemptions": "partner",
    "Query.rewardRedemptionPage": "partner",
    "Mutation.publishReward": KEY_MANAGERS,
    "Mutation.redeemReward": "member",
    "Mutation.cancelRedemption": "partner member",
    "Mutation.confirmRedemptionDelivery": "partner",
    **{
        f"Reward.{name}": ANYONE
        for name in (
            "id",
            "programId",
            "title",
            "description",
            "kind",
            "price",
            "currency",
            "settlementPrice",
            "stock",
            "perMemberLimit",
            "minLevel",
            "availableFrom",
            "availableUntil",
            "program",
        )
    },
    **{
        f"RedemptionQuote.{name}": "member:own"
        for name in (
            "rewardId",
            "payWith",
            "price",
            "fee",
            "total",
            "settlementPrice",
            "exchangeFee",
            "totalOwed",
            "pointValue",
            "points",
        )
    },
    **{
        # Settlement staff too: they review held redemptions.
        f"Redemption.{name}": "partner:own member:own settlement"
        for name in (
            "id",
            "memberId",
            "rewardId",
            "publisher",
            "payingProgram",
            "kind",
            "points",
            "price",
            "fee",
            "settlementPrice",
            "exchangeFee",
            "status",
            "deliverBy",
            "heldUntil",
            "deliveredAt",
            "cancelledBy",
            "failureCode",
            "createdAt",
            "finishedAt",
        )
    },
    # Why in words: often the paying partner's own (the member's id and balance there).
    "Redemption.failureMessage": MEMBER_OWN_OR_SETTLEMENT,
    # Settlement: staff see every participant; a partner its own figures, and of a period its state.
    "Query.settlementPeriod": STAFF_OR_PARTNER,
    "Query.statement": STAFF_OR_OWNER,
    "Query.reconciliation": STAFF_OR_OWNER,
    "Query.pendingOperations": STAFF,
    "Query.pendingOperationPage": STAFF,
    "Query.retryingOperations": STAFF,
    "Query.retryingOperationPage": STAFF,
    **{
        f"PendingOperation.{name}": STAFF
        for name in (
            "saga",
            "id",
            "programId",
            "operationId",
            "step",
            "points",
            "waitingSince",
            "ageSeconds",
            "polls",
            "nextPollAt",
        )
    },
    **{
        f"RetryingOperation.{name}": STAFF
        for name in (
            "saga",
            "id",
            "programId",
            "status",
            "step",
            "attempts",
            "lastError",
            "since",
            "ageSeconds",
            "nextAttemptAt",
        )
    },
    "Mutation.closePeriod": STAFF,
    "Mutation.importPartnerRecords": STAFF_OR_OWNER,
    "Mutation.reconcileCoalitionPoint": STAFF,
    "Mutation.resolveBreak": STAFF,
    "Mutation.resolveBreaks": STAFF,
    **{f"BreaksResolved.{name}": STAFF for name in ("resolved", "unchanged", "reconciliation")},
    "Mutation.signOffPeriod": STAFF,
    # The partners' books: staff any program's, a partner its own; the values inside them open.
    "Query.partnerBooks": STAFF_OR_OWNER,
    **{
        f"PartnerBooks.{name}": STAFF_OR_OWNER
        for name in (
            "partnerId",
            "period",
            "startsAt",
            "endsAt",
            "periodStatus",
            "pointValue",
            "pointValuesFixedAt",
            "issued",
            "convertedOut",
            "redeemedForRewards",
            "redeemed",
            "reversed",
            "otherPoints",
            "outstanding",
            "moneyReceivedForIssued",
            "moneyPaidForRedeemed",
            "moneyReceivedForRewards",
            "moneyOther",
            "moneyNet",
            "costPerPoint",
            "budget",
            "coalition",
        )
    },
    **{f"PointsFigure.{name}": ANYONE for name in ("points", "value")},
    **{f"IssueBudget.{name}": ANYONE for name in ("budget", "spend", "percentUsed", "level")},
    **{
        f"CoalitionBooks.{name}": ANYONE
        for name in (
            "pointId",
            "pointValue",
            "breakageKeptBy",
            "funded",
            "spentAt",
            "outstanding",
            "breakage",
            "breakageToDate",
            "maturing",
            "expiryRate",
            "estimatedBreakage",
        )
    },
    **{
        f"SettlementPeriod.{name}": STAFF_OR_PARTNER
        for name in ("period", "status", "startsAt", "endsAt", "closingStartedAt", "closedAt", "archivedAt")
    },
    **{
        f"SettlementPeriod.{name}": STAFF
        for name in ("closedBy", "positions", "obligations", "netting", "statementsNotIssued")
    },
    "SettlementPeriod.position": STAFF_OR_OWNER,
    "SettlementPeriod.coalitionLiability": STAFF_OR_PARTNER,
    # Reached only through a period or a statement, which guard it.
    **{f"CoalitionLiability.{name}": ANYONE for name in ("programId", "points", "pointValue", "liability")},
    **{
        f"SettlementPosition.{name}": STAFF_OR_OWNER
        for name in (
            "partnerId",
            "status",
            "openingPosition",
            "payable",
            "receivable",
            "netPosition",
            "closingPosition",
            "opening",
            "grossPayable",
            "grossReceivable",
            "netAmount",
            "closing",
            "signedOffAt",
            "signOffNote",
        )
    },
    "SettlementPosition.signedOffBy": STAFF,
    **{f"Obligation.{name}": STAFF for name in ("debtor", "creditor", "amount", "value")},
    **{f"NettingSaving.{name}": STAFF for name in ("gross", "bilateral", "multilateral")},
    **{f"Payments.{name}": STAFF for name in ("count", "total", "totalValue")},
    **{
        f"Statement.{name}": STAFF_OR_OWNER
        for name in (
            "partnerId",
            "period",
            "currency",
            "startsAt",
            "endsAt",
            "timeZone",
            "closedAt",
            "openingPosition",
            "payable",
            "receivable",
            "netPosition",
            "closingPosition",
            "opening",
            "grossPayable",
            "grossReceivable",
            "netAmount",
            "closing",
            "counterparties",
            "lineCount",
            "coalitionLiability",
            "issuedAt",
            "resignedAt",
            "documentVersion",
            "json",
            "csv",
            "jws",
            "keyId",
            "lines",
            "linePage",
        )
    },
    **{
        f"CounterpartyTotals.{name}": STAFF_OR_OWNER
        for name in ("counterparty", "payable", "receivable", "net", "grossPayable", "grossReceivable", "netAmount")
    },
    **{
        f"StatementLine.{name}": STAFF_OR_OWNER
        for name in (
            "transactionId",
            "reference",
            "kind",
            "category",
            "effectiveAt",
            "effectivePeriod",
            "reverses",
            "reversesPeriod",
            "counterparty",
            "amount",
            "value",
        )
    },
    **{
        f"Reconciliation.{name}": STAFF_OR_OWNER
        for name in (
            "id",
            "partnerId",
            "period",
            "sequence",
            "importedAt",
            "importedBy",
            "source",
            "fileSha256",
            "lines",
            "matched",
            "missingInLedger",
            "missingInPartner",
            "amountMismatch",
            "duplicate",
            "unresolvedBreaks",
            "recordsTotal",
            "ledgerTotal",
            "totalDifference",
            "breaks",
        )
    },
    **{
        f"ReconciliationBreak.{name}": STAFF_OR_OWNER
        for name in (
            "id",
            "kind",
            "reference",
            "line",
            "partnerAmount",
            "ledgerAmount",
            "difference",
            "partnerValue",
            "ledgerValue",
            "differenceValue",
            "counterparty",
            "partnerDate",
            "resolution",
            "nextStep",
        )
    },
    **{
        f"BreakResolution.{name}": STAFF_OR_OWNER
        for name in (
            "resolution",
            "reason",
            "resolvedAt",
            "adjustment",
            "adjustmentValue",
            "counterparty",
            "transactionId",
        )
    },
    "BreakResolution.resolvedBy": STAFF,
    # Risk review: settlement staff only.
    "Query.heldConversions": STAFF,
    "Query.heldConversionPage": STAFF,
    "Query.riskDecisions": STAFF,
    "Query.riskDecisionPage": STAFF,
    "Mutation.approveConversion": STAFF,
    "Mutation.rejectConversion": STAFF,
    "Query.heldRedemptions": STAFF,
    "Query.heldRedemptionPage": STAFF,
    "Mutation.approveRedemption": STAFF,
    "Mutation.rejectRedemption": STAFF,
    **{
        f"RiskDecision.{name}": STAFF
        for name in (
            "id",
            "subject",
            "decision",
            "rule",
            "reason",
            "memberId",
            "programId",
            "memberRef",
            "conversionId",
            "redemptionId",
            "points",
            "decidedBy",
            "decidedAt",
        )
    },
    "Query.webhookSubscriptions": WEBHOOK_OWNERS,
    "Query.webhookSubscription": WEBHOOK_BY_ID,
    "Mutation.createWebhookSubscription": WEBHOOK_OWNERS,
    "Mutation.rotateWebhookSecret": WEBHOOK_BY_ID,
    "Mutation.deleteWebhookSubscription": WEBHOOK_BY_ID,
    "Mutation.replayWebhookDeliveries": WEBHOOK_BY_ID,
    **{
        f"WebhookSubscription.{name}": WEBHOOK_OWNERS
        for name in (
            "id",
            "programId",
            "url",
            "eventTypes",
            "description",
            "createdAt",
            "previousSecretUntil",
            "deletedAt",
            "deliveries",
            "deliveryPage",
            "attempts",
            "attemptPage",
        )
    },
    **{
        f"WebhookDelivery.{name}": WEBHOOK_OWNERS
        for name in (
            "id",
            "eventId",
            "eventType",
            "object",
            "occurredAt",
            "payload",
            "status",
            "attempts",
            "nextAttemptAt",
            "lastStatusCode",
            "lastError",
            "finishedAt",
        )
    },
    **{
        f"WebhookAttempt.{name}": WEBHOOK_OWNERS
        for name in ("deliveryId", "attemptedAt", "statusCode", "latencyMs", "error", "outcome")
    },
    "WebhookSubscriptionSecret.subscription": WEBHOOK_OWNERS,
    "WebhookSubscriptionSecret.secret": WEBHOOK_OWNERS,
    "WebhookSubscriptionSecret.secretWithheld": WEBHOOK_OWNERS,
}

ROLES: tuple[Role | None, ...] = (None, Role.PARTNER, Role.MEMBER, Role.SETTLEMENT, Role.ADMIN)


@pytest.fixture(scope="module")
def schema() -> ExchangeSchema:
    return build_schema(Settings())


def who_may(rule: Rule) -> str:
    if rule.is_public:
        return ANYONE
    granted = []
    for role in ROLES:
        access = rule.access(role)
        if role is not None and access is not Access.NONE:
            granted.append(role.value + (":own" if access is Access.OWN else ""))
    return " ".join(granted)


def test_every_field_has_a_rule(schema: ExchangeSchema) -> None:
    unruled = [name for name, rule in schema.field_rules.items() if isinstance(rule, Unruled)]
    assert unruled == [], "give these fields a rule (exchange.api.permissions): " + ", ".join(unruled)


def test_every_field_grants_each_role_what_the_policy_says(schema: ExchangeSchema) -> None:
    actual = {name: who_may(rule) for name, rule in schema.field_rules.items()}
    assert actual == EXPECTED


class Everything(str):
    """A tenant id that is also a parent object (or arguments, or an input object) whose every
    attribute, argument and nested field names that same tenant."""

    def __getattr__(self, name: str) -> Everything:
        return self

    def get(self, name: str, default: Any = None) -> Everything:
        return self


def principal_of(role: Role) -> Principal:
    return Principal(
        role=role,
        subject="someone",
        client_id="client",
        scopes=ROLE_SCOPES[role],
        token_id="jti",
        expires_at=datetime.now(UTC),
        program_id="own" if role is Role.PARTNER else None,
        member_id="own" if role is Role.MEMBER else None,
    )


def test_what_each_rule_enforces_is_what_the_table_says(schema: ExchangeSchema) -> None:
    """For every field and role, the check run per request agrees with the tabulated access:
    ALL admits any tenant, OWN only the caller's own, NONE nobody."""
    expected = {Access.ALL: (True, True), Access.OWN: (True, False), Access.NONE: (False, False)}
    for name, rule in schema.field_rules.items():
        for role in ROLES:
            principal = principal_of(role) if role is not None else None
            own, other = Everything("own"), Everything("other")
            allowed = (rule.allows(principal, own, own), rule.allows(principal, other, other))  # type: ignore[arg-type]
            assert allowed == expected[rule.access(role)], (name, role)


def test_a_refusable_field_below_a_readable_parent_is_nullable(schema: ExchangeSchema) -> None:
    """So that a FORBIDDEN nulls that field only, and the rest of the response resolves."""
    must_be_nullable = []
    for graphql_type in schema._schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType) or graphql_type.name.startswith("__"):
            continue
        rules = {name: schema.field_rules[f"{graphql_type.name}.{name}"] for name in graphql_type.fields}
        is_root = graphql_type.name in ("Query", "Mutation")
        has_public = any(rule.is_public for rule in rules.values())
        for name, field in graphql_type.fields.items():
            if (is_root or has_public) and not rules[name].is_public and isinstance(field.type, GraphQLNonNull):
                must_be_nullable.append(f"{graphql_type.name}.{name}")
    assert must_be_nullable == []
