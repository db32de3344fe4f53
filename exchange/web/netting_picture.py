"""The netting picture: who owed whom over a period before netting, and who pays or is paid
what after it, laid out for an SVG the page draws on the server.

Participants sit on a circle. Before netting, an arrow goes from each debtor to each creditor
for the gross obligation (a pair that owed each other both ways gets two arrows, side by side).
After multilateral netting, every participant with a non-zero net position has one arrow: to
the clearing centre if it pays (net < 0), from it if it is paid (net > 0). An arrow's width
grows with its amount, relative to the largest in its picture. Coordinates are whole pixels of
a square ``SIZE``-wide view box; amounts stay exact integers in minor units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exchange.settlement.netting import Obligation

SIZE = 360
CENTRE = SIZE // 2
RING = 128
NODE_RADIUS = 26
HUB_RADIUS = 20
#: Arrows between one pair both ways are drawn this far apart.
SIDE_BY_SIDE = 7
MIN_WIDTH, MAX_WIDTH = 2, 9


@dataclass(frozen=True)
class Node:
    name: str
    x: int
    y: int
    net: int


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    amount: int
    x1: int
    y1: int
    x2: int
    y2: int
    width: int
    label_x: int
    label_y: int


@dataclass(frozen=True)
class Picture:
    size: int
    nodes: Sequence[Node]
    gross: Sequence[Arrow]
    net: Sequence[Arrow]
    hub: tuple[int, int]


def _width(amount: int, largest: int) -> int:
    return MIN_WIDTH + (MAX_WIDTH - MIN_WIDTH) * amount // largest if largest else MIN_WIDTH


def _arrow(
    source: str,
    target: str,
    amount: int,
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    gaps: tuple[int, int],
    shift: float,
    largest: int,
) -> Arrow:
    """An arrow from ``start`` to ``end``, cut short by ``gaps`` (the circles it joins) and
    moved ``shift`` pixels to its left."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = math.hypot(dx, dy) or 1.0
    ux, uy = dx / length, dy / length
    nx, ny = -uy * shift, ux * shift
    x1, y1 = start[0] + ux * gaps[0] + nx, start[1] + uy * gaps[0] + ny
    x2, y2 = end[0] - ux * (gaps[1] + 4) + nx, end[1] - uy * (gaps[1] + 4) + ny
    label = (x1 + x2) / 2 + nx * 2.2, (y1 + y2) / 2 + ny * 2.2
    return Arrow(
        source,
        target,
        amount,
        round(x1),
        round(y1),
        round(x2),
        round(y2),
        _width(amount, largest),
        round(label[0]),
        round(label[1]),
    )


def draw(obligations: Sequence[Obligation], nets: Mapping[str, int]) -> Picture:
    """The picture of a closed period: its gross obligations and its participants' net positions."""
    names = sorted(set(nets) | {o.debtor for o in obligations} | {o.creditor for o in obligations})
    places: dict[str, tuple[float, float]] = {}
    for index, name in enumerate(names):
        angle = -math.pi / 2 + 2 * math.pi * index / max(len(names), 1)
        places[name] = (CENTRE + RING * math.cos(angle), CENTRE + RING * math.sin(angle))
    nodes = [Node(name, round(places[name][0]), round(places[name][1]), nets.get(name, 0)) for name in names]
    pairs = {(o.debtor, o.creditor) for o in obligations}
    largest = max((o.amount for o in obligations), default=0)
    gross = [
        _arrow(
            o.debtor,
            o.creditor,
            o.amount,
            places[o.debtor],
            places[o.creditor],
            gaps=(NODE_RADIUS, NODE_RADIUS),
            shift=SIDE_BY_SIDE if (o.creditor, o.debtor) in pairs else 0,
            largest=largest,
        )
        for o in obligations
    ]
    hub = (float(CENTRE), float(CENTRE))
    largest_net = max((abs(net) for net in nets.values()), default=0)
    net = [
        _arrow(name, "", -amount, places[name], hub, gaps=(NODE_RADIUS, HUB_RADIUS), shift=0, largest=largest_net)
        if amount < 0
        else _arrow("", name, amount, hub, places[name], gaps=(HUB_RADIUS, NODE_RADIUS), shift=0, largest=largest_net)
        for name, amount in sorted(nets.items())
        if amount
    ]
    return Picture(SIZE, nodes, gross, net, (CENTRE, CENTRE))
