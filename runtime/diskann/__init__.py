"""DiskANN: the Vamana graph, product quantization, the on-disk layout and beam search.

The graph (:mod:`.vamana`) and the PQ codebooks (:mod:`.pq`) are built in memory with DiskANN's
algorithms and defaults (``cpp_main`` ``src/index.cpp``, ``src/pq.cpp``); their hot loops are C
(:mod:`._native`).  Searches from storage reach it only through the asynchronous
:class:`labrig.drivers.block.BlockDevice` interface, so the same index runs on ``emu:nvme``
(virtual time) and on real files and devices (wall time).  PipeANN's search over the same
layout is :mod:`labrig.runtime.pipeann`.
"""

from labrig.runtime.diskann.pq import (
    PQ_CENTRES,
    PQCodebook,
    read_pq_files,
    train_pq,
    write_pq_files,
)
from labrig.runtime.diskann.vamana import (
    MemorySearchResult,
    VamanaGraph,
    build_vamana,
    exact_distances,
    robust_prune,
    search_memory,
)

__all__ = [
    "PQ_CENTRES",
    "MemorySearchResult",
    "PQCodebook",
    "VamanaGraph",
    "build_vamana",
    "exact_distances",
    "read_pq_files",
    "robust_prune",
    "search_memory",
    "train_pq",
    "write_pq_files",
]
