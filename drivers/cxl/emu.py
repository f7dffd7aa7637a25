"""The ``emu:cxl`` backend: a :class:`CxlMemory` on the emulated pod, reached through the
device's registers (HDM decoder commit) and each host's load/store port.

``open_emu(hosts=8, ...)`` builds the platform and pod, runs the register driver
(:class:`~labrig.drivers.cxl.memdev.CxlMemdev`: enumerate, Identify, Get Partition Info, CEL,
vendor Get Pod Layout), commits decoder 0 over the whole capacity at :data:`HPA_BASE` and maps
it.  :meth:`EmuCxlMemory.run`, :meth:`~EmuCxlMemory.crash` and :meth:`~EmuCxlMemory.restart`
are emulator-only (tests and experiments): hosts' programs are generators (see
:mod:`labrig.hw.cxl.pod`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.cxl._alloc import RegionAllocator
from labrig.drivers.cxl._host import MemoryBase, HostBase, as_bytes_array
from labrig.drivers.cxl.memdev import CxlMemdev
from labrig.errors import DeviceError, UsageError
from labrig.hw import Platform
from labrig.hw.cxl import CxlPod, CxlPodConfig, HostPort, RunResult

__all__ = ["EmuCxlHost", "EmuCxlMemory", "HPA_BASE", "open_emu"]

#: Where the driver maps the device in every host's physical address space (above 4 GiB).
HPA_BASE: Final = 0x10_0000_0000


class EmuCxlHost(HostBase):
    """Host ``i``'s handle on the emulated region (see :class:`CxlHost`)."""

    def __init__(self, mem: EmuCxlMemory, port: HostPort) -> None:
        self._mem = mem
        self._port = port
        self.host = port.host
        self.size = mem.size
        self.coherent_size = mem.coherent_size
        self._base = mem.hpa_base

    def _live(self) -> None:
        if self._port.crashed:
            raise UsageError(f"host {self.host} has crashed (restart it first)")
        if self._mem.closed:
            raise UsageError("region is closed")

    def _load_u8(self, off: int, n: int) -> NDArray[np.uint8]:
        self._check(off, n)
        self._live()
        return self._port.load(self._base + off, n)

    def store(self, off: int, data: bytes | NDArray[np.generic]) -> None:
        arr = as_bytes_array(data)
        self._check(off, len(arr))
        self._live()
        self._port.store(self._base + off, arr)

    def store_nt(self, off: int, data: bytes | NDArray[np.generic]) -> None:
        arr = as_bytes_array(data)
        self._check(off, len(arr))
        self._live()
        self._port.store_nt(self._base + off, arr)

    def flush(self, off: int, n: int) -> None:
        self._check(off, n)
        self._live()
        self._port.clflushopt(self._base + off, n)

    def writeback(self, off: int, n: int) -> None:
        self._check(off, n)
        self._live()
        self._port.clwb(self._base + off, n)

    def fence(self) -> None:
        self._live()
        self._port.sfence()

    def cas(self, off: int, expected: int, new: int) -> int:
        self._check_atomic(off)
        self._live()
        old = self._port.cas64(self._base + off, expected, new)
        if old is None:
            raise DeviceError("machine check", f"cas at off={off}")
        return old

    def fetch_add(self, off: int, value: int) -> int:
        self._check_atomic(off)
        self._live()
        old = self._port.fetch_add64(self._base + off, value)
        if old is None:
            raise DeviceError("machine check", f"fetch_add at off={off}")
        return old

    def clock(self) -> int:
        return self._port.now_ns

    def __repr__(self) -> str:
        return f"EmuCxlHost(host={self.host})"


class EmuCxlMemory(MemoryBase):
    """A mapped region of the emulated pod (implements :class:`CxlMemory`).

    Attributes
    ----------
    pod : CxlPod
        The model (inspection, faults).
    memdev : CxlMemdev
        The register driver used to set the region up.
    """

    def __init__(self, pod: CxlPod, memdev: CxlMemdev, hpa_base: int, size: int,
                 coherent_size: int) -> None:
        self.pod = pod
        self.memdev = memdev
        self.hpa_base = hpa_base
        self.size = size
        self.coherent_size = coherent_size
        self.noncoherent_size = size - coherent_size
        self.num_hosts = pod.cfg.hosts
        self.closed = False
        self._alloc = RegionAllocator(size, coherent_size)
        self._hosts = [EmuCxlHost(self, pod.port(h)) for h in range(self.num_hosts)]

    # -- emulator only -------------------------------------------------------------------------
    def run(self, tasks: Mapping[int, Any], *, choices: Sequence[int] | None = None,
            crash_at: Mapping[int, int] | None = None, max_steps: int = 1_000_000) -> RunResult:
        """Run host programs (generators) under a seeded interleaving; see :meth:`CxlPod.run`."""
        return self.pod.run(tasks, choices=choices, crash_at=crash_at, max_steps=max_steps)

    def crash(self, host: int) -> None:
        """Crash a host: its dirty lines are lost and its task stops."""
        self.pod.crash(host)

    def restart(self, host: int) -> None:
        """Restart a crashed host with an empty cache."""
        self.pod.restart(host)

    def __repr__(self) -> str:
        return (f"EmuCxlMemory(hosts={self.num_hosts}, size={self.size}, "
                f"coherent_size={self.coherent_size})")


def map_region(plat: Platform, pod: CxlPod, *, hpa_base: int = HPA_BASE) -> EmuCxlMemory:
    """Bring up the device through its registers and map all of it as one region."""
    memdev = CxlMemdev(plat, pod.device.bar0)
    ident = memdev.identify()
    part = memdev.partition_info()
    if part["active_volatile"] != ident.volatile_bytes:
        raise DeviceError("partition mismatch", "volatile capacity not active")
    layout = memdev.pod_layout()
    if layout.coherent_dpa != 0 or layout.coherent_bytes >= ident.total_bytes:
        raise DeviceError("unsupported layout", f"coherent window {layout}")
    memdev.commit_decoder(0, hpa_base, ident.volatile_bytes)
    return EmuCxlMemory(pod, memdev, hpa_base, ident.volatile_bytes, layout.coherent_bytes)


def open_emu(hosts: int = 8, *, seed: int = 0, config: CxlPodConfig | None = None,
             **cfg: Any) -> EmuCxlMemory:
    """Build a platform and pod and return the mapped region.

    Parameters
    ----------
    hosts : int, optional
        Hosts in the pod (1..16).
    seed : int, optional
        Platform seed (interleavings, evictions).
    config : CxlPodConfig, optional
        Full configuration; otherwise ``CxlPodConfig(hosts=hosts, **cfg)``.

    Examples
    --------
    >>> mem = open_emu(hosts=2, coherent_bytes=1 << 20)
    >>> a, b = mem.host(0), mem.host(1)
    >>> off = mem.alloc(64, coherent=False)
    >>> a.store(off, b"hello"); a.writeback(off, 5); a.fence()
    >>> b.flush(off, 5); b.fence(); b.load(off, 5)
    b'hello'
    """
    plat = Platform(seed=seed)
    pod = CxlPod(plat, config or CxlPodConfig(hosts=hosts, **cfg))
    return map_region(plat, pod)
