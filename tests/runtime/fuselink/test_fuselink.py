"""runtime.fuselink on a small 2-server fabric (4 GPUs, 4 NICs each): payloads arrive intact
under both policies, FuseLink spreads one busy pair over idle NICs, keeps each pair on its own
NIC when all are busy, and bad use raises labrig errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrig.errors import ConfigError, DeviceError, UsageError
from labrig.runtime.fuselink import FuseLinkNet, NicMonitor
from labrig.tools.experiments.fuselink import build_fabric

CHUNK = 64 << 10
GPUS = 4


def _fabric():
    return build_fabric(gpus=GPUS, nics=GPUS)


def _connect(net, fab, pairs, n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in pairs:
        lc = net.listen(1, i)
        sc = net.connect(0, i, lc)
        rc = net.accept(lc)
        src, dst = fab.servers[0].gpus[i].alloc(n), fab.servers[1].gpus[i].alloc(n)
        src.view[:] = rng.integers(0, 256, n, dtype=np.uint8)
        out.append((sc, rc, src, dst, net.reg_mr(sc, src), net.reg_mr(rc, dst)))
    return out


@pytest.mark.parametrize("policy", ["baseline", "fuselink"])
@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 9 * CHUNK + 123), seed=st.integers(0, 2**31))
def test_payload_arrives_intact(policy, n, seed):
    fab = _fabric()
    net = FuseLinkNet(fab.servers, policy, chunk_bytes=CHUNK)
    ((sc, rc, src, dst, ms, md),) = _connect(net, fab, [1], n, seed)
    rs, rr = net.isend(sc, ms, n), net.irecv(rc, md, n)
    net.wait(rs, rr)
    assert rr.done and rs.done and np.array_equal(src.view, dst.view)
    assert net.test(rr) == (True, n)


def test_fuselink_one_pair_spreads_over_idle_nics_and_test_waits_for_every_chunk():
    fab = _fabric()
    n = 32 * CHUNK + 5
    net = FuseLinkNet(fab.servers, "fuselink", chunk_bytes=CHUNK)
    ((sc, rc, src, dst, ms, md),) = _connect(net, fab, [0], n)
    rs, rr = net.isend(sc, ms, n), net.irecv(rc, md, n)
    seen_partial = False
    while True:
        done, size = net.test(rr)
        if done:
            break
        assert size == 0
        seen_partial |= bool(dst.view.any())
    assert size == n and rs.done and seen_partial           # chunks landed before done
    assert len({t for t, _ in rr.nics}) == GPUS                # every NIC carried chunks
    assert np.array_equal(src.view, dst.view)
    # borrowed NICs are released when the message completes
    mon = net.monitor(1)
    assert all(mon.borrower("rx", k) is None for k in range(GPUS))


def test_baseline_uses_only_the_nearest_nic():
    fab = _fabric()
    n = 16 * CHUNK
    net = FuseLinkNet(fab.servers, "baseline", chunk_bytes=CHUNK)
    ((sc, rc, src, dst, ms, md),) = _connect(net, fab, [2], n)
    rs, rr = net.isend(sc, ms, n), net.irecv(rc, md, n)
    net.wait(rs, rr)
    assert rr.nics == [(fab.servers[0].gpu_nic[2], fab.servers[1].gpu_nic[2])]
    assert np.array_equal(src.view, dst.view)


def test_all_pairs_busy_each_keeps_its_own_nic():
    fab = _fabric()
    n = 8 * CHUNK
    net = FuseLinkNet(fab.servers, "fuselink", chunk_bytes=CHUNK)
    jobs = _connect(net, fab, range(GPUS), n)
    reqs = [(net.isend(sc, ms, n), net.irecv(rc, md, n)) for sc, rc, _s, _d, ms, md in jobs]
    net.wait(*[r for p in reqs for r in p])
    for i, ((_sc, _rc, src, dst, _ms, _md), (_rs, rr)) in enumerate(zip(jobs, reqs)):
        own = fab.servers[0].gpu_nic[i]
        assert rr.nics == [(own, fab.servers[1].gpu_nic[i])]
        assert np.array_equal(src.view, dst.view)
    assert len({fab.servers[0].gpu_nic[i] for i in range(GPUS)}) == GPUS


def test_receive_shorter_than_send_fails_and_bad_use_raises():
    fab = _fabric()
    net = FuseLinkNet(fab.servers, "fuselink", chunk_bytes=CHUNK)
    ((sc, rc, _src, _dst, ms, md),) = _connect(net, fab, [0], 4 * CHUNK)
    net.isend(sc, ms, 4 * CHUNK)
    rr = net.irecv(rc, md, CHUNK)
    with pytest.raises(DeviceError, match="receive of"):
        net.test(rr)
    with pytest.raises(UsageError):
        net.isend(sc, ms, 4 * CHUNK + 1)
    with pytest.raises(UsageError):
        net.isend(rc, ms, 1)                     # a recv comm cannot send
    with pytest.raises(UsageError):
        net.irecv(rc, ms, 1)                     # memory of the other server
    with pytest.raises(UsageError):
        net.connect(1, 0, net.listen(1, 1))      # same server
    with pytest.raises(ConfigError):
        FuseLinkNet(fab.servers, "spray")
    lone = net.isend(sc, ms, CHUNK)              # nobody posts the receive
    with pytest.raises(DeviceError, match="stalled"):
        net.wait(lone)


def test_monitor_idle_timeout_borrow_and_reclaim():
    mon = NicMonitor(3, timeout_ns=100)
    assert mon.idle_nics("tx", 0) == [0, 1, 2]
    mon.mark_active("tx", 1, 10, owner=True)
    assert mon.idle_nics("tx", 50) == [0, 2] and mon.idle_nics("tx", 110) == [0, 1, 2]
    mon.borrow("tx", 2, "m", 200)
    assert not mon.is_idle("tx", 2, 10_000) and not mon.reclaimed("tx", 2)
    with pytest.raises(UsageError):
        mon.borrow("tx", 2, "other", 200)
    mon.mark_active("tx", 2, 250, owner=True)    # the owner wants its NIC back
    assert mon.reclaimed("tx", 2)
    mon.release("tx", 2, "m", 300)
    assert mon.borrower("tx", 2) is None and mon.is_idle("tx", 2, 400)
    with pytest.raises(UsageError):
        mon.mark_active("up", 0, 0, owner=True)
    with pytest.raises(ConfigError):
        NicMonitor(0)


def test_owner_reclaims_a_lent_nic_mid_message():
    """GPU 2's owner posts on its own NIC while pair 0 borrows it: pair 0 stops putting chunks
    on that NIC, pair 2 keeps its own NIC, and both payloads arrive intact."""
    fab = _fabric()
    n_big, n_small = 64 * CHUNK, 4 * CHUNK
    net = FuseLinkNet(fab.servers, "fuselink", chunk_bytes=CHUNK)
    (big,) = _connect(net, fab, [0], n_big, seed=1)
    (small,) = _connect(net, fab, [2], n_small, seed=2)
    rs, rr = net.isend(big[0], big[4], n_big), net.irecv(big[1], big[5], n_big)
    net.test(rr)                                        # matched: NICs chosen
    nic2 = fab.servers[0].gpu_nic[2]
    assert any(t == nic2 for t, _ in rr.nics)          # pair 0 borrowed GPU 2's NIC
    landed_before = int(np.count_nonzero(big[3].view))
    rs2, rr2 = net.isend(small[0], small[4], n_small), net.irecv(small[1], small[5], n_small)
    assert net.monitor(0).reclaimed("tx", nic2)
    net.wait(rs, rr, rs2, rr2)
    assert rr2.nics == [(nic2, fab.servers[1].gpu_nic[2])]
    assert landed_before < n_big
    for _sc, _rc, src, dst, _ms, _md in (big, small):
        assert np.array_equal(src.view, dst.view)


@pytest.mark.parametrize("policy", ["baseline", "fuselink"])
def test_runs_on_the_queue_model_too(policy):
    fab = build_fabric(gpus=GPUS, nics=GPUS, network="queues")
    n = 8 * CHUNK + 7
    net = FuseLinkNet(fab.servers, policy, chunk_bytes=CHUNK)
    ((sc, rc, src, dst, ms, md),) = _connect(net, fab, [2], n)
    rs, rr = net.isend(sc, ms, n), net.irecv(rc, md, n)
    net.wait(rs, rr)
    assert np.array_equal(src.view, dst.view)
    with pytest.raises(UsageError, match="network"):
        build_fabric(gpus=GPUS, nics=GPUS, network="packets")


@pytest.mark.parametrize("policy", ["baseline", "fuselink"])
def test_clear_to_send_is_an_rdma_write_whose_latency_is_charged(policy):
    fab = _fabric()
    topo = fab.net.topology
    net = FuseLinkNet(fab.servers, policy, chunk_bytes=CHUNK)
    ((sc, rc, src, dst, ms, md),) = _connect(net, fab, [1], 4096)
    times = []
    for _ in range(3):
        t0 = net.now()
        rs, rr = net.isend(sc, ms, 4096), net.irecv(rc, md, 4096)
        net.wait(rs, rr)
        times.append(rr.done_ns - t0)
    lane = next(iter(sc.lanes.values()))
    seq, mask = struct.unpack("<QQ", lane.cts_tx.read(16))
    assert seq == 3 and mask == 1 << lane.tx_nic          # the record landed in host memory
    one_way = topo.path_latency_ns(topo.path(f"s1.nic{lane.rx_nic}", f"s0.nic{lane.tx_nic}"))
    # the CTS crosses the network once before the data does
    assert min(times) >= 2 * one_way
