"""The netting picture's layout: an arrow per obligation before, one per non-zero net after."""

from __future__ import annotations

from exchange.settlement.netting import Obligation
from exchange.web.netting_picture import MAX_WIDTH, MIN_WIDTH, SIZE, draw


def test_every_obligation_and_every_non_zero_net_position_has_its_arrow() -> None:
    picture = draw(
        [Obligation("a", "b", 1_000), Obligation("b", "a", 250), Obligation("c", "b", 500)],
        {"a": -750, "b": 1_250, "c": -500, "d": 0},
    )
    assert [node.name for node in picture.nodes] == ["a", "b", "c", "d"]
    assert [(arrow.source, arrow.target, arrow.amount) for arrow in picture.gross] == [
        ("a", "b", 1_000),
        ("b", "a", 250),
        ("c", "b", 500),
    ]
    assert [(arrow.source, arrow.target, arrow.amount) for arrow in picture.net] == [
        ("a", "", 750),
        ("", "b", 1_250),
        ("c", "", 500),
    ]
    assert [arrow.width for arrow in picture.gross] == [MAX_WIDTH, MIN_WIDTH + 1, MIN_WIDTH + 3]
    there, back = picture.gross[0], picture.gross[1]
    assert (there.x1, there.y1) != (back.x2, back.y2), "a pair owing both ways is drawn side by side"
    assert all(0 <= value <= SIZE for arrow in picture.gross + picture.net for value in (arrow.x1, arrow.y2))
