"""A member's redemptions, newest first, a page at a time after the last one shown: each once,
those made at one instant by id, read by the member's index however deep the page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from exchange.db.database import Database
from exchange.db.paging import NOT_A_CURSOR
from exchange.errors import BadUserInput
from exchange.programs.declarations import read_partners_directory
from exchange.programs.service import load_partners
from exchange.rewards.models import Redemption, RedemptionStatus, RewardKind
from exchange.rewards.redemption import MEMBER_REDEMPTIONS, member_redemptions
from tests.conftest import SAMPLE_PARTNERS
from tests.factories import member_with_accounts
from tests.integration.test_redemptions_to_confirm import NOW, redemption, reward
from tests.reads import rows_read


async def members_with_redemptions(db: Database, made: int) -> tuple[str, str]:
    """Two members: the first with ``made`` redemptions, two at each instant (``rdm-0`` first),
    the other with one (``rdm-theirs``)."""
    async with db.transaction() as session:
        await load_partners(session, read_partners_directory(SAMPLE_PARTNERS), NOW)
    ours = await member_with_accounts(db, {"wallet-pay": "alice"}, NOW)
    theirs = await member_with_accounts(db, {"wallet-pay": "bob"}, NOW)
    coupon = reward("coupon", "fresh-mart", RewardKind.DIRECT)
    async with db.transaction() as session:
        session.add(coupon)
        await session.flush()
        for number in range(made):
            row = redemption(number, ours, coupon, RedemptionStatus.COMPLETED, deliver_in=1)
            row.created_at = NOW + timedelta(minutes=number // 2)
            session.add(row)
        other = redemption(made, theirs, coupon, RedemptionStatus.COMPLETED, deliver_in=1)
        other.id = "rdm-theirs"
        session.add(other)
    return ours, theirs


async def test_a_members_redemptions_page_newest_first_each_once_and_only_after_their_own(db: Database) -> None:
    ours, theirs = await members_with_redemptions(db, 7)
    pages: list[list[str]] = []
    after = None
    async with db.transaction() as session:
        while True:
            page = await member_redemptions(session, ours, first=3, after=after)
            pages.append([row.id for row in page.items])
            if (after := page.next_cursor) is None:
                break
        newest_first = sorted(range(7), key=lambda number: (number // 2, f"rdm-{number}"), reverse=True)
        assert pages == [[f"rdm-{number}" for number in newest_first[start : start + 3]] for start in (0, 3, 6)]
        [their_row] = (await member_redemptions(session, theirs, first=3)).items
        for cursor in (MEMBER_REDEMPTIONS.cursor(their_row, theirs), "rdm-theirs", "x" * 37):
            with pytest.raises(BadUserInput) as refused:
                await member_redemptions(session, ours, first=3, after=cursor)
            assert (refused.value.field, str(refused.value)) == ("after", NOT_A_CURSOR)


@pytest.mark.postgres_only
async def test_a_deep_page_of_a_members_redemptions_reads_its_own_rows(pg_db: Database) -> None:
    ours, _ = await members_with_redemptions(pg_db, 600)
    async with pg_db.transaction() as session:
        await session.exec(text("ANALYZE redemption"))  # type: ignore[call-overload]
    async with pg_db.transaction() as session:
        mark = await session.get(Redemption, "rdm-100")
        assert mark is not None
        after = MEMBER_REDEMPTIONS.cursor(mark, ours)
        page, read = await rows_read(
            session, ["redemption"], lambda: member_redemptions(session, ours, first=10, after=after)
        )
    assert [row.id for row in page.items] == [f"rdm-{number}" for number in range(99, 89, -1)]
    # The page's ten, one more (whether there is a next page) and the instants at the page's
    # ends read whole to order them by id: not the 500 newer ones before it.
    assert read["redemption"] <= 16, read
