"""A ratio between two programs' points, such as ``3:1``.

Program declarations (``[[rates]] ratio = "3:1"``) and the pricing rules both speak of it; it
lives beside ``exchange.money`` so that neither package has to import the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from exchange.text import whole_number

#: The most points either side of a ratio may name: as many as one conversion may move
#: (``exchange.pricing.limits.MAX_POINTS``); larger, pricing's decimals lose their exactness.
MAX_SIDE = 1_000_000_000


@dataclass(frozen=True, slots=True, order=True)
class Ratio:
    """``points_in`` points of the source buy ``points_out`` points of the target."""

    points_in: int
    points_out: int

    def __post_init__(self) -> None:
        if not (0 < self.points_in <= MAX_SIDE and 0 < self.points_out <= MAX_SIDE):
            raise ValueError(f"a ratio's sides must be from 1 to {MAX_SIDE:,}, got {self}")

    @classmethod
    def parse(cls, text: str) -> Ratio:
        """Read ``"3:1"``; raises ValueError naming what is wrong."""
        left, sep, right = text.partition(":")
        points_in, points_out = (whole_number(side, max_digits=len(text)) for side in (left, right))
        if not sep or points_in is None or points_out is None or "," in text:
            raise ValueError(f'{text!r} is not a ratio like "3:1"')
        return cls(points_in, points_out)

    def __str__(self) -> str:
        return f"{self.points_in}:{self.points_out}"
