"""Base of every emulated PCIe device: a memory-mapped BAR and MSI-X style interrupts.

The BAR dispatches by offset to the device's register handlers, after QEMU's
``MemoryRegionOps`` (``nvme_mmio_read``/``nvme_mmio_write``).  Accesses are checked here once
for every device: an access outside the BAR or not naturally aligned is dropped (reads return
all ones, as a PCIe master abort does), values are truncated to the access width, and the
device handler never sees them -- so a driver cannot make a model raise through its BAR.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from labrig.hw._platform import Platform

__all__ = ["Bar", "PciDevice"]

ALL_ONES_32 = 0xFFFF_FFFF
ALL_ONES_64 = 0xFFFF_FFFF_FFFF_FFFF


class Bar:
    """One memory-mapped register window of a device (``dev.bar0``)."""

    __slots__ = ("_read", "_write", "dropped", "size")

    def __init__(self, size: int, read: Callable[[int, int], int],
                 write: Callable[[int, int, int], None]) -> None:
        self.size = size
        self._read = read      # (offset, width_bytes) -> value
        self._write = write    # (offset, width_bytes, value)
        #: accesses dropped for being out of range or misaligned (for tests and traces)
        self.dropped = 0

    def _ok(self, off: int, width: int) -> bool:
        if 0 <= off and off + width <= self.size and off % width == 0:
            return True
        self.dropped += 1
        return False

    def read32(self, off: int) -> int:
        """32-bit MMIO read; all ones when ``off`` is out of range or misaligned."""
        off = int(off)
        return self._read(off, 4) & ALL_ONES_32 if self._ok(off, 4) else ALL_ONES_32

    def read64(self, off: int) -> int:
        """64-bit MMIO read; all ones when ``off`` is out of range or misaligned."""
        off = int(off)
        return self._read(off, 8) & ALL_ONES_64 if self._ok(off, 8) else ALL_ONES_64

    def write32(self, off: int, value: int) -> None:
        """32-bit MMIO write; dropped when ``off`` is out of range or misaligned."""
        off = int(off)
        if self._ok(off, 4):
            self._write(off, 4, int(value) & ALL_ONES_32)

    def write64(self, off: int, value: int) -> None:
        """64-bit MMIO write; dropped when ``off`` is out of range or misaligned."""
        off = int(off)
        if self._ok(off, 8):
            self._write(off, 8, int(value) & ALL_ONES_64)


class PciDevice(ABC):
    """Common plumbing: platform reference, ``bar0``, and interrupt delivery.

    Subclasses implement ``_mmio_read(off, width)`` and ``_mmio_write(off, width, value)``.
    """

    #: size of BAR0 in bytes; subclasses override
    BAR0_SIZE = 0x1000

    def __init__(self, plat: Platform, name: str) -> None:
        self.plat = plat
        self.name = name
        self.bar0 = Bar(self.BAR0_SIZE, self._mmio_read, self._mmio_write)
        self._irq_handlers: dict[int, Callable[[int], None]] = {}
        self._irq_masked: set[int] = set()
        self.interrupts_raised = 0

    # -- driver side ------------------------------------------------------------------------
    def on_interrupt(self, vector: int, callback: Callable[[int], None] | None) -> None:
        """Register ``callback(vector)`` for an MSI-X vector (``None`` unregisters).

        Interrupts are delivered as platform events at the virtual time the device raises
        them, never inside the register write that caused them.
        """
        if callback is None:
            self._irq_handlers.pop(int(vector), None)
        else:
            self._irq_handlers[int(vector)] = callback

    # -- device side ------------------------------------------------------------------------
    @abstractmethod
    def _mmio_read(self, off: int, width: int) -> int:
        """Value of the register at ``off`` (already range- and alignment-checked)."""

    @abstractmethod
    def _mmio_write(self, off: int, width: int, value: int) -> None:
        """Handle a write of ``value`` (truncated to ``width`` bytes) at ``off``."""

    def raise_interrupt(self, vector: int) -> None:
        """Signal ``vector``; delivered at the current virtual time unless masked."""
        if vector in self._irq_masked:
            return
        cb = self._irq_handlers.get(vector)
        self.interrupts_raised += 1
        if cb is not None:
            self.plat.schedule(0, cb, vector)

    def mask_interrupt(self, vector: int, masked: bool) -> None:
        """Mask or unmask a vector (NVMe INTMS/INTMC use this)."""
        if masked:
            self._irq_masked.add(vector)
        else:
            self._irq_masked.discard(vector)
