"""APS recall model (OSDI'25 §5): probability that a partition holds part of the k-NN ball."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from labrig.runtime.quake._betainc import CapTable

__all__ = ["aps_probabilities"]


def aps_probabilities(h: NDArray[np.floating], rho: float, cap: CapTable
                      ) -> tuple[float, NDArray[np.float64]]:
    """Probabilities ``(p0, p)`` of the nearest partition and of each other candidate.

    Parameters
    ----------
    h : ndarray, shape (m,)
        Distance from the query to the bisector between c0 and each candidate c_j.
    rho : float
        Current k-th neighbour distance (radius of the ball B(q, ρ)).
    cap : CapTable
        Tabulated cap fraction for this dimension.

    Returns
    -------
    p0 : float
        Π_j (1 − v_j): the chance the ball lies wholly in P0.
    p : ndarray, shape (m,)
        (1 − p0) · v_j / Σ v: the rest shared in proportion to the cap volumes v_j.
    """
    if rho <= 0.0:
        return 1.0, np.zeros(len(h))
    v = cap(np.asarray(h, np.float64) / rho)
    p0 = float(np.prod(1.0 - v))
    total = float(v.sum())
    if total <= 0.0:
        return 1.0, np.zeros(len(h))
    return p0, (1.0 - p0) * v / total
