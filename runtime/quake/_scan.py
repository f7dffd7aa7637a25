"""Partition scans and top-k merging (float32 BLAS; numpy matmul releases the GIL)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["merge_topk", "scan_partition"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]


def scan_partition(q: F32, qn: F32, x: F32, xn: F32, ids: I64, k: int) -> tuple[F32, I64]:
    """Best ``min(k, s)`` squared-L2 neighbours in one partition for each query.

    Parameters
    ----------
    q : ndarray, shape (m, d), float32
    qn : ndarray, shape (m,), float32 — ``(q*q).sum(1)``
    x : ndarray, shape (s, d), float32 — partition vectors
    xn : ndarray, shape (s,), float32 — their squared norms
    ids : ndarray, shape (s,), int64
    k : int

    Returns
    -------
    dist : ndarray, shape (m, min(k, s)), float32, unsorted
    idx : ndarray, shape (m, min(k, s)), int64 — external ids
    """
    dist = q @ x.T
    dist *= -2.0
    dist += xn[None, :]
    dist += qn[:, None]
    if x.shape[0] > k:
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
        return np.take_along_axis(dist, part, 1), ids[part]
    return dist, np.broadcast_to(ids, dist.shape).copy()


def merge_topk(dist: F32, idx: I64, k: int) -> tuple[F32, I64]:
    """Sorted best ``k`` of each row, padded with ``inf`` / ``-1`` (shape (n, k))."""
    n, w = dist.shape
    if w < k:
        dist = np.concatenate([dist, np.full((n, k - w), np.inf, np.float32)], 1)
        idx = np.concatenate([idx, np.full((n, k - w), -1, np.int64)], 1)
    elif w > k:
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]
        dist, idx = np.take_along_axis(dist, part, 1), np.take_along_axis(idx, part, 1)
    order = np.argsort(dist, axis=1, kind="stable")
    dist, idx = np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)
    idx = np.where(np.isfinite(dist), idx, -1)
    return np.maximum(dist, 0.0).astype(np.float32), idx.astype(np.int64)
