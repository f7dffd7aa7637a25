"""Product quantization for the disk indexes' in-memory navigation (DiskANN ``generate_pq_pivots``).

The data (the float32 rows the graph was built on, i.e. MIPS-transformed for "ip") is centred
on its mean, the dimensions are cut into ``n_chunks`` contiguous chunks whose sizes differ by at
most one, and each chunk gets 256 k-means centres, so a vector compresses to one byte per
chunk.  A query builds one lookup table of squared chunk distances (asymmetric distance
computation, ADC); a compressed vector's distance is the sum of its chunks' table entries.
DiskANN sizes the chunk count from a memory budget (``B`` GB for all vectors, ~32 B/vector in
the PipeANN scripts); :func:`train_pq` takes that budget per vector.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from labrig.errors import ConfigError, UsageError
from labrig.runtime.vecdata import assign, kmeans

__all__ = ["PQ_CENTRES", "PQCodebook", "train_pq"]

#: One code byte per chunk (DiskANN ``NUM_PQ_CENTROIDS``).
PQ_CENTRES = 256
#: Rows used to train the codebooks (DiskANN samples at most ``MAX_PQ_TRAINING_SET_SIZE``
#: = 256,000; we default lower to keep laptop builds short, the caller can raise it).
DEFAULT_TRAIN_SAMPLE = 65_536
DEFAULT_ITERS = 12


@dataclass
class PQCodebook:
    """Centres of every chunk; ``centroids[c]`` concatenates each chunk's ``c``-th centre."""

    dim: int
    n_chunks: int
    chunk_offsets: NDArray[np.int64]      # (n_chunks + 1,)
    centroids: NDArray[np.float32]        # (256, dim)
    centre: NDArray[np.float32]           # (dim,) mean subtracted before quantizing

    def encode(self, rows: np.ndarray, *, block: int = 65_536) -> NDArray[np.uint8]:
        """Codes (n, n_chunks) of float rows of width ``dim``."""
        rows = self._check(rows)
        out = np.empty((len(rows), self.n_chunks), dtype=np.uint8)
        for start in range(0, len(rows), block):
            x = rows[start:start + block].astype(np.float32) - self.centre
            for c in range(self.n_chunks):
                lo, hi = self.chunk_offsets[c], self.chunk_offsets[c + 1]
                out[start:start + block, c] = assign(np.ascontiguousarray(x[:, lo:hi]),
                                                     self.centroids[:, lo:hi])
        return out

    def decode(self, codes: np.ndarray) -> NDArray[np.float32]:
        """The rows the codes stand for (centre added back)."""
        out = np.empty((len(codes), self.dim), dtype=np.float32)
        for c in range(self.n_chunks):
            lo, hi = self.chunk_offsets[c], self.chunk_offsets[c + 1]
            out[:, lo:hi] = self.centroids[codes[:, c], lo:hi]
        return out + self.centre

    def table(self, query: np.ndarray) -> NDArray[np.float32]:
        """ADC lookup table (n_chunks, 256): squared distance of each query chunk to each centre."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise UsageError(f"query has {q.shape[0]} dims, the PQ codebook {self.dim}")
        diff = (q - self.centre)[None, :] - self.centroids          # (256, dim)
        sq = diff * diff
        # sum each chunk's columns: reduceat over the chunk starts
        return np.ascontiguousarray(np.add.reduceat(sq, self.chunk_offsets[:-1], axis=1).T)

    def distances(self, table: np.ndarray, codes: np.ndarray) -> NDArray[np.float32]:
        """ADC distance of every row of ``codes`` for the query that built ``table``."""
        codes = np.asarray(codes)
        return table[self._chunk_index, codes].sum(axis=-1, dtype=np.float32)

    @property
    def _chunk_index(self) -> NDArray[np.int64]:
        return np.arange(self.n_chunks)

    def _check(self, rows: np.ndarray) -> np.ndarray:
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise UsageError(f"rows of shape {rows.shape} do not match the PQ dimension {self.dim}")
        return rows


def chunk_offsets(dim: int, n_chunks: int) -> NDArray[np.int64]:
    """Contiguous chunks with sizes differing by at most one (larger chunks first)."""
    sizes = np.full(n_chunks, dim // n_chunks, dtype=np.int64)
    sizes[: dim % n_chunks] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def train_pq(rows: np.ndarray, *, n_chunks: int | None = None,
             bytes_per_vector: int | None = None, sample: int = DEFAULT_TRAIN_SAMPLE,
             iters: int = DEFAULT_ITERS, seed: int = 0,
             progress: Callable[[int, int], None] | None = None) -> PQCodebook:
    """Train 256 centres per chunk on a seeded sample of ``rows`` (n, dim) float32.

    Exactly one of ``n_chunks`` and ``bytes_per_vector`` (one code byte per chunk) is given;
    the chunk count is clipped to [1, dim].

    Raises
    ------
    ConfigError
        Both or neither budget given, or a value out of range.
    """
    if (n_chunks is None) == (bytes_per_vector is None):
        raise ConfigError("train_pq", "n_chunks/bytes_per_vector",
                          (n_chunks, bytes_per_vector), "exactly one of them")
    m = n_chunks if n_chunks is not None else bytes_per_vector
    assert m is not None
    if m < 1:
        raise ConfigError("train_pq", "n_chunks" if n_chunks is not None else "bytes_per_vector",
                          m, ">= 1")
    if rows.ndim != 2 or len(rows) == 0:
        raise UsageError(f"train_pq needs a non-empty (n, dim) array, got shape {rows.shape}")
    dim = rows.shape[1]
    m = min(m, dim)
    rng = np.random.default_rng(seed)
    take = rng.choice(len(rows), min(sample, len(rows)), replace=False)
    x = np.asarray(rows[np.sort(take)], dtype=np.float32)
    centre = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    x = x - centre
    offs = chunk_offsets(dim, m)
    cents = np.zeros((PQ_CENTRES, dim), dtype=np.float32)
    for c in range(m):
        lo, hi = offs[c], offs[c + 1]
        cc = kmeans(np.ascontiguousarray(x[:, lo:hi]), PQ_CENTRES, iters=iters,
                    seed=seed + c, sample=len(x))
        cents[: len(cc), lo:hi] = cc
        if len(cc) < PQ_CENTRES:            # fewer training rows than centres: repeat
            cents[len(cc):, lo:hi] = cc[np.arange(PQ_CENTRES - len(cc)) % len(cc)]
        if progress is not None:
            progress(c + 1, m)
    return PQCodebook(dim, m, offs, cents, centre)
