"""The NIC on the fabric's FlowNetwork (dgx_like preset): RDMA between servers' NICs shares
links max-min fairly, and a link taken down ends in RETRY_EXC_ERR."""

from __future__ import annotations

import pytest

from labrig.drivers.verbs import (
    CQ,
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_WC_RETRY_EXC_ERR,
    IBV_WC_SUCCESS,
    IBV_WR_RDMA_WRITE,
    MR,
    PD,
    QP,
    SGE,
    Context,
    QPCap,
    QPInitAttr,
    SendWR,
    connect_qps,
    poll_cq,
)
from labrig.hw import Platform
from labrig.hw.fabric import FlowNetwork, Gpu, dgx_like
from labrig.hw.fabric.nic import NicConfig, NicDevice

ACC = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE


def _side(nic, nbytes, gpu=None):
    ctx = Context(device=nic)
    pd = PD(ctx)
    cq = CQ(ctx, 16)
    qp = QP(pd, QPInitAttr(scq=cq, rcq=cq, cap=QPCap(max_send_wr=8, max_recv_wr=8)))
    mr = MR(pd, nbytes, ACC, buffer=None if gpu is None else gpu.alloc(nbytes))
    return ctx, cq, qp, mr


@pytest.fixture
def fabric():
    plat = Platform(seed=0)
    net = FlowNetwork(plat, dgx_like(n_servers=2))
    return plat, net


def _write(src, dst, n, wr_id=1):
    wr = SendWR(wr_id=wr_id, opcode=IBV_WR_RDMA_WRITE, num_sge=1, sg=[SGE(src.buf, n, src.lkey)])
    wr.set_wr_rdma(dst.rkey, dst.buf)
    return wr


def test_gpu_to_gpu_write_over_the_rail(fabric):
    plat, net = fabric
    n = 4 << 20
    g0, g1 = Gpu(plat, net, "s0.gpu0"), Gpu(plat, net, "s1.gpu0")
    a = _side(NicDevice(plat, NicConfig(node="s0.nic0"), net), n, g0)
    b = _side(NicDevice(plat, NicConfig(node="s1.nic0"), net), n, g1)
    connect_qps(a[2], b[2])
    a[3].write(bytes(range(256)) * (n // 256), n)
    t0 = a[0].clock()
    a[2].post_send(_write(a[3], b[3], n))
    (wc,) = poll_cq(a[1], 1)
    elapsed = a[0].clock() - t0
    assert wc.status == IBV_WC_SUCCESS and b[3].read(n) == a[3].read(n)
    line = 200e9 / 8
    assert n / line * 1e9 < elapsed < 1.2 * n / line * 1e9 + 20_000   # near the 200 Gb/s rail


def test_two_nics_share_a_link_fairly():
    """NIC0 of servers 0 and 1 both write to NIC0 of server 2: the rail's tor0->s2.nic0 link
    is shared max-min fairly, so the two transfers take about twice as long as one alone."""
    plat = Platform(seed=0)
    net = FlowNetwork(plat, dgx_like(n_servers=3))
    n = 2 << 20
    ctx, dcq, dqp, dmr = _side(NicDevice(plat, NicConfig(node="s2.nic0"), net), 2 * n)
    srcs = [_side(NicDevice(plat, NicConfig(node=f"s{k}.nic0"), net), n) for k in (0, 1)]
    for s in srcs:
        q = QP(dqp.pd, QPInitAttr(scq=dcq, rcq=dcq, cap=QPCap(max_send_wr=4, max_recv_wr=4)))
        connect_qps(s[2], q)
    t0 = plat.now_ns
    for k, s in enumerate(srcs):
        wr = _write(s[3], dmr, n)
        wr.remote_addr += k * n
        s[2].post_send(wr)
    for s in srcs:
        (wc,) = poll_cq(s[1], 1)
        assert wc.status == IBV_WC_SUCCESS
    elapsed = plat.now_ns - t0
    alone = n / (200e9 / 8) * 1e9
    assert 1.8 * alone < elapsed < 2.4 * alone


def test_link_down_gives_retry_exceeded(fabric):
    plat, net = fabric
    a = _side(NicDevice(plat, NicConfig(node="s0.nic3"), net), 1 << 20)
    b = _side(NicDevice(plat, NicConfig(node="s1.nic3"), net), 1 << 20)
    connect_qps(a[2], b[2], timeout=10, retry_cnt=2)
    a[2].post_send(_write(a[3], b[3], 1 << 20))
    plat.run_for(5_000)                          # mid-transfer
    net.set_link_up("tor3->s1.nic3", False)
    (wc,) = poll_cq(a[1], 1)
    assert wc.status == IBV_WC_RETRY_EXC_ERR
