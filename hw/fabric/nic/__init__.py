"""Register-level RDMA NIC model (issue #8): mlx5-style command queue, UAR doorbells, work
and completion rings in host memory, a memory-key table and RC queue pairs.

- :class:`NicDevice` -- the device (BAR0, MSI-X, port on a wire), :mod:`.regs` its layouts;
- :class:`NicConfig` / :class:`NicTiming` -- limits and sourced timing (ConnectX-6 HDR);
- :class:`Cable` -- a back-to-back cable between two ports (the minimal wire; a
  :class:`labrig.hw.fabric.FlowNetwork` works the same way).

The driver is :mod:`labrig.drivers.verbs` (pyverbs-shaped API).
"""

from labrig.hw.fabric.nic import regs
from labrig.hw.fabric.nic.cable import Cable, CableTransfer
from labrig.hw.fabric.nic.config import NicConfig, NicTiming
from labrig.hw.fabric.nic.device import NicDevice

__all__ = ["Cable", "CableTransfer", "NicConfig", "NicDevice", "NicTiming", "regs"]
