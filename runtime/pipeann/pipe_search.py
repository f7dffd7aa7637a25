"""PipeANN's pipelined search (OSDI'25; ``thustorage/PipeANN`` @ d18dcd1 ``src/v2/pipe_search.cpp``).

DiskANN alternates: read W nodes, wait for all, expand all.  PipeANN keeps reads in flight and
expands as they land:

1. Seeds come from a small in-memory Vamana graph over a 1% sample (``mem_L`` = 10 results);
   the first read is issued *before* the PQ table is built (``OVERLAP_INIT``), then the seeds'
   PQ distances are computed and the pool re-sorted.
2. Loop while the pool holds an unexpanded candidate:
   a. reap the reads that have landed without blocking (``poll_all``); a landed node is a *hit*
      (``n_in``) if its distance is within the pool's current L-th, else a *miss* (``n_out``);
   b. dynamic width (``DYN_PIPE_WIDTH``): W starts at 4; once the first un-issued candidate has
      been at pool position >= 5 (``max_marker``, the search has converged near the query) the
      hits and misses accumulate, and W grows by one (up to ``beam_width``, 32) whenever at most
      10% of them were misses; W never shrinks;
   c. if fewer than W reads are in flight, issue **one** read for the best candidate that is
      neither in flight nor read (``send_best_read_req(1)``);
   d. expand the best candidate whose node has landed: exact distance into the re-rank list,
      unvisited neighbours into the pool at PQ distance.
   When there is nothing to issue or expand, wait for the next completion.
Reads still in flight at the end are reaped after the latency is taken (``wasted``: read, never
expanded).
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
from labrig.runtime.pipeann.entry_graph import EntryGraph
from labrig.runtime.search_params import SearchParams, check_params

__all__ = ["PipeSearchParams", "pipe_search"]

#: ``DYN_PIPE_WIDTH`` constants of ``pipe_search.cpp``.
INITIAL_WIDTH = 4
CONVERGED_MARKER = 5
MAX_WASTE_RATIO = 0.1
#: The paper's scripts: beam_width (max W) 32, mem_L 10 (``scripts/tests/eval_f.sh``).
DEFAULT_MAX_WIDTH = 32
DEFAULT_MEM_L = 10

_CANDIDATE, _IN_FLIGHT, _LANDED, _EXPANDED = 0, 1, 2, 3


@dataclass(frozen=True)
class PipeSearchParams(SearchParams):
    """``L``: pool size; ``W``: maximum pipeline width; ``mem_L``: in-memory seeds."""

    L: int = 100
    W: int = DEFAULT_MAX_WIDTH
    mem_L: int = DEFAULT_MEM_L
    dynamic_width: bool = True


def pipe_search(index: DiskIndex, queries: np.ndarray, k: int, *,
                entry: EntryGraph | None = None,
                params: PipeSearchParams | None = None) -> DiskSearchResult:
    """Search every query (one at a time, one queue pair of depth >= W) for its top-``k``.

    ``entry`` is the in-memory sample graph; without it the search starts at the medoid, as
    PipeANN does when no in-memory index is loaded.
    """
    p = check_params(params, PipeSearchParams, PipeSearchParams())
    if p.L < k or k < 1:
        raise ConfigError("pipe_search", "L", p.L, f">= k ({k}) >= 1")
    if p.W < 1:
        raise ConfigError("pipe_search", "W", p.W, ">= 1")
    if p.mem_L < 1:
        raise ConfigError("pipe_search", "mem_L", p.mem_L, ">= 1")
    queries = np.atleast_2d(np.asarray(queries))
    if queries.ndim != 2:
        raise UsageError(f"queries must be 2-D, got shape {queries.shape}")
    nq = len(queries)
    out = DiskSearchResult(np.empty((nq, k), np.int64), np.empty((nq, k), np.float32), [])
    qp = index.dev.qpair(depth=min(index.dev.max_queue_depth, max(p.W, 2)))
    buf, slots = index.alloc_slots(p.W)
    try:
        for i, query in enumerate(queries):
            search = _PipeSearch(index, qp, buf, slots, p)
            ids, dists, st = search.run(query, k, entry)
            out.ids[i], out.dists[i] = ids, dists
            out.stats.append(st)
    finally:
        qp.close()
        buf.free()
    return out


class _PipeSearch:
    """The state of one query's pipelined search."""

    def __init__(self, index: DiskIndex, qp, buf, slots: list[int], p: PipeSearchParams):
        self.ix, self.qp, self.buf, self.p = index, qp, buf, p
        self.free_slots = list(reversed(slots))
        self.pool = CandidatePool(p.L)
        self.state: dict[int, int] = {}
        self.landed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.in_flight = 0
        self.width = INITIAL_WIDTH if p.dynamic_width else p.W
        self.max_marker = 0
        self.n_in = self.n_out = 0
        self.st = QueryStats(max_width=self.width)

    # -- I/O ------------------------------------------------------------------------------------
    def _issue_best(self) -> bool:
        """Issue one read for the best candidate neither in flight nor read (``send_best_read_req``)."""
        for pos, node in enumerate(self.pool.ids):
            if self.state.get(node, _CANDIDATE) == _CANDIDATE:
                self.max_marker = max(self.max_marker, pos)
                if not self.free_slots:
                    return False
                slot = self.free_slots.pop()
                self.state[node] = _IN_FLIGHT
                self.in_flight += 1
                self.st.ios += 1
                self.ix.read_node(self.qp, self.buf, slot, node, callback=self._landed,
                                  context=(node, slot))
                self.ix.dev.spend(int(self.ix.cost.io_ns))
                return True
        return False

    def _landed(self, req) -> None:
        node, slot = req.context
        self.in_flight -= 1
        req.result()
        self.landed[node] = self.ix.parse(self.buf, slot, node)
        self.free_slots.append(slot)
        if self.state.get(node) == _IN_FLIGHT:
            self.state[node] = _LANDED
        if self.max_marker >= CONVERGED_MARKER:
            try:
                pos = self.pool.ids.index(node)
            except ValueError:
                pos = self.p.L
            if pos < len(self.pool) and self.pool.dists[pos] <= self.pool.worst():
                self.n_in += 1
            else:
                self.n_out += 1

    def _adapt_width(self) -> None:
        tot = self.n_in + self.n_out
        if (self.p.dynamic_width and tot and self.max_marker >= CONVERGED_MARKER
                and (tot - self.n_in) / tot <= MAX_WASTE_RATIO):
            self.width = min(self.width + 1, self.p.W)
            self.st.max_width = max(self.st.max_width, self.width)

    # -- compute --------------------------------------------------------------------------------
    def _expand_best_landed(self, q, table, visited: set[int], full: list) -> bool:
        ix, cost = self.ix, self.ix.cost
        for node in self.pool.ids:
            if self.state.get(node) == _LANDED:
                break
        else:
            return False
        self.state[node] = _EXPANDED
        vec, nbrs = self.landed.pop(node)
        full.append((ix.exact(vec, q), node))
        self.st.hops += 1
        fresh = [int(v) for v in nbrs if int(v) not in visited]
        visited.update(fresh)
        work = cost.exact(ix.layout.ndims) + len(nbrs) * cost.visit_ns
        if fresh:
            dists = ix.pq_dists(table, np.array(fresh))
            self.st.dist_comps += len(fresh)
            work += cost.pq(ix.pq.n_chunks, len(fresh))
            for v, d in zip(fresh, dists.tolist()):
                self.pool.insert(v, d)
        ix.dev.spend(int(work))
        return True

    def _has_unexpanded(self) -> bool:
        return any(self.state.get(n, _CANDIDATE) != _EXPANDED for n in self.pool.ids)

    # -- the loop -------------------------------------------------------------------------------
    def run(self, query, k: int, entry: EntryGraph | None):
        ix, dev, cost = self.ix, self.ix.dev, self.ix.cost
        t0 = dev.clock()
        q = ix.query_row(query)
        visited: set[int] = set()
        if entry is not None:
            seeds, seed_d = entry.seeds(np.asarray(query), self.p.mem_L)
            dev.spend(int(entry.last_cost_ns))
        else:
            seeds = np.array([ix.layout.medoid])
            seed_d = np.zeros(1, np.float32)
        for s, d in zip(seeds.tolist(), seed_d.tolist()):
            if s not in visited:
                visited.add(s)
                self.pool.insert(s, d)
        self._issue_best()                      # OVERLAP_INIT: first read before the table
        table = ix.pq.table(q)
        dev.spend(int(cost.table(ix.layout.ndims)))
        ids = list(self.pool.ids)
        self.pool = CandidatePool(self.p.L)
        for s, d in zip(ids, ix.pq_dists(table, np.array(ids)).tolist()):
            self.pool.insert(s, d)
        full: list[tuple[float, int]] = []
        while self._has_unexpanded():
            self.qp.poll(wait=False)
            self._adapt_width()
            issued = self.in_flight < self.width and self._issue_best()
            expanded = self._expand_best_landed(q, table, visited, full)
            if not issued and not expanded:
                if self.in_flight == 0:
                    break          # nothing in flight, nothing to read: the pool is spent
                self.qp.poll()     # block until the next completion
        out_ids, out_d = ix.finish(full, k, q)
        self.st.latency_ns = dev.clock() - t0
        if self.in_flight:
            self.qp.wait()
        self.st.wasted = self.st.ios - self.st.hops
        return out_ids, out_d, self.st
