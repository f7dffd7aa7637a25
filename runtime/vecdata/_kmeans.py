"""Small seeded k-means (Lloyd), shared by Quake (partitions, 2-means splits: OSDI'25 §3, §4.2)
and product quantization (DiskANN generate_pq_pivots: 256 centres per chunk)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["assign", "kmeans", "sq_dists"]


def sq_dists(x: NDArray[np.float32], c: NDArray[np.float32]) -> NDArray[np.float32]:
    """Squared L2 distances, shape (len(x), len(c)), by one float32 matmul."""
    out = (x * x).sum(1)[:, None] - 2.0 * (x @ c.T) + (c * c).sum(1)[None, :]
    return np.maximum(out, 0.0, out=out)


def assign(x: NDArray[np.float32], c: NDArray[np.float32], chunk: int = 8192) -> NDArray[np.int64]:
    """Index of the nearest centroid of each row of ``x``."""
    out = np.empty(len(x), dtype=np.int64)
    for i in range(0, len(x), chunk):
        out[i:i + chunk] = sq_dists(x[i:i + chunk], c).argmin(1)
    return out


def kmeans(x: NDArray[np.float32], k: int, *, iters: int, seed: int,
           sample: int = 65536) -> NDArray[np.float32]:
    """Centroids (k, d) of ``x`` after ``iters`` Lloyd rounds on at most ``sample`` rows.

    Empty clusters are re-seeded from random points, so exactly ``k`` centroids come back.
    """
    rng = np.random.default_rng(seed)
    if len(x) > sample:
        x = x[rng.choice(len(x), sample, replace=False)]
    k = min(k, len(x))
    c = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iters):
        a = assign(x, c)
        counts = np.bincount(a, minlength=k)
        order = np.argsort(a, kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        sums = np.zeros((k, x.shape[1]), dtype=np.float64)
        nz = counts > 0
        sums[nz] = np.add.reduceat(x[order].astype(np.float64), starts[nz], axis=0)
        empty = counts == 0
        c = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        if empty.any():
            c[empty] = x[rng.choice(len(x), int(empty.sum()), replace=False)]
    return c
