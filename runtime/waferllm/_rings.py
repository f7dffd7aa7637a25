"""Rings and line routes: the interleaved ring of MeshGEMM and the colour assignment.

WaferLLM §5.2-5.3 / Algorithm 1 (INTERLEAVE): embed the logical ring in a physical line so that
logical neighbours are at most 2 hops apart.  The order (shared/research/wafer.md §2.4,
checked against MeshInfra/WaferLLM ``assignId``) is all even positions ascending, then all odd
positions descending.  Messages along a line are routed with pass-through colours; colours are
assigned by greedy interval colouring, which is optimal for intervals, so the count equals the
most messages touching one PE — independent of the line length (the "R" of PLMR).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.mesh import Port, Program

__all__ = ["ColorPool", "LineRoutes", "ring_order", "route_line", "ring_messages"]


def ring_order(p: int) -> list[int]:
    """Interleaved ring over positions ``0..p-1``: evens ascending, then odds descending.

    >>> ring_order(8)
    [0, 2, 4, 6, 7, 5, 3, 1]
    """
    largest_odd = p - 1 if (p - 1) % 2 else p - 2
    return list(range(0, p, 2)) + list(range(largest_odd, 0, -2))


def ring_messages(order: list[int]) -> list[tuple[int, int]]:
    """Shift messages of a ring: the PE at ring position ``r`` sends to position ``r-1``
    (a block moves one step back along the ring each Cannon step)."""
    n = len(order)
    if n < 2:
        return []
    return [(order[r], order[r - 1]) for r in range(n)]


class ColorPool:
    """Hands out colours 0, 1, 2, ...; a program that takes more than the router's program
    colours is rejected at load time, naming the PEs (``check_program``)."""

    def __init__(self, start: int = 0) -> None:
        self.next = start
        self.taken: list[int] = []

    def take(self) -> int:
        c = self.next
        self.next += 1
        self.taken.append(c)
        return c


@dataclass(frozen=True)
class LineRoutes:
    """Colours of one set of line messages: per position, the colour it sends on and the
    colour it receives on (-1: none), and the colours used."""

    send: NDArray[np.int64]
    recv: NDArray[np.int64]
    colors: tuple[int, ...]
    hops: tuple[int, ...]


_FWD = {("x", True): (Port.E, Port.W), ("x", False): (Port.W, Port.E),
        ("y", True): (Port.S, Port.N), ("y", False): (Port.N, Port.S)}


def route_line(prog: Program, axis: str, messages: list[tuple[int, int]], pool: ColorPool,
               *, deliver_all: bool = False) -> LineRoutes:
    """Route ``(src, dst)`` messages along ``axis`` ("x": along every row, "y": along every
    column) with pass-through colours.

    With ``deliver_all`` every PE a message passes also gets a copy (a multicast ``tx`` of
    ``{RAMP, dir}``, and ``recv`` set there too), used for broadcasts.
    """
    length = prog.width if axis == "x" else prog.height
    order = sorted(range(len(messages)), key=lambda i: (min(messages[i]), max(messages[i])))
    palette_end: list[int] = []
    assigned = [0] * len(messages)
    for i in order:
        lo, hi = sorted(messages[i])
        for slot, end in enumerate(palette_end):
            if end < lo:
                palette_end[slot] = hi
                assigned[i] = slot
                break
        else:
            palette_end.append(hi)
            assigned[i] = len(palette_end) - 1
    colors = [pool.take() for _ in palette_end]
    send = np.full(length, -1, np.int64)
    recv = np.full(length, -1, np.int64)
    pos = np.indices((prog.height, prog.width))[1 if axis == "x" else 0]
    for (src, dst), slot in zip(messages, assigned):
        c = colors[slot]
        out, inn = _FWD[(axis, dst > src)]
        step = 1 if dst > src else -1
        send[src], recv[dst] = c, c
        prog.route(c, Port.RAMP, out, pos == src)
        for p in range(src + step, dst, step):
            prog.route(c, inn, out | (Port.RAMP if deliver_all else 0), pos == p)
            if deliver_all:
                recv[p] = c
        prog.route(c, inn, Port.RAMP, pos == dst)
    return LineRoutes(send, recv, tuple(colors), tuple(abs(d - s) for s, d in messages))
