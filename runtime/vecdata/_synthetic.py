"""Seeded synthetic vector sets that behave like real ones (clusters, anisotropy, skew).

SIFT-like data is clustered with unequal, anisotropic clusters; uniformly random vectors are
far easier for graph and partition indexes than anything real, so tests and quick
experiments use this instead.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike, NDArray

__all__ = ["clustered_vectors"]


def clustered_vectors(n: int, d: int, *, n_clusters: int = 64, dtype: DTypeLike = np.uint8,
                      seed: int = 0, spread: float = 0.35,
                      n_queries: int = 0) -> tuple[NDArray, NDArray]:
    """Generate ``n`` base and ``n_queries`` query vectors from one clustered distribution.

    Cluster sizes follow a Zipf-like skew and each cluster has its own random per-axis scale
    (anisotropy).  For ``uint8`` the values are scaled into 0..255 like SIFT; for ``int8``
    into -127..127; floats are left unscaled.

    Returns
    -------
    base : ndarray, shape (n, d)
    queries : ndarray, shape (n_queries, d)
    """
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    centers = rng.normal(0.0, 1.0, size=(n_clusters, d))
    scales = spread * rng.gamma(2.0, 0.5, size=(n_clusters, d))
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.7
    weights /= weights.sum()
    total = n + n_queries
    labels = rng.choice(n_clusters, size=total, p=weights)
    x = centers[labels] + rng.normal(0.0, 1.0, size=(total, d)) * scales[labels]
    if dt == np.uint8:
        lo, hi = np.percentile(x, [0.5, 99.5])
        x = np.clip((x - lo) / (hi - lo) * 255.0, 0, 255).round()
    elif dt == np.int8:
        m = np.percentile(np.abs(x), 99.5)
        x = np.clip(x / m * 127.0, -127, 127).round()
    x = x.astype(dt)
    return x[:n], x[n:]
