"""CXL pod model: N hosts on one multi-headed Type-3 memory device (labrig.hw.cxl).

Registers (BAR0): HDM decoders (CXL 2.0 8.2.5.12) and the mailbox (8.2.8.4) -- see
:mod:`labrig.hw.cxl.regs`.  Memory: each host's :class:`HostPort` (loads, stores, cache
maintenance, fences, coherent atomics), the memory-device extension of the device contract.
"""

from labrig.hw.cxl.config import EVICTION_POLICIES, CxlPodConfig, CxlTiming
from labrig.hw.cxl.device import CxlType3Device
from labrig.hw.cxl.pod import CxlPod, RunResult
from labrig.hw.cxl.port import HostPort

__all__ = ["EVICTION_POLICIES", "CxlPod", "CxlPodConfig", "CxlTiming", "CxlType3Device",
           "HostPort", "RunResult"]
