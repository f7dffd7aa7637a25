"""A vector data set on disk: the layout of shared/datasets/pypi-minilm, or loose files.

Folder layout: ``base.<fmt>``, ``queries.<fmt>``, ``groundtruth.ibin`` and optionally
``base.months.txt`` / ``queries.months.txt`` (``<fmt>`` one of the DiskANN suffixes or
fvecs/bvecs).  The project never requires such a folder to exist: callers pass its path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from labrig.runtime.vecdata._formats import (
    SUFFIX_DTYPES,
    VECS_DTYPES,
    DataFileError,
    read_bin,
    read_groundtruth,
    read_months,
    read_vecs,
)

__all__ = ["VectorDataset", "load_dataset"]


@dataclass
class VectorDataset:
    """Base vectors, queries, optional exact ground truth and arrival months."""

    name: str
    base: NDArray
    queries: NDArray
    gt_ids: NDArray[np.int64] | None = None
    gt_dist: NDArray[np.float32] | None = None
    base_months: NDArray[np.int32] | None = None
    query_months: NDArray[np.int32] | None = None

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in (*SUFFIX_DTYPES, *VECS_DTYPES, ".bin"):
        p = folder / f"{stem}{suffix}"
        if p.exists():
            return p
    return None


def _read_any(p: Path, max_rows: int | None) -> NDArray:
    if p.suffix.lower() in VECS_DTYPES:
        return read_vecs(p, max_rows=max_rows)
    if p.suffix.lower() == ".bin":
        return read_bin(p, np.float32, max_rows=max_rows)
    return read_bin(p, max_rows=max_rows)


def load_dataset(path: str | os.PathLike[str], *, max_base: int | None = None,
                 max_queries: int | None = None) -> VectorDataset:
    """Load a data-set folder (see module docstring).

    ``max_base`` keeps the first rows of the base (its arrival order); the ground truth is
    then no longer exact for the subset and is dropped (callers recompute it).

    Raises
    ------
    DataFileError
        Missing folder or files, or files whose shapes disagree.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataFileError(folder, "not a directory (expected base.*, queries.*, groundtruth.ibin)")
    bp, qp = _find(folder, "base"), _find(folder, "queries")
    if bp is None or qp is None:
        raise DataFileError(folder, "needs base.<fmt> and queries.<fmt> "
                                    "(fmt: fbin, u8bin, i8bin, bin, fvecs, bvecs)")
    base = _read_any(bp, max_base)
    queries = _read_any(qp, max_queries)
    if base.shape[1] != queries.shape[1]:
        raise DataFileError(qp, f"dimension {queries.shape[1]} != base dimension {base.shape[1]}")
    ds = VectorDataset(folder.name, base, queries)
    gt = folder / "groundtruth.ibin"
    if gt.exists() and max_base is None:
        ids, dist = read_groundtruth(gt)
        full_q = ids.shape[0]
        ids, dist = ids[:queries.shape[0]], None if dist is None else dist[:queries.shape[0]]
        if full_q < queries.shape[0]:
            raise DataFileError(gt, f"{full_q} rows for {queries.shape[0]} queries")
        if ids.size and ids.max() >= base.shape[0]:
            raise DataFileError(gt, f"id {int(ids.max())} >= {base.shape[0]} base vectors")
        ds.gt_ids, ds.gt_dist = ids, dist
    bm, qm = folder / "base.months.txt", folder / "queries.months.txt"
    if bm.exists():
        ds.base_months = read_months(bm)[:base.shape[0]]
    if qm.exists():
        ds.query_months = read_months(qm)[:queries.shape[0]]
    return ds
