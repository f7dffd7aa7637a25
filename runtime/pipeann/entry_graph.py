"""PipeANN's in-memory entry graph: Vamana over a 1% random sample of the base.

PipeANN's README builds it with ``gen_random_slice ... 0.01`` then ``build_memory_index`` with
R=32, L=64, alpha=1.2; each query first searches it for ``mem_L`` (10) nearest sample points
and starts the disk search from their ids (the sample's tags are the on-disk ids).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from labrig.errors import ConfigError
from labrig.runtime.diskann.cost import HostCost
from labrig.runtime.diskann.vamana import VamanaGraph, build_vamana, check_data, search_memory

__all__ = ["EntryGraph", "build_entry_graph"]

#: PipeANN README: sample fraction and in-memory index parameters.
SAMPLE_FRACTION = 0.01
ENTRY_R = 32
ENTRY_L = 64
ENTRY_ALPHA = 1.2


@dataclass
class EntryGraph:
    """The sample's graph, its vectors and their ids in the full (on-disk) index."""

    graph: VamanaGraph
    vectors: np.ndarray
    ids: NDArray[np.int64]
    cost: HostCost = field(default_factory=HostCost)
    last_cost_ns: float = 0.0

    def seeds(self, query: np.ndarray, mem_L: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The on-disk ids of the ``mem_L`` nearest sample points and their exact distances.

        ``last_cost_ns`` is set to the modelled host time of this search.
        """
        k = min(mem_L, len(self.ids))
        res = search_memory(self.graph, self.vectors, np.atleast_2d(query), k=k,
                            L=max(k, mem_L))
        self.last_cost_ns = self.cost.memory_search(
            self.vectors.shape[1], int(res.dist_comps[0]),
            int(res.hops[0]) * self.graph.R)
        found = res.ids[0] >= 0
        return self.ids[res.ids[0][found]], res.dists[0][found]


def build_entry_graph(data: np.ndarray, *, metric: str = "l2",
                      fraction: float = SAMPLE_FRACTION, seed: int = 0,
                      cost: HostCost | None = None, threads: int | None = None) -> EntryGraph:
    """Sample ``fraction`` of ``data`` (at least 2 rows) and build its Vamana graph."""
    data = check_data(data)
    if not 0.0 < fraction <= 1.0:
        raise ConfigError("build_entry_graph", "fraction", fraction, "(0, 1]")
    n = len(data)
    m = min(n, max(2, int(round(n * fraction))))
    ids = np.sort(np.random.default_rng(seed).choice(n, m, replace=False)).astype(np.int64)
    sample = np.ascontiguousarray(data[ids])
    R = min(ENTRY_R, max(1, m - 1))
    graph = build_vamana(sample, metric=metric, R=R, L=max(ENTRY_L, R), alpha=ENTRY_ALPHA,
                         seed=seed, threads=threads)
    return EntryGraph(graph, sample, ids, cost or HostCost())
