"""Emulated NVMe SSD (labrig.hw.nvme): an NVMe 1.4 controller with NAND timing.

Drivers reach it only through BAR0 registers (:mod:`labrig.hw.nvme.regs`), queues and data in
host memory, and interrupts.  Default drive: Micron 9200 timing (:data:`MICRON_9200`).
"""

from labrig.hw.nvme._controller import ControllerCounters, EnableFault, NvmeController
from labrig.hw.nvme._namespace import Namespace
from labrig.hw.nvme.config import (
    MICRON_9200,
    NamespaceConfig,
    NandTiming,
    NvmeConfig,
    PublishedDrive,
)

__all__ = ["MICRON_9200", "ControllerCounters", "EnableFault", "Namespace", "NamespaceConfig",
           "NandTiming", "NvmeConfig", "NvmeController", "PublishedDrive"]
