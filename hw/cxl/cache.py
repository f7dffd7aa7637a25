"""One host's write-back cache of 64-byte lines over one backing array.

The cache keeps a full-size shadow array (zero pages cost nothing until touched) plus per-line
``valid`` and ``dirty`` flags, so a multi-line access is a few numpy slice operations, never a
Python loop per line.  There is no coherence: another host's write to the backing array is not
seen while this cache holds the line (shared/research/cxl_tigon.md 5.2, item 1).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from labrig.hw.cxl.regs import LINE_BYTES

__all__ = ["LineCache"]


class LineCache:
    """Write-back, write-allocate line cache.

    Parameters
    ----------
    backing : ndarray of uint8
        The memory behind the cache (length a multiple of 64).
    capacity_lines : int
        Lines held before eviction starts (ignored by the ``never`` policy).
    policy : {"never", "random"}
        Eviction policy; ``random`` evicts a random batch of 1/16 of the capacity when full.
    rng : numpy.random.Generator
        Victim choice for ``random``.
    """

    def __init__(self, backing: NDArray[np.uint8], capacity_lines: int, policy: str,
                 rng: np.random.Generator) -> None:
        self.backing = backing
        self.back2d = backing.reshape(-1, LINE_BYTES)
        nlines = self.back2d.shape[0]
        self.shadow = np.zeros(backing.shape[0], dtype=np.uint8)
        self.shadow2d = self.shadow.reshape(-1, LINE_BYTES)
        self.valid = np.zeros(nlines, dtype=bool)
        self.dirty = np.zeros(nlines, dtype=bool)
        self.capacity = int(capacity_lines)
        self.policy = policy
        self.rng = rng
        self.count = 0
        self.hits = 0
        self.misses = 0
        self.writebacks = 0
        self.evictions = 0

    # -- fills --------------------------------------------------------------------------------
    def _fill(self, s: int, e: int, skip_full_from: int = -1, skip_full_to: int = -1) -> int:
        """Make lines s..e-1 valid; returns the number of misses.  Lines in
        [skip_full_from, skip_full_to) are about to be overwritten whole, so no data is read."""
        v = self.valid[s:e]
        miss = ~v
        nmiss = int(np.count_nonzero(miss))
        if nmiss:
            need = miss.copy()
            if skip_full_from < skip_full_to:
                need[skip_full_from - s:skip_full_to - s] = False
            if need.any():
                idx = np.flatnonzero(need) + s
                self.shadow2d[idx] = self.back2d[idx]
            v[:] = True
            self.count += nmiss
        self.misses += nmiss
        self.hits += (e - s) - nmiss
        return nmiss

    def _evict_if_full(self, protect_s: int, protect_e: int) -> None:
        if self.policy == "never" or self.count <= self.capacity:
            return
        target = max(0, self.capacity - max(1, self.capacity // 16))
        cand = np.flatnonzero(self.valid)
        # keep the lines the current access touches
        cand = cand[(cand < protect_s) | (cand >= protect_e)]
        k = min(len(cand), self.count - target)
        if k <= 0:
            return
        victims = self.rng.choice(cand, size=k, replace=False)
        self._writeback_lines(victims)
        self.valid[victims] = False
        self.count -= k
        self.evictions += k

    def _writeback_lines(self, idx: NDArray[np.intp]) -> int:
        d = idx[self.dirty[idx]]
        if len(d):
            self.back2d[d] = self.shadow2d[d]
            self.dirty[d] = False
            self.writebacks += len(d)
        return len(d)

    # -- accesses -----------------------------------------------------------------------------
    def load(self, off: int, n: int) -> tuple[NDArray[np.uint8], int]:
        """Read ``n`` bytes at ``off`` through the cache: (copy of the bytes, misses)."""
        s, e = off // LINE_BYTES, (off + n + LINE_BYTES - 1) // LINE_BYTES
        miss = self._fill(s, e)
        out = self.shadow[off:off + n].copy()
        self._evict_if_full(s, e)
        return out, miss

    def store(self, off: int, data: NDArray[np.uint8]) -> int:
        """Write ``data`` at ``off`` into the cache (write-allocate); returns misses."""
        n = len(data)
        s, e = off // LINE_BYTES, (off + n + LINE_BYTES - 1) // LINE_BYTES
        fs = (off + LINE_BYTES - 1) // LINE_BYTES        # first fully covered line
        fe = (off + n) // LINE_BYTES                     # end of fully covered lines
        miss = self._fill(s, e, fs, fe)
        self.shadow[off:off + n] = data
        self.dirty[s:e] = True
        self._evict_if_full(s, e)
        return miss

    def writeback(self, s: int, e: int, invalidate: bool) -> int:
        """clwb (``invalidate=False``) or clflush over lines s..e-1; returns lines written."""
        d = self.dirty[s:e] & self.valid[s:e]
        nd = int(np.count_nonzero(d))
        if nd:
            idx = np.flatnonzero(d) + s
            self.back2d[idx] = self.shadow2d[idx]
            self.writebacks += nd
        self.dirty[s:e] = False
        if invalidate:
            self.count -= int(np.count_nonzero(self.valid[s:e]))
            self.valid[s:e] = False
        return nd

    def discard(self) -> int:
        """Drop every line without writing back (a crash); returns dirty lines lost."""
        lost = int(np.count_nonzero(self.dirty))
        self.valid[:] = False
        self.dirty[:] = False
        self.count = 0
        return lost

    def writeback_all(self) -> int:
        """Write back every dirty line (an orderly shutdown)."""
        return self._writeback_lines(np.flatnonzero(self.dirty))
