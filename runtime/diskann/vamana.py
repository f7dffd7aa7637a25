"""Vamana graph build and in-memory search (DiskANN, NeurIPS'19; ``cpp_main`` ``src/index.cpp``).

The graph is the one DiskANN writes to disk: out-degree at most ``R``, entry at the medoid
(the point nearest the data's mean, ``calculate_entry_point``).  Distances are squared L2 on
float32 rows; ``metric="ip"`` (maximum inner product) is reduced to L2 with DiskANN's MIPS
transform (``prepare_base_for_inner_products``): every base row gets one extra coordinate
``sqrt(M^2 - |x|^2)`` with ``M`` the largest norm, queries get 0, so L2 order equals -<q, x>
order and ``-<q, x> = (l2 - M^2 - |q|^2) / 2`` recovers the inner product exactly.

Defaults are DiskANN's ``include/defaults.h``: alpha 1.2, maxc 750, slack 1.3, L 100, R 64.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from labrig.errors import ConfigError, UsageError
from labrig.runtime.diskann._native import load_native

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_BUILD_L",
    "DEFAULT_R",
    "GRAPH_SLACK_FACTOR",
    "MAX_OCCLUSION_SIZE",
    "METRICS",
    "MemorySearchResult",
    "VamanaGraph",
    "as_float_rows",
    "build_vamana",
    "medoid",
    "mips_transform",
    "search_memory",
]

#: DiskANN ``include/defaults.h``.
DEFAULT_ALPHA = 1.2
DEFAULT_R = 64
DEFAULT_BUILD_L = 100
MAX_OCCLUSION_SIZE = 750
GRAPH_SLACK_FACTOR = 1.3
#: Largest batch of the deterministic batched build (ParlayANN grows batches by doubling up to
#: a fraction of n; 2% keeps the graph within the search's reach of every new point).
MAX_BATCH_FRACTION = 0.02
MIN_MAX_BATCH = 64
METRICS = ("l2", "ip")
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.float32))

Progress = Callable[[int, int], None]


@dataclass
class VamanaGraph:
    """A Vamana graph: ``neighbors[i, :degrees[i]]`` are node ``i``'s out-edges (rest 0)."""

    neighbors: NDArray[np.uint32]
    degrees: NDArray[np.uint32]
    medoid: int
    R: int
    metric: str = "l2"
    #: Largest base norm M of the MIPS transform (metric "ip"), else 0.
    mips_norm: float = 0.0

    @property
    def n(self) -> int:
        return int(len(self.degrees))

    def edges(self, i: int) -> NDArray[np.uint32]:
        return self.neighbors[i, : int(self.degrees[i])]


@dataclass
class MemorySearchResult:
    """Results of :func:`search_memory`: ``ids``/``dists`` (nq, k) ascending, per-query work."""

    ids: NDArray[np.int64]
    dists: NDArray[np.float32]
    hops: NDArray[np.int32]
    dist_comps: NDArray[np.int64]


def check_data(data: np.ndarray, what: str = "data") -> np.ndarray:
    """Validate a (n, d) uint8/int8/float32 array; return it C-contiguous."""
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        raise UsageError(f"{what} must be a 2-D numpy array (n, d), got "
                         f"{getattr(data, 'shape', type(data).__name__)}")
    if data.dtype not in SUPPORTED_DTYPES:
        raise UsageError(f"{what} dtype {data.dtype} is not supported; use uint8, int8 or float32")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise UsageError(f"{what} is empty: shape {data.shape}")
    if data.dtype == np.float32 and not np.isfinite(data).all():
        raise UsageError(f"{what} holds NaN or infinite values")
    return np.ascontiguousarray(data)


def mips_transform(data: np.ndarray, norm: float | None = None) -> tuple[NDArray[np.float32], float]:
    """DiskANN's inner-product-to-L2 transform of base rows: append sqrt(M^2 - |x|^2)."""
    x = data.astype(np.float32)
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    m = float(np.sqrt(sq.max())) if norm is None else float(norm)
    extra = np.sqrt(np.maximum(m * m - sq, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([x, extra[:, None]])), m


def as_float_rows(data: np.ndarray, graph_metric: str, mips_norm: float,
                  *, queries: bool = False) -> NDArray[np.float32]:
    """The float32 rows the kernels work on (MIPS-transformed for metric "ip")."""
    if graph_metric == "ip":
        if queries:
            x = data.astype(np.float32)
            return np.ascontiguousarray(np.hstack([x, np.zeros((len(x), 1), np.float32)]))
        return mips_transform(data, mips_norm)[0]
    return np.ascontiguousarray(data, dtype=np.float32)


def medoid(rows: NDArray[np.float32]) -> int:
    """Index of the row nearest the mean (DiskANN ``calculate_entry_point``)."""
    centre = rows.mean(axis=0, dtype=np.float64).astype(np.float32)
    best, best_d = 0, np.inf
    for start in range(0, len(rows), 65536):
        block = rows[start:start + 65536]
        dd = ((block - centre) ** 2).sum(axis=1)
        i = int(dd.argmin())
        if dd[i] < best_d:
            best, best_d = start + i, float(dd[i])
    return best


def _threads(threads: int | None) -> int:
    if threads is None:
        return max(1, len(os.sched_getaffinity(0)))
    if threads < 1:
        raise ConfigError("build_vamana", "threads", threads, ">= 1")
    return threads


def build_vamana(data: np.ndarray, *, metric: str = "l2", R: int = DEFAULT_R,
                 L: int = DEFAULT_BUILD_L, alpha: float = DEFAULT_ALPHA, seed: int = 0,
                 threads: int | None = None, maxc: int = MAX_OCCLUSION_SIZE,
                 progress: Progress | None = None) -> VamanaGraph:
    """Build a Vamana graph over ``data`` (n, d) uint8/int8/float32.

    Points are inserted in a seeded random order, in batches that double from 1 up to 2% of
    ``n``; each batch searches and prunes against the graph as it stood before the batch
    (see :mod:`._native`), so the graph depends on ``seed`` only, not on ``threads``.

    Raises
    ------
    UsageError
        ``data`` has the wrong shape, dtype or non-finite values.
    ConfigError
        A parameter is out of range (the message names it).
    """
    data = check_data(data)
    if metric not in METRICS:
        raise ConfigError("build_vamana", "metric", metric, METRICS)
    if not 1 <= R <= 1024:
        raise ConfigError("build_vamana", "R", R, "1..1024")
    if L < R:
        raise ConfigError("build_vamana", "L", L, f">= R ({R})")
    if not 1.0 <= alpha <= 4.0:
        raise ConfigError("build_vamana", "alpha", alpha, "1.0..4.0")
    if maxc < R:
        raise ConfigError("build_vamana", "maxc", maxc, f">= R ({R})")
    nthreads = _threads(threads)
    n = len(data)
    if n >= 2**32 - 1:
        raise UsageError(f"{n} points do not fit 32-bit node ids")
    mips_norm = 0.0
    if metric == "ip":
        rows, mips_norm = mips_transform(data)
    else:
        rows = as_float_rows(data, "l2", 0.0)
    d = rows.shape[1]
    cap = max(R, int(np.ceil(GRAPH_SLACK_FACTOR * R)))
    nbrs = np.zeros((n, cap), dtype=np.uint32)
    deg = np.zeros(n, dtype=np.uint32)
    start = medoid(rows)
    order = np.random.default_rng(seed).permutation(n).astype(np.uint32)
    order = np.concatenate([[start], order[order != start]]).astype(np.uint32)
    mod = load_native()
    ffi, lib = mod.ffi, mod.lib
    p_rows = ffi.from_buffer("float[]", rows)
    p_nbrs = ffi.from_buffer("uint32_t[]", nbrs)
    p_deg = ffi.from_buffer("uint32_t[]", deg)
    max_batch = max(MIN_MAX_BATCH, int(n * MAX_BATCH_FRACTION))
    done, batch = 1, 1      # the medoid is the first node; it has no edges yet
    while done < n:
        count = min(batch, n - done, max_batch)
        pts = order[done:done + count]
        rc = lib.ann_insert_batch(p_rows, n, d, p_nbrs, p_deg, cap, R, L, float(alpha), maxc,
                                  start, ffi.from_buffer("uint32_t[]", pts), count,
                                  min(nthreads, count))
        if rc != 0:
            raise MemoryError("Vamana build: out of memory in the C kernel")
        done += count
        batch *= 2
        if progress is not None:
            progress(done, n)
    if lib.ann_final_prune(p_rows, n, d, p_nbrs, p_deg, cap, R, float(alpha), maxc,
                           nthreads) != 0:
        raise MemoryError("Vamana build: out of memory in the final prune")
    return VamanaGraph(np.ascontiguousarray(nbrs[:, :R]), deg, start, R, metric, mips_norm)


def check_graph(graph: VamanaGraph, n: int) -> None:
    """Raise UsageError if ``graph`` does not describe ``n`` points."""
    if graph.n != n:
        raise UsageError(f"graph has {graph.n} nodes but data has {n} rows")


def search_memory(graph: VamanaGraph, data: np.ndarray, queries: np.ndarray, *, k: int,
                  L: int, entry: np.ndarray | int | None = None,
                  threads: int | None = 1) -> MemorySearchResult:
    """Greedy best-first search of every query in the in-memory graph.

    ``entry``: ``None`` (the medoid), one node id, or an (nq, s) array of seed ids per query
    (PipeANN seeds the disk search from its in-memory sample graph this way).  Distances are
    exact and ascending; for metric "ip" they are ``-<q, x>``.
    """
    data = check_data(data)
    queries = check_data(queries, "queries")
    check_graph(graph, len(data))
    if queries.shape[1] != data.shape[1]:
        raise UsageError(f"queries have {queries.shape[1]} dims, data has {data.shape[1]}")
    if not 1 <= k <= L:
        raise ConfigError("search_memory", "k", k, f"1..L ({L})")
    rows = as_float_rows(data, graph.metric, graph.mips_norm)
    q = as_float_rows(queries, graph.metric, graph.mips_norm, queries=True)
    nq = len(q)
    if entry is None:
        seeds = np.full((nq, 1), graph.medoid, dtype=np.uint32)
    elif np.isscalar(entry):
        seeds = np.full((nq, 1), int(entry), dtype=np.uint32)      # type: ignore[arg-type]
    else:
        seeds = np.ascontiguousarray(np.asarray(entry).reshape(nq, -1), dtype=np.uint32)
    if seeds.size and int(seeds.max()) >= len(rows):
        raise UsageError(f"entry id {int(seeds.max())} is out of range (n={len(rows)})")
    ids = np.empty((nq, k), dtype=np.int64)
    dists = np.empty((nq, k), dtype=np.float32)
    hops = np.empty(nq, dtype=np.int32)
    cmps = np.empty(nq, dtype=np.int64)
    nbrs = np.ascontiguousarray(graph.neighbors, dtype=np.uint32)
    deg = np.ascontiguousarray(graph.degrees, dtype=np.uint32)
    mod = load_native()
    ffi, lib = mod.ffi, mod.lib
    rc = lib.ann_search_batch(
        ffi.from_buffer("float[]", rows), len(rows), rows.shape[1],
        ffi.from_buffer("uint32_t[]", nbrs), ffi.from_buffer("uint32_t[]", deg), graph.R,
        ffi.from_buffer("float[]", q), nq, ffi.from_buffer("uint32_t[]", seeds),
        seeds.shape[1], L, k, ffi.from_buffer("int64_t[]", ids),
        ffi.from_buffer("float[]", dists), ffi.from_buffer("int32_t[]", hops),
        ffi.from_buffer("int64_t[]", cmps), _threads(threads))
    if rc != 0:
        raise MemoryError("search_memory: out of memory in the C kernel")
    if graph.metric == "ip":
        qn = np.einsum("ij,ij->i", q, q)[:, None]
        dists = ((dists - graph.mips_norm ** 2 - qn) / 2.0).astype(np.float32)
    return MemorySearchResult(ids, dists, hops, cmps)
