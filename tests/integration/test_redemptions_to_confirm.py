"""A publisher's redemptions to confirm: its own paid direct ones, the most urgent first, read
a page at a time however many lottery entries and other publishers' redemptions there are."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from exchange.db.database import Database
from exchange.programs.declarations import read_partners_directory
from exchange.programs.service import load_partners
from exchange.rewards.models import Redemption, RedemptionStatus, RedemptionStep, Reward, RewardKind
from exchange.rewards.redemption import awaiting_delivery
from tests.conftest import SAMPLE_PARTNERS
from tests.factories import member_with_accounts
from tests.reads import rows_read

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def reward(reward_id: str, program_id: str, kind: RewardKind) -> Reward:
    return Reward(
        id=reward_id,
        program_id=program_id,
        title=reward_id,
        kind=kind,
        price_minor=1_000,
        currency="TWD",
        stock=10_000,
        available_from=NOW,
        created_at=NOW,
    )


def redemption(number: int, member_id: str, of: Reward, status: RedemptionStatus, deliver_in: int) -> Redemption:
    return Redemption(
        id=f"rdm-{number}",
        member_id=member_id,
        idempotency_key=str(number),
        reward_id=of.id,
        publisher=of.program_id,
        paying_program="wallet-pay",
        paying_ref="alice",
        kind=of.kind,
        points=100,
        price_minor=of.price_minor,
        fee_minor=0,
        currency="TWD",
        deliver_by=NOW + timedelta(hours=deliver_in) if of.kind == RewardKind.DIRECT else None,
        status=status,
        step=RedemptionStep.DONE,
        next_attempt_at=NOW,
        created_at=NOW,
        updated_at=NOW,
    )


@pytest.mark.postgres_only
async def test_a_publishers_redemptions_to_confirm_are_read_a_page_at_a_time(pg_db: Database) -> None:
    async with pg_db.transaction() as session:
        await load_partners(session, read_partners_directory(SAMPLE_PARTNERS), NOW)
    member_id = await member_with_accounts(pg_db, {"wallet-pay": "alice"}, NOW)
    coupon, draw, other_draw, other_coupon = (
        reward("coupon", "fresh-mart", RewardKind.DIRECT),
        reward("draw", "fresh-mart", RewardKind.LOTTERY),
        reward("other-draw", "formosa-air", RewardKind.LOTTERY),
        reward("other-coupon", "formosa-air", RewardKind.DIRECT),
    )
    completed, delivered = RedemptionStatus.COMPLETED, RedemptionStatus.DELIVERED
    # Its thirty coupons to confirm, made first and each due sooner than the one before; then
    # lottery entries, which stay COMPLETED for good (nothing is delivered to confirm), another
    # publisher's coupons due sooner than any of them, and its own coupons delivered already.
    made = [(coupon, completed)] * 30
    made += [(draw, completed), (other_draw, completed), (other_coupon, completed), (coupon, delivered)] * 300
    async with pg_db.transaction() as session:
        session.add_all([coupon, draw, other_draw, other_coupon])
        await session.flush()
        session.add_all(
            redemption(number, member_id, of, status, deliver_in=len(made) - number)
            for number, (of, status) in enumerate(made)
        )
    async with pg_db.transaction() as session:
        await session.exec(text("ANALYZE redemption"))  # the statistics a table in service has
    async with pg_db.transaction() as session:
        page, read = await rows_read(
            session, ["redemption"], lambda: awaiting_delivery(session, "fresh-mart", first=10)
        )
    assert [row.id for row in page] == [f"rdm-{number}" for number in range(29, 19, -1)]
    # The page's ten, by index: not the other COMPLETED redemptions (900) before or among them.
    assert read == {"redemption": 10}
