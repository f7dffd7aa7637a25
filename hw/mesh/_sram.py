"""Per-PE SRAM: named buffers laid out SPMD over all PEs, with a hard per-PE capacity.

Enforces the "M" of WaferLLM's PLMR model (§3.1): 48 KB per core on WSE-2.  A buffer is one
numpy array of shape ``(height, width, *shape)``; a PE outside the buffer's ``where`` mask owns
no bytes of it (its slot is never read by a correct program).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from labrig.errors import UsageError

__all__ = ["Sram", "SramOverflow"]


class SramOverflow(UsageError):
    """A buffer does not fit in a PE's SRAM; names the PE, the buffer and the sizes."""

    def __init__(self, pe: tuple[int, int], buffer: str, nbytes: int, used: int,
                 capacity: int) -> None:
        self.pe, self.buffer, self.nbytes, self.used, self.capacity = (pe, buffer, nbytes,
                                                                        used, capacity)
        super().__init__(
            f"SRAM overflow at PE(x={pe[0]}, y={pe[1]}): buffer {buffer!r} needs {nbytes} B, "
            f"{used} B already in use, capacity {capacity} B")


class Sram:
    """Named per-PE buffers with per-PE byte accounting.

    Parameters
    ----------
    height, width : int
        Mesh shape.
    capacity : int
        Bytes per PE.
    """

    def __init__(self, height: int, width: int, capacity: int) -> None:
        self.shape = (height, width)
        self.capacity = capacity
        self.used = np.zeros(self.shape, dtype=np.int64)
        self.buffers: dict[str, NDArray[np.float32]] = {}
        self._owners: dict[str, NDArray[np.bool_]] = {}

    def alloc(self, name: str, shape: tuple[int, ...], where: NDArray[np.bool_] | None = None,
              dtype: type = np.float32) -> NDArray[np.float32]:
        """Allocate ``name`` of per-PE ``shape`` on the PEs in ``where`` (all by default).

        Raises
        ------
        SramOverflow
            The first PE (row-major) where it does not fit.
        ValueError
            ``name`` already allocated.
        """
        if name in self.buffers:
            raise ValueError(f"SRAM buffer {name!r} already allocated")
        mask = np.ones(self.shape, dtype=bool) if where is None else np.asarray(where, bool)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        over = mask & (self.used + nbytes > self.capacity)
        if over.any():
            y, x = (int(v) for v in np.argwhere(over)[0])
            raise SramOverflow((x, y), name, nbytes, int(self.used[y, x]), self.capacity)
        self.used[mask] += nbytes
        arr = np.zeros((*self.shape, *shape), dtype=dtype)
        self.buffers[name] = arr
        self._owners[name] = mask
        return arr

    def __getitem__(self, name: str) -> NDArray[np.float32]:
        try:
            return self.buffers[name]
        except KeyError:
            raise KeyError(f"no SRAM buffer {name!r} (have {sorted(self.buffers)})") from None

    def owners(self, name: str) -> NDArray[np.bool_]:
        """PEs on which ``name`` is allocated."""
        return self._owners[name]
