"""GPU model: HBM reachable by bus address, copies over NVLink/PCIe, roofline compute."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labrig.errors import ConfigError, UsageError
from labrig.hw import Platform
from labrig.hw.fabric import (A100_SXM4_80GB, H100_SXM5_80GB, FlowNetwork, Gpu, GpuSpec,
                              GpuTiming, dgx_a100, dgx_h100, locate, make_gpus)


def rig(n_servers=1, topo=None):
    plat = Platform(seed=0)
    net = FlowNetwork(plat, topo or dgx_a100(n_servers))
    return plat, net, make_gpus(plat, net)


def test_hbm_is_platform_memory_with_bus_addresses():
    plat, net, gpus = rig()
    g = gpus["s0.gpu2"]
    buf = g.alloc(1 << 20)
    host = plat.memory.alloc(4096)
    # a NIC's DMA reaches HBM through the platform's memory by bus address (GPUDirect RDMA)
    view = plat.memory.dma_view(buf.addr + 4096, 8)
    view[:] = np.arange(8, dtype=np.uint8)
    assert bytes(buf.view[4096:4104]) == bytes(range(8))
    assert buf.addr % (64 << 10) == 0
    assert locate(plat, buf.addr) == "s0.gpu2" and locate(plat, buf.end - 1) == "s0.gpu2"
    assert locate(plat, buf.end - 1, 2) is None              # runs past the buffer
    assert locate(plat, host.addr) is None                    # host memory
    assert g.owns(buf.addr, buf.nbytes) and not gpus["s0.gpu3"].owns(buf.addr)
    g.free(buf)
    assert locate(plat, buf.addr) is None and g.allocated_bytes == 0


def test_out_of_memory_and_bad_alloc():
    plat, net, gpus = rig()
    g = Gpu(plat, net, "s0.gpu0", spec=GpuSpec("tiny", 1 << 20, 1e12, (("fp16", 1e12),),
                                                 1e11, 1e10, "test"))
    a = g.alloc(768 << 10)
    with pytest.raises(UsageError, match="out of memory"):
        g.alloc(512 << 10)
    a.free()                                                  # freed directly by the caller
    g.alloc(1 << 20)
    with pytest.raises(UsageError, match="nbytes=0"):
        g.alloc(0)


def test_gpu_node_must_be_a_gpu():
    plat, net, _ = rig()
    with pytest.raises(UsageError, match="is a nic, not a gpu"):
        Gpu(plat, net, "s0.nic0")
    with pytest.raises(UsageError, match="unknown node"):
        Gpu(plat, net, "s9.gpu0")


@pytest.mark.parametrize(("src", "dst", "bw"), [
    ("s0.gpu0", "s0.gpu5", A100_SXM4_80GB.nvlink_Bps),    # NVLink through the NVSwitch
    ("s0.gpu0", "host", A100_SXM4_80GB.pcie_Bps),         # device to host over PCIe
    ("host", "s0.gpu7", A100_SXM4_80GB.pcie_Bps),         # host to device
])
def test_copy_moves_bytes_at_link_rate(src, dst, bw):
    plat, net, gpus = rig()
    n = 3 << 20

    def buf(where):
        return plat.memory.alloc(n) if where == "host" else gpus[where].alloc(n)

    a, b = buf(src), buf(dst)
    a.view[:] = np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8)
    done = []
    op = gpus["s0.gpu0"].copy(a.addr, b.addr, n, done.append)
    assert not b.view.any()                                  # nothing lands before the end
    plat.run_until_idle()
    assert np.array_equal(a.view, b.view)
    lat = net.topology.path_latency_ns(op.flow.path)
    assert done == [op.done_ns] == [math.ceil(n / (bw / 1e9)) + lat]


def test_copy_inside_hbm_costs_read_plus_write():
    plat, net, gpus = rig()
    g = gpus["s0.gpu1"]
    buf = g.alloc(2 << 20)
    buf.view[: 1 << 20] = 7
    op = g.copy(buf.addr, buf.addr + (1 << 20), 1 << 20, lambda t: None)
    plat.run_until_idle()
    assert buf.view[(1 << 20):].min() == 7 and op.flow is None
    assert op.done_ns == math.ceil(2 * (1 << 20) / A100_SXM4_80GB.hbm_Bps * 1e9)


def test_copy_errors():
    plat, net, gpus = rig(2)
    g = gpus["s0.gpu0"]
    mine, other = g.alloc(4096), gpus["s1.gpu0"].alloc(4096)
    h1, h2 = plat.memory.alloc(4096), plat.memory.alloc(4096)
    with pytest.raises(UsageError, match="inter-server"):
        g.copy(mine.addr, other.addr, 4096, lambda t: None)
    with pytest.raises(UsageError, match="not inside one allocated buffer"):
        g.copy(mine.addr, mine.addr + 1, 4096, lambda t: None)
    with pytest.raises(UsageError, match="not a GPU operation"):
        g.copy(h1.addr, h2.addr, 16, lambda t: None)
    with pytest.raises(UsageError, match="nbytes=0"):
        g.copy(mine.addr, h1.addr, 0, lambda t: None)


def test_copy_fails_when_nvlink_goes_down_and_leaves_destination_alone():
    plat, net, gpus = rig()
    a, b = gpus["s0.gpu0"].alloc(1 << 20), gpus["s0.gpu1"].alloc(1 << 20)
    a.view[:] = 9
    fails, dones = [], []
    op = gpus["s0.gpu0"].copy(a.addr, b.addr, 1 << 20, dones.append, on_fail=fails.append)
    plat.run_for(100)
    net.set_link_up("s0.nvsw->s0.gpu1", False)
    plat.run_until_idle()
    assert fails == ["link s0.nvsw->s0.gpu1 went down"] and dones == []
    assert op.fail_reason and not b.view.any()


def test_copies_share_pcie_with_nic_traffic():
    plat, net, gpus = rig()
    g = gpus["s0.gpu0"]
    dev, host = g.alloc(64 << 20), plat.memory.alloc(64 << 20)
    op = g.copy(dev.addr, host.addr, 64 << 20, lambda t: None)
    nic = net.transfer("s0.nic0", "s0.cpu", 64 << 20, lambda t: None)
    # both cross s0.pcie0->s0.cpu (32 GB/s): max-min gives each 16 GB/s
    assert net.rate_of(op.flow) == pytest.approx(16e9) and net.rate_of(nic) == pytest.approx(16e9)


# -- compute ---------------------------------------------------------------------------------------
def test_roofline_compute_bound_and_memory_bound():
    plat, net, gpus = rig(topo=dgx_h100(1))
    g = gpus["s0.gpu0"]
    assert g.spec is H100_SXM5_80GB
    # GEMM 8192^3 in fp16: 2*n^3 flops, compute bound
    n = 8192
    flops, nbytes = 2 * n**3, 3 * n * n * 2
    assert g.compute_time_ns(flops, nbytes, "fp16") == math.ceil(flops / 989.5e12 * 1e9)
    # GEMV: memory bound
    assert g.compute_time_ns(2 * n * n, n * n * 2, "fp16") == math.ceil(n * n * 2 / 3.35e12 * 1e9)
    with pytest.raises(UsageError, match="dtype 'fp4'"):
        g.compute_time_ns(1, 1, "fp4")
    with pytest.raises(UsageError, match="finite"):
        g.compute_time_ns(-1, 0)
    with pytest.raises(UsageError, match="'fp8' not supported"):
        rig()[2]["s0.gpu0"].compute_time_ns(1, 1, "fp8")     # A100 has no FP8


def test_compute_runs_in_stream_order():
    plat, net, gpus = rig()
    g = Gpu(plat, net, "s0.gpu0", timing=GpuTiming(kernel_launch_ns=1000))
    done = []
    g.compute(312e12 * 1e-6, 0, lambda t: done.append(("a", t)))        # 1 us + launch
    g.compute(0, 2039e9 * 2e-6, lambda t: done.append(("b", t)))        # 2 us + launch
    assert g.busy_until_ns == 5000
    plat.run_until_idle()
    assert done == [("a", 2000), ("b", 5000)]


@pytest.mark.parametrize(("field", "value"), [("compute_efficiency", 0), ("hbm_efficiency", 1.5),
                                              ("kernel_launch_ns", -1)])
def test_timing_validation(field, value):
    with pytest.raises(ConfigError, match=field):
        GpuTiming(**{field: value})


@given(st.lists(st.tuples(st.sampled_from(range(8)), st.sampled_from(range(8)),
                          st.integers(1, 1 << 16)), min_size=1, max_size=8))
def test_random_copies_deliver_exact_content(copies):
    plat, net, gpus = rig()
    rng = np.random.default_rng(0)
    bufs = {}
    pending = []
    for k, (s, d, n) in enumerate(copies):
        src = gpus[f"s0.gpu{s}"].alloc(n)
        dst = gpus[f"s0.gpu{d}"].alloc(n)
        src.view[:] = rng.integers(0, 256, n, dtype=np.uint8)
        bufs[k] = (src, dst)
        pending.append(gpus[f"s0.gpu{s}"].copy(src.addr, dst.addr, n, lambda t: None))
    plat.run_until_idle()
    for k, (src, dst) in bufs.items():
        assert pending[k].done_ns is not None and np.array_equal(src.view, dst.view)
