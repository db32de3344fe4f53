"""The public rewards listing is a page, however many rewards partners publish: `first` of
them by program id then reward id, after the reward `after`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlmodel import select

from exchange.rewards import catalog
from exchange.rewards.models import Reward
from exchange.settings import Settings
from exchange.testing.kit import ExchangeKit
from tests.api.conftest import ON_SQLITE_TOO

PAGE = """query($first: Int, $after: ID) {
  rewards(availableOnly: false, first: $first, after: $after) { id programId } }"""


@pytest.fixture
def gateway_settings(store_settings: Settings) -> Settings:
    return store_settings


async def publish(kit: ExchangeKit, counts: dict[str, int]) -> None:
    """``counts[program]`` more rewards of each program, published as its partner does."""
    async with kit.db.transaction() as session:
        for program_id, count in counts.items():
            for n in range(count):
                draft = catalog.RewardDraft(
                    title=f"Reward {n}", price=Decimal("10"), stock=1, id=f"{program_id}-paged-{n:03}"
                )
                await catalog.publish(session, program_id, draft, datetime.now(UTC))


async def every_reward_id(kit: ExchangeKit) -> set[str]:
    async with kit.db.transaction() as session:
        return {reward.id for reward in (await session.exec(select(Reward))).all()}


async def listed(kit: ExchangeKit, first: int | None, after: str | None = None) -> list[dict[str, Any]]:
    variables: dict[str, Any] = {"after": after} if first is None else {"first": first, "after": after}
    return list((await kit.data(PAGE, **variables))["rewards"])


@ON_SQLITE_TOO
async def test_paging_through_the_rewards_lists_each_once_in_the_order_of_one_page(kit: ExchangeKit) -> None:
    await publish(kit, {"wallet-pay": 4, "fresh-mart": 3, "formosa-air": 2})
    every = await every_reward_id(kit)
    whole = await listed(kit, 200)
    assert {reward["id"] for reward in whole} == every and len(whole) == len(every)
    programs = [reward["programId"] for reward in whole]
    assert programs == sorted(programs, key=programs.index), "each program's rewards together"

    paged: list[dict[str, Any]] = []
    after = None
    while page := await listed(kit, 3, after):
        assert len(page) <= 3
        paged += page
        after = page[-1]["id"]
    assert paged == whole, "every reward once, in the order of one page"


@ON_SQLITE_TOO
async def test_without_first_a_page_holds_100_rewards(kit: ExchangeKit) -> None:
    await publish(kit, {"fresh-mart": 101})
    first = await listed(kit, None)
    assert len(first) == 100 and len(await every_reward_id(kit)) > 100
    rest = await listed(kit, None, first[-1]["id"])
    assert rest and not {reward["id"] for reward in first} & {reward["id"] for reward in rest}


@pytest.mark.parametrize(
    ("variables", "refused"),
    [
        ({"first": 0}, {"code": "BAD_USER_INPUT", "field": "first"}),
        ({"first": 201}, {"code": "BAD_USER_INPUT", "field": "first"}),
        ({"first": 10, "after": "no-such-reward"}, {"code": "BAD_USER_INPUT", "field": "after"}),
    ],
)
async def test_a_page_out_of_bounds_or_after_no_reward_is_refused_naming_its_argument(
    kit: ExchangeKit, variables: dict[str, Any], refused: dict[str, str]
) -> None:
    body = (await kit.graphql(PAGE, **variables)).json()
    (error,) = body["errors"]
    assert {"code": error["extensions"]["code"], "field": error["extensions"]["field"]} == refused
    assert body["data"] is None


PROGRAMS_PAGE = """query($programId: ID, $after: ID) {
  rewards(programId: $programId, availableOnly: false, first: 10, after: $after) { id programId } }"""


@ON_SQLITE_TOO
async def test_a_page_of_one_programs_rewards_after_another_programs_reward_is_refused_naming_after(
    kit: ExchangeKit,
) -> None:
    """By the keyset (program, then id), another program's reward comes before or after all of
    this program's: the page would hold all of them or none, as if it were a page of them."""
    await publish(kit, {"wallet-pay": 2, "fresh-mart": 2, "tune-stream": 2})
    for other in ("fresh-mart-paged-000", "tune-stream-paged-001"):  # before wallet-pay's, and after them
        body = (await kit.graphql(PROGRAMS_PAGE, programId="wallet-pay", after=other)).json()
        (error,) = body["errors"]
        assert (error["extensions"]["code"], error["extensions"]["field"]) == ("BAD_USER_INPUT", "after"), error
        assert other in error["message"] and "wallet-pay" in error["message"]
        assert body["data"] is None
    own = await kit.data(PROGRAMS_PAGE, programId="wallet-pay", after="wallet-pay-paged-000")
    assert [reward["id"] for reward in own["rewards"]] == ["wallet-pay-paged-001"], "its own reward still pages"
    every = await kit.data(PROGRAMS_PAGE, programId=None, after="fresh-mart-paged-001")
    assert every["rewards"], "without programId, any reward is a cursor"
