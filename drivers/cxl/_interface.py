"""The ``CxlMemory`` interface: a CXL memory region shared by the hosts of a pod.

Every backend (``emu:cxl``, ``shm:NAME``, ``/dev/daxX.Y``) implements it, so a runtime such as
Tigon runs unchanged on the emulator and on real shared memory.

Memory model (what a program may rely on, on every backend)
----------------------------------------------------------
The region is ``size`` bytes at offsets ``0..size``.  Offsets ``[0, coherent_size)`` are the
**coherent window**: loads and stores there are coherent across hosts and 8-byte aligned words
support ``cas`` and ``fetch_add``.  Offsets ``[coherent_size, size)`` are **non-coherent**: each
host caches 64-byte lines privately, so

* a ``load`` may return a stale line until this host invalidates it with ``flush`` + ``fence``;
* a ``store`` is invisible to other hosts until written back with ``writeback``/``flush`` +
  ``fence``, or issued as ``store_nt`` (non-temporal: straight to memory);
* an eviction may write a dirty line back at any moment (so a stale dirty line can overwrite a
  newer value written by another host -- don't keep dirty lines another host may write);
* ``flush``/``writeback`` only *start* the write-back; it has happened once ``fence`` returns.

On the emulator these hazards really happen (adversarially); on real coherent hardware they do
not, so a program correct on the emulator is correct on both.  A host crash
(emulator: ``mem.crash(h)``) loses its dirty lines.

Notes
-----
Modelled on x86-64 ``clflushopt``/``clwb``/``sfence`` semantics and the Pasha/Tigon split into a
small hardware-coherent (HWcc) region and a software-coherent (SWcc) remainder
(shared/research/cxl_tigon.md sections 1.2-1.4).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import DTypeLike, NDArray

__all__ = ["CxlHost", "CxlMemory"]


@runtime_checkable
class CxlHost(Protocol):
    """One host's handle on a :class:`CxlMemory` region (``mem.host(i)``)."""

    host: int

    def load(self, off: int, n: int) -> bytes:
        """Load ``n`` bytes at region offset ``off``."""
        ...

    def store(self, off: int, data: bytes | NDArray[np.generic]) -> None:
        """Store ``data`` at ``off`` (cached; see the module's memory model)."""
        ...

    def load_array(self, off: int, dtype: DTypeLike, count: int) -> NDArray[np.generic]:
        """Load ``count`` items of ``dtype`` (little-endian) at ``off``; shape ``(count,)``."""
        ...

    def store_array(self, off: int, arr: NDArray[np.generic]) -> None:
        """Store the bytes of ``arr`` (C order) at ``off``."""
        ...

    def load_u64(self, off: int) -> int:
        """Load one little-endian 8-byte word."""
        ...

    def store_u64(self, off: int, value: int) -> None:
        """Store one little-endian 8-byte word."""
        ...

    def flush(self, off: int, n: int) -> None:
        """Write back and invalidate the lines of ``[off, off+n)`` (clflushopt); needs ``fence``."""
        ...

    def writeback(self, off: int, n: int) -> None:
        """Write back the lines of ``[off, off+n)``, keeping them cached (clwb); needs ``fence``."""
        ...

    def fence(self) -> None:
        """Complete this host's outstanding flushes and write-backs (sfence)."""
        ...

    def store_nt(self, off: int, data: bytes | NDArray[np.generic]) -> None:
        """Non-temporal store: visible to other hosts without a write-back."""
        ...

    def cas(self, off: int, expected: int, new: int) -> int:
        """8-byte compare-and-swap in the coherent window; returns the previous value."""
        ...

    def fetch_add(self, off: int, value: int) -> int:
        """8-byte fetch-and-add (mod 2**64) in the coherent window; returns the previous value."""
        ...

    def clock(self) -> int:
        """This host's clock in ns: virtual on the emulator, monotonic wall time on hardware."""
        ...


@runtime_checkable
class CxlMemory(Protocol):
    """A CXL memory region shared by ``num_hosts`` hosts; a context manager."""

    size: int
    coherent_size: int
    noncoherent_size: int
    num_hosts: int

    def host(self, i: int) -> CxlHost:
        """Host ``i``'s handle."""
        ...

    def alloc(self, nbytes: int, *, coherent: bool, align: int = 64) -> int:
        """Place ``nbytes`` in the coherent or the non-coherent part; returns the offset."""
        ...

    def free(self, off: int) -> None:
        """Release an allocation made by :meth:`alloc`."""
        ...

    def close(self) -> None:
        """Unmap the region (idempotent)."""
        ...
