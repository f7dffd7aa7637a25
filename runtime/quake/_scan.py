"""Merging per-worker top-k buffers (§6: workers scan into local buffers, the main thread
merges them into the global top-k).  The scans themselves are C (``_kernel``)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["merge_topk"]

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]


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
