"""Error paths on the emulated NIC, seen through the verbs driver: protection, RNR, retry
exhaustion on a dead wire, flushes, illegal QP transitions, full queues."""

from __future__ import annotations

import errno

import pytest
from conftest import make_pair

from labrig.drivers.verbs import (
    IBV_ACCESS_LOCAL_WRITE,
    IBV_QPS_ERR,
    IBV_QPS_INIT,
    IBV_QPS_RESET,
    IBV_QPS_RTR,
    IBV_QPS_RTS,
    IBV_WC_LOC_LEN_ERR,
    IBV_WC_LOC_PROT_ERR,
    IBV_WC_REM_ACCESS_ERR,
    IBV_WC_REM_INV_REQ_ERR,
    IBV_WC_REM_OP_ERR,
    IBV_WC_RETRY_EXC_ERR,
    IBV_WC_RNR_RETRY_EXC_ERR,
    IBV_WC_SUCCESS,
    IBV_WC_WR_FLUSH_ERR,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_SEND,
    MR,
    SGE,
    QPAttr,
    RecvWR,
    SendWR,
    VerbsError,
    poll_cq,
)
from labrig.hw.fabric.nic.regs import CmdStatus


def _write(a, n, rkey, raddr, wr_id=1, opcode=IBV_WR_RDMA_WRITE):
    wr = SendWR(wr_id=wr_id, opcode=opcode, num_sge=1, sg=[SGE(a.mr.buf, n, a.mr.lkey)])
    wr.set_wr_rdma(rkey, raddr)
    return wr


@pytest.mark.parametrize("case", ["bad_key", "past_end", "before_start", "no_permission"])
def test_remote_access_error_changes_no_byte(emu_pair, case):
    a, b = emu_pair.a, emu_pair.b
    a.mr.write(b"\xAA" * 4096, 4096)
    b.mr.write(b"\x11" * 65536, 65536)
    rkey, raddr, n = b.mr.rkey, b.mr.buf, 4096
    if case == "bad_key":
        rkey ^= 0x1
    elif case == "past_end":
        raddr = b.mr.buf + 65536 - 100
    elif case == "before_start":
        raddr = b.mr.buf - 8
    else:
        ro = MR(b.pd, 4096, IBV_ACCESS_LOCAL_WRITE)   # no REMOTE_WRITE
        ro.write(b"\x22" * 4096, 4096)
        rkey, raddr = ro.rkey, ro.buf
    a.qp.post_send(_write(a, n, rkey, raddr, wr_id=1))
    a.qp.post_send(_write(a, 16, b.mr.rkey, b.mr.buf, wr_id=2))   # behind the failing one
    wcs = poll_cq(a.cq, 2)
    assert [(w.wr_id, w.status) for w in wcs] == [(1, IBV_WC_REM_ACCESS_ERR),
                                                 (2, IBV_WC_WR_FLUSH_ERR)]
    assert b.mr.read(65536) == b"\x11" * 65536
    if case == "no_permission":
        assert ro.read(4096) == b"\x22" * 4096
    assert a.qp.query_state() == IBV_QPS_ERR
    assert b.qp.query_state() == IBV_QPS_ERR          # the responder errs too (IB 9.9.3)


def test_rdma_read_needs_remote_read(emu_pair):
    a, b = emu_pair.a, emu_pair.b
    wo = MR(b.pd, 4096, IBV_ACCESS_LOCAL_WRITE)
    a.mr.write(b"\x33" * 64, 64)
    a.qp.post_send(_write(a, 64, wo.rkey, wo.buf, opcode=IBV_WR_RDMA_READ))
    (wc,) = poll_cq(a.cq, 1)
    assert wc.status == IBV_WC_REM_ACCESS_ERR
    assert a.mr.read(64) == b"\x33" * 64              # the local buffer is untouched


def test_bad_lkey_is_a_local_protection_error(emu_pair):
    a, b = emu_pair.a, emu_pair.b
    wr = SendWR(wr_id=4, opcode=IBV_WR_SEND, num_sge=1, sg=[SGE(a.mr.buf, 64, a.mr.lkey + 1)])
    b.qp.post_recv(RecvWR(wr_id=1, num_sge=1, sg=[SGE(b.mr.buf, 64, b.mr.lkey)]))
    a.qp.post_send(wr)
    (wc,) = poll_cq(a.cq, 1)
    assert (wc.wr_id, wc.status) == (4, IBV_WC_LOC_PROT_ERR)
    assert a.qp.query_state() == IBV_QPS_ERR


def test_receive_buffer_too_small(emu_pair):
    a, b = emu_pair.a, emu_pair.b
    b.qp.post_recv(RecvWR(wr_id=1, num_sge=1, sg=[SGE(b.mr.buf, 10, b.mr.lkey)]))
    a.qp.post_send(SendWR(wr_id=2, opcode=IBV_WR_SEND, num_sge=1,
                          sg=[SGE(a.mr.buf, 100, a.mr.lkey)]))
    (rwc,) = poll_cq(b.cq, 1)
    (swc,) = poll_cq(a.cq, 1)
    assert rwc.status == IBV_WC_LOC_LEN_ERR and swc.status == IBV_WC_REM_INV_REQ_ERR


def test_bad_receive_lkey_is_remote_operational_error(emu_pair):
    a, b = emu_pair.a, emu_pair.b
    b.qp.post_recv(RecvWR(wr_id=1, num_sge=1, sg=[SGE(b.mr.buf, 100, 0xDEAD00)]))
    a.qp.post_send(SendWR(wr_id=2, opcode=IBV_WR_SEND, num_sge=1,
                          sg=[SGE(a.mr.buf, 100, a.mr.lkey)]))
    (rwc,) = poll_cq(b.cq, 1)
    (swc,) = poll_cq(a.cq, 1)
    assert rwc.status == IBV_WC_LOC_PROT_ERR and swc.status == IBV_WC_REM_OP_ERR


@pytest.mark.parametrize("kind", ["emu-loopback", "emu-cable"])
def test_rnr_retry_exceeded(kind):
    p = make_pair(kind, rnr_retry=2, min_rnr_timer=1)
    p.a.qp.post_send(SendWR(wr_id=3, opcode=IBV_WR_SEND, num_sge=1,
                            sg=[SGE(p.a.mr.buf, 8, p.a.mr.lkey)]))
    (wc,) = poll_cq(p.a.cq, 1)
    assert wc.status == IBV_WC_RNR_RETRY_EXC_ERR
    assert p.a.ctx._b.dev.engine.stats["rnr_naks"] == 3     # 1 try + rnr_retry 2


def test_rnr_then_recv_posted_succeeds(emu_pair):
    a, b = emu_pair.a, emu_pair.b
    a.mr.write(b"late", 4)
    a.qp.post_send(SendWR(wr_id=3, opcode=IBV_WR_SEND, num_sge=1,
                          sg=[SGE(a.mr.buf, 4, a.mr.lkey)]))
    plat = a.ctx.platform
    plat.run_for(2_000_000)                     # several RNR NAKs (rnr_retry 7 = for ever)
    b.qp.post_recv(RecvWR(wr_id=9, num_sge=1, sg=[SGE(b.mr.buf, 64, b.mr.lkey)]))
    (rwc,) = poll_cq(b.cq, 1)
    (swc,) = poll_cq(a.cq, 1)
    assert rwc.status == swc.status == IBV_WC_SUCCESS and b.mr.read(4) == b"late"


def test_unplugged_cable_gives_retry_exceeded_not_a_hang():
    p = make_pair("emu-cable", timeout=8, retry_cnt=3)
    p.cable.unplug()
    for i in range(3):
        p.a.qp.post_send(_write(p.a, 64, p.b.mr.rkey, p.b.mr.buf, wr_id=i))
    wcs = poll_cq(p.a.cq, 3)
    assert [w.status for w in wcs] == [IBV_WC_RETRY_EXC_ERR, IBV_WC_WR_FLUSH_ERR,
                                       IBV_WC_WR_FLUSH_ERR]
    # 1 try + 3 retries, each after the 4.096 us * 2^8 local ACK timeout
    assert p.a.ctx.clock() >= 3 * 4096 * 2 ** 8


def test_nic_taken_down_gives_retry_exceeded():
    p = make_pair("emu-cable", timeout=4, retry_cnt=1)
    p.nics[1].set_port_up(False)
    p.a.qp.post_send(_write(p.a, 64, p.b.mr.rkey, p.b.mr.buf))
    (wc,) = poll_cq(p.a.cq, 1)
    assert wc.status == IBV_WC_RETRY_EXC_ERR


def test_cable_replugged_within_retries_recovers():
    p = make_pair("emu-cable", timeout=10, retry_cnt=7)
    p.cable.unplug()
    p.a.mr.write(b"\x5A" * 64, 64)
    p.a.qp.post_send(_write(p.a, 64, p.b.mr.rkey, p.b.mr.buf))
    p.a.ctx.platform.run_for(1_000)
    p.cable.plug()
    (wc,) = poll_cq(p.a.cq, 1)
    assert wc.status == IBV_WC_SUCCESS and p.b.mr.read(64) == b"\x5A" * 64


def test_modify_to_error_flushes_both_queues(emu_pair):
    a = emu_pair.a
    a.qp.post_recv(RecvWR(wr_id=100, num_sge=1, sg=[SGE(a.mr.buf, 8, a.mr.lkey)]))
    a.qp.modify(QPAttr(qp_state=IBV_QPS_ERR), 1)
    a.qp.post_send(SendWR(wr_id=101, opcode=IBV_WR_SEND, num_sge=1,
                          sg=[SGE(a.mr.buf, 8, a.mr.lkey)]))
    a.qp.post_recv(RecvWR(wr_id=102, num_sge=1, sg=[SGE(a.mr.buf, 8, a.mr.lkey)]))
    wcs = poll_cq(a.cq, 3)
    assert sorted(w.wr_id for w in wcs) == [100, 101, 102]
    assert {w.status for w in wcs} == {IBV_WC_WR_FLUSH_ERR}


@pytest.mark.parametrize("start,target", [
    (IBV_QPS_RESET, IBV_QPS_RTR), (IBV_QPS_RESET, IBV_QPS_RTS), (IBV_QPS_INIT, IBV_QPS_RTS),
    (IBV_QPS_INIT, IBV_QPS_INIT), (IBV_QPS_RTS, IBV_QPS_RTR), (IBV_QPS_ERR, IBV_QPS_RTS)])
def test_illegal_transition_is_a_command_error(start, target):
    p = make_pair("emu-loopback", connect=False)
    qp = p.a.qp
    from labrig.drivers.verbs import AHAttr, connect_qps
    if start == IBV_QPS_INIT:
        qp.to_init(QPAttr())
    elif start == IBV_QPS_RTS:
        connect_qps(p.a.qp, p.b.qp)
    elif start == IBV_QPS_ERR:
        qp.modify(QPAttr(qp_state=IBV_QPS_ERR), 1)
    with pytest.raises(VerbsError) as exc:
        qp.modify(QPAttr(qp_state=target, ah_attr=AHAttr(dlid=1)), 1)
    assert exc.value.status == CmdStatus.BAD_QP_STATE_ERR
    assert exc.value.error_code == errno.EINVAL
    assert qp.query_state() == start                 # nothing changed


def test_reset_then_reconnect_works(emu_pair):
    from labrig.drivers.verbs import connect_qps
    a, b = emu_pair.a, emu_pair.b
    for s in (a, b):
        s.qp.modify(QPAttr(qp_state=IBV_QPS_RESET), 1)
    connect_qps(a.qp, b.qp)
    a.mr.write(b"again", 5)
    a.qp.post_send(_write(a, 5, b.mr.rkey, b.mr.buf))
    (wc,) = poll_cq(a.cq, 1)
    assert wc.status == IBV_WC_SUCCESS and b.mr.read(5) == b"again"


def test_full_send_queue_raises_enomem(emu_pair):
    a, b = emu_pair.a, emu_pair.b
    sq = a.qp._b.sq_size
    for i in range(sq):
        wr = _write(a, 8, b.mr.rkey, b.mr.buf, wr_id=i)
        wr.send_flags = 0
        a.qp.post_send(wr)
    with pytest.raises(VerbsError) as exc:
        a.qp.post_send(_write(a, 8, b.mr.rkey, b.mr.buf))
    assert exc.value.error_code == errno.ENOMEM


def test_remote_write_mr_without_local_write_is_refused(emu_pair):
    from labrig.drivers.verbs import IBV_ACCESS_REMOTE_WRITE
    with pytest.raises(VerbsError) as exc:
        MR(emu_pair.a.pd, 4096, IBV_ACCESS_REMOTE_WRITE)
    assert exc.value.status == CmdStatus.BAD_PARAM_ERR


def test_destroying_a_busy_pd_is_refused(emu_pair):
    with pytest.raises(VerbsError) as exc:
        emu_pair.a.pd.close()
    assert exc.value.error_code == errno.EBUSY


def test_poll_cq_times_out_when_nothing_can_complete(emu_pair):
    with pytest.raises(VerbsError) as exc:
        poll_cq(emu_pair.a.cq, 1)
    assert exc.value.error_code == errno.ETIMEDOUT
