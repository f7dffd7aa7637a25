"""Host-side driver for the wafer-scale mesh: an ``SdkRuntime``-shaped runtime plus the
program builder (routes, colours, buffers, tasks) that kernels are written against.

Runtimes (``labrig.runtime.waferllm``) import only this package.
"""

from labrig.drivers.mesh._program import Port, Program, check_program, ports
from labrig.drivers.mesh._runtime import LaunchStats, MeshRuntime, MeshStallError
from labrig.hw.mesh import HOST_COLORS, USER_COLORS, PeContext

__all__ = ["HOST_COLORS", "USER_COLORS", "LaunchStats", "MeshRuntime", "MeshStallError",
           "PeContext", "Port", "Program", "check_program", "ports"]
