"""Argument checks and typed accessors shared by every backend's host handle."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from labrig.errors import UsageError

__all__ = ["HostBase", "MemoryBase", "as_bytes_array"]

_U64: np.dtype = np.dtype("<u8")
MASK64 = (1 << 64) - 1


def as_bytes_array(data: bytes | bytearray | memoryview | NDArray[np.generic]) -> NDArray[np.uint8]:
    """View ``data`` as a flat uint8 array (copying only when it is not contiguous)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    raise UsageError(f"data of type {type(data).__name__}: expected bytes or a numpy array")


class HostBase(ABC):
    """Bounds and alignment checks; subclasses implement the ``_raw_*`` primitives."""

    host: int
    size: int
    coherent_size: int

    def _check(self, off: int, n: int) -> None:
        if not (isinstance(off, (int, np.integer)) and isinstance(n, (int, np.integer))):
            raise UsageError(f"off={off!r}, n={n!r}: must be integers")
        if off < 0 or n < 0 or off + n > self.size:
            raise UsageError(f"host {self.host}: range [{off}, {off + n}) outside the region "
                             f"[0, {self.size})")

    def _check_atomic(self, off: int) -> None:
        self._check(off, 8)
        if off % 8:
            raise UsageError(f"atomic at off={off}: must be 8-byte aligned")
        if off + 8 > self.coherent_size:
            raise UsageError(f"atomic at off={off}: outside the coherent window "
                             f"[0, {self.coherent_size}); atomics are not coherent there")

    def load_array(self, off: int, dtype: DTypeLike, count: int) -> NDArray[np.generic]:
        dt = np.dtype(dtype)
        raw = self._load_u8(off, dt.itemsize * int(count))
        return raw.view(dt)

    def store_array(self, off: int, arr: NDArray[np.generic]) -> None:
        self.store(off, arr)

    def load_u64(self, off: int) -> int:
        return int(self._load_u8(off, 8).view(_U64)[0])

    def store_u64(self, off: int, value: int) -> None:
        self.store(off, np.array([value & MASK64], dtype=_U64))

    def load(self, off: int, n: int) -> bytes:
        return self._load_u8(off, n).tobytes()

    @abstractmethod
    def _load_u8(self, off: int, n: int) -> NDArray[np.uint8]:
        """A fresh uint8 array with the ``n`` bytes at ``off`` (after the checks)."""

    @abstractmethod
    def store(self, off: int, data: bytes | NDArray[np.generic]) -> None:
        """Store ``data`` at ``off``."""


class MemoryBase:
    """What every :class:`CxlMemory` backend shares: host handles, the allocator, lifetime.

    Subclasses set ``num_hosts``, ``_hosts`` (one :class:`HostBase` each) and ``_alloc`` (a
    ``RegionAllocator``) in ``__init__`` and may extend :meth:`close`.
    """

    num_hosts: int
    closed: bool
    _hosts: list[Any]
    _alloc: Any

    def host(self, i: int) -> Any:
        """Handle of host ``i`` (``UsageError`` outside ``0..num_hosts-1``)."""
        if not 0 <= i < self.num_hosts:
            raise UsageError(f"host {i}: must be in 0..{self.num_hosts - 1}")
        return self._hosts[i]

    def alloc(self, nbytes: int, *, coherent: bool, align: int = 64) -> int:
        """Offset of ``nbytes`` placed in the coherent window or the non-coherent region."""
        return int(self._alloc.alloc(nbytes, coherent=coherent, align=align))

    def free(self, off: int) -> None:
        """Return an allocation made by :meth:`alloc`."""
        self._alloc.free(off)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
