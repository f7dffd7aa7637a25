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

from labrig.errors import ConfigError, UsageError
from labrig.runtime.diskann.disk_index import (
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
    if p.W < 1:
        raise ConfigError("beam_search", "W", p.W, ">= 1")
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


def _search_one(index: DiskIndex, qp, buf, slots, query, k: int,
                p: BeamSearchParams) -> tuple[np.ndarray, np.ndarray, QueryStats]:
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
        reqs = [index.read_node(qp, buf, slots[j], node) for j, node in enumerate(frontier)]
        st.ios += len(reqs)
        qp.wait(reqs)
        for r in reqs:
            r.result()
        nk = len(pool)
        work = len(reqs) * cost.io_ns
        for j, node in enumerate(frontier):
            vec, nbrs = index.parse(buf, slots[j], node)
            full.append((index.exact(vec, q), node))
            st.hops += 1
            fresh = [int(v) for v in nbrs if int(v) not in visited]
            visited.update(fresh)
            work += cost.exact(lay.ndims) + len(nbrs) * cost.visit_ns
            if fresh:
                dists = index.pq_dists(table, np.array(fresh))
                st.dist_comps += len(fresh)
                work += cost.pq(index.pq.n_chunks, len(fresh))
                for v, d in zip(fresh, dists.tolist()):
                    r_pos = pool.insert(v, d)
                    if r_pos < nk:
                        nk = r_pos
        dev.spend(int(work))
        kpos = nk if nk <= kpos else kpos + 1
    ids, dists = index.finish(full, k, q)
    st.latency_ns = dev.clock() - t0
    return ids, dists, st
