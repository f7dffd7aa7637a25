"""Model semantics: caches, staleness, write-back, fences, atomics, crashes, determinism."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.cxl import open_emu
from labrig.drivers.cxl.emu import map_region
from labrig.errors import ConfigError, DeviceError, UsageError
from labrig.hw import Platform
from labrig.hw.cxl import CxlPod, CxlPodConfig
from labrig.testing.cxl import HdmDecoderMachine, MailboxMachine, pod_configs

COH = 1 << 20


def mem2(**kw):
    kw.setdefault("eviction", "never")
    return open_emu(hosts=2, coherent_bytes=COH, local_dram_bytes=4096, **kw)


def test_store_invisible_until_written_back_and_fenced():
    mem = mem2()
    a, b = mem.host(0), mem.host(1)
    off = COH + 128
    a.store(off, b"x" * 8)
    assert b.load(off, 8) == b"\0" * 8
    a.writeback(off, 8)
    b.flush(off, 8); b.fence()
    assert b.load(off, 8) == b"\0" * 8          # a has not fenced yet
    a.fence()
    assert b.load(off, 8) == b"\0" * 8          # b's flush was before a's write-back
    b.flush(off, 8); b.fence()
    assert b.load(off, 8) == b"x" * 8


def test_stale_load_until_invalidated():
    mem = mem2()
    a, b = mem.host(0), mem.host(1)
    off = COH
    assert b.load(off, 4) == b"\0" * 4           # b caches the line
    a.store_nt(off, b"new!")
    assert b.load(off, 4) == b"\0" * 4           # stale hit
    b.flush(off, 4)
    assert b.load(off, 4) == b"\0" * 4           # flush not complete without a fence
    b.fence()
    assert b.load(off, 4) == b"new!"


def test_coherent_window_and_atomics():
    mem = mem2()
    a, b = mem.host(0), mem.host(1)
    a.store_u64(8, 5)
    assert b.load_u64(8) == 5
    assert b.fetch_add(8, 2) == 5 and a.cas(8, 7, 1) == 7 and b.load_u64(8) == 1
    assert a.cas(8, 99, 3) == 1 and a.load_u64(8) == 1
    assert a.fetch_add(8, -2) == 1 and a.load_u64(8) == (1 << 64) - 1
    with pytest.raises(UsageError, match="coherent window"):
        a.cas(COH, 0, 1)
    with pytest.raises(UsageError, match="aligned"):
        a.fetch_add(4, 1)


def test_port_faults_instead_of_raising():
    pod = CxlPod(Platform(0), CxlPodConfig(hosts=1, local_dram_bytes=4096))
    p = pod.port(0)
    assert p.load(1 << 40, 4).tolist() == [0xFF] * 4
    p.store(1 << 40, b"zz")
    assert p.cas64(0, 0, 1) is None               # local DRAM is not the coherent window
    assert p.faults == 3


def test_eviction_writes_dirty_lines_back():
    mem = open_emu(hosts=2, coherent_bytes=COH, local_dram_bytes=4096, cache_lines=4,
                   eviction="random")
    a, b = mem.host(0), mem.host(1)
    for k in range(64):
        a.store(COH + 64 * k, bytes([k + 1]) * 64)
    assert mem.pod.port(0).cxl_cache.count <= 4
    seen = [b.load(COH + 64 * k, 1)[0] for k in range(64)]
    assert sum(1 for k, v in enumerate(seen) if v == k + 1) >= 56


def test_crash_loses_dirty_lines_and_stops_task():
    mem = mem2()
    a, b = mem.host(0), mem.host(1)
    a.store(COH, b"lost")

    def prog():
        while True:
            yield

    res = mem.run({0: prog()}, crash_at={0: 3})
    assert res.crashed == [0]
    assert mem.pod.lost_dirty_lines == 1
    assert b.load(COH, 4) == b"\0" * 4
    with pytest.raises(UsageError, match="crashed"):
        a.load(COH, 4)
    mem.restart(0)
    assert a.load(COH, 4) == b"\0" * 4


def test_same_seed_same_schedule_and_times():
    def go(seed):
        mem = open_emu(hosts=3, seed=seed, coherent_bytes=COH, local_dram_bytes=4096)

        def prog(h):
            for i in range(20):
                h.fetch_add(0, 1)
                yield
                h.store(COH + 64 * h.host, bytes([i]) * 8)
                yield

        res = mem.run({i: prog(mem.host(i)) for i in range(3)})
        return res.schedule, [mem.host(i).clock() for i in range(3)]

    assert go(1) == go(1)
    assert go(1)[0] != go(2)[0]


def test_timing_cxl_slower_than_local_and_bulk_vectorized():
    mem = mem2()
    port = mem.pod.port(0)
    t0 = port.now_ns
    port.load(0, 8)
    local = port.now_ns - t0
    t0 = port.now_ns
    mem.host(0).load(COH + 4096, 8)
    cxl = port.now_ns - t0
    assert cxl > local
    data = np.arange(1 << 16, dtype=np.uint8)
    mem.host(0).store_array(COH, data)
    assert np.array_equal(mem.host(0).load_array(COH, np.uint8, 1 << 16), data)


def test_usage_errors_name_the_value():
    mem = mem2()
    with pytest.raises(UsageError, match="outside the region"):
        mem.host(0).load(mem.size - 2, 4)
    with pytest.raises(UsageError, match="host 5"):
        mem.host(5)
    with pytest.raises(ConfigError, match="hosts=17"):
        CxlPodConfig(hosts=17)
    with pytest.raises(ConfigError, match="coherent_bytes"):
        CxlPodConfig(coherent_bytes=100)
    with pytest.raises(UsageError, match="no room"):
        mem.alloc(2 * COH, coherent=True)
    assert isinstance(DeviceError("x"), Exception)


TestMailboxMachine = MailboxMachine.TestCase
TestMailboxMachine.settings = settings(max_examples=15, stateful_step_count=15, deadline=None)
TestHdmDecoderMachine = HdmDecoderMachine.TestCase
TestHdmDecoderMachine.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)


@settings(max_examples=30)
@given(cfg=pod_configs(), data=st.data())
def test_flush_protocol_any_pod(cfg, data):
    """Writer stores, writes back, fences; reader flushes, fences, loads: always fresh.  A reader
    that skips its flush sees its stale copy when its cache never evicts."""
    plat = Platform(0)
    mem = map_region(plat, CxlPod(plat, cfg))
    w, r = data.draw(st.permutations(range(cfg.hosts)))[:2]
    off = cfg.coherent_bytes + 64 * data.draw(st.integers(0, 1000))
    n = data.draw(st.integers(1, 200))
    old = mem.host(r).load(off, n)
    new = bytes((b + 1) % 256 for b in old)
    mem.host(w).store(off, new)
    mem.host(w).writeback(off, n)
    mem.host(w).fence()
    if cfg.eviction == "never":
        assert mem.host(r).load(off, n) == old
    mem.host(r).flush(off, n)
    mem.host(r).fence()
    assert mem.host(r).load(off, n) == new


def test_task_may_crash_another_host():
    mem = mem2()

    def victim():
        while True:
            yield

    def killer():
        yield
        mem.crash(0)
        yield

    res = mem.run({0: victim(), 1: killer()}, choices=[1, 1, 1])
    assert res.crashed == [0] and res.finished == [1]
