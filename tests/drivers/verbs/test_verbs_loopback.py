"""RC loopback on every backend: SEND/RECV, RDMA WRITE (+IMM), RDMA READ, RDMA-write
ping-pong -- the rdma-core ``tests/utils.py:rdma_traffic`` recipe (shared/research/fabric.md
4.1).  The pyverbs cases skip with the reason when no RDMA device opens here."""

from __future__ import annotations

import pytest

from labrig.drivers.verbs import (
    IBV_WC_RDMA_READ,
    IBV_WC_RDMA_WRITE,
    IBV_WC_RECV,
    IBV_WC_RECV_RDMA_WITH_IMM,
    IBV_WC_SEND,
    IBV_WC_SUCCESS,
    IBV_WC_WITH_IMM,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_RDMA_WRITE_WITH_IMM,
    IBV_WR_SEND,
    IBV_WR_SEND_WITH_IMM,
    SGE,
    RecvWR,
    SendWR,
    poll_cq,
)


def _rdma(opcode, wr_id, mr, n, remote, offset=0, roffset=0, imm=0):
    wr = SendWR(wr_id=wr_id, opcode=opcode, num_sge=1, imm_data=imm,
                sg=[SGE(mr.buf + offset, n, mr.lkey)])
    wr.set_wr_rdma(remote.rkey, remote.buf + roffset)
    return wr


def test_send_recv(pair):
    a, b = pair.a, pair.b
    msg = b"labrig says hello over RC" * 8
    a.mr.write(msg, len(msg))
    b.qp.post_recv(RecvWR(wr_id=11, num_sge=1, sg=[SGE(b.mr.buf, 4096, b.mr.lkey)]))
    a.qp.post_send(SendWR(wr_id=22, opcode=IBV_WR_SEND, num_sge=1,
                          sg=[SGE(a.mr.buf, len(msg), a.mr.lkey)]))
    (rwc,) = poll_cq(b.cq, 1)
    (swc,) = poll_cq(a.cq, 1)
    assert (rwc.status, rwc.opcode, rwc.wr_id, rwc.byte_len) == (IBV_WC_SUCCESS, IBV_WC_RECV,
                                                                   11, len(msg))
    assert rwc.qp_num == b.qp.qp_num and not rwc.wc_flags & IBV_WC_WITH_IMM
    assert (swc.status, swc.opcode, swc.wr_id) == (IBV_WC_SUCCESS, IBV_WC_SEND, 22)
    assert b.mr.read(len(msg)) == msg


def test_send_with_imm_scatters_over_two_sges(pair):
    a, b = pair.a, pair.b
    msg = bytes(range(200))
    a.mr.write(msg, 200)
    b.qp.post_recv(RecvWR(wr_id=1, num_sge=2, sg=[SGE(b.mr.buf + 100, 50, b.mr.lkey),
                                                  SGE(b.mr.buf + 1000, 300, b.mr.lkey)]))
    a.qp.post_send(SendWR(wr_id=2, opcode=IBV_WR_SEND_WITH_IMM, imm_data=0xC0FFEE, num_sge=1,
                          sg=[SGE(a.mr.buf, 200, a.mr.lkey)]))
    (rwc,) = poll_cq(b.cq, 1)
    poll_cq(a.cq, 1)
    assert rwc.status == IBV_WC_SUCCESS and rwc.imm_data == 0xC0FFEE
    assert rwc.wc_flags & IBV_WC_WITH_IMM
    assert b.mr.read(50, 100) + b.mr.read(150, 1000) == msg


def test_rdma_write(pair):
    a, b = pair.a, pair.b
    data = bytes((i * 7) & 0xFF for i in range(3000))
    a.mr.write(data, len(data))
    a.qp.post_send(_rdma(IBV_WR_RDMA_WRITE, 5, a.mr, len(data), b.mr, roffset=512))
    (wc,) = poll_cq(a.cq, 1)
    assert (wc.status, wc.opcode, wc.wr_id) == (IBV_WC_SUCCESS, IBV_WC_RDMA_WRITE, 5)
    assert b.mr.read(len(data), 512) == data
    assert b.mr.read(512) == bytes(512)          # nothing outside the target range


def test_rdma_write_with_imm_consumes_a_recv(pair):
    a, b = pair.a, pair.b
    a.mr.write(b"x" * 64, 64)
    b.qp.post_recv(RecvWR(wr_id=77))
    a.qp.post_send(_rdma(IBV_WR_RDMA_WRITE_WITH_IMM, 6, a.mr, 64, b.mr, imm=0xABCD))
    (rwc,) = poll_cq(b.cq, 1)
    (swc,) = poll_cq(a.cq, 1)
    assert (rwc.opcode, rwc.wr_id, rwc.imm_data, rwc.byte_len) == (
        IBV_WC_RECV_RDMA_WITH_IMM, 77, 0xABCD, 64)
    assert swc.status == IBV_WC_SUCCESS and swc.opcode == IBV_WC_RDMA_WRITE
    assert b.mr.read(64) == b"x" * 64


def test_rdma_read(pair):
    a, b = pair.a, pair.b
    b.mr.write(b"remote bytes!" * 10, 130)
    a.qp.post_send(_rdma(IBV_WR_RDMA_READ, 9, a.mr, 130, b.mr, offset=4000))
    (wc,) = poll_cq(a.cq, 1)
    assert (wc.status, wc.opcode, wc.byte_len) == (IBV_WC_SUCCESS, IBV_WC_RDMA_READ, 130)
    assert a.mr.read(130, 4000) == b"remote bytes!" * 10


def test_rdma_write_ping_pong(pair):
    """Each side RDMA-writes a counter into the other's buffer and waits to see the reply
    (the ib_write_lat pattern: the receiver polls memory, not a CQ)."""
    a, b = pair.a, pair.b
    ctx = a.ctx
    rounds = 20
    for i in range(1, rounds + 1):
        for me, peer in ((a, b), (b, a)):
            me.mr.write(i.to_bytes(8, "little") * 8, 64)
            me.qp.post_send(_rdma(IBV_WR_RDMA_WRITE, i, me.mr, 64, peer.mr, roffset=8192))
            (wc,) = poll_cq(me.cq, 1)
            assert wc.status == IBV_WC_SUCCESS
            # the peer sees the value once the write completed at the requester
            assert peer.mr.read(8, 8192) == i.to_bytes(8, "little")
    assert ctx.clock() >= 0


def test_unsignaled_writes_retire_with_the_next_signaled(pair):
    a, b = pair.a, pair.b
    a.mr.write(bytes(range(256)) * 4, 1024)
    for k in range(4):
        wr = _rdma(IBV_WR_RDMA_WRITE, k, a.mr, 256, b.mr, offset=256 * k, roffset=256 * k)
        wr.send_flags = 0 if k < 3 else wr.send_flags
        a.qp.post_send(wr)
    (wc,) = poll_cq(a.cq, 1)
    assert wc.wr_id == 3 and wc.status == IBV_WC_SUCCESS
    assert b.mr.read(1024) == bytes(range(256)) * 4


def test_virtual_latency_is_the_sum_of_the_timing_model():
    """Doorbell -> WQE fetch + send pipeline -> cable (15 ns + 122 B at 25 GB/s) -> receive
    pipeline + DMA -> ACK back (15 ns + 58 B) -> CQE DMA: deterministic virtual time."""
    from labrig.drivers.verbs._bench import verbs_ops_per_second
    from labrig.hw.fabric.nic import NicTiming
    t = NicTiming()
    r = verbs_ops_per_second(ops=50, wire="cable")
    ser = lambda n: -(-n * 8 // 200)          # ns at 200 Gb/s, rounded up  # noqa: E731
    want = (t.wqe_fetch_ns + t.tx_proc_ns + 15 + ser(64 + 58) + t.rx_proc_ns + t.dma_write_ns
            + 15 + ser(58) + t.dma_write_ns)
    assert r["virtual_latency_us"] * 1000 == pytest.approx(want, abs=0.5)
    assert r["ops"] == 50 and r["ops_per_cpu_s"] > 0
