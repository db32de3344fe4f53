"""A ratio between two programs' points, such as ``3:1``.

Program declarations (``[[rates]] ratio = "3:1"``) and the pricing rules both speak of it; it
lives beside ``exchange.money`` so that neither package has to import the other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The largest side a written ratio may have (as many points as one conversion may move), so
#: that what it makes of a conversion's points stays far inside the 64-bit columns that hold them.
MAX_SIDE = 1_000_000_000


@dataclass(frozen=True, slots=True, order=True)
class Ratio:
    """``points_in`` points of the source buy ``points_out`` points of the target."""

    points_in: int
    points_out: int

    def __post_init__(self) -> None:
        if self.points_in <= 0 or self.points_out <= 0:
            raise ValueError(f"a ratio's sides must be positive, got {self}")

    @classmethod
    def parse(cls, text: str) -> Ratio:
        """Read ``"3:1"`` (digits 0-9 only, each side at most :data:`MAX_SIDE`); raises
        ValueError naming what is wrong."""
        left, sep, right = (side.strip() for side in text.partition(":"))
        if not sep or not all(side.isascii() and side.isdigit() for side in (left, right)):
            raise ValueError(f'{text!r} is not a ratio like "3:1"')
        if max(int(left), int(right)) > MAX_SIDE:
            raise ValueError(f"a ratio's sides must be at most {MAX_SIDE:,}, got {text.strip()}")
        return cls(int(left), int(right))

    def __str__(self) -> str:
        return f"{self.points_in}:{self.points_out}"
