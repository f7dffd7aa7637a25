"""Readers and writers for the vector file formats of DiskANN and of the TEXMEX corpus.

- DiskANN binary (``.bin``, ``.fbin``, ``.u8bin``, ``.i8bin``, ``.ibin``): int32 npts, int32 dim,
  then npts*dim values row-major (DiskANN ``utils.h`` ``load_bin``/``save_bin``).
- DiskANN ground truth: int32 nq, int32 K, uint32 ids[nq*K], float32 distances[nq*K]
  (``load_truthset``); a file holding ids only is accepted too.
- ``.fvecs`` / ``.bvecs`` / ``.ivecs``: per vector an int32 dim then dim float32 / uint8 / int32.

Every malformed or truncated file raises :class:`DataFileError` naming the file and what is
wrong; nothing is read past what the header promises.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike, NDArray

from labrig.errors import UsageError

__all__ = ["DataFileError", "read_bin", "read_groundtruth", "read_months", "read_vecs",
           "write_bin", "write_groundtruth", "write_vecs"]

#: DiskANN file suffix -> element dtype
SUFFIX_DTYPES: dict[str, np.dtype] = {
    ".fbin": np.dtype(np.float32),
    ".u8bin": np.dtype(np.uint8),
    ".i8bin": np.dtype(np.int8),
    ".ibin": np.dtype(np.int32),
}
VECS_DTYPES: dict[str, np.dtype] = {
    ".fvecs": np.dtype(np.float32),
    ".bvecs": np.dtype(np.uint8),
    ".ivecs": np.dtype(np.int32),
}
HEADER = np.dtype("<i4")
HEADER_BYTES = 8
#: sanity bound on a header's dimension (protects against reading garbage as a header)
MAX_DIM = 1 << 16


class DataFileError(UsageError):
    """A data or index file is malformed, truncated or of the wrong type."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def _dtype_for(path: Path, dtype: DTypeLike | None) -> np.dtype:
    if dtype is not None:
        return np.dtype(dtype)
    dt = SUFFIX_DTYPES.get(path.suffix.lower())
    if dt is None:
        raise DataFileError(path, f"cannot infer the element type from suffix {path.suffix!r}; "
                                  f"pass dtype= (known: {', '.join(SUFFIX_DTYPES)})")
    return dt


def _open_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        raise DataFileError(path, "no such file") from None
    except OSError as exc:
        raise DataFileError(path, f"cannot read ({exc.strerror})") from exc


def _header(path: Path, size: int) -> tuple[int, int]:
    if size < HEADER_BYTES:
        raise DataFileError(path, f"file has {size} bytes, shorter than the 8-byte header")
    n, d = (int(x) for x in np.fromfile(path, dtype=HEADER, count=2))
    if n < 0 or not 0 < d <= MAX_DIM:
        raise DataFileError(path, f"bad header npts={n} dim={d} (need npts>=0, 0<dim<={MAX_DIM})")
    return n, d


def read_bin(path: str | os.PathLike[str], dtype: DTypeLike | None = None, *,
             mmap: bool = False, max_rows: int | None = None) -> NDArray:
    """Read a DiskANN binary matrix of shape ``(npts, dim)``.

    Parameters
    ----------
    path : path-like
        ``.fbin``/``.u8bin``/``.i8bin``/``.ibin`` (dtype inferred) or any name with ``dtype``.
    dtype : dtype, optional
        Element type; required for plain ``.bin``.
    mmap : bool, optional
        Memory-map instead of reading (read-only).
    max_rows : int, optional
        Read only the first ``max_rows`` rows.

    Raises
    ------
    DataFileError
        Missing file, bad header, or size not matching the header.
    """
    p = Path(path)
    dt = _dtype_for(p, dtype)
    size = _open_size(p)
    n, d = _header(p, size)
    expected = HEADER_BYTES + n * d * dt.itemsize
    if size != expected:
        raise DataFileError(p, f"header says {n} x {d} {dt.name} ({expected} bytes) "
                               f"but the file has {size} bytes"
                               + (" (truncated)" if size < expected else ""))
    rows = n if max_rows is None else max(0, min(n, int(max_rows)))
    if mmap:
        arr = np.memmap(p, dtype=dt, mode="r", offset=HEADER_BYTES, shape=(rows, d))
        return arr
    data = np.fromfile(p, dtype=dt, count=rows * d, offset=HEADER_BYTES)
    return data.reshape(rows, d)


def write_bin(path: str | os.PathLike[str], data: NDArray) -> Path:
    """Write a 2-D array as a DiskANN binary matrix (dtype kept as given)."""
    arr = np.ascontiguousarray(data)
    if arr.ndim != 2:
        raise UsageError(f"write_bin {path}: data must be 2-D, got shape {arr.shape}")
    p = Path(path)
    with open(p, "wb") as f:
        np.array(arr.shape, dtype=HEADER).tofile(f)
        arr.tofile(f)
    return p


def read_groundtruth(path: str | os.PathLike[str]) -> tuple[NDArray[np.int64], NDArray[np.float32] | None]:
    """Read DiskANN ground truth: ``(ids (nq, K) int64, distances (nq, K) float32 or None)``."""
    p = Path(path)
    size = _open_size(p)
    nq, k = _header(p, size)
    ids_bytes = nq * k * 4
    if size == HEADER_BYTES + 2 * ids_bytes:
        with_dist = True
    elif size == HEADER_BYTES + ids_bytes:
        with_dist = False
    else:
        raise DataFileError(p, f"header says {nq} queries x K={k}: expected "
                               f"{HEADER_BYTES + 2 * ids_bytes} bytes (ids + distances) or "
                               f"{HEADER_BYTES + ids_bytes} (ids only), file has {size}")
    ids = np.fromfile(p, dtype="<u4", count=nq * k, offset=HEADER_BYTES).reshape(nq, k)
    dist = None
    if with_dist:
        dist = np.fromfile(p, dtype="<f4", count=nq * k,
                           offset=HEADER_BYTES + ids_bytes).reshape(nq, k)
    return ids.astype(np.int64), dist


def write_groundtruth(path: str | os.PathLike[str], ids: NDArray, distances: NDArray | None) -> Path:
    """Write DiskANN ground truth (ids as uint32, distances as float32 when given)."""
    ids = np.ascontiguousarray(ids)
    if ids.ndim != 2:
        raise UsageError(f"write_groundtruth {path}: ids must be 2-D, got shape {ids.shape}")
    if distances is not None and np.shape(distances) != ids.shape:
        raise UsageError(f"write_groundtruth {path}: distances shape {np.shape(distances)} "
                         f"!= ids shape {ids.shape}")
    p = Path(path)
    with open(p, "wb") as f:
        np.array(ids.shape, dtype=HEADER).tofile(f)
        ids.astype("<u4").tofile(f)
        if distances is not None:
            np.ascontiguousarray(distances, dtype="<f4").tofile(f)
    return p


def read_vecs(path: str | os.PathLike[str], *, max_rows: int | None = None) -> NDArray:
    """Read ``.fvecs``/``.bvecs``/``.ivecs`` into an ``(n, d)`` array."""
    p = Path(path)
    dt = VECS_DTYPES.get(p.suffix.lower())
    if dt is None:
        raise DataFileError(p, f"unknown vecs suffix {p.suffix!r} (known: {', '.join(VECS_DTYPES)})")
    size = _open_size(p)
    if size == 0:
        return np.zeros((0, 0), dtype=dt)
    if size < 4:
        raise DataFileError(p, "truncated: no room for the first dimension field")
    d = int(np.fromfile(p, dtype=HEADER, count=1)[0])
    if not 0 < d <= MAX_DIM:
        raise DataFileError(p, f"bad dimension {d} in the first record")
    rec = 4 + d * dt.itemsize
    if size % rec:
        raise DataFileError(p, f"size {size} is not a multiple of the record size {rec} "
                               f"(dim {d}): truncated or mixed dimensions")
    n = size // rec
    if max_rows is not None:
        n = max(0, min(n, int(max_rows)))
    raw = np.fromfile(p, dtype=np.uint8, count=n * rec).reshape(n, rec)
    dims = raw[:, :4].copy().view(HEADER).ravel()
    if n and (dims != d).any():
        bad = int(np.flatnonzero(dims != d)[0])
        raise DataFileError(p, f"record {bad} has dimension {int(dims[bad])}, expected {d}")
    return raw[:, 4:].copy().view(dt).reshape(n, d)


def write_vecs(path: str | os.PathLike[str], data: NDArray) -> Path:
    """Write an ``(n, d)`` array as ``.fvecs``/``.bvecs``/``.ivecs`` (by suffix)."""
    p = Path(path)
    dt = VECS_DTYPES.get(p.suffix.lower())
    if dt is None:
        raise UsageError(f"write_vecs {p}: unknown suffix {p.suffix!r}")
    arr = np.ascontiguousarray(data, dtype=dt)
    if arr.ndim != 2:
        raise UsageError(f"write_vecs {p}: data must be 2-D, got shape {arr.shape}")
    n, d = arr.shape
    rec = np.empty((n, 4 + d * dt.itemsize), dtype=np.uint8)
    rec[:, :4] = np.full((n, 1), d, dtype=HEADER).view(np.uint8)
    rec[:, 4:] = arr.view(np.uint8).reshape(n, -1)
    rec.tofile(p)
    return p


def read_months(path: str | os.PathLike[str], expected: int | None = None) -> NDArray[np.int32]:
    """Read a ``YYYY-MM`` per line file into months since year 0 (``year*12 + month-1``)."""
    p = Path(path)
    _open_size(p)
    lines = p.read_text().split()
    out = np.empty(len(lines), dtype=np.int32)
    for i, s in enumerate(lines):
        y, sep, m = s.partition("-")
        if not sep or not (y.isdigit() and m.isdigit()) or not 1 <= int(m) <= 12:
            raise DataFileError(p, f"line {i + 1}: {s!r} is not YYYY-MM")
        out[i] = int(y) * 12 + int(m) - 1
    if expected is not None and len(out) != expected:
        raise DataFileError(p, f"{len(out)} months for {expected} vectors")
    return out
