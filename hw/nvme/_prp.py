"""PRP walking: turn PRP1/PRP2 (and PRP lists) into host-memory views.

Base spec 2.0 section 4.3 "Physical Region Page Entry and List": PRP1 may carry a dword-aligned
offset into its page; every later entry must be page aligned.  Up to two pages, PRP2 is the
second page; beyond that PRP2 points to a PRP list, whose last entry, when the list fills its
page and more entries follow, points to the next list page (chained lists).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from labrig.hw.nvme.spec import GenericSc, NvmeStatus, status

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from labrig.hw._memory import HostMemory

__all__ = ["ST_DATA_TRANSFER", "ST_PRP_OFFSET", "map_prps"]

PRP_ENTRY_BYTES = 8
PRP1_OFFSET_ALIGN_MASK = 0x3        # PRP1 offset must be dword aligned
PRP_LIST_PTR_ALIGN_MASK = 0x7       # a PRP list pointer must be qword aligned

ST_PRP_OFFSET = status(GenericSc.INVALID_PRP_OFFSET, dnr=True)
ST_DATA_TRANSFER = status(GenericSc.DATA_TRANSFER_ERROR)

Views = list["NDArray[np.uint8]"]


def map_prps(mem: HostMemory, prp1: int, prp2: int, nbytes: int,
             page: int) -> Views | NvmeStatus:
    """Host views covering ``nbytes`` described by PRP1/PRP2, or an error status.

    Parameters
    ----------
    mem : HostMemory
        Where the DMA goes.
    prp1, prp2 : int
        The SQE's data pointer.
    nbytes : int
        Transfer length (> 0).
    page : int
        Host memory page size (CC.MPS).

    Returns
    -------
    list of numpy views, or NvmeStatus
        ``INVALID_PRP_OFFSET`` (DNR) for a misaligned entry, ``DATA_TRANSFER_ERROR`` when an
        address is not in host memory.
    """
    if prp1 & PRP1_OFFSET_ALIGN_MASK:
        return ST_PRP_OFFSET
    pmask = page - 1
    first = page - (prp1 & pmask)
    if nbytes <= first:
        v = mem.dma_view(prp1, nbytes)
        return ST_DATA_TRANSFER if v is None else [v]
    addrs = [(prp1, first)]
    rem = nbytes - first
    if rem <= page:
        if prp2 & pmask:
            return ST_PRP_OFFSET
        addrs.append((prp2, rem))
    else:
        if prp2 & PRP_LIST_PTR_ALIGN_MASK:
            return ST_PRP_OFFSET
        list_addr = prp2
        while rem > 0:
            slots = (page - (list_addr & pmask)) // PRP_ENTRY_BYTES
            need = -(-rem // page)
            chained = need > slots
            take = slots - 1 if chained else need
            raw = mem.dma_view(list_addr, (take + chained) * PRP_ENTRY_BYTES)
            if raw is None:
                return ST_DATA_TRANSFER
            entries = struct.unpack_from(f"<{take + chained}Q", raw)
            for e in entries[:take]:
                if e & pmask:
                    return ST_PRP_OFFSET
                k = page if rem > page else rem
                addrs.append((e, k))
                rem -= k
            if chained:
                list_addr = entries[take]
                if list_addr & pmask:
                    return ST_PRP_OFFSET
    views: Views = []
    # Merge physically contiguous entries so large transfers copy in few slices.
    a0, n0 = addrs[0]
    for a, n in addrs[1:]:
        if a == a0 + n0:
            n0 += n
            continue
        v = mem.dma_view(a0, n0)
        if v is None:
            return ST_DATA_TRANSFER
        views.append(v)
        a0, n0 = a, n
    v = mem.dma_view(a0, n0)
    if v is None:
        return ST_DATA_TRANSFER
    views.append(v)
    return views
