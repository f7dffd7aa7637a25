"""Host runtime for the mesh, shaped like the Cerebras ``SdkRuntime``
(https://sdk.cerebras.net/api-docs/sdkruntime-api): ``load``, ``memcpy_h2d``/``memcpy_d2h``
over a rectangle of PEs in ROW_MAJOR order, ``launch`` of an exported function, and per-PE TSC
cycle counters.  Only the emulated backend exists (no Cerebras system off-site; DESIGN.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from labrig.errors import DeviceError, UsageError
from labrig.hw.mesh import MeshConfig, MeshDevice, MeshFault
from labrig.drivers.mesh._program import Program, check_program

__all__ = ["LaunchStats", "MeshRuntime", "MeshStallError"]


class MeshStallError(DeviceError):
    """A launch did not finish: the fabric stalled or the program faulted.  ``status`` is the
    :class:`~labrig.hw.mesh.MeshFault` naming the cycle, stuck PEs and colours."""

    def __init__(self, fault: MeshFault) -> None:
        super().__init__(fault, "mesh launch failed")
        self.fault = fault


@dataclass(frozen=True)
class LaunchStats:
    """Timing of one launch, from the per-PE TSC counters.

    ``cycles`` is max(end) - min(start) over PEs, as WaferLLM's launch scripts compute it
    (tasks only: an async op that finishes after the last task is not counted, as on the
    hardware); ``run_cycles`` is how long the device ran until the fabric was empty;
    ``start``/``end`` are ``(height, width)`` arrays (start -1 where no task ran).
    """

    cycles: int
    start: NDArray[np.int64]
    end: NDArray[np.int64]
    wavelet_hops: int
    run_cycles: int


class MeshRuntime:
    """``SdkRuntime``-shaped driver for a :class:`~labrig.hw.mesh.MeshDevice`.

    Parameters
    ----------
    device : MeshDevice
        The mesh (the caller constructs it; runtimes receive this object).
    """

    def __init__(self, device: MeshDevice) -> None:
        self.device = device
        self.program: Program | None = None

    @property
    def config(self) -> MeshConfig:
        """The mesh configuration."""
        return self.device.cfg

    @property
    def width(self) -> int:
        return self.device.cfg.width

    @property
    def height(self) -> int:
        return self.device.cfg.height

    def clock(self) -> int:
        """Virtual ns of the platform (DESIGN.md "Time")."""
        return self.device.plat.now_ns

    def new_program(self, name: str) -> Program:
        """An empty program sized for this mesh."""
        return Program(name, self.width, self.height)

    def load(self, program: Program) -> None:
        """Check and load ``program``; see :func:`check_program` for the errors."""
        check_program(program, self.width, self.height)
        self.device.load(program.image())
        self.program = program

    def _rect(self, name: str, x0: int, y0: int, w: int, h: int) -> tuple[int, ...]:
        if self.program is None:
            raise UsageError("no program loaded")
        shapes = {n: s for n, s, _ in self.program.buffers}
        if name not in shapes:
            raise UsageError(f"memcpy: no buffer {name!r} in program {self.program.name!r} "
                             f"(have {sorted(shapes)})")
        if not (0 <= x0 and 0 <= y0 and w >= 1 and h >= 1 and x0 + w <= self.width
                and y0 + h <= self.height):
            raise UsageError(f"memcpy rectangle x0={x0}, y0={y0}, w={w}, h={h} is outside the "
                             f"{self.width}x{self.height} mesh")
        return shapes[name]

    def memcpy_h2d(self, name: str, data: NDArray[np.float32], x0: int = 0, y0: int = 0,
                   w: int | None = None, h: int | None = None) -> None:
        """Copy ``data`` into buffer ``name`` of the PEs in the rectangle.

        ``data`` is ROW_MAJOR over the rectangle: shape ``(h, w, *buffer_shape)`` or flat with
        ``h*w*prod(buffer_shape)`` elements ordered [py][px][element].
        """
        w = self.width - x0 if w is None else w
        h = self.height - y0 if h is None else h
        shape = self._rect(name, x0, y0, w, h)
        arr = np.asarray(data, dtype=np.float32)
        need = h * w * int(np.prod(shape, dtype=np.int64))
        if arr.size != need:
            raise UsageError(f"memcpy_h2d {name!r}: {arr.size} elements given, the "
                             f"{w}x{h} rectangle of {shape} buffers holds {need}")
        self.device.host_write(name, y0, x0, arr.reshape(h, w, -1))

    def memcpy_d2h(self, name: str, x0: int = 0, y0: int = 0, w: int | None = None,
                   h: int | None = None) -> NDArray[np.float32]:
        """Copy buffer ``name`` out of the rectangle: shape ``(h, w, *buffer_shape)``."""
        w = self.width - x0 if w is None else w
        h = self.height - y0 if h is None else h
        shape = self._rect(name, x0, y0, w, h)
        return self.device.host_read(name, y0, x0, h, w).reshape(h, w, *shape)

    def launch(self, entry: str, *, max_cycles: int | None = None) -> LaunchStats:
        """Call exported ``entry`` on every PE and run to completion.

        Raises
        ------
        MeshStallError
            Stall/deadlock or program fault, naming the stuck PEs and colours.
        """
        if self.program is None:
            raise UsageError("launch: no program loaded")
        if entry not in self.program.exports:
            raise UsageError(f"launch: {entry!r} is not exported by {self.program.name!r} "
                             f"(exports {sorted(self.program.exports)})")
        dev = self.device
        dev.reset_counters()
        moved0 = dev.wavelets_moved
        cycle0 = dev.cycle
        dev.activate(self.program.exports[entry])
        fault = dev.run(max_cycles)
        if fault is not None:
            dev.fault = None
            raise MeshStallError(fault)
        start, end = dev.tsc()
        ran = start >= 0
        cycles = int(end[ran].max() - start[ran].min()) if ran.any() else 0
        return LaunchStats(cycles, start, end, dev.wavelets_moved - moved0, dev.cycle - cycle0)
