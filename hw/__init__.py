"""Device models on a virtual-time platform (the device contract of DESIGN.md).

Drivers reach a device only through ``dev.bar0`` (MMIO), DMA into ``plat.memory`` buffers and
``dev.on_interrupt``.  Device families live in sub-packages (:mod:`labrig.hw.nvme`, ...).
"""

from labrig.hw._clock import Event, EventQueue
from labrig.hw._device import Bar, PciDevice
from labrig.hw._memory import DmaBuffer, HostMemory
from labrig.hw._platform import Platform

__all__ = ["Bar", "DmaBuffer", "Event", "EventQueue", "HostMemory", "PciDevice", "Platform"]
