"""Every list that grows comes a page at a time in one shape: ``items`` and the ``nextCursor``
to pass as ``after``; a walk reads each row once, in the list's order, and ends with a null
cursor. A cursor edited, or given out by another list or for other filters, is refused
(``BAD_USER_INPUT`` naming ``after``), not read as a page somewhere else."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from exchange.auth.scopes import Role
from exchange.db.paging import Keyset
from exchange.rewards.models import Redemption, RedemptionStatus, RedemptionStep
from exchange.rewards.redemption import MEMBER_REDEMPTIONS
from exchange.risk.decisions import DECISIONS
from exchange.risk.models import RiskDecision
from exchange.sagas.state import DONE
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from exchange.tiers.models import StatusMatch
from tests.api.conftest import ON_SQLITE_TOO

START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
#: Five rows of each list, the last two at the same moment (the id breaks the tie).
MOMENTS = [START + timedelta(minutes=minute) for minute in (0, 1, 2, 3, 3)]
LATER = datetime(2099, 1, 1, tzinfo=UTC)
#: Bob's redemptions waiting, the oldest first.
WAITING = ["rdm-w0", "rdm-w1", "rdm-w2", "rdm-w3", "rdm-w4"]
NOT_A_CURSOR = "not a cursor this list gave out: pass a page's nextCursor, or null for the first page"


@pytest.fixture
def gateway_settings(store_settings: Settings) -> Settings:
    return store_settings


async def member_id(kit: ExchangeKit, token: str) -> str:
    return str((await kit.data("{ viewer { memberId } }", token))["viewer"]["memberId"])


async def seed(kit: ExchangeKit) -> dict[str, str]:
    """Alice's redemptions (the first three held), status matches and risk decisions; Bob's
    redemptions waiting for the paying partner's word, which keeps failing; the tokens that
    read them."""
    alice = await kit.member_token("wallet-pay", "alice")
    alice_id, bob_id = await member_id(kit, alice), await member_id(kit, await kit.member_token("wallet-pay", "bob"))
    publisher = await kit.partner_token("fresh-mart")
    publish = 'mutation { publishReward(programId: "fresh-mart", input: {id: "fm-pages", title: "T", price: "1", stock: 9}) { id } }'
    await kit.data(publish, publisher)
    async with kit.db.transaction() as session:
        for n, moment in enumerate(MOMENTS):
            saga = {"step": DONE, "next_attempt_at": moment, "created_at": moment, "updated_at": moment}
            status = RedemptionStatus.HELD if n < 3 else RedemptionStatus.COMPLETED
            session.add(redemption(f"rdm-{n}", alice_id, status=status.value, **saga))
            # Not due before the test ends: no worker drives it meanwhile.
            failing = {**saga, "step": RedemptionStep.AWAIT_DEBIT.value, "next_attempt_at": LATER}
            session.add(
                redemption(
                    f"rdm-w{n}",
                    bob_id,
                    status=RedemptionStatus.PENDING.value,
                    attempts=3,
                    last_error="partner wallet-pay: unreachable",
                    **failing,
                )
            )
            session.add(
                StatusMatch(
                    id=f"sm-{n}",
                    member_id=alice_id,
                    from_program="wallet-pay",
                    to_program="formosa-air",
                    source_ref="alice",
                    target_ref="alice",
                    source_tier="Gold",
                    source_level=2,
                    tier="Gold",
                    level=2,
                    expires_at=moment + timedelta(days=90),
                    tier_operation=f"sm-{n}:tier",
                    status="ACTIVE",
                    **saga,
                )
            )
            session.add(
                RiskDecision(
                    subject="LINK",
                    decision="ALLOW",
                    reason="fine",
                    member_id=alice_id,
                    program_id="wallet-pay",
                    member_ref="alice",
                    decided_at=moment,
                )
            )
    return {
        "member": alice,
        "partner": publisher,
        "staff": await kit.staff_token(Role.SETTLEMENT),
        "memberId": alice_id,
    }


def redemption(redemption_id: str, member: str, **state: Any) -> Redemption:
    return Redemption(
        id=redemption_id,
        member_id=member,
        idempotency_key=redemption_id,
        reward_id="fm-pages",
        publisher="fresh-mart",
        paying_program="wallet-pay",
        paying_ref="m",
        kind="DIRECT",
        points=10,
        price_minor=100,
        fee_minor=0,
        currency="TWD",
        **state,
    )


#: Each list: its field, who reads it, its other arguments, and its rows' order as seeded.
LISTS = [
    ("redemptionPage", "member", "", ["rdm-4", "rdm-3", "rdm-2", "rdm-1", "rdm-0"]),
    (
        "rewardRedemptionPage",  # Alice's and Bob's: at one moment, the larger id first
        "partner",
        'rewardId: "fm-pages", ',
        ["rdm-w4", "rdm-w3", "rdm-4", "rdm-3", "rdm-w2", "rdm-2", "rdm-w1", "rdm-1", "rdm-w0", "rdm-0"],
    ),
    ("statusMatchPage", "member", "", ["sm-4", "sm-3", "sm-2", "sm-1", "sm-0"]),
    ("heldRedemptionPage", "staff", "", ["rdm-0", "rdm-1", "rdm-2"]),
    ("riskDecisionPage", "staff", "memberId: $memberId, ", None),  # newest first: the largest ids
    ("pendingOperationPage", "staff", "", WAITING),
    ("retryingOperationPage", "staff", 'programId: "wallet-pay", ', WAITING),
]


def page_query(field: str, arguments: str) -> str:
    declared = "$memberId: ID, " if "$memberId" in arguments else ""
    return (
        f"query({declared}$first: Int!, $after: String) {{ page: {field}({arguments}first: $first, after: $after) "
        "{ items { id } nextCursor } }"
    )


async def walk(kit: ExchangeKit, token: str, query: str, **variables: Any) -> tuple[list[str], list[str]]:
    """Every id of the list, two at a time, and the cursors given out on the way."""
    ids: list[str] = []
    cursors: list[str] = []
    after = None
    while True:
        page = (await kit.data(query, token, first=2, after=after, **variables))["page"]
        assert 1 <= len(page["items"]) <= 2, page
        ids += [item["id"] for item in page["items"]]
        if page["nextCursor"] is None:
            return ids, cursors
        after = page["nextCursor"]
        cursors.append(after)


@ON_SQLITE_TOO
@pytest.mark.parametrize(("field", "who", "arguments", "expected"), LISTS, ids=[case[0] for case in LISTS])
async def test_a_walk_reads_every_row_once_in_the_lists_order_and_ends(
    kit: ExchangeKit, field: str, who: str, arguments: str, expected: list[str] | None
) -> None:
    tokens = await seed(kit)
    query = page_query(field, arguments)
    ids, cursors = await walk(kit, tokens[who], query, memberId=tokens["memberId"])
    whole = (await kit.data(query, tokens[who], first=50, after=None, memberId=tokens["memberId"]))["page"]
    assert whole["nextCursor"] is None and [item["id"] for item in whole["items"]] == ids
    if expected is None:
        assert len(ids) == len(MOMENTS) and ids == sorted(ids, key=int, reverse=True)
    else:
        assert ids == expected
    # The last page given out is the end: after it, nothing, and no cursor.
    last = (await kit.data(query, tokens[who], first=len(ids), after=None, memberId=tokens["memberId"]))["page"]
    assert last["nextCursor"] is None
    end = (await kit.data(query, tokens[who], first=2, after=cursors[-1], memberId=tokens["memberId"]))["page"]
    assert [item["id"] for item in end["items"]] == ids[2 * len(cursors) :] and end["nextCursor"] is None


@ON_SQLITE_TOO
@pytest.mark.parametrize("field", ["pendingOperationPage", "retryingOperationPage"])
async def test_a_row_updated_while_the_waiting_rows_are_walked_is_read_once_in_its_place(
    kit: ExchangeKit, field: str
) -> None:
    """Each retry or poll updates a waiting row: the walk is not thrown by it. The first row,
    read already, is updated last of all (ordered by update, read again at the end); the fourth,
    not read yet, has its update moved before every other's (ordered by update, never read)."""
    tokens = await seed(kit)
    query = page_query(field, "")
    first = (await kit.data(query, tokens["staff"], first=2, after=None))["page"]
    async with kit.db.transaction() as session:
        for row_id, moment in (("rdm-w0", START + timedelta(hours=1)), ("rdm-w3", START - timedelta(hours=1))):
            row = await session.get(Redemption, row_id)
            assert row is not None
            row.updated_at = moment
            row.attempts += 1
            session.add(row)
    ids = [item["id"] for item in first["items"]]
    after = first["nextCursor"]
    while after is not None:
        page = (await kit.data(query, tokens["staff"], first=2, after=after))["page"]
        ids += [item["id"] for item in page["items"]]
        after = page["nextCursor"]
    assert ids == WAITING


def refused_at(body: dict[str, Any]) -> tuple[str, str, str]:
    [error] = body["errors"]
    return error["extensions"]["code"], error["extensions"]["field"], error["message"]


def edited(cursor: str) -> str:
    """The cursor with the time it holds moved a minute on, written back as the list writes it."""
    values, check = json.loads(base64.urlsafe_b64decode(cursor))
    values[0]["at"] = (datetime.fromisoformat(values[0]["at"]) + timedelta(minutes=1)).isoformat()
    return base64.urlsafe_b64encode(json.dumps([values, check]).encode()).decode()


async def test_an_edited_or_foreign_cursor_is_refused_naming_after(kit: ExchangeKit) -> None:
    tokens = await seed(kit)
    member, staff = tokens["member"], tokens["staff"]
    redemptions = page_query("redemptionPage", "")
    cursor = (await kit.data(redemptions, member, first=1, after=None))["page"]["nextCursor"]
    held = (await kit.data(page_query("heldRedemptionPage", ""), staff, first=1, after=None))["page"]["nextCursor"]
    waiting = page_query("pendingOperationPage", "")
    waited = (await kit.data(waiting, staff, first=1, after=None))["page"]["nextCursor"]
    matches = page_query("statusMatchPage", "")
    decisions = page_query("riskDecisionPage", "memberId: $memberId, ")
    decision = (await kit.data(decisions, staff, first=1, after=None, memberId=tokens["memberId"]))["page"]
    refusals = [
        await kit.graphql(redemptions, member, first=2, after=edited(cursor)),  # edited
        await kit.graphql(redemptions, member, first=2, after=cursor[:-4]),  # cut
        await kit.graphql(redemptions, member, first=2, after="not-a-cursor"),  # made up
        await kit.graphql(matches, member, first=2, after=cursor),  # another list's
        await kit.graphql(redemptions, member, first=2, after=held),  # another list's, of the same rows
        # The same list with other filters: every decision, not only the member's.
        await kit.graphql(page_query("riskDecisionPage", ""), staff, first=2, after=decision["nextCursor"]),
        await kit.graphql(page_query("retryingOperationPage", ""), staff, first=2, after=waited),
        await kit.graphql(
            page_query("pendingOperationPage", 'programId: "wallet-pay", '), staff, first=2, after=waited
        ),
    ]
    for refused in refusals:
        assert refused_at(refused.json()) == ("BAD_USER_INPUT", "after", NOT_A_CURSOR), refused.text
    # Another member's cursor of the same list is another list of rows.
    bob = await kit.member_token("wallet-pay", "bob")
    assert refused_at((await kit.graphql(redemptions, bob, first=2, after=cursor)).json())[1] == "after"
    too_long = (await kit.graphql(redemptions, member, first=2, after="a" * 513)).json()
    assert refused_at(too_long)[:2] == ("BAD_USER_INPUT", "after")


def made_up(values: list[Any], scope: object, keyset: Keyset = MEMBER_REDEMPTIONS) -> str:
    """A cursor of ``keyset``'s list (the member's redemptions) made up by a client: the check is
    public, so it can be made to match any values."""
    payload = json.dumps([values, keyset._check(scope, values)], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode()


@ON_SQLITE_TOO
@pytest.mark.parametrize("text", ["rdm-\x00", "\ud800"], ids=["nul", "unpaired-surrogate"])
async def test_a_made_up_cursor_holding_text_no_store_compares_is_refused(kit: ExchangeKit, text: str) -> None:
    """Values made up with a matching check are each of their column's type; text a store
    cannot take (PostgreSQL refuses a NUL, neither encodes an unpaired surrogate) is no
    cursor's either: it is refused as one, not a server error."""
    tokens = await seed(kit)
    cursor = made_up([{"at": MOMENTS[2].isoformat()}, text], tokens["memberId"])
    refused = await kit.graphql(page_query("redemptionPage", ""), tokens["member"], first=2, after=cursor)
    assert refused_at(refused.json()) == ("BAD_USER_INPUT", "after", NOT_A_CURSOR), refused.text
    fine = made_up([{"at": MOMENTS[2].isoformat()}, "rdm-2"], tokens["memberId"])
    page = await kit.data(page_query("redemptionPage", ""), tokens["member"], first=2, after=fine)
    assert [item["id"] for item in page["page"]["items"]] == ["rdm-1", "rdm-0"], "a made-up cursor reads its own list"


@ON_SQLITE_TOO
@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 10**40], ids=["2**63", "-2**63-1", "10**40"])
async def test_a_made_up_cursor_holding_an_integer_past_64_bits_is_refused(kit: ExchangeKit, number: int) -> None:
    tokens = await seed(kit)
    decisions = page_query("riskDecisionPage", "memberId: $memberId, ")
    cursor = made_up([number], [None, None, tokens["memberId"]], DECISIONS)
    refused = await kit.graphql(decisions, tokens["staff"], first=2, after=cursor, memberId=tokens["memberId"])
    assert refused_at(refused.json()) == ("BAD_USER_INPUT", "after", NOT_A_CURSOR), refused.text
    widest = made_up([2**63 - 1], [None, None, tokens["memberId"]], DECISIONS)
    page = await kit.data(decisions, tokens["staff"], first=9, after=widest, memberId=tokens["memberId"])
    assert len(page["page"]["items"]) == len(MOMENTS), "the largest id a store holds is a cursor: all come after it"


async def test_the_deprecated_lists_read_the_first_page(kit: ExchangeKit) -> None:
    tokens = await seed(kit)
    old = await kit.data("{ redemptions(first: 2) { id } statusMatches(first: 2) { id } }", tokens["member"])
    assert old == {"redemptions": [{"id": "rdm-4"}, {"id": "rdm-3"}], "statusMatches": [{"id": "sm-4"}, {"id": "sm-3"}]}
    held = await kit.data("{ heldRedemptions(first: 5) { id } heldConversions { id } }", tokens["staff"])
    assert held == {"heldRedemptions": [{"id": "rdm-0"}, {"id": "rdm-1"}, {"id": "rdm-2"}], "heldConversions": []}
    empty = await kit.data("{ heldConversionPage { items { id } nextCursor } }", tokens["staff"])
    assert empty == {"heldConversionPage": {"items": [], "nextCursor": None}}
