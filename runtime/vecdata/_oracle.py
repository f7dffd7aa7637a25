"""Exact k-nearest-neighbour search: the oracle every ANN index is tested against."""

from __future__ import annotations

from enum import Enum

import numpy as np
from numpy.typing import NDArray

from labrig.errors import UsageError

__all__ = ["Metric", "brute_force_knn", "recall_at_k"]


class Metric(str, Enum):
    """Distance functions: squared L2 (smaller is closer) and inner product (negated, so
    smaller is closer too, as faiss and DiskANN report ``-<q, x>`` for MIPS)."""

    L2 = "l2"
    INNER_PRODUCT = "ip"


def brute_force_knn(base: NDArray, queries: NDArray, k: int, metric: Metric | str = Metric.L2,
                    *, chunk: int = 4096) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Exact k-NN by blocked matrix products.

    Parameters
    ----------
    base : ndarray, shape (n, d)
    queries : ndarray, shape (nq, d)
    k : int
        Neighbours per query; results are padded with ``inf`` / ``-1`` when ``k > n``.
    metric : Metric or str

    Returns
    -------
    D : float32 ndarray, shape (nq, k)
        Distances, ascending (squared L2, or negated inner product).
    I : int64 ndarray, shape (nq, k)
        Base row ids; ties broken by the smaller id.
    """
    metric = Metric(metric)
    if base.ndim != 2 or queries.ndim != 2 or base.shape[1] != queries.shape[1]:
        raise UsageError(f"brute_force_knn: shapes {base.shape} and {queries.shape} do not match")
    if k <= 0:
        raise UsageError(f"brute_force_knn k={k}: must be positive")
    n = base.shape[0]
    nq = queries.shape[0]
    D = np.full((nq, k), np.inf, dtype=np.float32)
    I = np.full((nq, k), -1, dtype=np.int64)
    if n == 0 or nq == 0:
        return D, I
    kk = min(k, n)
    # float64 keeps int8/uint8 distances exact (and ties stable) for the ground truth
    xb = base.astype(np.float64)
    nb = (xb * xb).sum(1) if metric is Metric.L2 else None
    for s in range(0, nq, chunk):
        q = queries[s:s + chunk].astype(np.float64)
        dots = q @ xb.T
        if metric is Metric.L2:
            dist = (q * q).sum(1)[:, None] - 2 * dots + nb[None, :]
            np.maximum(dist, 0, out=dist)
        else:
            dist = -dots
        # k-th smallest distance per row; every candidate at or below it is sorted by
        # (distance, id), so ties at the boundary go to the smaller id deterministically
        kth = np.partition(dist, kk - 1, axis=1)[:, kk - 1]
        for r in range(dist.shape[0]):
            cand = np.flatnonzero(dist[r] <= kth[r])
            order = cand[np.lexsort((cand, dist[r, cand]))][:kk]
            I[s + r, :kk] = order
            D[s + r, :kk] = dist[r, order]
    return D, I


def recall_at_k(found: NDArray, truth: NDArray, k: int) -> float:
    """Mean fraction of the true ``k`` nearest ids among the first ``k`` found ids."""
    if found.shape[0] != truth.shape[0]:
        raise UsageError(f"recall_at_k: {found.shape[0]} result rows vs {truth.shape[0]} truth rows")
    if truth.shape[1] < k or found.shape[1] < k:
        raise UsageError(f"recall_at_k k={k}: results have {found.shape[1]} columns, "
                         f"truth {truth.shape[1]}")
    hits = 0
    for f, t in zip(found[:, :k], truth[:, :k]):
        hits += len(np.intersect1d(f[f >= 0], t, assume_unique=False))
    return hits / (found.shape[0] * k)
