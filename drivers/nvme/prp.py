"""Physical Region Page (PRP) entries and lists for a data transfer.

NVM Express Base Specification 2.0 section 4.3 ("Physical Region Page Entry and List"):

- PRP Entry 1 (SQE CDW6-7) addresses the first byte; it may carry an offset into its memory
  page, which must be dword aligned (bits 1:0 clear).
- If the transfer ends inside the first page, PRP Entry 2 is unused (0).  If it ends inside
  the second page, PRP Entry 2 is that page's address.  Otherwise PRP Entry 2 points to a PRP
  List: page-aligned entries, one per remaining memory page.
- A PRP List that needs more than one memory page is chained: the last entry of every full
  list page points to the next list page (section 4.3, Figure 87).

List pages come from a :class:`PrpListPool` of DMA memory and go back to it when the command
completes, like SPDK's per-tracker ``prp`` arrays (``nvme_pcie_prp_list_append``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
from numpy.typing import NDArray

from labrig.errors import UsageError

__all__ = ["PRP_ENTRY_BYTES", "PrpListPage", "PrpListPool", "Prps", "build_prps", "page_list"]

#: Size of one PRP entry (a 64-bit address).
PRP_ENTRY_BYTES: Final = 8
#: PRP Entry 1 offsets must be dword aligned (Base spec 2.0 section 4.3).
PRP1_ALIGN: Final = 4
#: List pages allocated per trip to host memory.
DEFAULT_SLAB_PAGES: Final = 16


class _Buffer(Protocol):
    addr: int
    view: NDArray[np.uint8]


class _Memory(Protocol):
    def alloc(self, nbytes: int, align: int = ...) -> _Buffer: ...


@dataclass(frozen=True, slots=True)
class PrpListPage:
    """One page of a PRP list: its bus address and a 64-bit view of its entries."""

    addr: int
    entries: NDArray[np.uint64]


@dataclass(frozen=True, slots=True)
class Prps:
    """The data pointer of one command: PRP Entry 1, PRP Entry 2 and the list pages used
    (to return to the pool on completion)."""

    prp1: int
    prp2: int
    list_pages: tuple[PrpListPage, ...] = ()


class PrpListPool:
    """Page-aligned DMA pages for PRP lists, allocated in slabs and recycled.

    Parameters
    ----------
    memory : HostMemory-like
        Anything with ``alloc(nbytes, align) -> buffer`` whose buffers have ``addr`` and
        ``view`` (the platform's host memory).
    page_size : int
        Controller memory page size in bytes (``2 ** (12 + CC.MPS)``).
    slab_pages : int, optional
        Pages allocated at a time when the pool runs dry.
    """

    def __init__(self, memory: _Memory, page_size: int,
                 slab_pages: int = DEFAULT_SLAB_PAGES) -> None:
        _check_page_size(page_size)
        self.memory = memory
        self.page_size = page_size
        self.slab_pages = max(1, int(slab_pages))
        self._free: list[PrpListPage] = []
        self._slabs: list[_Buffer] = []
        self.pages_total = 0

    @property
    def pages_free(self) -> int:
        return len(self._free)

    def get(self) -> PrpListPage:
        """A list page (contents undefined until written)."""
        if not self._free:
            self._grow()
        return self._free.pop()

    def put(self, page: PrpListPage) -> None:
        """Return a page taken with :meth:`get`."""
        self._free.append(page)

    def _grow(self) -> None:
        ps = self.page_size
        slab = self.memory.alloc(ps * self.slab_pages, ps)
        self._slabs.append(slab)
        raw = slab.view
        for i in reversed(range(self.slab_pages)):
            entries = raw[i * ps:(i + 1) * ps].view(np.uint64)
            self._free.append(PrpListPage(slab.addr + i * ps, entries))
        self.pages_total += self.slab_pages

    def close(self) -> None:
        """Free every slab (pages still in use become invalid)."""
        for slab in self._slabs:
            free = getattr(slab, "free", None)
            if free is not None:
                free()
        self._slabs.clear()
        self._free.clear()


def _check_page_size(page_size: int) -> None:
    if page_size < 4096 or page_size & (page_size - 1):
        raise UsageError(f"page_size={page_size}: must be a power of two >= 4096")


def page_list(segments: Sequence[tuple[int, int]], page_size: int) -> list[int]:
    """The memory-page addresses a transfer touches, first one with its offset.

    Parameters
    ----------
    segments : sequence of (addr, nbytes)
        Host memory segments in transfer order (one for a contiguous buffer).
    page_size : int
        Controller memory page size.

    Returns
    -------
    list of int
        ``[addr0, page1, page2, ...]``: entry 0 is the first byte's address, every later
        entry a page-aligned address.

    Raises
    ------
    UsageError
        Empty transfer, a zero-length segment, PRP Entry 1 not dword aligned, or a segment
        boundary inside a page: every segment but the first must start on a page boundary and
        every segment but the last must end on one (Base spec 2.0 section 4.3).
    """
    _check_page_size(page_size)
    if not segments:
        raise UsageError("segments: empty transfer")
    mask = page_size - 1
    out: list[int] = []
    last = len(segments) - 1
    for i, (addr, nbytes) in enumerate(segments):
        if nbytes <= 0:
            raise UsageError(f"segments[{i}]: nbytes={nbytes}: must be positive")
        if i == 0:
            if addr % PRP1_ALIGN:
                raise UsageError(f"segments[0]: addr={addr:#x}: PRP Entry 1 must be dword "
                                 "aligned")
        elif addr & mask:
            raise UsageError(f"segments[{i}]: addr={addr:#x}: a middle or last segment must "
                             f"start on a {page_size}-byte page boundary")
        end = addr + nbytes
        if i != last and end & mask:
            raise UsageError(f"segments[{i}]: end={end:#x}: a segment followed by another must "
                             f"end on a {page_size}-byte page boundary")
        out.append(addr)
        out.extend(range((addr & ~mask) + page_size, end, page_size))
    return out


def build_prps(segments: Sequence[tuple[int, int]], page_size: int,
               pool: PrpListPool | None = None) -> Prps:
    """PRP Entry 1/2 and, for transfers over two pages, a (chained) PRP list.

    Parameters
    ----------
    segments : sequence of (addr, nbytes)
        See :func:`page_list`.
    page_size : int
        Controller memory page size.
    pool : PrpListPool, optional
        Where list pages come from; required when the transfer spans more than two pages.

    Returns
    -------
    Prps
        ``list_pages`` must go back to ``pool`` once the command completes.

    Examples
    --------
    >>> build_prps([(0x10000, 4096)], 4096)
    Prps(prp1=65536, prp2=0, list_pages=())
    >>> build_prps([(0x10200, 4096)], 4096)
    Prps(prp1=66048, prp2=69632, list_pages=())
    """
    pages = page_list(segments, page_size)
    if len(pages) == 1:
        return Prps(pages[0], 0)
    if len(pages) == 2:
        return Prps(pages[0], pages[1])
    if pool is None:
        raise UsageError(f"transfer spans {len(pages)} pages: a PRP list pool is required")
    if pool.page_size != page_size:
        raise UsageError(f"pool.page_size={pool.page_size}: must equal page_size={page_size}")
    per_page = page_size // PRP_ENTRY_BYTES
    rest = pages[1:]
    used: list[PrpListPage] = []
    page = pool.get()
    used.append(page)
    i = 0
    n = len(rest)
    while True:
        remaining = n - i
        if remaining <= per_page:
            page.entries[:remaining] = rest[i:]
            break
        take = per_page - 1
        page.entries[:take] = rest[i:i + take]
        i += take
        nxt = pool.get()
        used.append(nxt)
        page.entries[take] = nxt.addr
        page = nxt
    return Prps(pages[0], used[0].addr, tuple(used))
