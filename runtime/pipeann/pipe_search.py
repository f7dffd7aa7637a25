"""PipeANN's pipelined search (OSDI'25; ``thustorage/PipeANN`` @ d18dcd1 ``src/v2/pipe_search.cpp``).

DiskANN alternates: read W nodes, wait for all, expand all.  PipeANN keeps reads in flight and
expands as they land (the build flags of the artifact: ``DYN_PIPE_WIDTH``, ``OVERLAP_INIT``):

1. Seeds: the ``mem_L`` (10) nearest points of the in-memory Vamana graph over a 1% sample
   enter the pool with their in-memory distances.  ``OVERLAP_INIT``: the first reads (up to
   the initial width) are issued *before* the PQ table is built; then the seeds are re-scored
   by PQ and the pool re-sorted.  Without an entry graph the search starts at the medoid.
2. Loop while the pool holds an unexpanded candidate (``get_first_unvisited``):
   a. ``poll_all``: reap landed reads without blocking.  An arrival is *useful* (``n_in``)
      when the node's distance is within the pool's current last entry, else *wasted*
      (``n_out``: by the time it landed it was no longer a candidate);
   b. dynamic width: W starts at 4; once ``max_marker`` >= 5 (the search has converged near
      the query), every poll that reaped something adds its n_in/n_out to running totals, and
      W grows by one (cap ``beam_width``, 32) whenever at most 10% of the total was wasted.
      W never shrinks;
   c. if fewer than W reads are in flight, issue **one** read, for the best candidate that is
      neither in flight nor read (``send_best_read_req(1)``);
   d. ``calc_best_node``: expand the best unexpanded candidate whose node has landed (exact
      distance into the re-rank list, unseen neighbours into the pool at PQ distance), then
      ``max_marker = max(max_marker, position of the first candidate neither expanded, in
      flight nor read)``.
   The artifact spins on this loop; here, when a step neither issues nor expands, the host
   blocks in ``poll()`` until the next completion (the same schedule, without busy time).
3. Results: the top ``k`` of the expanded nodes by exact distance.  Reads still in flight at
   the end are reaped after the latency is taken; they were issued for nodes that fell out of
   the pool, so they count as wasted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.block import BlockQPair, IoBuffer, IoRequest
from labrig.errors import ConfigError, UsageError
from labrig.runtime.diskann.disk_index import (
    MAX_N_SECTOR_READS,
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

#: Per-node search state (a node absent from the map is a candidate not yet read).
_IN_FLIGHT, _LANDED, _EXPANDED = 1, 2, 3


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
    if not 1 <= p.W <= MAX_N_SECTOR_READS:
        raise ConfigError("pipe_search", "W", p.W, f"1..{MAX_N_SECTOR_READS}")
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
    """The state of one query's pipelined search (``retset`` flags as PipeANN's ``Neighbor``)."""

    def __init__(self, index: DiskIndex, qp: BlockQPair, buf: IoBuffer, slots: list[int],
                 p: PipeSearchParams) -> None:
        self.ix, self.qp, self.buf, self.p = index, qp, buf, p
        self.free_slots = list(reversed(slots))
        self.pool = CandidatePool(p.L)
        self.state: dict[int, int] = {}          # absent: a candidate not yet read
        self.issue_dist: dict[int, float] = {}   # in-flight node -> its pool distance
        self.landed: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # The artifact starts at 4 even below a smaller beam_width; W is the cap here.
        self.width = min(INITIAL_WIDTH, p.W) if p.dynamic_width else p.W
        self.max_marker = 0
        self.n_in = self.n_out = 0               # arrivals of the current poll
        self.cum_in = self.cum_tot = 0           # running totals once converged
        self.st = QueryStats(max_width=self.width)

    # -- I/O ------------------------------------------------------------------------------------
    def _issue_best(self) -> bool:
        """``send_best_read_req(1)``: read the best candidate neither in flight nor read."""
        for node, dist in zip(self.pool.ids, self.pool.dists):
            if node not in self.state:
                slot = self.free_slots.pop()
                self.state[node] = _IN_FLIGHT
                self.issue_dist[node] = dist
                self.st.ios += 1
                self.ix.read_node(self.qp, self.buf, slot, node, callback=self._landed,
                                  context=(node, slot))
                self.ix.dev.spend(int(self.ix.cost.io_ns))
                return True
        return False

    def _landed(self, req: IoRequest) -> None:
        """Completion callback (``poll_all``): keep the node, judge the read useful or wasted."""
        node, slot = req.context
        req.result()
        self.landed[node] = self.ix.parse(self.buf, slot, node)
        self.free_slots.append(slot)
        self.state[node] = _LANDED
        if self.issue_dist.pop(node) <= self.pool.last():
            self.n_in += 1
        else:
            self.n_out += 1
            self.st.wasted += 1

    def _poll(self, *, wait: bool) -> int:
        """Reap completions; return how many landed (their verdicts are in n_in/n_out)."""
        self.n_in = self.n_out = 0
        self.qp.poll(wait=wait)
        return self.n_in + self.n_out

    def _adapt_width(self) -> None:
        """``DYN_PIPE_WIDTH``: grow W by one while at most 10% of converged arrivals were wasted."""
        if not (self.p.dynamic_width and self.max_marker >= CONVERGED_MARKER
                and self.n_in + self.n_out):
            return
        self.cum_in += self.n_in
        self.cum_tot += self.n_in + self.n_out
        if (self.cum_tot - self.cum_in) / self.cum_tot <= MAX_WASTE_RATIO:
            self.width = min(self.width + 1, self.p.W)
            self.st.max_width = max(self.st.max_width, self.width)

    # -- compute --------------------------------------------------------------------------------
    def _expand_best_landed(self, q: NDArray[np.float32], table: NDArray[np.float32],
                            visited: set[int], full: list[tuple[float, int]]) -> bool:
        """``calc_best_node``: expand the best landed, unexpanded candidate; update max_marker."""
        ix = self.ix
        done = False
        for node in self.pool.ids:
            if self.state.get(node) == _LANDED:
                self.state[node] = _EXPANDED
                vec, nbrs = self.landed.pop(node)
                _, work = ix.expand(node, vec, nbrs, q, table, visited, self.pool, full,
                                    self.st)
                ix.dev.spend(int(work))
                done = True
                break
        marker = len(self.pool)            # first candidate neither expanded, in flight, read
        for pos, node in enumerate(self.pool.ids):
            if node not in self.state:
                marker = pos
                break
        self.max_marker = max(self.max_marker, marker)
        return done

    def _has_unexpanded(self) -> bool:
        return any(self.state.get(n) != _EXPANDED for n in self.pool.ids)

    # -- the loop -------------------------------------------------------------------------------
    def run(self, query: np.ndarray, k: int,
            entry: EntryGraph | None) -> tuple[np.ndarray, np.ndarray, QueryStats]:
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
        # OVERLAP_INIT: the first reads go out before the PQ table is built.
        for _ in range(self.width):
            if not self._issue_best():
                break
        table = ix.pq.table(q)
        dev.spend(int(cost.table(ix.layout.ndims)))
        ids = list(self.pool.ids)
        pq_d = ix.pq_dists(table, np.array(ids, dtype=np.int64)).tolist()
        self.pool = CandidatePool(self.p.L)
        for s, d in zip(ids, pq_d):
            self.pool.insert(s, d)
            if s in self.issue_dist:         # in-flight seeds are judged by their PQ distance
                self.issue_dist[s] = d
        dev.spend(int(cost.pq(ix.pq.n_chunks, len(ids))))
        full: list[tuple[float, int]] = []
        while self._has_unexpanded():
            self._poll(wait=False)
            self._adapt_width()
            issued = len(self.issue_dist) < self.width and self._issue_best()
            expanded = self._expand_best_landed(q, table, visited, full)
            if not issued and not expanded:
                if not self.issue_dist:
                    break    # unreachable: an unexpanded candidate is readable or landed
                self._poll(wait=True)
                self._adapt_width()
        out_ids, out_d = ix.finish(full, k, q)
        self.st.latency_ns = dev.clock() - t0
        if self.issue_dist:
            self.qp.wait()       # reads for nodes that left the pool: reaped, counted wasted
        return out_ids, out_d, self.st
