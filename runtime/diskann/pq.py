"""Product quantization for the disk index's in-memory navigation (DiskANN ``src/pq.cpp``).

Training follows ``generate_pq_pivots``: a seeded sample of at most 256,000 rows
(``MAX_PQ_TRAINING_SET_SIZE``) is centred on its mean for L2 (``make_zero_mean``; not for inner
product, whose order a translation does not preserve, so the centre stays 0 as in DiskANN),
the dimensions are cut into ``n_chunks`` contiguous chunks whose sizes differ by at most one
(the larger ones first, as DiskANN's bin assignment produces), and each chunk gets 256 centres
by Lloyd's k-means (``NUM_KMEANS_REPS_PQ`` = 12 rounds).  DiskANN seeds Lloyd with k-means++
and trains chunk after chunk; here every chunk is seeded with 256 distinct random sample rows
and all chunks run their Lloyd rounds together, each round one pass of the C kernel
``ann_pq_assign`` (:mod:`._native`) over the sample.  The generic
:func:`labrig.runtime.vecdata.kmeans` gives the same clustering per chunk but ran ~15x slower
for 32 chunks of 256 centres (77 s for a 100k sample), longer than the graph build.

A vector compresses to one byte per chunk.  A query builds one lookup table per chunk
(asymmetric distance computation, ADC: ``populate_chunk_distances`` /
``populate_chunk_inner_products``); a code's distance is the sum of its chunks' entries.  The
table folds the centre in, so ADC equals the exact distance from the query to the decoded
vector for both metrics.

Files are DiskANN's: ``<prefix>_pq_pivots.bin`` (a 4 KiB metadata block of byte offsets, then
the pivots, the centre and the chunk offsets as ``.bin`` matrices, read by
``FixedChunkPQTable::load_pq_centroid_bin``) and ``<prefix>_pq_compressed.bin`` (a ``.bin``
matrix of uint8 codes, written by ``generate_pq_data_from_pivots``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from labrig.errors import ConfigError, UsageError
from labrig.runtime.diskann._native import load_native
from labrig.runtime.vecdata import DataFileError, read_bin, write_bin

__all__ = [
    "DEFAULT_ITERS",
    "DEFAULT_TRAIN_SAMPLE",
    "PQ_CENTRES",
    "PQCodebook",
    "chunk_offsets",
    "nearest_centres",
    "pq_file_paths",
    "read_pq_files",
    "train_pq",
    "write_pq_files",
]

#: One code byte per chunk (DiskANN ``NUM_PQ_CENTROIDS``).
PQ_CENTRES = 256
#: DiskANN ``MAX_PQ_TRAINING_SET_SIZE`` and ``NUM_KMEANS_REPS_PQ`` (``include/pq_common.h``).
DEFAULT_TRAIN_SAMPLE = 256_000
DEFAULT_ITERS = 12
METRICS = ("l2", "ip")
#: Rows encoded per block (bounds the float32 temporaries).
ENCODE_BLOCK = 65_536

#: ``<prefix>_pq_pivots.bin`` layout (DiskANN ``generate_pq_pivots``; ``utils.h``): the first
#: ``METADATA_SIZE`` bytes hold a .bin matrix of uint64 byte offsets (4 of them; 5 in DiskANN's
#: older files, whose chunk offsets are the 4th matrix), then .bin matrices at those offsets.
METADATA_SIZE = 4096
BIN_HEADER = np.dtype("<i4")        # int32 npts, int32 ndims before every .bin matrix
BIN_HEADER_BYTES = 2 * BIN_HEADER.itemsize
OFFSET_DTYPE = np.dtype("<u8")      # size_t
PIVOT_DTYPE = np.dtype("<f4")
CHUNK_OFFSET_DTYPE = np.dtype("<u4")
OFFSET_COUNTS = {4: 2, 5: 3}        # number of offsets -> index of the chunk-offsets matrix
PIVOTS_SUFFIX = "_pq_pivots.bin"
CODES_SUFFIX = "_pq_compressed.bin"

Progress = Callable[[int, int], None]


@dataclass
class PQCodebook:
    """Centres of every chunk, in DiskANN's ``pq_pivots`` layout.

    Attributes
    ----------
    dim : int
        Vector dimension.
    n_chunks : int
        Chunks = code bytes per vector.
    chunk_offsets : int64 ndarray, shape (n_chunks + 1,)
        Chunk ``c`` covers dimensions ``chunk_offsets[c]:chunk_offsets[c + 1]``.
    centroids : float32 ndarray, shape (256, dim)
        Row ``k`` concatenates every chunk's ``k``-th centre.
    centre : float32 ndarray, shape (dim,)
        Subtracted before quantizing (the data mean for L2, zero for inner product).
    metric : str
        ``"l2"`` or ``"ip"``: what :meth:`table` computes.
    """

    dim: int
    n_chunks: int
    chunk_offsets: NDArray[np.int64]
    centroids: NDArray[np.float32]
    centre: NDArray[np.float32]
    metric: str = "l2"

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ConfigError("PQCodebook", "metric", self.metric, f"must be one of {METRICS}")
        offs = np.asarray(self.chunk_offsets, dtype=np.int64)
        if (offs.shape != (self.n_chunks + 1,) or offs[0] != 0 or offs[-1] != self.dim
                or (np.diff(offs) <= 0).any()):
            raise UsageError(f"chunk offsets {offs.tolist()} do not split {self.dim} dims into "
                             f"{self.n_chunks} non-empty chunks")
        if self.centroids.shape != (PQ_CENTRES, self.dim) or self.centre.shape != (self.dim,):
            raise UsageError(f"centroids {self.centroids.shape} / centre {self.centre.shape} do "
                             f"not match ({PQ_CENTRES}, {self.dim})")
        self.chunk_offsets = offs
        self.centroids = np.ascontiguousarray(self.centroids, dtype=np.float32)
        self.centre = np.ascontiguousarray(self.centre, dtype=np.float32)

    def encode(self, data: np.ndarray, *, threads: int | None = None,
               progress: Progress | None = None) -> NDArray[np.uint8]:
        """Codes (n, n_chunks): each chunk's nearest centre (``generate_pq_data_from_pivots``).

        ``data`` is (n, dim) uint8, int8 or float32; ``progress(done_rows, n)`` per block.
        """
        data = self._rows(data, "data")
        out = np.empty((len(data), self.n_chunks), dtype=np.uint8)
        for start in range(0, len(data), ENCODE_BLOCK):
            x = data[start:start + ENCODE_BLOCK].astype(np.float32) - self.centre
            if not np.isfinite(x).all():
                raise UsageError("data holds NaN or infinite values")
            out[start:start + len(x)] = nearest_centres(x, self.centroids, self.chunk_offsets,
                                                        threads=threads)
            if progress is not None:
                progress(min(start + ENCODE_BLOCK, len(data)), len(data))
        return out

    def decode(self, codes: np.ndarray) -> NDArray[np.float32]:
        """The vectors the codes stand for, centre added back (DiskANN ``inflate_vector``)."""
        codes = self._codes(codes)
        out = np.empty((len(codes), self.dim), dtype=np.float32)
        for c, (lo, hi) in enumerate(self._chunks()):
            out[:, lo:hi] = self.centroids[codes[:, c], lo:hi]
        return out + self.centre

    def table(self, query: np.ndarray) -> NDArray[np.float32]:
        """ADC lookup table (n_chunks, 256) of one query (d,) for the codebook's metric.

        L2: ``sum over the chunk of (q - centre - centroid)^2``; inner product:
        ``-sum over the chunk of q * (centroid + centre)``.  Summing a code's entries gives the
        exact distance to the decoded vector.
        """
        q = np.asarray(query)
        if q.ndim != 1 or q.shape[0] != self.dim or q.dtype.kind not in "iuf":
            raise UsageError(f"query must be a ({self.dim},) numeric vector, got {q.dtype} "
                             f"of shape {q.shape}")
        qf = q.astype(np.float32)
        if not np.isfinite(qf).all():
            raise UsageError("query holds NaN or infinite values")
        if self.metric == "l2":
            diff = (qf - self.centre)[None, :] - self.centroids          # (256, dim)
            per_dim = diff * diff
        else:
            per_dim = -(qf[None, :] * (self.centroids + self.centre))
        # sum each chunk's columns: reduceat over the chunk starts
        return np.ascontiguousarray(np.add.reduceat(per_dim, self.chunk_offsets[:-1], axis=1).T)

    def distances(self, table: np.ndarray, codes: np.ndarray) -> NDArray[np.float32]:
        """ADC distance of every row of ``codes`` (m, n_chunks) given a query's ``table``."""
        if table.shape != (self.n_chunks, PQ_CENTRES):
            raise UsageError(f"table shape {table.shape} is not ({self.n_chunks}, {PQ_CENTRES})")
        codes = self._codes(codes)
        return table[np.arange(self.n_chunks), codes].sum(axis=-1, dtype=np.float32)

    def _chunks(self) -> list[tuple[int, int]]:
        o = self.chunk_offsets
        return [(int(o[c]), int(o[c + 1])) for c in range(self.n_chunks)]

    def _rows(self, data: np.ndarray, what: str) -> np.ndarray:
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != self.dim:
            raise UsageError(f"{what} of shape {getattr(data, 'shape', None)} does not match the "
                             f"PQ dimension {self.dim}")
        if data.dtype not in (np.uint8, np.int8, np.float32):
            raise UsageError(f"{what} dtype {data.dtype} is not supported; use uint8, int8 or "
                             f"float32")
        return data

    def _codes(self, codes: np.ndarray) -> NDArray[np.uint8]:
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.n_chunks or codes.dtype != np.uint8:
            raise UsageError(f"codes must be uint8 of shape (m, {self.n_chunks}), got "
                             f"{codes.dtype} of shape {codes.shape}")
        return codes


def chunk_offsets(dim: int, n_chunks: int) -> NDArray[np.int64]:
    """Contiguous chunks with sizes differing by at most one, larger chunks first (what
    DiskANN's ``generate_pq_pivots`` bin assignment yields: bins fill in order up to
    ``ceil(dim / n_chunks)`` until ``dim mod n_chunks`` of them are full)."""
    sizes = np.full(n_chunks, dim // n_chunks, dtype=np.int64)
    sizes[: dim % n_chunks] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def train_pq(data: np.ndarray, *, metric: str = "l2", n_chunks: int | None = None,
             bytes_per_vector: int | None = None, sample: int = DEFAULT_TRAIN_SAMPLE,
             iters: int = DEFAULT_ITERS, seed: int = 0, threads: int | None = None,
             progress: Progress | None = None) -> PQCodebook:
    """Train 256 centres per chunk on a seeded sample of ``data``.

    Parameters
    ----------
    data : ndarray, shape (n, dim), uint8, int8 or float32
    metric : {"l2", "ip"}
        L2 centres the data on its mean first (DiskANN ``make_zero_mean``); inner product not.
    n_chunks, bytes_per_vector : int
        Exactly one: the code size in bytes, one byte per chunk, clipped to ``[1, dim]``.
    sample : int
        Training rows (at most; DiskANN's 256,000 by default).
    iters : int
        Lloyd rounds per chunk.
    seed : int
        Seeds the sample and the k-means; the codebook depends on nothing else.
    threads : int, optional
        Threads of the assignment kernel (default: the CPUs this process may use).
    progress : callable, optional
        ``progress(done_rounds, iters)`` after each Lloyd round.

    Raises
    ------
    ConfigError
        Both or neither budget given, or a value out of range (the message names it).
    UsageError
        ``data`` is not a non-empty finite 2-D array of a supported dtype.
    """
    owner = "train_pq"
    if metric not in METRICS:
        raise ConfigError(owner, "metric", metric, f"must be one of {METRICS}")
    if (n_chunks is None) == (bytes_per_vector is None):
        raise ConfigError(owner, "n_chunks/bytes_per_vector", (n_chunks, bytes_per_vector),
                          "give exactly one of them")
    name, m = ("n_chunks", n_chunks) if n_chunks is not None else ("bytes_per_vector",
                                                                    bytes_per_vector)
    for field, value, lo in ((name, m, 1), ("sample", sample, 1), ("iters", iters, 0),
                             ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
            raise ConfigError(owner, field, value, f"must be an integer >= {lo}")
    if (not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[0] == 0
            or data.shape[1] == 0):
        raise UsageError(f"train_pq needs a non-empty (n, dim) array, got shape "
                         f"{getattr(data, 'shape', type(data).__name__)}")
    if data.dtype not in (np.uint8, np.int8, np.float32):
        raise UsageError(f"data dtype {data.dtype} is not supported; use uint8, int8 or float32")
    dim = data.shape[1]
    m = min(int(m), dim)                                    # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(len(data), min(int(sample), len(data)), replace=False))
    x = np.asarray(data[take], dtype=np.float32)
    if not np.isfinite(x).all():
        raise UsageError("data holds NaN or infinite values")
    if metric == "l2":
        centre = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    else:
        centre = np.zeros(dim, dtype=np.float32)
    x -= centre
    offs = chunk_offsets(dim, m)
    cents = _lloyd(x, offs, int(iters), rng, threads, progress)
    return PQCodebook(dim, m, offs, cents, centre, metric)


def _threads(threads: int | None) -> int:
    if threads is None:
        return max(1, len(os.sched_getaffinity(0)))
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ConfigError("pq", "threads", threads, "must be an integer >= 1")
    return int(threads)


def nearest_centres(x: NDArray[np.float32], centroids: NDArray[np.float32],
                    offsets: NDArray[np.int64], *, threads: int | None = None) -> NDArray[np.uint8]:
    """Index of the nearest of the 256 centres in every chunk of every (centred) row of ``x``."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    cent_tr = np.ascontiguousarray(centroids.T, dtype=np.float32)   # DiskANN tables_tr
    co = np.ascontiguousarray(offsets, dtype=np.uint32)
    m = len(co) - 1
    codes = np.empty((len(x), m), dtype=np.uint8)
    mod = load_native()
    ffi = mod.ffi
    rc = mod.lib.ann_pq_assign(ffi.from_buffer("float[]", x), len(x), x.shape[1],
                               ffi.from_buffer("float[]", cent_tr),
                               ffi.from_buffer("uint32_t[]", co), m,
                               ffi.from_buffer("uint8_t[]", codes), _threads(threads))
    if rc != 0:
        raise MemoryError("out of memory in the PQ assignment kernel")
    return codes


def _lloyd(x: NDArray[np.float32], offs: NDArray[np.int64], iters: int,
           rng: np.random.Generator, threads: int | None,
           progress: Progress | None) -> NDArray[np.float32]:
    """256 centres per chunk: Lloyd rounds on the centred sample ``x``, all chunks at once."""
    n, dim = x.shape
    m = len(offs) - 1
    chunk_of = np.repeat(np.arange(m), np.diff(offs))        # dimension -> its chunk
    cents = np.empty((PQ_CENTRES, dim), dtype=np.float32)
    for c in range(m):                                       # distinct random rows as seeds
        pick = rng.choice(n, PQ_CENTRES, replace=n < PQ_CENTRES)
        cents[:, offs[c]:offs[c + 1]] = x[pick, offs[c]:offs[c + 1]]
    x_tr = np.ascontiguousarray(x.T)                         # one contiguous column per dim
    for it in range(iters):
        codes = nearest_centres(x, cents, offs, threads=threads)
        counts = np.stack([np.bincount(codes[:, c], minlength=PQ_CENTRES) for c in range(m)])
        for j in range(dim):
            cnt = counts[chunk_of[j]]
            sums = np.bincount(codes[:, chunk_of[j]], weights=x_tr[j], minlength=PQ_CENTRES)
            cents[cnt > 0, j] = (sums[cnt > 0] / cnt[cnt > 0]).astype(np.float32)
        for c in range(m):                                   # re-seed empty clusters
            empty = np.flatnonzero(counts[c] == 0)
            if len(empty):
                pick = rng.choice(n, len(empty), replace=n < len(empty))
                cents[empty, offs[c]:offs[c + 1]] = x[pick, offs[c]:offs[c + 1]]
        if progress is not None:
            progress(it + 1, iters)
    return cents


# ---- DiskANN files ----

def pq_file_paths(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(<prefix>_pq_pivots.bin, <prefix>_pq_compressed.bin)``."""
    p = str(prefix)
    return Path(p + PIVOTS_SUFFIX), Path(p + CODES_SUFFIX)


def _bin_bytes(rows: int, cols: int, dtype: np.dtype) -> int:
    return BIN_HEADER_BYTES + rows * cols * dtype.itemsize


def write_pq_files(prefix: str | os.PathLike[str], pq: PQCodebook,
                   codes: np.ndarray | None = None) -> tuple[Path, Path | None]:
    """Write ``pq`` (and ``codes``, if given) in DiskANN's formats; return the paths written."""
    pivots_path, codes_path = pq_file_paths(prefix)
    matrices = [
        (pq.centroids.astype(PIVOT_DTYPE), PQ_CENTRES, pq.dim),
        (pq.centre.astype(PIVOT_DTYPE), pq.dim, 1),
        (pq.chunk_offsets.astype(CHUNK_OFFSET_DTYPE), pq.n_chunks + 1, 1),
    ]
    offsets = [METADATA_SIZE]
    for arr, r, c in matrices:
        offsets.append(offsets[-1] + _bin_bytes(r, c, arr.dtype))
    with open(pivots_path, "wb") as f:
        np.array([len(offsets), 1], dtype=BIN_HEADER).tofile(f)
        np.array(offsets, dtype=OFFSET_DTYPE).tofile(f)
        for (arr, r, c), at in zip(matrices, offsets, strict=False):
            f.seek(at)
            np.array([r, c], dtype=BIN_HEADER).tofile(f)
            np.ascontiguousarray(arr).tofile(f)
    if codes is None:
        return pivots_path, None
    write_bin(codes_path, pq._codes(codes))
    return pivots_path, codes_path


def _read_matrix(path: Path, blob: bytes, at: int, dtype: np.dtype,
                 what: str) -> tuple[np.ndarray, int, int]:
    if at + BIN_HEADER_BYTES > len(blob):
        raise DataFileError(path, f"{what} header at byte {at} lies past the end "
                                  f"({len(blob)} bytes; truncated?)")
    rows, cols = (int(v) for v in np.frombuffer(blob, BIN_HEADER, 2, at))
    if rows < 0 or cols < 0:
        raise DataFileError(path, f"{what} has a negative shape {rows} x {cols}")
    end = at + _bin_bytes(rows, cols, dtype)
    if end > len(blob):
        raise DataFileError(path, f"{what} ({rows} x {cols}) runs past the end of the file "
                                  f"({end} > {len(blob)} bytes; truncated?)")
    arr = np.frombuffer(blob, dtype, rows * cols, at + BIN_HEADER_BYTES).reshape(rows, cols)
    return arr.copy(), rows, cols


def read_pq_files(prefix: str | os.PathLike[str], *, metric: str = "l2",
                  codes: bool = True) -> tuple[PQCodebook, NDArray[np.uint8] | None]:
    """Read DiskANN's ``<prefix>_pq_pivots.bin`` (and ``_pq_compressed.bin`` if ``codes``).

    The files do not record the metric; pass the one the index uses.

    Raises
    ------
    DataFileError
        A file is missing, truncated or malformed; the message names the file and the problem.
    """
    if metric not in METRICS:
        raise ConfigError("read_pq_files", "metric", metric, f"must be one of {METRICS}")
    pivots_path, codes_path = pq_file_paths(prefix)
    try:
        blob = pivots_path.read_bytes()
    except FileNotFoundError:
        raise DataFileError(pivots_path, "no such file") from None
    except OSError as exc:
        raise DataFileError(pivots_path, f"cannot read ({exc.strerror})") from exc
    meta, nr, nc = _read_matrix(pivots_path, blob, 0, OFFSET_DTYPE, "offset table")
    if nr not in OFFSET_COUNTS or nc != 1:
        raise DataFileError(pivots_path, f"offset table is {nr} x {nc}; expected 4 x 1 "
                                         f"(or 5 x 1 in old files)")
    offs = [int(v) for v in meta[:, 0]]
    if any(o >= len(blob) for o in offs[:-1]) or offs[-1] > len(blob):
        raise DataFileError(pivots_path, f"offsets {offs} point past the end of the file "
                                         f"({len(blob)} bytes; truncated?)")
    pivots, r, dim = _read_matrix(pivots_path, blob, offs[0], PIVOT_DTYPE, "pivots")
    if r != PQ_CENTRES or dim == 0:
        raise DataFileError(pivots_path, f"pivots are {r} x {dim}; expected {PQ_CENTRES} "
                                         f"centres of a positive dimension")
    centre, r, c = _read_matrix(pivots_path, blob, offs[1], PIVOT_DTYPE, "centroid")
    if (r, c) != (dim, 1):
        raise DataFileError(pivots_path, f"centroid is {r} x {c}; expected {dim} x 1")
    chunks, r, c = _read_matrix(pivots_path, blob, offs[OFFSET_COUNTS[nr]], CHUNK_OFFSET_DTYPE,
                                "chunk offsets")
    co = chunks[:, 0].astype(np.int64) if c == 1 else np.empty(0, np.int64)
    if (c != 1 or r < 2 or co[0] != 0 or co[-1] != dim or (np.diff(co) <= 0).any()):
        raise DataFileError(pivots_path, f"chunk offsets {co.tolist()} (shape {r} x {c}) do not "
                                         f"split {dim} dims into non-empty chunks")
    if not (np.isfinite(pivots).all() and np.isfinite(centre).all()):
        raise DataFileError(pivots_path, "pivots or centroid hold NaN or infinite values")
    pq = PQCodebook(dim, r - 1, co, pivots, centre[:, 0], metric)
    if not codes:
        return pq, None
    data = read_bin(codes_path, np.uint8)
    if data.shape[1] != pq.n_chunks:
        raise DataFileError(codes_path, f"codes have {data.shape[1]} bytes per vector but "
                                        f"{pivots_path.name} has {pq.n_chunks} chunks")
    return pq, data
