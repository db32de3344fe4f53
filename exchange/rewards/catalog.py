"""The rewards catalog: partners publish rewards; anyone may browse them."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import literal, or_, tuple_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from exchange.db import dialects
from exchange.errors import BadUserInput, IdempotencyConflict
from exchange.money import Currency
from exchange.programs import service as programs
from exchange.programs.declarations import DeclarationError, PartnersDirectory
from exchange.rewards.errors import CursorOfAnotherProgram, NoRewardAfter, NotYourReward, RewardNotFound
from exchange.rewards.models import DESCRIPTION_LENGTH, TITLE_LENGTH, Reward, RewardKind
from exchange.text import chosen_id_problem, shown_text_problem, shows_nothing

MAX_STOCK = 1_000_000


@dataclass(frozen=True, slots=True)
class RewardDraft:
    """A reward as its partner describes it, before it is checked."""

    title: str
    price: Decimal
    stock: int
    kind: RewardKind = RewardKind.DIRECT
    description: str = ""
    per_member_limit: int | None = None
    min_level: int = 0
    available_from: datetime | None = None
    available_until: datetime | None = None
    id: str | None = None


async def publish(session: AsyncSession, program_id: str, draft: RewardDraft, now: datetime) -> Reward:
    """Check ``draft`` and publish it as ``program_id``'s reward; fields named as in GraphQL."""
    if draft.id is not None and (problem := chosen_id_problem(draft.id)):
        raise BadUserInput(f"id {problem}", field="id")
    coalition = await programs.get_coalition(session)
    currency = coalition.settings.currency
    if not 1 <= len(draft.title.strip()) <= TITLE_LENGTH:
        raise BadUserInput(f"title must be 1 to {TITLE_LENGTH} characters", field="title")
    if shows_nothing(draft.title):
        raise BadUserInput("title shows nothing: it holds only spaces and invisible characters", field="title")
    if problem := shown_text_problem(draft.title):
        raise BadUserInput(f"title {problem}", field="title")
    if len(draft.description) > DESCRIPTION_LENGTH:
        raise BadUserInput(f"description must be at most {DESCRIPTION_LENGTH} characters", field="description")
    if problem := shown_text_problem(draft.description, lines=True):
        raise BadUserInput(f"description {problem}", field="description")
    price_minor = _price_minor(draft.price, currency)
    if not 0 <= draft.stock <= MAX_STOCK:
        raise BadUserInput(f"stock must be from 0 to {MAX_STOCK}", field="stock")
    if draft.per_member_limit is not None and draft.per_member_limit < 1:
        raise BadUserInput("perMemberLimit must be at least 1 (or null: no limit)", field="perMemberLimit")
    top = coalition.ladder[-1].level
    if not 0 <= draft.min_level <= top:
        raise BadUserInput(f"minLevel must be a ladder level, 0 to {top}", field="minLevel")
    available_from = draft.available_from or now
    if draft.available_until is not None and draft.available_until <= available_from:
        raise BadUserInput("availableUntil must be after availableFrom", field="availableUntil")
    reward_id = draft.id or f"rwd_{uuid.uuid4().hex}"
    digest = _publish_digest(program_id, draft, price_minor)
    reward = Reward(
        id=reward_id,
        program_id=program_id,
        title=draft.title.strip(),
        description=draft.description,
        kind=draft.kind,
        price_minor=price_minor,
        currency=currency.code,
        stock=draft.stock,
        per_member_limit=draft.per_member_limit,
        min_level=draft.min_level,
        available_from=available_from,
        available_until=draft.available_until,
        created_at=now,
        publish_digest=digest,
    )
    if await dialects.insert_once(session, reward):
        return reward
    existing = await session.get(Reward, reward_id)
    if existing is not None and existing.program_id == program_id and existing.publish_digest == digest:
        return existing
    raise IdempotencyConflict(f"reward id {reward_id!r} is taken by another reward", field="id")


def _publish_digest(program_id: str, draft: RewardDraft, price_minor: int) -> str:
    """What names a publishing request: its terms as sent (the stock, the price and the
    availability it asked for, whatever redemptions, a restock or a new price made of them since),
    so that sending it again under its id answers the reward it made, and other terms under that
    id are refused, as every client-chosen id is (:mod:`exchange.idempotency`)."""
    terms = {
        "programId": program_id,
        "title": draft.title.strip(),
        "description": draft.description,
        "kind": draft.kind.value,
        "priceMinor": price_minor,
        "stock": draft.stock,
        "perMemberLimit": draft.per_member_limit,
        "minLevel": draft.min_level,
        "availableFrom": None if draft.available_from is None else draft.available_from.timestamp(),
        "availableUntil": None if draft.available_until is None else draft.available_until.timestamp(),
    }
    return hashlib.sha256(json.dumps(terms, sort_keys=True).encode()).hexdigest()


def _price_minor(price: Decimal, currency: Currency) -> int:
    if price <= 0:
        raise BadUserInput(f"price must be greater than 0, got {price}", field="price")
    try:
        return currency.to_minor(price)
    except ValueError as exc:
        raise BadUserInput(str(exc), field="price") from None


async def _own_locked(session: AsyncSession, program_id: str, reward_id: str) -> Reward:
    """``program_id``'s reward, locked for the change; another partner's is refused."""
    reward = await session.get(Reward, reward_id, with_for_update=True)
    if reward is None:
        raise RewardNotFound(reward_id)
    if reward.program_id != program_id:
        raise NotYourReward()
    return reward


async def reprice(session: AsyncSession, program_id: str, reward_id: str, price: Decimal) -> Reward:
    """A new settlement price for redemptions from now on; those made keep the price they paid."""
    reward = await _own_locked(session, program_id, reward_id)
    reward.price_minor = _price_minor(price, (await programs.get_coalition(session)).settings.currency)
    session.add(reward)
    await session.flush()
    return reward


async def restock(session: AsyncSession, program_id: str, reward_id: str, units: int) -> Reward:
    """``units`` more in stock (the row is locked, so no concurrent redemption is lost)."""
    reward = await _own_locked(session, program_id, reward_id)
    if not 1 <= units <= MAX_STOCK - reward.stock:
        raise BadUserInput(
            f"units must be from 1 to {MAX_STOCK - reward.stock} (stock is at most {MAX_STOCK})", field="units"
        )
    reward.stock += units
    session.add(reward)
    await session.flush()
    return reward


async def withdraw(session: AsyncSession, program_id: str, reward_id: str, now: datetime) -> Reward:
    """No redemption from ``now`` on; redemptions already paid still await delivery."""
    reward = await _own_locked(session, program_id, reward_id)
    if reward.available_until is None or reward.available_until > now:
        reward.available_until = max(now, reward.available_from)
        session.add(reward)
        await session.flush()
    return reward


async def get_reward(session: AsyncSession, reward_id: str, *, field: str = "rewardId") -> Reward:
    reward = await session.get(Reward, reward_id)
    if reward is None:
        raise RewardNotFound(reward_id, field)
    return reward


def is_available(reward: Reward, at: datetime) -> bool:
    return reward.available_from <= at and (reward.available_until is None or at < reward.available_until)


async def list_rewards(
    session: AsyncSession,
    *,
    first: int,
    after: str | None = None,
    program_id: str | None = None,
    available_at: datetime | None = None,
) -> Sequence[Reward]:
    """``first`` rewards by publisher and id, after the reward ``after`` (its program, then its
    id: a keyset, so a page costs the same however many rewards a partner publishes;
    ``NoRewardAfter`` when there is none, ``CursorOfAnotherProgram`` when it is not
    ``program_id``'s); only those redeemable at ``available_at`` when given."""
    statement = select(Reward)
    if after is not None:
        cursor = await session.get(Reward, after)
        if cursor is None:
            raise NoRewardAfter(after)
        if program_id is not None and cursor.program_id != program_id:
            raise CursorOfAnotherProgram(after, cursor.program_id, program_id)
        # A row value, which both databases compare as the index orders (ix_reward_program).
        statement = statement.where(
            tuple_(col(Reward.program_id), col(Reward.id)) > tuple_(literal(cursor.program_id), literal(cursor.id))
        )
    if program_id is not None:
        statement = statement.where(Reward.program_id == program_id)
    if available_at is not None:
        statement = statement.where(
            col(Reward.available_from) <= available_at,
            or_(col(Reward.available_until).is_(None), col(Reward.available_until) > available_at),
        )
    return (await session.exec(statement.order_by(col(Reward.program_id), col(Reward.id)).limit(first))).all()


async def rewards_by_id(session: AsyncSession, reward_ids: Collection[str]) -> dict[str, Reward]:
    """The rewards of ``reward_ids`` that exist, by id: for a page naming the rewards of the
    redemptions it shows, which reads only those."""
    if not reward_ids:
        return {}
    rows = await session.exec(select(Reward).where(col(Reward.id).in_(set(reward_ids))))
    return {reward.id: reward for reward in rows}


async def sync_declared_rewards(session: AsyncSession, directory: PartnersDirectory, now: datetime) -> int:
    """Publish every declared reward that does not exist yet; returns how many.

    A reward that exists is left alone: its stock is live, and its partner manages it. An id
    another program's reward holds already (a partner may publish any free id through the API)
    refuses the load, naming the declaration: skipped, the declared reward was never published,
    and members were shown the other partner's reward at its address.
    """
    published = 0
    for program in directory.programs:
        for index, declared in enumerate(program.rewards):
            if (existing := await session.get(Reward, declared.id)) is not None:
                if existing.program_id != program.id:
                    raise DeclarationError(
                        f"{program.id}.toml",
                        f"rewards[{index}].id",
                        f"reward id {declared.id!r} is a reward of {existing.program_id} already: declare another id",
                    )
                continue
            draft = RewardDraft(
                id=declared.id,
                title=declared.title,
                description=declared.description,
                kind=RewardKind(declared.kind.upper()),
                price=declared.price,
                stock=declared.stock,
                per_member_limit=declared.per_member_limit,
                min_level=declared.min_level,
                available_from=declared.available_from,
                available_until=declared.available_until,
            )
            await publish(session, program.id, draft, now)
            published += 1
    return published
