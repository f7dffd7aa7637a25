"""First-fit allocator over the two parts of a region (coherent window, non-coherent rest).

Allocator metadata lives in the process that creates it, not in CXL memory: on a real
multi-process pod one process (or a deterministic replay in each) lays out shared objects and
publishes their offsets, as Tigon's root slots do (shared/research/cxl_tigon.md 1.2).
"""

from __future__ import annotations

from labrig.errors import UsageError

__all__ = ["RegionAllocator"]


class _Arena:
    def __init__(self, start: int, end: int) -> None:
        self.free: list[tuple[int, int]] = [(start, end)] if end > start else []
        self.used: dict[int, int] = {}

    def alloc(self, n: int, align: int) -> int | None:
        for i, (s, e) in enumerate(self.free):
            a = -(-s // align) * align
            if a + n <= e:
                pieces = [(s, a)] if a > s else []
                if a + n < e:
                    pieces.append((a + n, e))
                self.free[i:i + 1] = pieces
                self.used[a] = n
                return a
        return None

    def release(self, off: int) -> bool:
        n = self.used.pop(off, None)
        if n is None:
            return False
        self.free.append((off, off + n))
        self.free.sort()
        merged: list[tuple[int, int]] = []
        for s, e in self.free:
            if merged and merged[-1][1] == s:
                merged[-1] = (merged[-1][0], e)
            else:
                merged.append((s, e))
        self.free = merged
        return True


class RegionAllocator:
    """Allocates ``[0, coherent)`` and ``[coherent, size)`` separately.

    Parameters
    ----------
    size : int
        Region size in bytes.
    coherent : int
        Size of the coherent window at offset 0.
    """

    def __init__(self, size: int, coherent: int) -> None:
        self.coh = _Arena(0, coherent)
        self.ncoh = _Arena(coherent, size)

    def alloc(self, nbytes: int, *, coherent: bool, align: int = 64) -> int:
        """Offset of a new block of ``nbytes``; ``UsageError`` when the part is full."""
        if nbytes <= 0:
            raise UsageError(f"alloc nbytes={nbytes}: must be > 0")
        if align <= 0 or align & (align - 1):
            raise UsageError(f"alloc align={align}: must be a power of two")
        arena = self.coh if coherent else self.ncoh
        off = arena.alloc(nbytes, align)
        if off is None:
            part = "coherent window" if coherent else "non-coherent region"
            raise UsageError(f"alloc nbytes={nbytes}: no room left in the {part}")
        return off

    def free(self, off: int) -> None:
        """Release the block at ``off``; ``UsageError`` if it is not an allocation."""
        if not (self.coh.release(off) or self.ncoh.release(off)):
            raise UsageError(f"free off={off}: not an allocated block")
