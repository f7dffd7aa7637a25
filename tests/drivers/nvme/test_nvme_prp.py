"""PRP construction (Base spec 2.0 section 4.3): walked the way a controller walks them, the
entries cover exactly the buffer, and long lists chain through their last entry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labrig.drivers.nvme.prp import PrpListPool, build_prps, page_list
from labrig.errors import UsageError
from labrig.hw import Platform

PAGE = 4096


def walk(plat: Platform, prp1: int, prp2: int, nbytes: int, ps: int) -> list[tuple[int, int]]:
    """Follow PRP1/PRP2/lists like a device; returns the (addr, len) pieces, in order."""
    pieces = [(prp1, min(nbytes, ps - prp1 % ps))]
    remaining = nbytes - pieces[0][1]
    if remaining == 0:
        assert prp2 == 0
    elif remaining <= ps:
        assert prp2 % ps == 0
        pieces.append((prp2, remaining))
    else:
        lst, idx, per = prp2, 0, ps // 8
        while remaining:
            entry = int.from_bytes(plat.memory.read(lst + 8 * idx, 8), "little")
            assert entry % ps == 0
            if idx == per - 1 and remaining > ps:
                lst, idx = entry, 0
                continue
            take = min(ps, remaining)
            pieces.append((entry, take))
            remaining -= take
            idx += 1
    return pieces


@given(offset=st.integers(0, PAGE // 4 - 1).map(lambda x: x * 4),
       nbytes=st.integers(1, 600 * PAGE), ps_log=st.sampled_from([12, 13]))
def test_prps_cover_exactly_the_buffer(offset: int, nbytes: int, ps_log: int) -> None:
    ps = 1 << ps_log
    plat = Platform(0)
    buf = plat.memory.alloc(offset + nbytes, align=ps)
    pool = PrpListPool(plat.memory, ps, slab_pages=2)
    prps = build_prps([(buf.addr + offset, nbytes)], ps, pool)
    pieces = walk(plat, prps.prp1, prps.prp2, nbytes, ps)
    pos = buf.addr + offset
    for addr, n in pieces:
        assert addr == pos
        pos += n
    assert pos == buf.addr + offset + nbytes
    pages = -(-(offset % ps + nbytes) // ps)
    assert (len(prps.list_pages) > 0) == (pages > 2)
    for page in prps.list_pages:
        pool.put(page)
    assert pool.pages_free == pool.pages_total


def test_list_chains_through_last_entry_of_full_page() -> None:
    plat = Platform(0)
    npages = 1 + 511 + 511 + 3    # PRP1 page, two chained full list pages, a partial one
    buf = plat.memory.alloc(npages * PAGE)
    pool = PrpListPool(plat.memory, PAGE)
    prps = build_prps([(buf.addr, npages * PAGE)], PAGE, pool)
    assert len(prps.list_pages) == 3
    first, second, third = prps.list_pages
    assert prps.prp2 == first.addr
    assert int(first.entries[511]) == second.addr
    assert int(second.entries[511]) == third.addr
    assert [int(e) for e in first.entries[:2]] == [buf.addr + PAGE, buf.addr + 2 * PAGE]
    assert int(third.entries[2]) == buf.addr + (npages - 1) * PAGE


def test_exactly_full_list_page_does_not_chain() -> None:
    plat = Platform(0)
    npages = 1 + 512
    buf = plat.memory.alloc(npages * PAGE)
    prps = build_prps([(buf.addr, npages * PAGE)], PAGE, PrpListPool(plat.memory, PAGE))
    assert len(prps.list_pages) == 1
    assert int(prps.list_pages[0].entries[511]) == buf.addr + 512 * PAGE


def test_one_and_two_page_transfers_need_no_list() -> None:
    assert build_prps([(0x10000, PAGE)], PAGE).prp2 == 0
    assert build_prps([(0x10ffc, 8)], PAGE).prp2 == 0x11000
    with pytest.raises(UsageError, match="pool"):
        build_prps([(0x10000, 3 * PAGE)], PAGE)


def test_segments_middle_pages_must_be_aligned() -> None:
    assert page_list([(0x1800, 0x800), (0x4000, 0x1000), (0x9000, 0x10)], PAGE) == \
        [0x1800, 0x4000, 0x9000]
    with pytest.raises(UsageError, match=r"segments\[1\]: addr"):
        page_list([(0x1000, 0x1000), (0x4200, 0x100)], PAGE)
    with pytest.raises(UsageError, match=r"segments\[0\]: end"):
        page_list([(0x1000, 0x800), (0x4000, 0x100)], PAGE)
    with pytest.raises(UsageError, match="dword"):
        page_list([(0x1002, 0x10)], PAGE)
    with pytest.raises(UsageError, match="page_size"):
        page_list([(0x1000, 0x10)], 3000)
    with pytest.raises(UsageError, match="empty"):
        page_list([], PAGE)
