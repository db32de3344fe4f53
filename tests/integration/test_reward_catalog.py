"""The rewards catalog: declared sample rewards load once, and publishing checks its input."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from exchange.db.database import Database
from exchange.errors import BadUserInput, IdempotencyConflict
from exchange.loading import load_directory
from exchange.programs.declarations import DeclarationError, read_partners_directory
from exchange.rewards import catalog
from exchange.rewards.models import RewardKind
from tests.conftest import SAMPLE_PARTNERS

T0 = datetime(2026, 11, 20, tzinfo=UTC)


async def test_declared_rewards_are_published_once_and_then_left_to_their_partner(db: Database) -> None:
    directory = read_partners_directory(SAMPLE_PARTNERS)
    async with db.transaction() as session:
        await load_directory(session, directory, T0)
        draw = await catalog.get_reward(session, "formosa-air-upgrade-draw")
        assert (draw.program_id, draw.kind, draw.price_minor, draw.min_level) == (
            "formosa-air",
            RewardKind.LOTTERY,
            2000,
            1,
        )
        draw.stock = 7  # redemptions took some
        session.add(draw)
    async with db.transaction() as session:
        await load_directory(session, directory, T0 + timedelta(days=1))
        assert (await catalog.get_reward(session, "formosa-air-upgrade-draw")).stock == 7
        listed = await catalog.list_rewards(session, first=10, program_id="formosa-air", available_at=T0)
    assert [reward.id for reward in listed] == ["formosa-air-lounge-pass", "formosa-air-upgrade-draw"]


async def test_a_declared_reward_whose_id_another_program_published_refuses_the_load(db: Database) -> None:
    """A partner may publish a reward under any free id; one a later declaration names for
    another program is that program's no more: the load says so rather than skip it."""
    directory = read_partners_directory(SAMPLE_PARTNERS)
    air = next(program for program in directory.programs if program.id == "formosa-air")
    summer = air.rewards[0].model_copy(update={"id": "air-summer"})
    declared = dataclasses.replace(
        directory,
        programs=tuple(
            program.model_copy(update={"rewards": [*program.rewards, summer]}) if program is air else program
            for program in directory.programs
        ),
    )
    async with db.transaction() as session:
        await load_directory(session, directory, T0)
        squat = catalog.RewardDraft(id="air-summer", title="Summer", price=Decimal("10"), stock=1)
        await catalog.publish(session, "wallet-pay", squat, T0)
    with pytest.raises(DeclarationError) as refused:
        async with db.transaction() as session:
            await load_directory(session, declared, T0 + timedelta(days=1))
    assert (refused.value.path, refused.value.field) == ("formosa-air.toml", f"rewards[{len(air.rewards)}].id")
    assert "'air-summer' is a reward of wallet-pay already" in refused.value.reason
    async with db.transaction() as session:
        assert (await catalog.get_reward(session, "air-summer")).program_id == "wallet-pay"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"price": Decimal("0.001")}, "price"),
        ({"price": Decimal("0")}, "price"),
        ({"stock": -1}, "stock"),
        ({"per_member_limit": 0}, "perMemberLimit"),
        ({"min_level": 5}, "minLevel"),
        ({"title": " "}, "title"),
        ({"available_from": T0, "available_until": T0}, "availableUntil"),
    ],
)
async def test_publishing_refuses_bad_input_naming_the_field(
    db: Database, change: dict[str, object], field: str
) -> None:
    draft = catalog.RewardDraft(**{"title": "Pass", "price": Decimal("10"), "stock": 1, **change})  # type: ignore[arg-type]
    async with db.transaction() as session:
        await load_directory(session, read_partners_directory(SAMPLE_PARTNERS), T0)
    with pytest.raises(BadUserInput) as refused:
        async with db.transaction() as session:
            await catalog.publish(session, "fresh-mart", draft, T0)
    assert refused.value.field == field


async def test_publishing_under_another_rewards_id_is_an_idempotency_conflict_naming_the_id(db: Database) -> None:
    """An id is the client's key: one taken by another reward (here another partner's) is a
    conflict, as for every client-chosen id, and publishes nothing."""
    draft = catalog.RewardDraft(title="Pass", price=Decimal("10"), stock=1, id="formosa-air-lounge-pass")
    async with db.transaction() as session:
        await load_directory(session, read_partners_directory(SAMPLE_PARTNERS), T0)
    with pytest.raises(IdempotencyConflict) as refused:
        async with db.transaction() as session:
            await catalog.publish(session, "fresh-mart", draft, T0)
    assert refused.value.field == "id"
