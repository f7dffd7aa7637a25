"""drivers.gpu emu backend: peer copies over NVLink land intact, complete poll-mode, take
NVLink time, and bad ranges raise UsageError before anything moves."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.drivers.gpu import EmuGpu, GpuDevice
from labrig.errors import UsageError
from labrig.hw import Platform
from labrig.hw.fabric import FlowNetwork, Gpu, dgx_like


def _pair():
    plat = Platform(seed=0)
    net = FlowNetwork(plat, dgx_like(n_servers=1, gpus=4, nics=2))
    return plat, EmuGpu(Gpu(plat, net, "s0.gpu0")), EmuGpu(Gpu(plat, net, "s0.gpu3"))


def _wait(g, n=1):
    out = []
    while len(out) < n:
        got = g.poll()
        assert got or g.pending, "copy vanished"
        out += got
    return out


def test_protocol_and_peer_copy_over_nvlink():
    plat, g0, g3 = _pair()
    assert isinstance(g0, GpuDevice) and g0.name == "s0.gpu0"
    n = 4 << 20
    a, b = g0.alloc(n), g3.alloc(n)
    a.view[:] = np.arange(n, dtype=np.uint64).astype(np.uint8)
    t0 = g0.clock()
    tag = g0.copy_async(b.addr, a.addr, n)
    (c,) = _wait(g0)
    assert c.tag == tag and c.ok and c.reason == ""
    assert np.array_equal(a.view, b.view)
    nvlink = 300e9                     # A100 NVLink, one direction (hw.fabric.gpu)
    assert c.done_ns - t0 >= n / nvlink * 1e9


def test_poll_without_advance_does_not_move_time():
    plat, g0, g3 = _pair()
    a, b = g0.alloc(1 << 16), g3.alloc(1 << 16)
    g0.copy_async(b.addr, a.addr, 1 << 16)
    t = g0.clock()
    assert g0.poll(advance=False) == [] and g0.clock() == t
    assert _wait(g0)[0].ok and g0.idle()


def test_bad_input_raises_usage_error():
    plat, g0, g3 = _pair()
    a, b = g0.alloc(1 << 16), g3.alloc(1 << 16)
    with pytest.raises(UsageError):
        g0.copy_async(b.addr, a.addr, (1 << 16) + 1)        # past the end of a buffer
    with pytest.raises(UsageError):
        g0.copy_async(b.addr, a.addr, 0)
    with pytest.raises(UsageError):
        g0.alloc(0)
    assert g0.pending == 0 and not b.view.any()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 1 << 16), src_off=st.integers(0, 4096), dst_off=st.integers(0, 4096),
       seed=st.integers(0, 2**31))
def test_copied_bytes_equal_source(n, src_off, dst_off, seed):
    plat, g0, g3 = _pair()
    a, b = g0.alloc(n + 4096), g3.alloc(n + 4096)
    a.view[:] = np.random.default_rng(seed).integers(0, 256, a.nbytes, dtype=np.uint8)
    g3.copy_async(b.addr + dst_off, a.addr + src_off, n)     # pulled by the peer GPU
    assert _wait(g3)[0].ok
    assert np.array_equal(b.view[dst_off:dst_off + n], a.view[src_off:src_off + n])
    assert not b.view[:dst_off].any() and not b.view[dst_off + n:].any()
