"""Real backends of :class:`CxlMemory`: ``shm:NAME`` (a shared-memory file mapped by several
processes, one per host) and ``/dev/daxX.Y`` (Linux device DAX).

Loads and stores are plain memory accesses through numpy; ``flush``/``writeback``/``fence`` run
``clflushopt``/``clwb``/``sfence`` and ``cas``/``fetch_add`` GCC ``__atomic`` builtins, all in the
C helper of :mod:`._cflush`.  When CPUID lacks clflushopt (or clwb), ``clflush`` is used instead
and :attr:`RealCxlMemory.notes` says so.  On a real pod the hardware coherence may be stronger
than the interface promises; programs tested on ``emu:cxl`` stay correct here.
"""

from __future__ import annotations

import glob
import mmap
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.cxl._alloc import RegionAllocator
from labrig.drivers.cxl._cflush import load_cflush
from labrig.drivers.cxl._host import MemoryBase, MASK64, HostBase, as_bytes_array
from labrig.errors import BackendError, BackendUnavailable, UsageError

__all__ = ["RealCxlHost", "RealCxlMemory", "list_dax_devices", "open_dax", "open_shm", "unlink_shm",
           "shm_available"]

SHM_DIR = Path("/dev/shm")
DAX_SYSFS = Path("/sys/bus/dax/devices")
_FLUSH, _FLUSHOPT, _CLWB = 0, 1, 2


class RealCxlHost(HostBase):
    """A host handle on a real mapping (see :class:`CxlHost`)."""

    def __init__(self, mem: RealCxlMemory, host: int) -> None:
        self._mem = mem
        self.host = host
        self.size = mem.size
        self.coherent_size = mem.coherent_size

    def _view(self) -> NDArray[np.uint8]:
        if self._mem.closed:
            raise UsageError("region is closed")
        return self._mem._arr

    def _load_u8(self, off: int, n: int) -> NDArray[np.uint8]:
        self._check(off, n)
        return self._view()[off:off + n].copy()

    def store(self, off: int, data: bytes | NDArray[np.generic]) -> None:
        arr = as_bytes_array(data)
        self._check(off, len(arr))
        self._view()[off:off + len(arr)] = arr

    def store_nt(self, off: int, data: bytes | NDArray[np.generic]) -> None:
        # store, then clflushopt the lines: same visibility as movnt + sfence
        self.store(off, data)
        self.flush(off, len(as_bytes_array(data)))
        self.fence()

    def flush(self, off: int, n: int) -> None:
        self._check(off, n)
        self._view()
        m = self._mem
        m._lib.labrig_flush(m._ptr + off, n, m._flush_mode)

    def writeback(self, off: int, n: int) -> None:
        self._check(off, n)
        self._view()
        m = self._mem
        m._lib.labrig_flush(m._ptr + off, n, m._wb_mode)

    def fence(self) -> None:
        self._view()
        self._mem._lib.labrig_sfence()

    def _word(self, off: int) -> Any:
        self._check_atomic(off)
        self._view()
        return self._mem._ffi.cast("uint64_t *", self._mem._ptr + off)

    def cas(self, off: int, expected: int, new: int) -> int:
        return int(self._mem._lib.labrig_cas64(self._word(off), expected & MASK64, new & MASK64))

    def fetch_add(self, off: int, value: int) -> int:
        return int(self._mem._lib.labrig_fetch_add64(self._word(off), value & MASK64))

    def clock(self) -> int:
        return time.monotonic_ns()


class RealCxlMemory(MemoryBase):
    """A real shared mapping (implements :class:`CxlMemory`).

    Parameters
    ----------
    mm : mmap.mmap
        The shared mapping; closed by :meth:`close`.
    coherent_size : int
        Bytes at offset 0 treated as the coherent window.
    num_hosts : int
        Hosts that may use the region (one process each).
    name : str
        Device string, for messages.
    """

    def __init__(self, mm: mmap.mmap, coherent_size: int, num_hosts: int, name: str) -> None:
        mod = load_cflush()
        self._ffi, self._lib = mod.ffi, mod.lib
        self._mm = mm
        self.name = name
        self.size = len(mm)
        if not 0 < coherent_size < self.size or coherent_size % 64:
            raise UsageError(f"coherent_size={coherent_size}: must be a multiple of 64 in "
                             f"(0, {self.size})")
        if not 1 <= num_hosts <= 16:
            raise UsageError(f"num_hosts={num_hosts}: must be in 1..16")
        self.coherent_size = coherent_size
        self.noncoherent_size = self.size - coherent_size
        self.num_hosts = num_hosts
        self.closed = False
        self._arr = np.frombuffer(mm, dtype=np.uint8)
        self._cbuf = self._ffi.from_buffer(self._arr)
        self._ptr = self._ffi.cast("char *", self._cbuf)
        flags = int(self._lib.labrig_cpu_flags())
        self.notes: list[str] = []
        self._flush_mode = _FLUSHOPT if flags & 1 else _FLUSH
        self._wb_mode = _CLWB if flags & 2 else self._flush_mode
        if not flags & 1:
            self.notes.append("CPU lacks clflushopt: using clflush")
        if not flags & 2:
            self.notes.append("CPU lacks clwb: writeback() flushes and invalidates")
        self._alloc = RegionAllocator(self.size, coherent_size)
        self._hosts = [RealCxlHost(self, h) for h in range(num_hosts)]

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        del self._ptr
        self._ffi.release(self._cbuf)
        del self._arr
        self._mm.close()

    def __repr__(self) -> str:
        return f"RealCxlMemory({self.name!r}, size={self.size}, coherent={self.coherent_size})"


def shm_available() -> str | None:
    """None when the shm backend can run here, else the reason."""
    if not SHM_DIR.is_dir():
        return f"{SHM_DIR} does not exist"
    try:
        load_cflush()
    except BackendUnavailable as exc:
        return exc.reason
    return None


def open_shm(name: str, *, size: int = 64 << 20, coherent_size: int = 2 << 20,
             num_hosts: int = 8, create: bool = True) -> RealCxlMemory:
    """Map ``/dev/shm/labrig-cxl-NAME`` (created zero-filled at ``size`` if absent).

    Every process of the pod opens the same name; the first one creates the file.
    """
    if not name or "/" in name or name.startswith("."):
        raise UsageError(f"shm name {name!r}: must be a plain file name")
    reason = shm_available()
    if reason:
        raise BackendUnavailable(f"shm:{name}", reason)
    path = SHM_DIR / f"labrig-cxl-{name}"
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
    except OSError as exc:
        raise BackendError(f"open {path}", exc.errno or 0) from exc
    try:
        cur = os.fstat(fd).st_size
        if cur == 0:
            os.ftruncate(fd, size)
        elif cur != size:
            raise UsageError(f"shm:{name} exists with size {cur}, asked for {size}")
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as exc:
        raise BackendError(f"mmap {path}", exc.errno or 0) from exc
    finally:
        os.close(fd)
    return RealCxlMemory(mm, coherent_size, num_hosts, f"shm:{name}")


def unlink_shm(name: str) -> None:
    """Remove the shared-memory file of ``shm:NAME`` (if present)."""
    try:
        (SHM_DIR / f"labrig-cxl-{name}").unlink()
    except FileNotFoundError:
        pass


def list_dax_devices() -> list[tuple[str, int, int]]:
    """``[(path, size_bytes, align_bytes)]`` for each devdax device in sysfs."""
    out = []
    for dev in sorted(glob.glob(str(DAX_SYSFS / "dax*"))):
        p = Path(dev)
        try:
            size = int((p / "size").read_text().strip())
            align_f = p / "align"
            align = int(align_f.read_text().strip()) if align_f.exists() else 2 << 20
        except (OSError, ValueError):
            continue
        out.append((f"/dev/{p.name}", size, align))
    return out


def open_dax(path: str, *, coherent_size: int = 2 << 20, num_hosts: int = 8,
             size: int | None = None) -> RealCxlMemory:
    """Map a devdax device ``MAP_SHARED``; length rounded down to the sysfs ``align``."""
    devs = {p: (s, a) for p, s, a in list_dax_devices()}
    if path not in devs:
        raise BackendUnavailable(path, "no such devdax device in /sys/bus/dax/devices")
    dev_size, align = devs[path]
    length = dev_size if size is None else min(size, dev_size)
    length -= length % align
    if length <= coherent_size:
        raise UsageError(f"{path}: mappable length {length} too small (align {align})")
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as exc:
        raise BackendError(f"open {path}", exc.errno or 0) from exc
    try:
        mm = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except OSError as exc:
        raise BackendError(f"mmap {path} length {length}", exc.errno or 0) from exc
    finally:
        os.close(fd)
    return RealCxlMemory(mm, coherent_size, num_hosts, path)
