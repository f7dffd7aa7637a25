"""Build-time calibration of the dimension in APS's cap model (a labrig extension, opt-in).

Why: APS (OSDI'25 §5) treats the k-NN ball B(q, ρ) as uniformly filled in the ambient
dimension d, so the share of neighbours beyond a bisector is the cap volume fraction
½·I_{1−(h/ρ)²}((d+1)/2, ½).  Real data do not fill their ambient space: on the 384-d MiniLM
embeddings of shared/datasets/pypi-minilm (intrinsic dimension ≈ 27 by the Levina–Bickel
MLE) the 384-d caps are far too thin and APS stops at recall ≈ 0.63 for target 0.9; on the
64-d synthetic Gaussian clusters the 64-d caps are too thick and APS overshoots (≈ 0.98).
Measured with the oracle radius, the model is calibrated near d_cap ≈ 64 on MiniLM and
d_cap ≈ 128 on the synthetic clusters — neither is the ambient d, so no fixed rule fits.

What: with ``QuakeConfig.calibrate_cap_dim``, :func:`calibrate_cap_dim` searches the cap
dimension on a seeded sample of the indexed vectors used as queries (self excluded): the
largest d_cap on a √2-spaced grid whose APS recall on the sample still reaches the target.
The estimator itself stays the paper's; only the dimension fed to it is fitted, the way λ
is profiled on the running machine rather than taken from the paper.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from labrig.runtime.vecdata import brute_force_knn

if TYPE_CHECKING:
    from labrig.runtime.quake._index import QuakeIndex

__all__ = ["CALIB_K", "CALIB_QUERIES", "cap_dim_grid", "calibrate_cap_dim"]

CALIB_QUERIES: Final = 256     # sample of indexed vectors used as calibration queries
CALIB_K: Final = 10            # neighbours per calibration query (self excluded)
GRID_MIN: Final = 2            # smallest cap dimension tried
GRID_MAX_FACTOR: Final = 4     # largest cap dimension tried: 4·d
GRID_RATIO: Final = math.sqrt(2.0)


def cap_dim_grid(d: int) -> list[int]:
    """Candidate cap dimensions: √2-spaced integers from 2 to 4·d, ascending."""
    out, v = [], float(GRID_MIN)
    while v <= GRID_MAX_FACTOR * d:
        if not out or round(v) != out[-1]:
            out.append(round(v))
        v *= GRID_RATIO
    return out


def _sample_recall(index: QuakeIndex, q: NDArray[np.float32], self_ids: NDArray[np.int64],
                   truth: NDArray[np.int64], target: float) -> float:
    from labrig.runtime.quake._search import aps_batch

    _, got = aps_batch(index, q, CALIB_K + 1, target, record=False)
    hits = 0
    for r in range(len(q)):
        found = set(got[r].tolist()) - {int(self_ids[r])}
        hits += len(found & set(truth[r].tolist()))
    return hits / (CALIB_K * len(q))


def calibrate_cap_dim(index: QuakeIndex, x: NDArray[np.float32], ids: NDArray[np.int64],
                      target: float, seed: int) -> int:
    """Largest grid cap dimension whose APS recall on a sample of ``x`` reaches ``target``.

    Recall falls as the cap dimension grows (thinner caps, fewer partitions scanned), so a
    bisection over :func:`cap_dim_grid` suffices.  Returns the ambient d when ``x`` is too
    small to sample neighbours from.  Leaves the index using the returned dimension.
    """
    if len(x) <= CALIB_K + 1:
        index._set_cap_dim(index.d)
        return index.d
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(x), min(CALIB_QUERIES, len(x)), replace=False)
    q = np.ascontiguousarray(x[pick])
    _, nn = brute_force_knn(x, q, CALIB_K + 1)
    truth = np.empty((len(q), CALIB_K), np.int64)
    for r in range(len(q)):
        row = [int(i) for i in nn[r] if i != pick[r]][:CALIB_K]
        truth[r] = ids[np.array(row, np.int64)]
    self_ids = ids[pick]
    grid = cap_dim_grid(index.d)
    lo, hi = 0, len(grid) - 1          # invariant: answer in grid[lo..hi]; grid[0] is the fallback
    while lo < hi:
        mid = (lo + hi + 1) // 2
        index._set_cap_dim(grid[mid])
        if _sample_recall(index, q, self_ids, truth, target) >= target:
            lo = mid
        else:
            hi = mid - 1
    index._set_cap_dim(grid[lo])
    return grid[lo]
