"""Tiers as partners report them, read live, on the coalition ladder."""

from __future__ import annotations

from collections.abc import Sequence

from exchange.programs.models import ProgramTier
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
