"""What every WaferLLM kernel returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from labrig.errors import UsageError

__all__ = ["KernelResult", "check_divides"]


@dataclass(frozen=True)
class KernelResult:
    """Output and timing of one kernel launch.

    Attributes
    ----------
    out : ndarray
        The result (``C`` of a GEMM, ``y`` of a GEMV), float32.
    cycles : int
        Launch cycles: max TSC end - min TSC start over PEs.
    macs_per_pe : int
        Multiply-accumulates each PE did (for compute efficiency).
    colors : tuple of int
        Colours the program used.
    max_hops : int
        Longest route (in hops) of any message the kernel sends.
    steps : int
        Compute-shift (or broadcast/reduce) steps.
    """

    out: NDArray[np.float32]
    cycles: int
    macs_per_pe: int
    colors: tuple[int, ...]
    max_hops: int
    steps: int

    @property
    def efficiency(self) -> float:
        """Compute efficiency: MAC cycles per PE / launch cycles (1 MAC per cycle peak)."""
        return self.macs_per_pe / self.cycles if self.cycles else 0.0


def check_divides(what: str, size: int, parts: int, why: str) -> int:
    """``size // parts``, or a UsageError naming the dimension."""
    if size <= 0 or size % parts:
        raise UsageError(f"{what}={size} must be a positive multiple of {parts} ({why})")
    return size // parts
