"""``emu`` backend: drives :class:`labrig.hw.fabric.gpu.Gpu` (copies are flows on the
fabric's FlowNetwork, so they share NVLink/PCIe max-min fairly with NIC DMA)."""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from labrig.drivers.gpu._api import CopyCompletion
from labrig.errors import UsageError

__all__ = ["EmuGpu"]


class EmuGpu:
    """A :class:`~labrig.drivers.gpu.GpuDevice` over an emulated GPU.

    Parameters
    ----------
    gpu : labrig.hw.fabric.gpu.Gpu

    Examples
    --------
    >>> from labrig.hw import Platform
    >>> from labrig.hw.fabric import FlowNetwork, Gpu, dgx_like
    >>> plat = Platform(seed=0)
    >>> net = FlowNetwork(plat, dgx_like(n_servers=1))
    >>> g0, g1 = EmuGpu(Gpu(plat, net, "s0.gpu0")), EmuGpu(Gpu(plat, net, "s0.gpu1"))
    >>> a, b = g0.alloc(1 << 16), g1.alloc(1 << 16)
    >>> a.view[:] = 7
    >>> tag = g0.copy_async(b.addr, a.addr, 1 << 16)
    >>> done = []
    >>> while not done:
    ...     done = g0.poll()
    >>> done[0].ok, int(b.view[0])
    (True, 7)
    """

    backend = "emu"

    def __init__(self, gpu: Any) -> None:
        self._gpu = gpu
        self.plat = gpu.plat
        self.name = str(gpu.node)
        self._tags = itertools.count(1)
        self._done: deque[CopyCompletion] = deque()
        self._pending = 0

    def alloc(self, nbytes: int) -> Any:
        """Zeroed device memory (UsageError on a bad size or when HBM is full)."""
        if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 1:
            raise UsageError(f"{self.name}: alloc nbytes={nbytes!r}: must be an int >= 1")
        return self._gpu.alloc(nbytes)

    def free(self, buf: Any) -> None:
        self._gpu.free(buf)

    def copy_async(self, dst_addr: int, src_addr: int, nbytes: int) -> int:
        """Start copying ``nbytes`` from ``src_addr`` to ``dst_addr`` (both on this GPU's
        server: its HBM, a peer's HBM or host memory).  Returns the tag its
        :class:`CopyCompletion` carries.  Bad ranges raise UsageError before anything moves."""
        tag = next(self._tags)

        def ok(now: int) -> None:
            self._pending -= 1
            self._done.append(CopyCompletion(tag, True, int(now)))

        def fail(reason: str) -> None:
            self._pending -= 1
            self._done.append(CopyCompletion(tag, False, self.plat.now_ns, reason))

        self._gpu.copy(int(src_addr), int(dst_addr), nbytes, ok, on_fail=fail)
        self._pending += 1
        return tag

    def poll(self, max_entries: int = 16, *, advance: bool = True) -> list[CopyCompletion]:
        """Reap up to ``max_entries`` finished copies; when none is ready and ``advance``, run
        the emulator to its next event and look once more (poll-mode, DESIGN.md "Time").
        ``advance=False`` only reaps, for loops that poll several devices per pass."""
        if advance and not self._done and self._pending:
            self.plat.step()
        out = []
        while self._done and len(out) < max_entries:
            out.append(self._done.popleft())
        return out

    @property
    def pending(self) -> int:
        """Copies started and not yet reaped or failed."""
        return self._pending

    def idle(self) -> bool:
        """Nothing is pending on the emulator's whole platform."""
        return self.plat.events.next_event_ns is None

    def clock(self) -> int:
        return int(self.plat.now_ns)

    def __repr__(self) -> str:
        return f"EmuGpu({self.name!r})"
