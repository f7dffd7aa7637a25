"""A host's load/store port into the pod: the memory-device extension of the device contract.

For a memory device, CPU loads and stores *are* the interface, as MMIO is for NVMe.  A driver
(or a program) running on host ``h`` reaches memory only through ``pod.port(h)``, addressed by
host physical address (HPA):

* ``[0, local_dram_bytes)``: the host's private DRAM (cached, local timing);
* a committed 1-way HDM decoder window: the device's memory.  DPAs below the coherent window
  size are hardware-coherent (uncached here, so every access sees the latest value; 8-byte
  atomics allowed); the rest is non-coherent (per-host write-back cache, no snooping).

An access the hardware would not complete (unmapped HPA, crossing a window, an atomic outside
the coherent window, a crashed host) never raises: loads return all-ones bytes, stores are
dropped, atomics return ``None``, and ``faults`` counts it -- a real CPU would see a
master abort or a machine check, not a Python exception.

Ordering model (x86-64, adversarial): ``clflushopt``/``clwb`` only *start* a write-back; it
completes, and ``clflushopt`` invalidates, at the next ``sfence``/``mfence``.  ``clflush`` is
ordered and completes at once.  A non-temporal store writes memory directly and drops the
host's own copy of the lines it covers (after writing back their other dirty bytes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from labrig.hw.cxl.regs import LINE_BYTES

if TYPE_CHECKING:
    from labrig.hw.cxl.cache import LineCache
    from labrig.hw.cxl.pod import CxlPod

__all__ = ["HostPort"]

_U64 = np.dtype("<u8")


class HostPort:
    """Host ``host``'s CPU view of physical memory.  Obtain with ``pod.port(host)``.

    Attributes
    ----------
    now_ns : int
        This host's local virtual time; each operation advances it by its cost.
    faults : int
        Accesses that did not complete (see module notes).
    """

    def __init__(self, pod: CxlPod, host: int) -> None:
        self.pod = pod
        self.host = host
        self.now_ns = 0
        self.faults = 0
        self.crashed = False
        self.local = np.zeros(pod.cfg.local_dram_bytes, dtype=np.uint8)
        self.local_cache = pod._make_cache(self.local, f"cxl.host{host}.local")
        self.cxl_cache = pod._make_cache(pod.media, f"cxl.host{host}.cxl")
        self._pending: list[tuple[LineCache, int, int, bool]] = []
        t = pod.cfg.timing
        self._lat = {True: t.local_latency_ns, False: t.cxl_latency_ns}
        self._bw = {True: t.local_bw_bytes_per_ns, False: t.cxl_bw_bytes_per_ns}
        self.stats = {"loads": 0, "stores": 0, "flush_lines": 0, "fences": 0, "atomics": 0,
                      "nt_stores": 0, "line_ops": 0}

    # -- address decode ------------------------------------------------------------------------
    def _route(self, hpa: int, n: int) -> tuple[str, int] | None:
        """('local'|'coh'|'ncoh', offset) for an access wholly inside one kind, else None."""
        if self.crashed or n < 0:
            return None
        if 0 <= hpa and hpa + n <= len(self.local):
            return "local", hpa
        w = self.pod.device.hdm.window(hpa)
        if w is None:
            return None
        base, dpa_base, size = w
        if hpa + n > base + size:
            return None
        dpa = dpa_base + (hpa - base)
        coh = self.pod.cfg.coherent_bytes
        if dpa + n <= coh:
            return "coh", dpa
        if dpa >= coh:
            return "ncoh", dpa
        return None

    def _xfer_ns(self, local: bool, nlines: int, misses: int) -> int:
        t = self.pod.cfg.timing
        if misses == 0:
            return t.hit_ns
        return self._lat[local] + int(misses * LINE_BYTES / self._bw[local])

    def _fault(self, n: int = 0) -> NDArray[np.uint8]:
        self.faults += 1
        return np.full(n, 0xFF, dtype=np.uint8)

    # -- loads and stores ----------------------------------------------------------------------
    def load(self, hpa: int, n: int) -> NDArray[np.uint8]:
        """Load ``n`` bytes at ``hpa``; returns a new uint8 array."""
        r = self._route(hpa, n)
        if r is None:
            return self._fault(n)
        kind, off = r
        nlines = (off + n + LINE_BYTES - 1) // LINE_BYTES - off // LINE_BYTES
        self.stats["loads"] += 1
        self.stats["line_ops"] += nlines
        if kind == "coh":
            self.now_ns += self._xfer_ns(False, nlines, nlines)
            return self.pod.media[off:off + n].copy()
        cache = self.local_cache if kind == "local" else self.cxl_cache
        out, misses = cache.load(off, n)
        self.now_ns += self._xfer_ns(kind == "local", nlines, misses)
        return out

    def store(self, hpa: int, data: bytes | NDArray[np.uint8]) -> None:
        """Store ``data`` at ``hpa`` (write-back: invisible to other hosts until written back)."""
        arr = _as_u8(data)
        n = len(arr)
        r = self._route(hpa, n)
        if r is None:
            self._fault()
            return
        kind, off = r
        nlines = (off + n + LINE_BYTES - 1) // LINE_BYTES - off // LINE_BYTES
        self.stats["stores"] += 1
        self.stats["line_ops"] += nlines
        if kind == "coh":
            self.pod.media[off:off + n] = arr
            self.now_ns += self._xfer_ns(False, nlines, nlines)
            return
        cache = self.local_cache if kind == "local" else self.cxl_cache
        misses = cache.store(off, arr)
        self.now_ns += self._xfer_ns(kind == "local", nlines, misses)

    def store_nt(self, hpa: int, data: bytes | NDArray[np.uint8]) -> None:
        """Non-temporal store: straight to memory; the host's own copy of those lines is dropped."""
        arr = _as_u8(data)
        n = len(arr)
        r = self._route(hpa, n)
        if r is None:
            self._fault()
            return
        kind, off = r
        s, e = off // LINE_BYTES, (off + n + LINE_BYTES - 1) // LINE_BYTES
        self.stats["nt_stores"] += 1
        self.stats["line_ops"] += e - s
        if kind == "coh":
            self.pod.media[off:off + n] = arr
        else:
            cache = self.local_cache if kind == "local" else self.cxl_cache
            cache.writeback(s, e, invalidate=True)
            cache.backing[off:off + n] = arr
        local = kind == "local"
        self.now_ns += self.pod.cfg.timing.flush_issue_ns + int((e - s) * LINE_BYTES
                                                                / self._bw[local])

    # -- cache maintenance ---------------------------------------------------------------------
    def _lines(self, hpa: int, n: int) -> tuple[LineCache, int, int] | None:
        r = self._route(hpa, n)
        if r is None:
            self._fault()
            return None
        kind, off = r
        if kind == "coh":
            return None  # coherent lines are not cached here: nothing to do
        cache = self.local_cache if kind == "local" else self.cxl_cache
        return cache, off // LINE_BYTES, (off + n + LINE_BYTES - 1) // LINE_BYTES

    def _flush(self, hpa: int, n: int, invalidate: bool, ordered: bool) -> None:
        t = self._lines(hpa, n)
        if t is None:
            return
        cache, s, e = t
        self.stats["flush_lines"] += e - s
        self.stats["line_ops"] += e - s
        self.now_ns += self.pod.cfg.timing.flush_issue_ns * (e - s)
        if ordered:
            nd = cache.writeback(s, e, invalidate)
            if nd:
                local = cache is self.local_cache
                self.now_ns += self._lat[local] + int(nd * LINE_BYTES / self._bw[local])
        else:
            self._pending.append((cache, s, e, invalidate))

    def clflush(self, hpa: int, n: int) -> None:
        """``clflush`` each line of ``[hpa, hpa+n)``: write back if dirty, invalidate, at once."""
        self._flush(hpa, n, invalidate=True, ordered=True)

    def clflushopt(self, hpa: int, n: int) -> None:
        """``clflushopt`` each line: write back + invalidate, completed by the next fence."""
        self._flush(hpa, n, invalidate=True, ordered=False)

    def clwb(self, hpa: int, n: int) -> None:
        """``clwb`` each line: write back, keep the line valid, completed by the next fence."""
        self._flush(hpa, n, invalidate=False, ordered=False)

    def sfence(self) -> None:
        """Complete every outstanding ``clflushopt``/``clwb`` of this host."""
        if self.crashed:
            self._fault()
            return
        t = self.pod.cfg.timing
        self.stats["fences"] += 1
        cost = t.fence_ns
        written = {True: 0, False: 0}
        for cache, s, e, inv in self._pending:
            written[cache is self.local_cache] += cache.writeback(s, e, inv)
        for local, nd in written.items():
            if nd:
                cost = max(cost, self._lat[local] + int(nd * LINE_BYTES / self._bw[local]))
        self._pending.clear()
        self.now_ns += cost

    mfence = sfence

    # -- coherent atomics ----------------------------------------------------------------------
    def _atomic_off(self, hpa: int) -> int | None:
        r = self._route(hpa, 8)
        if r is None or r[0] != "coh" or hpa % 8:
            self.faults += 1
            return None
        self.stats["atomics"] += 1
        self.stats["line_ops"] += 1
        self.now_ns += self.pod.cfg.timing.cxl_latency_ns + self.pod.cfg.timing.atomic_ns
        return r[1]

    def cas64(self, hpa: int, expected: int, new: int) -> int | None:
        """8-byte compare-and-swap in the coherent window; returns the old value (None: fault)."""
        off = self._atomic_off(hpa)
        if off is None:
            return None
        w = self.pod.media[off:off + 8].view(_U64)
        old = int(w[0])
        if old == expected & 0xFFFF_FFFF_FFFF_FFFF:
            w[0] = new & 0xFFFF_FFFF_FFFF_FFFF
        return old

    def fetch_add64(self, hpa: int, value: int) -> int | None:
        """8-byte fetch-and-add (mod 2**64) in the coherent window; returns the old value."""
        off = self._atomic_off(hpa)
        if off is None:
            return None
        w = self.pod.media[off:off + 8].view(_U64)
        old = int(w[0])
        w[0] = (old + value) & 0xFFFF_FFFF_FFFF_FFFF
        return old

    def compute(self, ns: int) -> None:
        """Spend ``ns`` of local time without touching memory."""
        self.now_ns += max(0, int(ns))


def _as_u8(data: bytes | bytearray | memoryview | NDArray[np.uint8]) -> NDArray[np.uint8]:
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(bytes(data), dtype=np.uint8)
