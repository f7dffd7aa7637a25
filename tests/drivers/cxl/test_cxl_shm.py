"""The ring on the ``shm:`` backend across real processes, and the real backend's basics.
Skipped with the backend's reason where it cannot run (no compiler, not x86-64)."""

import multiprocessing as mp
import os

import numpy as np
import pytest

from labrig.drivers.cxl import open_shm, unlink_shm
from labrig.drivers.cxl.real import shm_available
from labrig.errors import UsageError
from labrig.testing.cxl import SpscRing, check_delivery, run_ring_host

REASON = shm_available()
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))
SIZE, COH = 1 << 20, 64 << 10


@pytest.fixture
def name():
    n = f"test-{os.getpid()}"
    unlink_shm(n)
    yield n
    unlink_shm(n)


def test_shm_semantics(name):
    with open_shm(name, size=SIZE, coherent_size=COH, num_hosts=2) as mem:
        a, b = mem.host(0), mem.host(1)
        off = mem.alloc(256, coherent=False)
        a.store_array(off, np.arange(32, dtype=np.uint64))
        a.writeback(off, 256)
        a.fence()
        b.flush(off, 256)
        b.fence()
        assert b.load_array(off, np.uint64, 32).tolist() == list(range(32))
        w = mem.alloc(8, coherent=True)
        assert a.fetch_add(w, 5) == 0 and b.cas(w, 5, 9) == 5 and a.load_u64(w) == 9
        with pytest.raises(UsageError, match="coherent window"):
            a.cas(off, 0, 1)
        assert b.clock() > 0


def test_ring_across_processes(name):
    n = 2000
    opts = dict(size=SIZE, coherent_size=COH, num_hosts=2)
    with open_shm(name, **opts) as mem:
        ring = SpscRing.create(mem, slots=8, slot_bytes=128)
    layout = (ring.head, ring.tail, ring.slots_off, ring.slots, ring.slot_bytes)
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        cons = pool.apply_async(run_ring_host, (f"shm:{name}", "consumer", n, layout, opts, 20.0))
        prod = pool.apply_async(run_ring_host, (f"shm:{name}", "producer", n, layout, opts, 20.0))
        assert prod.get(timeout=30) == []
        out = cons.get(timeout=30)
    check_delivery(out)
    assert len(out) == n
