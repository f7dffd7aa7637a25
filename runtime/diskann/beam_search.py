"""DiskANN beam search from SSD (``cpp_main`` ``cached_beam_search``; PipeANN ``src/v2/beam_search.cpp``).

Each round takes up to ``W`` unexpanded candidates from the pool (from position ``k`` on),
reads all their sectors, waits for every read, then expands them all: the exact distance of the
node from its on-disk vector goes into the re-rank list, its unvisited neighbours enter the pool
at PQ distance.  ``k`` moves to the best position a neighbour was inserted at if that is at or
before ``k``, else one forward.  Compute and I/O strictly alternate — the SSD idles while the CPU
expands and the CPU idles during each round trip, which is what PipeANN removes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from labrig.drivers.block import BlockQPair, IoBuffer
from labrig.errors import ConfigError, UsageError
from labrig.runtime.diskann.disk_index import (
    MAX_N_SECTOR_READS,
    CandidatePool,
    DiskIndex,
    DiskSearchResult,
    QueryStats,
)
from labrig.runtime.search_params import SearchParams, check_params

__all__ = ["BeamSearchParams", "beam_search"]

#: PipeANN's scripts search DiskANN with beam width 8 (``scripts/tests/fig11.sh``).
DEFAULT_BEAM_WIDTH = 8


@dataclass(frozen=True)
class BeamSearchParams(SearchParams):
    """``L``: pool size; ``W``: reads per round (beam width)."""

    L: int = 100
    W: int = DEFAULT_BEAM_WIDTH


def beam_search(index: DiskIndex, queries: np.ndarray, k: int, *,
                params: BeamSearchParams | None = None) -> DiskSearchResult:
    """Search every query (one at a time, one queue pair) and return top-``k`` per query."""
    p = check_params(params, BeamSearchParams, BeamSearchParams())
    if p.L < k or k < 1:
        raise ConfigError("beam_search", "L", p.L, f">= k ({k}) >= 1")
    if not 1 <= p.W <= MAX_N_SECTOR_READS:
        raise ConfigError("beam_search", "W", p.W, f"1..{MAX_N_SECTOR_READS}")
    queries = np.atleast_2d(np.asarray(queries))
    if queries.ndim != 2:
        raise UsageError(f"queries must be 2-D, got shape {queries.shape}")
    nq = len(queries)
    out = DiskSearchResult(np.empty((nq, k), np.int64), np.empty((nq, k), np.float32), [])
    qp = index.dev.qpair(depth=min(index.dev.max_queue_depth, max(p.W, 2)))
    buf, slots = index.alloc_slots(p.W)
    try:
        for i, query in enumerate(queries):
            ids, dists, st = _search_one(index, qp, buf, slots, query, k, p)
            out.ids[i], out.dists[i] = ids, dists
            out.stats.append(st)
    finally:
        qp.close()
        buf.free()
    return out


def _search_one(index: DiskIndex, qp: BlockQPair, buf: IoBuffer, slots: list[int],
                query: np.ndarray, k: int,
                p: BeamSearchParams) -> tuple[np.ndarray, np.ndarray, QueryStats]:
    """One query: PipeANN ``disk_iterate_to_fixed_point_v`` with ``mem_L = 0`` (medoid entry)."""
    dev, cost, lay = index.dev, index.cost, index.layout
    st = QueryStats(max_width=p.W)
    t0 = dev.clock()
    q = index.query_row(query)
    table = index.pq.table(q)
    dev.spend(int(cost.table(lay.ndims)))
    pool = CandidatePool(p.L)
    expanded: set[int] = set()
    visited = {lay.medoid}
    pool.insert(lay.medoid, float(index.pq_dists(table, np.array([lay.medoid]))[0]))
    full: list[tuple[float, int]] = []
    kpos = 0
    while kpos < len(pool):
        # Up to W unexpanded candidates from position k on become the frontier.
        frontier = []
        pos = kpos
        while pos < len(pool) and len(frontier) < p.W:
            node = pool.ids[pos]
            if node not in expanded:
                expanded.add(node)
                frontier.append(node)
            pos += 1
        if not frontier:
            break
        reqs = []
        for j, node in enumerate(frontier):       # submit each read, paying its host cost
            reqs.append(index.read_node(qp, buf, slots[j], node))
            dev.spend(int(cost.io_ns))
        st.ios += len(reqs)
        qp.wait(reqs)                             # the round trip: wait for every read
        for r in reqs:
            r.result()
        nk = len(pool)
        work = 0.0
        for j, node in enumerate(frontier):
            vec, nbrs = index.parse(buf, slots[j], node)
            best, w = index.expand(node, vec, nbrs, q, table, visited, pool, full, st)
            nk, work = min(nk, best), work + w
        dev.spend(int(work))
        # DiskANN: restart from the best position this round changed, else move on by one.
        kpos = nk if nk <= kpos else kpos + 1
    ids, dists = index.finish(full, k, q)
    st.latency_ns = dev.clock() - t0
    return ids, dists, st
