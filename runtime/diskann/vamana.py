"""Vamana graph build and in-memory search (DiskANN, NeurIPS'19; ``cpp_main`` ``src/index.cpp``).

The graph is the one DiskANN writes to disk: out-degree at most ``R``, entry at the medoid (the
point nearest the data's mean, ``calculate_entry_point``).  Distances are DiskANN's: squared L2
(``metric="l2"``) or the negated inner product ``-<q, x>`` (``metric="ip"``), computed on the
rows in their own type (uint8, int8 or float32) by the C kernels of :mod:`._native`.

Build (``Index::build`` -> ``link``): every point searches the graph from the medoid with a list
of ``L`` candidates, RobustPrune (``occlude_list``, alpha schedule 1, 1.2, ... <= alpha) turns
the nodes the search expanded into at most ``R`` out-edges, each out-neighbour gets the reverse
edge (``inter_insert``) and is re-pruned when its list would pass ``1.3 * R``, and a final pass
prunes every list back to ``R``.  DiskANN runs ``link`` with OpenMP threads racing on locks, so
its graph depends on the schedule; here points are inserted in a seeded random order in batches
that double from 1 up to 2% of ``n`` (ParlayANN's deterministic build), each batch searching and
pruning against the graph frozen at its start, with the edge updates applied serially.  The
graph depends on ``seed`` alone, not on the thread count.

Defaults are DiskANN's ``include/defaults.h``: alpha 1.2, maxc 750, slack 1.3, L 100, R 64.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from labrig.errors import ConfigError, UsageError
from labrig.runtime.diskann._native import dtype_code, load_native, metric_code

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_BUILD_L",
    "DEFAULT_R",
    "GRAPH_SLACK_FACTOR",
    "MAX_DEGREE",
    "MAX_OCCLUSION_SIZE",
    "METRICS",
    "MemorySearchResult",
    "VamanaGraph",
    "build_vamana",
    "check_data",
    "exact_distances",
    "medoid",
    "robust_prune",
    "search_memory",
]

#: DiskANN ``include/defaults.h``.
DEFAULT_ALPHA = 1.2
DEFAULT_R = 64
DEFAULT_BUILD_L = 100
MAX_OCCLUSION_SIZE = 750
GRAPH_SLACK_FACTOR = 1.3
#: DiskANN ``defaults::MAX_GRAPH_DEGREE``.
MAX_DEGREE = 512
#: alpha above this makes RobustPrune keep almost every candidate; DiskANN papers use 1..2.
MAX_ALPHA = 4.0
#: Largest batch of the deterministic build, as a fraction of n (ParlayANN caps its doubling
#: batches at a fraction of the points so each new point can still reach its neighbourhood).
MAX_BATCH_FRACTION = 0.02
MIN_MAX_BATCH = 64
#: Rows per block when scanning for the medoid.
MEDOID_BLOCK = 65_536
#: Node ids are uint32 (DiskANN ``location_t``).
MAX_POINTS = 2**32 - 1
#: The integer kernels accumulate in 32 bits, exact up to this many dims (255^2 * 65536 < 2^32).
MAX_DIM = 65_536
METRICS = ("l2", "ip")
SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.float32))

#: ``progress(done, total)``, called after each build batch.
Progress = Callable[[int, int], None]


@dataclass
class VamanaGraph:
    """A Vamana graph over ``n`` points.

    Attributes
    ----------
    neighbors : uint32 ndarray, shape (n, R)
        Node ``i``'s out-edges are ``neighbors[i, :degrees[i]]``; the rest is 0.
    degrees : uint32 ndarray, shape (n,)
        Out-degree of each node, at most ``R``.
    medoid : int
        Entry point: the point nearest the data's mean.
    R : int
        Maximum out-degree.
    metric : str
        ``"l2"`` (squared Euclidean) or ``"ip"`` (distance ``-<q, x>``).
    """

    neighbors: NDArray[np.uint32]
    degrees: NDArray[np.uint32]
    medoid: int
    R: int
    metric: str = "l2"
    #: (id(neighbors), id(degrees), n) last validated by :func:`check_graph`
    _checked: tuple[int, int, int] | None = field(default=None, init=False, repr=False,
                                                 compare=False)

    @property
    def n(self) -> int:
        """Number of nodes."""
        return int(len(self.degrees))

    def edges(self, i: int) -> NDArray[np.uint32]:
        """Out-neighbours of node ``i``."""
        return self.neighbors[i, : int(self.degrees[i])]


@dataclass
class MemorySearchResult:
    """Results of :func:`search_memory`.

    ``ids`` (nq, k) int64 and ``dists`` (nq, k) float32 ascending, padded ``-1`` / float32 max
    when fewer than ``k`` nodes were reached; ``hops`` (nq,) nodes expanded and ``dist_comps``
    (nq,) distances computed per query.
    """

    ids: NDArray[np.int64]
    dists: NDArray[np.float32]
    hops: NDArray[np.int32]
    dist_comps: NDArray[np.int64]


def check_data(data: object, what: str = "data", *, finite: bool = True) -> np.ndarray:
    """Return ``data`` if it is a non-empty C-contiguous (n, d) uint8/int8/float32 array.

    ``finite=False`` skips the NaN/infinity scan (searches skip it for base rows already
    checked by the build: it reads every value).

    Raises
    ------
    UsageError
        Wrong type, shape, dtype or memory order, or NaN/infinite values; the message says which.
    """
    if not isinstance(data, np.ndarray) or data.ndim != 2:
        shape = getattr(data, "shape", type(data).__name__)
        raise UsageError(f"{what} must be a 2-D numpy array (n, d), got {shape}")
    if data.dtype not in SUPPORTED_DTYPES:
        raise UsageError(f"{what} dtype {data.dtype} is not supported; use uint8, int8 or float32")
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise UsageError(f"{what} is empty: shape {data.shape}")
    if data.shape[1] > MAX_DIM:
        raise UsageError(f"{what} has {data.shape[1]} dims; at most {MAX_DIM} are supported")
    if not data.flags.c_contiguous:
        raise UsageError(f"{what} must be C-contiguous (row-major); "
                         f"pass np.ascontiguousarray({what})")
    if finite and data.dtype == np.float32 and not np.isfinite(data).all():
        raise UsageError(f"{what} holds NaN or infinite values")
    return data


def _check_metric(owner: str, metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError(owner, "metric", metric, f"must be one of {METRICS}")


def _threads(owner: str, threads: int | None) -> int:
    if threads is None:
        return max(1, len(os.sched_getaffinity(0)))
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ConfigError(owner, "threads", threads, "must be an integer >= 1")
    return int(threads)


def _int_param(owner: str, name: str, value: object, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(owner, name, value, "must be an integer")
    if value < lo or (hi is not None and value > hi):
        allowed = f"must be in {lo}..{hi}" if hi is not None else f"must be >= {lo}"
        raise ConfigError(owner, name, value, allowed)
    return int(value)


def _alpha(owner: str, alpha: object) -> float:
    if (isinstance(alpha, bool) or not isinstance(alpha, float | int | np.floating | np.integer)
            or not 1.0 <= alpha <= MAX_ALPHA):
        raise ConfigError(owner, "alpha", alpha, f"must be in 1.0..{MAX_ALPHA}")
    return float(alpha)


def medoid(data: np.ndarray) -> int:
    """Index of the row nearest the data's mean in squared L2 (DiskANN ``calculate_medoid``)."""
    centre = data.mean(axis=0, dtype=np.float64)
    best, best_d = 0, np.inf
    for start in range(0, len(data), MEDOID_BLOCK):
        diff = data[start:start + MEDOID_BLOCK].astype(np.float64) - centre
        dd = np.einsum("ij,ij->i", diff, diff)
        i = int(dd.argmin())
        if dd[i] < best_d:
            best, best_d = start + i, float(dd[i])
    return best


def build_vamana(data: np.ndarray, *, metric: str = "l2", R: int = DEFAULT_R,
                 L: int = DEFAULT_BUILD_L, alpha: float = DEFAULT_ALPHA, seed: int = 0,
                 threads: int | None = None, maxc: int = MAX_OCCLUSION_SIZE,
                 progress: Progress | None = None) -> VamanaGraph:
    """Build a Vamana graph over ``data``.

    Parameters
    ----------
    data : ndarray, shape (n, d), uint8, int8 or float32, C-contiguous
        The points; node ``i`` is row ``i``.
    metric : {"l2", "ip"}
        Squared L2 or negated inner product.
    R : int
        Maximum out-degree, 1..512 (DiskANN ``MAX_GRAPH_DEGREE``).
    L : int
        Build search list size, at least ``R``.
    alpha : float
        RobustPrune's distance threshold, 1.0..4.0.
    seed : int
        Seeds the insertion order; the graph depends on nothing else.
    threads : int, optional
        Worker threads (default: the CPUs this process may use).
    maxc : int
        Most candidates RobustPrune looks at (DiskANN ``MAX_OCCLUSION_SIZE``), at least ``R``.
    progress : callable, optional
        ``progress(done, total)`` after each batch of inserted points.

    Returns
    -------
    VamanaGraph

    Raises
    ------
    UsageError
        ``data`` has the wrong shape, dtype, memory order or non-finite values.
    ConfigError
        A parameter is out of range (the message names it).
    """
    owner = "build_vamana"
    data = check_data(data)
    _check_metric(owner, metric)
    R = _int_param(owner, "R", R, 1, MAX_DEGREE)
    L = _int_param(owner, "L", L, R)
    maxc = _int_param(owner, "maxc", maxc, R)
    seed = _int_param(owner, "seed", seed, 0)
    alpha = _alpha(owner, alpha)
    nthreads = _threads(owner, threads)
    n, d = data.shape
    if n >= MAX_POINTS:
        raise UsageError(f"{n} points do not fit 32-bit node ids")
    # slack: inter_insert appends while a list is shorter than 1.3 * R
    cap = max(R, int(np.ceil(GRAPH_SLACK_FACTOR * R)))
    nbrs = np.zeros((n, cap), dtype=np.uint32)
    deg = np.zeros(n, dtype=np.uint32)
    start = medoid(data)
    order = np.random.default_rng(seed).permutation(n).astype(np.uint32)
    order = np.concatenate([[start], order[order != start]]).astype(np.uint32)
    mod = load_native()
    ffi, lib = mod.ffi, mod.lib
    p_data = ffi.from_buffer(data)
    p_nbrs = ffi.from_buffer("uint32_t[]", nbrs)
    p_deg = ffi.from_buffer("uint32_t[]", deg)
    p_order = ffi.from_buffer("uint32_t[]", order)
    dt, mt = dtype_code(data.dtype), metric_code(metric)
    max_batch = max(MIN_MAX_BATCH, int(n * MAX_BATCH_FRACTION))
    done, batch = 1, 1      # the medoid goes first, with no edges
    if progress is not None:
        progress(done, n)
    while done < n:
        count = min(batch, n - done, max_batch)
        rc = lib.ann_insert_batch(p_data, n, d, dt, mt, p_nbrs, p_deg, cap, R, L, float(alpha),
                                  maxc, start, p_order + done, count, min(nthreads, count))
        _check_rc(rc, "the Vamana build")
        done += count
        batch *= 2
        if progress is not None:
            progress(done, n)
    rc = lib.ann_final_prune(p_data, n, d, dt, mt, p_nbrs, p_deg, cap, R, float(alpha), maxc,
                             nthreads)
    _check_rc(rc, "the Vamana final prune")
    out = np.ascontiguousarray(nbrs[:, :R])
    out[np.arange(R)[None, :] >= deg[:, None]] = 0      # the contract's zero padding
    return VamanaGraph(out, deg, start, R, metric)


def _check_rc(rc: int, what: str) -> None:
    if rc == -1:
        raise MemoryError(f"out of memory in {what}")
    if rc != 0:
        raise RuntimeError(f"{what}: C kernel returned {rc}")  # argument codes are checked above


def check_graph(graph: VamanaGraph, data: np.ndarray) -> None:
    """Raise UsageError unless ``graph`` is a well-formed graph over the rows of ``data``.

    The edge scan reads the whole neighbour array, so it runs once per pair of arrays.
    """
    n = len(data)
    nb, dg = graph.neighbors, graph.degrees
    key = (id(nb), id(dg), n)
    if graph._checked == key:
        return
    if graph.metric not in METRICS:
        raise UsageError(f"graph metric {graph.metric!r} is not one of {METRICS}")
    if dg.shape != (n,) or nb.ndim != 2 or nb.shape[0] != n or nb.shape[1] < 1:
        raise UsageError(f"graph arrays {nb.shape}/{dg.shape} do not describe the {n} data rows")
    if int(dg.max()) > nb.shape[1]:
        raise UsageError(f"graph has a degree {int(dg.max())} above its width {nb.shape[1]}")
    if not 0 <= graph.medoid < n:
        raise UsageError(f"graph medoid {graph.medoid} is out of range (n={n})")
    if int(nb.max()) >= n:
        raise UsageError(f"graph has an edge to node {int(nb.max())}, out of range (n={n})")
    if nb.dtype != np.uint32 or dg.dtype != np.uint32:
        raise UsageError(f"graph arrays must be uint32, got {nb.dtype}/{dg.dtype}")
    graph._checked = key


def search_memory(graph: VamanaGraph, data: np.ndarray, queries: np.ndarray, *, k: int,
                  L: int, entry: np.ndarray | int | None = None,
                  threads: int | None = 1) -> MemorySearchResult:
    """Greedy best-first search of every query (DiskANN ``iterate_to_fixed_point``).

    Parameters
    ----------
    graph : VamanaGraph
        Built over ``data``.
    data : ndarray, shape (n, d)
        The rows the graph was built on (same dtype rules as :func:`build_vamana`).
    queries : ndarray, shape (nq, d)
        Same dtype as ``data``.
    k : int
        Results per query, 1..L.
    L : int
        Search list size.
    entry : int or ndarray, optional
        ``None``: the medoid; an int: one shared seed; a 1-D array: seeds shared by every query;
        a 2-D (nq, s) array: ``s`` seeds per query (PipeANN seeds from its sample graph).
    threads : int, optional
        Worker threads over the queries (default 1; ``None``: all available CPUs).

    Returns
    -------
    MemorySearchResult
        Exact distances of the returned ids, ascending.
    """
    owner = "search_memory"
    data = check_data(data, finite=False)
    queries = check_data(queries, "queries")
    check_graph(graph, data)
    if queries.shape[1] != data.shape[1]:
        raise UsageError(f"queries have {queries.shape[1]} dims, data has {data.shape[1]}")
    if queries.dtype != data.dtype:
        raise UsageError(f"queries dtype {queries.dtype} differs from data dtype {data.dtype}")
    L = _int_param(owner, "L", L, 1)
    k = _int_param(owner, "k", k, 1, L)
    nq = len(queries)
    seeds, stride = _seeds(entry, graph, nq, len(data))
    ids = np.empty((nq, k), dtype=np.int64)
    dists = np.empty((nq, k), dtype=np.float32)
    hops = np.empty(nq, dtype=np.int32)
    cmps = np.empty(nq, dtype=np.int64)
    nbrs = np.ascontiguousarray(graph.neighbors, dtype=np.uint32)
    deg = np.ascontiguousarray(graph.degrees, dtype=np.uint32)
    mod = load_native()
    ffi, lib = mod.ffi, mod.lib
    rc = lib.ann_search_batch(
        ffi.from_buffer(data), len(data), data.shape[1], dtype_code(data.dtype),
        metric_code(graph.metric), ffi.from_buffer("uint32_t[]", nbrs),
        ffi.from_buffer("uint32_t[]", deg), nbrs.shape[1], ffi.from_buffer(queries), nq,
        ffi.from_buffer("uint32_t[]", seeds), seeds.shape[-1], stride, L, k,
        ffi.from_buffer("int64_t[]", ids), ffi.from_buffer("float[]", dists),
        ffi.from_buffer("int32_t[]", hops), ffi.from_buffer("int64_t[]", cmps),
        _threads(owner, threads))
    _check_rc(rc, "search_memory")
    return MemorySearchResult(ids, dists, hops, cmps)


def _seeds(entry: np.ndarray | int | None, graph: VamanaGraph, nq: int,
           n: int) -> tuple[NDArray[np.uint32], int]:
    """(seed array, per-query stride; 0 = shared by all queries)."""
    if entry is None:
        arr = np.array([graph.medoid], dtype=np.int64)
    else:
        arr = np.asarray(entry)
        if arr.dtype.kind not in "iu" or arr.ndim > 2 or arr.size == 0:
            raise UsageError(f"entry must be an int, a 1-D array of seeds or an (nq, s) array, "
                             f"got {arr.dtype} of shape {arr.shape}")
        if arr.ndim == 2 and arr.shape[0] != nq:
            raise UsageError(f"entry has seeds for {arr.shape[0]} queries, there are {nq}")
    if arr.min() < 0 or arr.max() >= n:
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise UsageError(f"entry id {bad} is out of range (n={n})")
    seeds = np.ascontiguousarray(np.atleast_1d(arr), dtype=np.uint32)
    return seeds, (seeds.shape[1] if seeds.ndim == 2 else 0)


def exact_distances(data: np.ndarray, query: np.ndarray, ids: np.ndarray,
                    metric: str) -> NDArray[np.float32]:
    """Distances from one ``query`` (d,) to ``data[ids]`` with the C kernels (DiskANN's exact
    re-rank distance): squared L2 or ``-<q, x>``, computed in the rows' own type."""
    data = check_data(data, finite=False)
    _check_metric("exact_distances", metric)
    q = np.ascontiguousarray(query).reshape(-1)
    if q.dtype != data.dtype:
        raise UsageError(f"query dtype {q.dtype} differs from data dtype {data.dtype}")
    if q.shape[0] != data.shape[1]:
        raise UsageError(f"query has {q.shape[0]} dims, data has {data.shape[1]}")
    idx = np.asarray(ids).reshape(-1)
    if idx.size and idx.dtype.kind not in "iu":
        raise UsageError(f"ids must be integers, got {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= len(data)):
        raise UsageError(f"ids must be in 0..{len(data) - 1}")
    idx32 = idx.astype(np.uint32)
    out = np.empty(len(idx32), dtype=np.float32)
    mod = load_native()
    ffi = mod.ffi
    mod.lib.ann_distances(ffi.from_buffer(data), data.shape[1], dtype_code(data.dtype),
                          metric_code(metric), ffi.from_buffer(q),
                          ffi.from_buffer("uint32_t[]", idx32), len(idx32),
                          ffi.from_buffer("float[]", out))
    return out


def robust_prune(data: np.ndarray, node: int, candidates: np.ndarray, *, metric: str = "l2",
                 R: int = DEFAULT_R, alpha: float = DEFAULT_ALPHA,
                 maxc: int = MAX_OCCLUSION_SIZE) -> NDArray[np.uint32]:
    """RobustPrune ``candidates`` for ``node`` (DiskANN ``prune_neighbors``): at most ``R`` ids.

    The candidates are sorted by (distance to ``node``, id), ``node`` itself and repeats are
    dropped, the list is cut to ``maxc`` and ``occlude_list`` picks the out-edges.
    """
    data = check_data(data)
    _check_metric("robust_prune", metric)
    R = _int_param("robust_prune", "R", R, 1, MAX_DEGREE)
    maxc = _int_param("robust_prune", "maxc", maxc, 1)
    alpha = _alpha("robust_prune", alpha)
    node = _int_param("robust_prune", "node", node, 0, len(data) - 1)
    cand = np.unique(np.asarray(candidates).reshape(-1))
    cand = cand[cand != node]
    d = exact_distances(data, data[node], cand, metric)
    order = np.lexsort((cand, d))[:maxc]
    c32 = np.ascontiguousarray(cand[order], dtype=np.uint32)
    cd = np.ascontiguousarray(d[order])
    out = np.zeros(R, dtype=np.uint32)
    mod = load_native()
    ffi = mod.ffi
    got = mod.lib.ann_robust_prune(ffi.from_buffer(data), data.shape[1], dtype_code(data.dtype),
                                   metric_code(metric), node, ffi.from_buffer("uint32_t[]", c32),
                                   ffi.from_buffer("float[]", cd), len(c32), float(alpha), R,
                                   maxc, ffi.from_buffer("uint32_t[]", out))
    _check_rc(got if got < 0 else 0, "robust_prune")
    return out[:got]
