"""PipeANN (OSDI'25): best-first search pipelined with SSD reads, over DiskANN's disk index.

The index, its layout and PQ are :mod:`labrig.runtime.diskann`'s; PipeANN adds the in-memory
entry graph (:mod:`.entry_graph`) and the pipelined search (:mod:`.pipe_search`).
"""

from labrig.runtime.pipeann.entry_graph import EntryGraph, build_entry_graph
from labrig.runtime.pipeann.pipe_search import PipeSearchParams, pipe_search

__all__ = ["EntryGraph", "PipeSearchParams", "build_entry_graph", "pipe_search"]
