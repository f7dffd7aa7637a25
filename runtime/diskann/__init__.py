"""DiskANN: the Vamana graph, product quantization, the on-disk layout and beam search.

Everything reaches storage through the asynchronous :class:`labrig.drivers.block.BlockDevice`
interface, so the same index and searches run on ``emu:nvme`` (virtual time) and on real files
and devices (wall time).  PipeANN's search over the same layout is :mod:`labrig.runtime.pipeann`.
"""

from labrig.runtime.diskann.vamana import (
    MemorySearchResult,
    VamanaGraph,
    build_vamana,
    search_memory,
)

__all__ = ["MemorySearchResult", "VamanaGraph", "build_vamana", "search_memory"]
