"""Host memory that devices reach by DMA.

Each allocation is its own zero-filled numpy array (the OS maps pages lazily, so large buffers
cost nothing until touched) placed at a bus address in one flat address space.  Bus addresses
are never reused and a guard gap separates allocations, so a stray DMA lands in no buffer and
is reported to the device, which turns it into a device-visible error (for NVMe, Data Transfer
Error) -- never a Python exception or a write somewhere else (DESIGN.md, "The device contract").
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING

import numpy as np

from labrig.errors import UsageError

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["DmaBuffer", "HostMemory"]

#: First bus address handed out; above 4 GiB so 32-bit truncation bugs in drivers show up.
BUS_BASE = 0x1_0000_0000
#: Unmapped gap after every allocation, so an overrun faults instead of hitting a neighbour.
GUARD_BYTES = 4096
#: Largest single allocation (64 GiB) -- a sanity bound on bad arguments, not a memory limit.
MAX_ALLOC_BYTES = 64 << 30


class DmaBuffer:
    """DMA-able host memory: ``addr`` is what a device sees, ``view`` is the host's numpy view.

    A context manager; :meth:`free` (idempotent) unmaps it, after which device DMA to it fails.
    """

    __slots__ = ("_memory", "addr", "nbytes", "view")

    def __init__(self, memory: HostMemory, addr: int, view: NDArray[np.uint8]) -> None:
        self._memory: HostMemory | None = memory
        self.addr = addr
        self.nbytes = int(view.nbytes)
        self.view = view

    @property
    def end(self) -> int:
        """One past the last bus address of the buffer."""
        return self.addr + self.nbytes

    @property
    def freed(self) -> bool:
        return self._memory is None

    def free(self) -> None:
        """Return the buffer; later DMA to its addresses is an error seen by the device."""
        if self._memory is not None:
            self._memory._release(self)
            self._memory = None

    close = free

    def __enter__(self) -> DmaBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()

    def __repr__(self) -> str:
        return f"DmaBuffer(addr={self.addr:#x}, nbytes={self.nbytes})"


class HostMemory:
    """The platform's host memory: allocate buffers, read and write them by bus address."""

    def __init__(self) -> None:
        self._next = BUS_BASE
        self._starts: list[int] = []
        self._bufs: list[DmaBuffer] = []
        self._last: DmaBuffer | None = None
        self.allocated_bytes = 0

    # -- host side --------------------------------------------------------------------------
    def alloc(self, nbytes: int, align: int = 4096) -> DmaBuffer:
        """Allocate ``nbytes`` of zeroed DMA-able memory aligned to ``align`` (a power of two).

        Raises
        ------
        UsageError
            ``nbytes`` not in 1..64 GiB or ``align`` not a power of two.
        """
        nbytes = int(nbytes)
        align = int(align)
        if not 0 < nbytes <= MAX_ALLOC_BYTES:
            raise UsageError(f"alloc nbytes={nbytes}: must be in 1..{MAX_ALLOC_BYTES}")
        if align <= 0 or align & (align - 1):
            raise UsageError(f"alloc align={align}: must be a power of two")
        addr = (self._next + align - 1) & ~(align - 1)
        self._next = addr + nbytes + GUARD_BYTES
        buf = DmaBuffer(self, addr, np.zeros(nbytes, dtype=np.uint8))
        self._starts.append(addr)
        self._bufs.append(buf)
        self.allocated_bytes += nbytes
        return buf

    def _release(self, buf: DmaBuffer) -> None:
        i = bisect.bisect_left(self._starts, buf.addr)
        if i < len(self._bufs) and self._bufs[i] is buf:
            del self._starts[i]
            del self._bufs[i]
            self.allocated_bytes -= buf.nbytes
        if self._last is buf:
            self._last = None

    def free(self, buf: DmaBuffer) -> None:
        """Same as ``buf.free()``."""
        buf.free()

    def find(self, addr: int, nbytes: int = 1) -> tuple[DmaBuffer, int] | None:
        """The buffer holding ``[addr, addr + nbytes)`` and the offset in it, or ``None``."""
        last = self._last
        if last is not None and last.addr <= addr and addr + nbytes <= last.addr + last.nbytes:
            return last, addr - last.addr
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0 or nbytes < 0:
            return None
        buf = self._bufs[i]
        off = addr - buf.addr
        if off + nbytes > buf.nbytes:
            return None
        self._last = buf
        return buf, off

    def read(self, addr: int, n: int) -> bytes:
        """Host read of ``n`` bytes at bus address ``addr``.

        Raises
        ------
        UsageError
            The range is not inside one live allocation.
        """
        hit = self.find(addr, n)
        if hit is None:
            raise UsageError(f"read addr={addr:#x} n={n}: not inside one allocated buffer")
        buf, off = hit
        return buf.view[off:off + n].tobytes()

    def write(self, addr: int, data: bytes | bytearray | memoryview | NDArray[np.uint8]) -> None:
        """Host write of ``data`` at bus address ``addr`` (see :meth:`read` for errors)."""
        mv = memoryview(data).cast("B")
        hit = self.find(addr, mv.nbytes)
        if hit is None:
            raise UsageError(f"write addr={addr:#x} n={mv.nbytes}: not inside one allocated buffer")
        buf, off = hit
        buf.view[off:off + mv.nbytes] = np.frombuffer(mv, dtype=np.uint8)

    # -- device side (never raise) ----------------------------------------------------------
    def dma_view(self, addr: int, nbytes: int) -> NDArray[np.uint8] | None:
        """A writable view of ``[addr, addr + nbytes)`` for a device's DMA, or ``None`` when
        the range is not inside one live allocation (the device reports the error)."""
        hit = self.find(addr, nbytes)
        if hit is None:
            return None
        buf, off = hit
        return buf.view[off:off + nbytes]
