"""Router configuration: per-colour, per-PE input and output port sets.

Mirrors the SDK's ``@set_color_config(px, py, color, .{.routes = .{.rx = .{...}, .tx =
.{...}}})``: ``rx`` and ``tx`` are subsets of {N, S, E, W, RAMP}; a ``tx`` with several ports
multicasts (Cerebras SDK "computing-with-cerebras").  Stored as two uint8 bit-mask arrays of
shape ``(colors, height, width)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from labrig.hw.mesh._config import DIRECTIONS, RAMP, direction_names

__all__ = ["RouteTable"]


class RouteTable:
    """All routers' colour configurations.

    Parameters
    ----------
    colors, height, width : int
        Table shape.
    """

    def __init__(self, colors: int, height: int, width: int) -> None:
        self.rx = np.zeros((colors, height, width), dtype=np.uint8)
        self.tx = np.zeros((colors, height, width), dtype=np.uint8)

    def set(self, color: int, rx: int, tx: int, where: NDArray[np.bool_]) -> None:
        """Configure ``color`` as ``rx -> tx`` on the PEs in ``where``."""
        self.rx[color][where] = rx
        self.tx[color][where] = tx

    def used_colors(self) -> list[int]:
        """Colours with a route on at least one PE."""
        return [c for c in range(self.tx.shape[0]) if self.tx[c].any() or self.rx[c].any()]

    def dangling(self) -> list[str]:
        """Routes whose output port leads off the mesh or into a router that does not accept
        that input; an empty list means the table is consistent."""
        problems: list[str] = []
        _, h, w = self.tx.shape
        for c in self.used_colors():
            for bit, dy, dx, entry in DIRECTIONS:
                ys, xs = np.nonzero(self.tx[c] & bit)
                for y, x in zip(ys.tolist(), xs.tolist()):
                    ny, nx = y + dy, x + dx
                    if not (0 <= ny < h and 0 <= nx < w):
                        problems.append(f"colour {c}: PE(x={x}, y={y}) sends "
                                        f"{direction_names(bit)} off the mesh")
                    elif not self.rx[c, ny, nx] & entry:
                        problems.append(
                            f"colour {c}: PE(x={x}, y={y}) sends {direction_names(bit)} but "
                            f"PE(x={nx}, y={ny}) does not accept from {direction_names(entry)}"
                            f" (rx={direction_names(int(self.rx[c, ny, nx]))})")
        return problems

    def delivers(self, color: int) -> NDArray[np.bool_]:
        """PEs whose route for ``color`` ends at their own CE (RAMP in tx)."""
        return (self.tx[color] & RAMP) != 0
