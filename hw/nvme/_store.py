"""Namespace data stores: sparse in memory (default) or a sparse backing file.

Both store bytes by namespace byte offset in fixed 4 KiB chunks and know which chunks were
ever written (reads of unwritten or deallocated chunks return zeros and cost no NAND time,
after FEMU's timing-model note, research notes 3.2).  A 1 TiB namespace costs nothing until
written: memory grows by one 4 KiB array per chunk touched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["CHUNK_BYTES", "FileStore", "MemoryStore", "Snapshot"]

#: Allocation unit of the stores (one 4 KiB block, or eight 512 B blocks).
CHUNK_BYTES = 4096
CHUNK_SHIFT = 12

#: What a range held before a write: ``[(offset, length, bytes or None)]`` applied in order,
#: None = unwritten (deallocate).
Snapshot = list[tuple[int, int, "bytes | None"]]


class MemoryStore:
    """Sparse bytes: ``{chunk index: uint8[4096]}``, allocated on first write."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._chunks: dict[int, NDArray[np.uint8]] = {}

    @property
    def allocated_bytes(self) -> int:
        """Bytes of chunks holding data."""
        return len(self._chunks) * CHUNK_BYTES

    def is_allocated(self, chunk: int) -> bool:
        """Whether chunk ``chunk`` (offset >> 12) holds written data."""
        return chunk in self._chunks

    @property
    def allocated_test(self) -> Callable[[int], bool]:
        """A fast ``chunk -> bool`` for the timing model (the dict's own membership test)."""
        return self._chunks.__contains__

    def read_into(self, off: int, out: NDArray[np.uint8]) -> None:
        """Copy ``len(out)`` bytes at ``off`` into ``out`` (zeros where unwritten)."""
        n = len(out)
        chunks = self._chunks
        if n == CHUNK_BYTES and not off & (CHUNK_BYTES - 1):     # one aligned block
            c = chunks.get(off >> CHUNK_SHIFT)
            if c is None:
                out[:] = 0
            else:
                out[:] = c
            return
        pos = 0
        while pos < n:
            i, r = divmod(off + pos, CHUNK_BYTES)
            k = min(CHUNK_BYTES - r, n - pos)
            c = chunks.get(i)
            if c is None:
                out[pos:pos + k] = 0
            else:
                out[pos:pos + k] = c[r:r + k]
            pos += k

    def write(self, off: int, data: NDArray[np.uint8]) -> None:
        """Store ``data`` at ``off``."""
        n = len(data)
        chunks = self._chunks
        pos = 0
        while pos < n:
            i, r = divmod(off + pos, CHUNK_BYTES)
            k = min(CHUNK_BYTES - r, n - pos)
            c = chunks.get(i)
            if c is None:
                if k == CHUNK_BYTES:
                    chunks[i] = data[pos:pos + k].copy()
                    pos += k
                    continue
                c = chunks[i] = np.zeros(CHUNK_BYTES, dtype=np.uint8)
            c[r:r + k] = data[pos:pos + k]
            pos += k

    def deallocate(self, off: int, n: int) -> None:
        """Forget ``[off, off + n)``: whole chunks are freed, partial ones zeroed."""
        chunks = self._chunks
        end = off + n
        if n // CHUNK_BYTES > len(chunks):
            # A huge range over a sparse store: visit only the chunks that exist.
            lo, hi = off >> CHUNK_SHIFT, (end - 1) >> CHUNK_SHIFT
            for i in [i for i in chunks if lo <= i <= hi]:
                self._zero_part(i, off, end)
            return
        i = off >> CHUNK_SHIFT
        while i * CHUNK_BYTES < end:
            if i in chunks:
                self._zero_part(i, off, end)
            i += 1

    def _zero_part(self, i: int, off: int, end: int) -> None:
        base = i * CHUNK_BYTES
        a, b = max(off, base) - base, min(end, base + CHUNK_BYTES) - base
        if a == 0 and b == CHUNK_BYTES:
            del self._chunks[i]
        else:
            self._chunks[i][a:b] = 0

    def snapshot(self, off: int, n: int) -> Snapshot:
        """The current contents of ``[off, off + n)`` as undo information (see :meth:`restore`)."""
        chunks = self._chunks
        end = off + n
        if n // CHUNK_BYTES > len(chunks):
            # Sparse: "all unwritten", then the few chunks that do hold data.
            lo, hi = off >> CHUNK_SHIFT, (end - 1) >> CHUNK_SHIFT
            snap: Snapshot = [(off, n, None)]
            idx: list[int] | range = sorted(i for i in chunks if lo <= i <= hi)
        else:
            snap = []
            idx = range(off >> CHUNK_SHIFT, ((end - 1) >> CHUNK_SHIFT) + 1)
        for i in idx:
            base = i * CHUNK_BYTES
            a, b = max(off, base), min(end, base + CHUNK_BYTES)
            c = chunks.get(i)
            snap.append((a, b - a, None if c is None else c[a - base:b - base].tobytes()))
        return snap

    def restore(self, snap: Snapshot) -> None:
        """Put back what :meth:`snapshot` saw."""
        for off, n, data in snap:
            if data is None:
                self.deallocate(off, n)
            else:
                self.write(off, np.frombuffer(data, dtype=np.uint8))


class FileStore(MemoryStore):
    """Bytes in a sparse file of ``capacity_bytes``; unwritten regions stay holes.

    Which chunks hold data is tracked in memory; a file that already has data is treated as
    fully written (its reads are charged NAND time).
    """

    def __init__(self, capacity_bytes: int, path: str) -> None:
        super().__init__(capacity_bytes)
        existed = os.path.exists(path) and os.path.getsize(path) > 0
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(self._fd).st_size < capacity_bytes:
            os.ftruncate(self._fd, capacity_bytes)
        self._written: set[int] = set()
        self._all_written = existed
        self.path = path

    @property
    def allocated_bytes(self) -> int:
        return len(self._written) * CHUNK_BYTES

    def is_allocated(self, chunk: int) -> bool:
        return self._all_written or chunk in self._written

    @property
    def allocated_test(self) -> Callable[[int], bool]:
        return self.is_allocated

    def read_into(self, off: int, out: NDArray[np.uint8]) -> None:
        data = os.pread(self._fd, len(out), off)
        out[:len(data)] = np.frombuffer(data, dtype=np.uint8)
        if len(data) < len(out):
            out[len(data):] = 0

    def write(self, off: int, data: NDArray[np.uint8]) -> None:
        os.pwrite(self._fd, np.ascontiguousarray(data).tobytes(), off)
        for i in range(off >> CHUNK_SHIFT, ((off + len(data) - 1) >> CHUNK_SHIFT) + 1):
            self._written.add(i)

    def deallocate(self, off: int, n: int) -> None:
        end = off + n
        if self._all_written:
            self._zero(off, end)
            return
        # Only chunks this store wrote can hold data: zero just those (a deallocate of a huge
        # range over a sparse file stays cheap).
        lo, hi = off >> CHUNK_SHIFT, (end - 1) >> CHUNK_SHIFT
        for i in sorted(i for i in self._written if lo <= i <= hi):
            a, b = max(off, i * CHUNK_BYTES), min(end, (i + 1) * CHUNK_BYTES)
            self._zero(a, b)
            if b - a == CHUNK_BYTES:
                self._written.discard(i)

    def _zero(self, off: int, end: int) -> None:
        step = 1 << 20                   # bounded pieces: never one huge buffer
        zeros = bytes(min(step, end - off))
        pos = off
        while pos < end:
            k = min(step, end - pos)
            os.pwrite(self._fd, zeros[:k], pos)
            pos += k

    def snapshot(self, off: int, n: int) -> Snapshot:
        return [(off, n, os.pread(self._fd, n, off))]

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
