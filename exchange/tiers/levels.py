"""Tiers as partners report them, read live, on the coalition ladder."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from exchange.connectors.connector import PartnerConnector
from exchange.connectors.contract import MemberAccount
from exchange.connectors.errors import PartnerError
from exchange.members.models import LinkedAccount
from exchange.programs.models import Program, ProgramTier
from exchange.tiers.policy import Rung


def rung_of(tier: str, tiers: Sequence[ProgramTier]) -> Rung:
    """The program's tier named ``tier`` on the ladder.

    A name the program does not declare is held at level 0: a partner reporting a tier the
    exchange was never told about earns nothing until its declaration says what it is worth.
    """
    for row in tiers:
        if row.name == tier:
            return Rung(row.name, row.level)
    return Rung(tier, 0)


def rungs(tiers: Sequence[ProgramTier]) -> list[Rung]:
    return [Rung(row.name, row.level) for row in tiers]


async def live_level(
    accounts: Sequence[LinkedAccount],
    programs: dict[str, Program],
    tiers: dict[str, list[ProgramTier]],
    connector_for: Callable[[Program], PartnerConnector],
) -> int:
    """The member's coalition level: the highest level of the tiers their partners report
    now (matches included, as the partner holds them). Partners that cannot answer count
    for nothing."""

    async def account(linked: LinkedAccount) -> MemberAccount | None:
        try:
            return await connector_for(programs[linked.program_id]).account(linked.member_ref)
        except PartnerError:
            return None

    answers = await asyncio.gather(*(account(linked) for linked in accounts))
    levels = [
        rung_of(answer.tier, tiers.get(linked.program_id, [])).level
        for linked, answer in zip(accounts, answers, strict=True)
        if answer is not None
    ]
    return max(levels, default=0)
