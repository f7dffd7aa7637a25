"""A disk index opened for search: the layout on a device plus the PQ codes kept in memory.

Shared by DiskANN's beam search (:mod:`.beam_search`) and PipeANN's pipelined search
(:mod:`labrig.runtime.pipeann`): both keep only the compressed vectors in memory, read a node's
sector to get its full vector and neighbour list, and re-rank by exact distance.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.block import BlockDevice, BlockQPair, IoBuffer
from labrig.errors import UsageError
from labrig.runtime.diskann.cost import HostCost
from labrig.runtime.diskann.layout import DiskLayout
from labrig.runtime.diskann.pq import PQCodebook

__all__ = ["MAX_N_SECTOR_READS", "CandidatePool", "DiskIndex", "DiskSearchResult", "QueryStats"]

#: DiskANN/PipeANN ``include/defs.h``: the most node reads one query may have outstanding (the
#: beam width limit, and the size of each query's sector scratch).
MAX_N_SECTOR_READS = 128


@dataclass
class QueryStats:
    """What one query did; latency on the device's clock (virtual or wall ns).

    ``ios``: node reads issued; ``wasted``: reads whose node, when it arrived, was no better
    than the pool's current last (L-th) entry (PipeANN's ``n_out``; beam search, which waits
    for every read before it changes the pool, has none); ``hops``: nodes expanded;
    ``dist_comps``: PQ distances computed; ``max_width``: the largest pipeline width used.
    """

    ios: int = 0
    wasted: int = 0
    hops: int = 0
    dist_comps: int = 0
    latency_ns: int = 0
    max_width: int = 0


@dataclass
class DiskSearchResult:
    """ids/dists (nq, k), exact distances ascending, and one :class:`QueryStats` per query."""

    ids: NDArray[np.int64]
    dists: NDArray[np.float32]
    stats: list[QueryStats] = field(default_factory=list)

    def column(self, name: str) -> NDArray[np.float64]:
        return np.array([getattr(s, name) for s in self.stats], dtype=np.float64)


class CandidatePool:
    """DiskANN's ``retset``: at most ``L`` candidates sorted by (approximate) distance."""

    __slots__ = ("L", "dists", "ids")

    def __init__(self, L: int) -> None:
        self.L = L
        self.dists: list[float] = []
        self.ids: list[int] = []

    def insert(self, node: int, dist: float) -> int:
        """Insert; return the position, or ``L`` when the pool is full and it is no better."""
        if len(self.ids) == self.L and dist >= self.dists[-1]:
            return self.L
        pos = bisect.bisect_right(self.dists, dist)
        self.dists.insert(pos, dist)
        self.ids.insert(pos, node)
        if len(self.ids) > self.L:
            self.dists.pop()
            self.ids.pop()
        return pos

    def worst(self) -> float:
        """The distance a newcomer must beat once the pool is full (inf before)."""
        return self.dists[-1] if len(self.ids) == self.L else float("inf")

    def last(self) -> float:
        """The pool's current last distance, full or not (PipeANN's ``retset[cur_list_size-1]``)."""
        return self.dists[-1] if self.ids else float("inf")

    def __len__(self) -> int:
        return len(self.ids)


class DiskIndex:
    """A disk index on ``dev`` with its PQ codebook and codes, ready to search.

    ``metric`` is the graph's (see :class:`~.vamana.VamanaGraph`): squared L2, or for "ip" the
    negated inner product ``-<q, x>``; the PQ codebook must be trained for the same metric.
    """

    def __init__(self, dev: BlockDevice, layout: DiskLayout, pq: PQCodebook,
                 codes: NDArray[np.uint8], *, metric: str = "l2",
                 cost: HostCost | None = None) -> None:
        if codes.shape != (layout.npts, pq.n_chunks):
            raise UsageError(f"PQ codes of shape {codes.shape} do not match the index "
                             f"({layout.npts} points, {pq.n_chunks} chunks)")
        if pq.dim != layout.ndims:
            raise UsageError(f"PQ dimension {pq.dim} != index dimension {layout.ndims}")
        self.dev = dev
        self.layout = layout
        self.pq = pq
        self.codes = codes
        self.metric = metric
        self.cost = cost or HostCost()
        self._slot_bytes = layout.node_blocks * dev.block_size

    @property
    def clock(self) -> int:
        return self.dev.clock()

    def query_row(self, query: np.ndarray) -> NDArray[np.float32]:
        """The query as float32, checked against the index dimension."""
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.layout.ndims:
            raise UsageError(f"query has {q.shape[0]} dims, the index expects "
                             f"{self.layout.ndims}")
        return q

    def exact(self, vec: np.ndarray, q: NDArray[np.float32]) -> float:
        """Full-precision distance of a node read from disk: squared L2 or ``-<q, x>``."""
        v = vec.astype(np.float32)
        if self.metric == "ip":
            return -float(v @ q)
        diff = v - q
        return float(diff @ diff)

    def pq_dists(self, table: NDArray[np.float32], ids: np.ndarray) -> NDArray[np.float32]:
        return self.pq.distances(table, self.codes[ids])

    def alloc_slots(self, n: int) -> tuple[IoBuffer, list[int]]:
        """One buffer holding ``n`` node-read slots; returns it and the slots' byte offsets."""
        buf = self.dev.alloc_buffer(n * self._slot_bytes)
        return buf, [i * self._slot_bytes for i in range(n)]

    def read_node(self, qp: BlockQPair, buf: IoBuffer, offset: int, node: int,
                  **kw: object) -> object:
        """Submit the read of ``node``'s sector(s) into ``buf`` at ``offset``."""
        lay = self.layout
        return qp.read(buf, lay.lba_of(node), lay.node_blocks, buf_offset=offset,
                       **kw)  # type: ignore[arg-type]

    def parse(self, buf: IoBuffer, offset: int, node: int) -> tuple[np.ndarray, np.ndarray]:
        raw = buf.view[offset:offset + self._slot_bytes]
        vec, nbrs = self.layout.parse_node(raw, node)
        return vec.copy(), nbrs.copy()

    def expand(self, node: int, vec: np.ndarray, nbrs: np.ndarray, q: NDArray[np.float32],
               table: NDArray[np.float32], visited: set[int], pool: CandidatePool,
               full: list[tuple[float, int]], st: QueryStats) -> tuple[int, float]:
        """Expand one node read from disk, as both searches do; return (best pool position
        a neighbour was inserted at, or ``len(pool)``; modelled host ns of the work).

        DiskANN ``disk_iterate_to_fixed_point`` / PipeANN ``calc_best_node``: the node's exact
        distance from its on-disk vector goes into ``full`` (the re-rank list); its neighbours
        not seen before are marked visited, scored by PQ and offered to the pool.
        """
        cost = self.cost
        full.append((self.exact(vec, q), node))
        st.hops += 1
        fresh = [v for v in nbrs.tolist() if v not in visited]
        visited.update(fresh)
        work = cost.exact(self.layout.ndims) + len(nbrs) * cost.visit_ns
        best = len(pool)
        if fresh:
            dists = self.pq_dists(table, np.array(fresh, dtype=np.int64))
            st.dist_comps += len(fresh)
            work += cost.pq(self.pq.n_chunks, len(fresh))
            for v, d in zip(fresh, dists.tolist()):
                best = min(best, pool.insert(v, d))
        return best, work

    def finish(self, full: list[tuple[float, int]], k: int,
               q: NDArray[np.float32]) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Top ``k`` of the exactly re-ranked expanded nodes, padded with -1 / inf."""
        full.sort()
        ids = np.full(k, -1, dtype=np.int64)
        dists = np.full(k, np.inf, dtype=np.float32)
        top = full[:k]
        if top:
            ids[: len(top)] = [i for _, i in top]
            dists[: len(top)] = [d for d, _ in top]
        return ids, dists
