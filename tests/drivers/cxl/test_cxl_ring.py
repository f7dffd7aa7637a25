"""The SPSC ring in non-coherent memory: correct under every schedule and crash, and each
removed flush/fence is caught (a mutation test of the emulator's staleness)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.cxl import open_emu
from labrig.testing.cxl import FLUSH_SITES, SpscRing, check_delivery, schedules

N = 12


def setup(seed=0, eviction="never", cache_lines=1 << 15):
    mem = open_emu(hosts=2, seed=seed, coherent_bytes=4096, local_dram_bytes=4096,
                   eviction=eviction, cache_lines=cache_lines)
    return mem, SpscRing.create(mem, slots=4, slot_bytes=128)


def run_ring(seed=0, skip=frozenset(), choices=None, crash_at=None, **kw):
    mem, ring = setup(seed, **kw)
    out = []
    res = mem.run({0: ring.producer(mem.host(0), N, skip),
                   1: ring.consumer(mem.host(1), N, out, skip)},
                  choices=choices, crash_at=crash_at, max_steps=5_000)
    return mem, ring, out, res


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("eviction", ["never", "random"])
def test_correct_ring_never_reads_stale(seed, eviction):
    _, _, out, res = run_ring(seed, eviction=eviction, cache_lines=3)
    assert not res.timed_out
    assert out == list(range(1, N + 1))


@pytest.mark.parametrize("site", FLUSH_SITES)
def test_each_removed_flush_is_caught(site):
    failures = 0
    for seed in range(3):
        _, _, out, res = run_ring(seed, skip=frozenset({site}))
        if res.timed_out or out != list(range(1, N + 1)):
            failures += 1
    assert failures == 3, f"removing {site} went unnoticed"


@settings(max_examples=40)
@given(choices=schedules(300), seed=st.integers(0, 3),
       eviction=st.sampled_from(["never", "random"]))
def test_ring_any_schedule(choices, seed, eviction):
    _, _, out, res = run_ring(seed, choices=choices, eviction=eviction, cache_lines=3)
    assert not res.timed_out
    assert out == list(range(1, N + 1))


@settings(max_examples=25)
@given(choices=schedules(200), victim=st.sampled_from([0, 1]), at=st.integers(0, 150),
       seed=st.integers(0, 3))
def test_ring_crash_loses_nothing_published(choices, victim, at, seed):
    mem, ring = setup(seed, eviction="random", cache_lines=3)
    out = []
    prod = ring.producer(mem.host(0), N)
    res = mem.run({0: prod, 1: ring.consumer(mem.host(1), N, out)}, choices=choices,
                  crash_at={victim: at}, max_steps=600)
    check_delivery(out)
    if victim in res.crashed and victim == 1:
        # restart the consumer: it resumes from the coherent head -- no loss, no duplicate
        mem.restart(1)
        rest = []
        res2 = mem.run({0: prod, 1: ring.consumer(mem.host(1), N, rest)}, max_steps=3000)
        assert not res2.timed_out
        check_delivery(out + rest)
        assert len(out + rest) == N
    elif victim in res.crashed:
        # the producer died: every message it published was delivered, intact
        assert len(out) == mem.host(1).load_u64(ring.tail)
    else:
        assert out == list(range(1, N + 1))
