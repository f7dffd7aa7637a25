"""The virtual-time platform: clock, event ordering, host memory and MMIO guard rails."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labrig.errors import UsageError
from labrig.hw import Bar, Platform


def test_events_run_in_time_then_schedule_order() -> None:
    plat = Platform(seed=1)
    seen: list[str] = []
    plat.schedule(50, seen.append, "b")
    plat.schedule(10, seen.append, "a")
    plat.schedule(50, seen.append, "c")
    ev = plat.schedule(20, seen.append, "cancelled")
    ev.cancel()
    assert plat.run_until_idle() == 3
    assert seen == ["a", "b", "c"]
    assert plat.now_ns == 50


def test_run_for_and_run_until_advance_the_clock() -> None:
    plat = Platform()
    hits: list[int] = []
    plat.schedule(100, lambda: hits.append(plat.now_ns))
    plat.run_for(40)
    assert plat.now_ns == 40 and hits == []
    plat.run_until(1000)
    assert hits == [100] and plat.now_ns == 1000
    plat.run_until(10)  # never backwards
    assert plat.now_ns == 1000


def test_rng_streams_are_seeded_and_independent() -> None:
    a = Platform(seed=7).rng("dev0").integers(0, 1 << 30, 4)
    b = Platform(seed=7).rng("dev0").integers(0, 1 << 30, 4)
    c = Platform(seed=7).rng("dev1").integers(0, 1 << 30, 4)
    assert (a == b).all() and not (a == c).all()
    plat = Platform()
    plat.rng("x")
    with pytest.raises(ValueError, match="already taken"):
        plat.rng("x")


@given(st.lists(st.tuples(st.integers(1, 20000), st.sampled_from([1, 8, 512, 4096])),
                min_size=1, max_size=8))
def test_alloc_alignment_and_disjointness(reqs: list[tuple[int, int]]) -> None:
    mem = Platform().memory
    bufs = [mem.alloc(n, align=a) for n, a in reqs]
    for buf, (n, a) in zip(bufs, reqs):
        assert buf.addr % a == 0 and buf.nbytes == n and buf.view.dtype == np.uint8
    spans = sorted((b.addr, b.end) for b in bufs)
    assert all(e1 < s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))


def test_read_write_by_address_and_dma_outside_buffers() -> None:
    mem = Platform().memory
    buf = mem.alloc(8192)
    mem.write(buf.addr + 10, b"hello")
    assert bytes(buf.view[10:15]) == b"hello"
    assert mem.read(buf.addr + 10, 5) == b"hello"
    assert mem.dma_view(buf.addr + 8190, 4) is None          # runs off the end
    assert mem.dma_view(buf.end + 1, 1) is None               # guard gap
    assert mem.dma_view(buf.addr - 1, 2) is None
    with pytest.raises(UsageError, match="not inside one allocated buffer"):
        mem.read(buf.end, 1)
    buf.free()
    buf.free()  # idempotent
    assert mem.dma_view(buf.addr, 1) is None
    with pytest.raises(UsageError, match="nbytes=0"):
        mem.alloc(0)
    with pytest.raises(UsageError, match="power of two"):
        mem.alloc(10, align=3)


def test_bar_drops_bad_accesses_without_calling_the_device() -> None:
    calls: list[tuple[int, int, int]] = []
    bar = Bar(0x100, lambda off, w: 0x1234, lambda off, w, v: calls.append((off, w, v)))
    assert bar.read32(0x200) == 0xFFFF_FFFF
    assert bar.read64(0x4) == 0xFFFF_FFFF_FFFF_FFFF      # misaligned 64-bit
    bar.write32(-4, 1)
    bar.write32(0x10, -1)                                # truncated to 32 bits
    assert calls == [(0x10, 4, 0xFFFF_FFFF)]
    assert bar.dropped == 3
