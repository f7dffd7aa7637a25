"""Completion joins: run one task when a PE's set of async ops has finished.

CSL tasks are activation *bits*, so two completions activating one task before it runs would
collapse into one run.  As in WaferLLM's kernels (x_finish -> jumpcast_finish -> next_step),
each completion gets its own task; each sets its bit in a per-PE flag word, and the last one
activates the continuation.
"""

from __future__ import annotations

from collections.abc import Callable
import numpy as np
from numpy.typing import NDArray

from labrig.drivers.mesh import PeContext, Program

__all__ = ["Join"]


class Join:
    """Per-PE "all of these finished" barrier.

    Parameters
    ----------
    prog : Program
        Program to add the part tasks and the flag buffer to.
    name : str
        Prefix of the task and buffer names.
    parts : list of str
        Completion names; ``task(part)`` is the task to pass as an op's ``then``.
    then : str
        Task activated on a PE when every part it expects has finished.
    """

    def __init__(self, prog: Program, name: str, parts: list[str], then: str) -> None:
        self.name, self.then = name, then
        self.bits = {p: 1 << i for i, p in enumerate(parts)}
        self.flags = f"{name}.flags"
        prog.buffer(self.flags, (2,))
        for part in parts:
            prog.task(self.task(part), self._part(self.bits[part]))

    def task(self, part: str) -> str:
        """Name of the task that records ``part``."""
        return f"{self.name}.{part}"

    def expect(self, ctx: PeContext, parts: NDArray[np.int64] | int,
               where: NDArray[np.bool_] | None = None) -> None:
        """Set the parts (a bit mask, see :meth:`mask`) each PE in ``where`` waits for."""
        m = ctx.mask if where is None else ctx.mask & where
        f = ctx.buf(self.flags)
        f[m, 0] = 0
        f[m, 1] = np.broadcast_to(parts, m.shape)[m]

    def mask(self, *parts: str) -> int:
        """Bit mask of ``parts``."""
        return sum(self.bits[p] for p in parts)

    def _part(self, bit: int) -> Callable[[PeContext], None]:
        def record(ctx: PeContext) -> None:
            f = ctx.buf(self.flags)
            f[ctx.mask, 0] += bit
            done = ctx.mask & (f[..., 0] == f[..., 1])
            f[done, 0] = 0
            ctx.activate(self.then, where=done)
        return record
