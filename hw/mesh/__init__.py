"""Wafer-scale mesh model (Cerebras WSE-2-like): PEs with SRAM, a CE and a router each.

See shared/research/wafer.md: WaferLLM's PLMR model (OSDI'25 §3.1) and the Cerebras SDK
programming model (colours, routes, tasks, async fabric DSD ops, memcpy).
"""

from labrig.hw.mesh._ce import PeContext, TaskSpec
from labrig.hw.mesh._config import (
    EAST,
    HOST_COLORS,
    NORTH,
    RAMP,
    SOUTH,
    TIMING_MODES,
    USER_COLORS,
    WEST,
    MeshConfig,
    direction_names,
)
from labrig.hw.mesh._device import MeshDevice, MeshFault, MeshImage
from labrig.hw.mesh._routes import RouteTable
from labrig.hw.mesh._sram import SramOverflow

__all__ = [
    "EAST", "HOST_COLORS", "NORTH", "RAMP", "SOUTH", "TIMING_MODES", "USER_COLORS", "WEST",
    "MeshConfig", "MeshDevice", "MeshFault", "MeshImage", "PeContext", "RouteTable",
    "SramOverflow", "TaskSpec", "direction_names",
]
