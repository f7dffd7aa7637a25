"""Hypothesis state machine for the RDMA NIC model and the verbs driver.

:class:`VerbsStateMachine` drives two emulated NICs joined by a cable the way an RDMA
program does -- RDMA WRITE/READ, SEND/RECV with immediates, through :mod:`labrig.drivers.verbs`
-- interleaved with misuse (a wrong rkey, a range past the region, no remote permission), a
cable pulled and re-plugged, QPs reset and reconnected, and raw garbage doorbells.  After
every step both registered regions must equal a byte-exact reference (:class:`MemoryModel`):
successful operations change exactly their target range, failed ones change nothing (IB spec
1.4 section 10.6.3), and the device never counts an internal error.  Subclass it and override
:meth:`VerbsStateMachine.make_contexts` to run the same walk on another setup.

Examples
--------
>>> from labrig.testing.verbs import VerbsStateMachine
>>> TestMyNic = VerbsStateMachine.TestCase     # collected by pytest
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from labrig.drivers.verbs import (
    CQ,
    IBV_ACCESS_LOCAL_WRITE,
    IBV_ACCESS_REMOTE_READ,
    IBV_ACCESS_REMOTE_WRITE,
    IBV_QPS_RESET,
    IBV_WC_REM_ACCESS_ERR,
    IBV_WC_RETRY_EXC_ERR,
    IBV_WC_SUCCESS,
    IBV_WR_RDMA_READ,
    IBV_WR_RDMA_WRITE,
    IBV_WR_SEND_WITH_IMM,
    MR,
    PD,
    QP,
    SGE,
    Context,
    QPAttr,
    QPCap,
    QPInitAttr,
    RecvWR,
    SendWR,
    connect_qps,
    poll_cq,
)
from labrig.hw import Platform
from labrig.hw.fabric.nic import Cable, NicConfig, NicDevice, regs

__all__ = ["MemoryModel", "VerbsStateMachine", "payloads"]

#: bytes in each side's registered region (small, so operations overlap often)
REGION_BYTES = 4096
#: short transport timers so a dead cable resolves fast in virtual time
TIMEOUT = 4          # 4.096 us * 2^4
RETRY_CNT = 1


def payloads(max_size: int = 512) -> st.SearchStrategy[bytes]:
    """Message bodies, empty ones included."""
    return st.binary(min_size=0, max_size=max_size)


class MemoryModel:
    """What each side's region must hold: a bytearray per side."""

    def __init__(self, nbytes: int) -> None:
        self.mem = [bytearray(nbytes), bytearray(nbytes)]

    def write(self, side: int, offset: int, data: bytes) -> None:
        self.mem[side][offset:offset + len(data)] = data


class VerbsStateMachine(RuleBasedStateMachine):
    """Driver-visible walk over two emulated NICs on a cable, checked against a reference."""

    #: whether the QP pair is connected (RTS) -- false after an error completion
    connected = False

    # -- construction hook ------------------------------------------------------------------
    def make_contexts(self) -> tuple[Any, Any, Any]:
        """``(ctx_a, ctx_b, cable)``; override to test another topology or driver."""
        plat = Platform(seed=0)
        cable = Cable(plat, "nicA", "nicB")
        a = NicDevice(plat, NicConfig(node="nicA"), cable)
        b = NicDevice(plat, NicConfig(node="nicB"), cable)
        return Context(device=a), Context(device=b), cable

    @initialize()
    def setup(self) -> None:
        self.ctx = self.make_contexts()
        ca, cb, self.cable = self.ctx
        acc = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ
        self.sides = []
        for ctx in (ca, cb):
            pd = PD(ctx)
            cq = CQ(ctx, 64)
            qp = QP(pd, QPInitAttr(scq=cq, rcq=cq, cap=QPCap(max_send_wr=16, max_recv_wr=16)))
            mr = MR(pd, REGION_BYTES, acc)
            ro = MR(pd, REGION_BYTES, IBV_ACCESS_LOCAL_WRITE)    # no remote access
            self.sides.append({"ctx": ctx, "pd": pd, "cq": cq, "qp": qp, "mr": mr, "ro": ro})
        self.model = MemoryModel(REGION_BYTES)
        self.connected = False
        self._connect()
        self.wr_id = 0

    def _connect(self) -> None:
        a, b = self.sides[0]["qp"], self.sides[1]["qp"]
        for qp in (a, b):
            if qp.qp_state != IBV_QPS_RESET:
                qp.modify(QPAttr(qp_state=IBV_QPS_RESET), 1)
        connect_qps(a, b, timeout=TIMEOUT, retry_cnt=RETRY_CNT)
        self.connected = True

    def _post(self, side: int, wr: SendWR) -> int:
        self.wr_id += 1
        wr.wr_id = self.wr_id
        self.sides[side]["qp"].post_send(wr)
        (wc,) = poll_cq(self.sides[side]["cq"], 1)
        assert wc.wr_id == self.wr_id, wc
        if wc.status != IBV_WC_SUCCESS:
            self.connected = False
        return wc.status

    def _expect_failure(self, status: int) -> None:
        if self.cable.up:
            assert status == IBV_WC_REM_ACCESS_ERR, status
        else:
            assert status in (IBV_WC_RETRY_EXC_ERR, IBV_WC_REM_ACCESS_ERR), status

    # -- rules ------------------------------------------------------------------------------
    @precondition(lambda self: self.connected)
    @rule(side=st.integers(0, 1), data=payloads(), src=st.integers(0, REGION_BYTES),
          dst=st.integers(0, REGION_BYTES))
    def rdma_write(self, side: int, data: bytes, src: int, dst: int) -> None:
        n = len(data)
        src, dst = min(src, REGION_BYTES - n), min(dst, REGION_BYTES - n)
        me, peer = self.sides[side], self.sides[1 - side]
        me["mr"].write(data, n, src)
        self.model.write(side, src, data)
        wr = SendWR(opcode=IBV_WR_RDMA_WRITE, num_sge=1, sg=[SGE(me["mr"].buf + src, n,
                                                                 me["mr"].lkey)])
        wr.set_wr_rdma(peer["mr"].rkey, peer["mr"].buf + dst)
        status = self._post(side, wr)
        if status == IBV_WC_SUCCESS:
            self.model.write(1 - side, dst, data)
        else:
            assert not self.cable.up and status == IBV_WC_RETRY_EXC_ERR, status

    @precondition(lambda self: self.connected)
    @rule(side=st.integers(0, 1), n=st.integers(0, 512), src=st.integers(0, REGION_BYTES),
          dst=st.integers(0, REGION_BYTES))
    def rdma_read(self, side: int, n: int, src: int, dst: int) -> None:
        src, dst = min(src, REGION_BYTES - n), min(dst, REGION_BYTES - n)
        me, peer = self.sides[side], self.sides[1 - side]
        wr = SendWR(opcode=IBV_WR_RDMA_READ, num_sge=1, sg=[SGE(me["mr"].buf + dst, n,
                                                                me["mr"].lkey)])
        wr.set_wr_rdma(peer["mr"].rkey, peer["mr"].buf + src)
        if self._post(side, wr) == IBV_WC_SUCCESS:
            self.model.write(side, dst, bytes(self.model.mem[1 - side][src:src + n]))

    @precondition(lambda self: self.connected)
    @rule(side=st.integers(0, 1), data=payloads(), dst=st.integers(0, REGION_BYTES),
          imm=st.integers(0, 2**32 - 1))
    def send_recv(self, side: int, data: bytes, dst: int, imm: int) -> None:
        n = len(data)
        dst = min(dst, REGION_BYTES - n)
        me, peer = self.sides[side], self.sides[1 - side]
        me["mr"].write(data, n, 0)
        self.model.write(side, 0, data)
        peer["qp"].post_recv(RecvWR(wr_id=7, num_sge=1, sg=[SGE(peer["mr"].buf + dst,
                                                                REGION_BYTES - dst,
                                                                peer["mr"].lkey)]))
        status = self._post(side, SendWR(opcode=IBV_WR_SEND_WITH_IMM, imm_data=imm, num_sge=1,
                                         sg=[SGE(me["mr"].buf, n, me["mr"].lkey)]))
        if status == IBV_WC_SUCCESS:
            (rwc,) = poll_cq(peer["cq"], 1)
            assert rwc.status == IBV_WC_SUCCESS and rwc.byte_len == n and rwc.imm_data == imm
            self.model.write(1 - side, dst, data)
        else:       # the message never arrived: the receive stays posted until a reset
            assert not self.cable.up and status == IBV_WC_RETRY_EXC_ERR, status

    @precondition(lambda self: self.connected)
    @rule(side=st.integers(0, 1), kind=st.sampled_from(["rkey", "range", "permission"]),
          n=st.integers(1, 256), read=st.booleans())
    def protection_violation(self, side: int, kind: str, n: int, read: bool) -> None:
        me, peer = self.sides[side], self.sides[1 - side]
        target = peer["ro"] if kind == "permission" else peer["mr"]
        rkey, raddr = target.rkey, target.buf
        if kind == "rkey":
            rkey ^= 0x5
        elif kind == "range":
            raddr += REGION_BYTES - n + 1
        wr = SendWR(opcode=IBV_WR_RDMA_READ if read else IBV_WR_RDMA_WRITE, num_sge=1,
                    sg=[SGE(me["mr"].buf, n, me["mr"].lkey)])
        wr.set_wr_rdma(rkey, raddr)
        self._expect_failure(self._post(side, wr))

    @rule()
    def unplug(self) -> None:
        self.cable.unplug()

    @rule()
    def plug(self) -> None:
        self.cable.plug()

    @precondition(lambda self: not self.connected)
    @rule()
    def reconnect(self) -> None:
        self._connect()

    @rule(side=st.integers(0, 1), uar=st.integers(0, 3), reg=st.sampled_from(list(regs.UarReg)),
          value=st.integers(0, 2**64 - 1))
    def garbage_doorbell(self, side: int, uar: int, reg: regs.UarReg, value: int) -> None:
        """A doorbell for a QP/CQ number that is not ours (or a wild producer index on one of
        ours, which the NIC must refuse rather than run stale ring slots)."""
        qpn = regs.field_get(regs.WQ_DB_QPN, value)
        mine = {s["qp"].qp_num for s in self.sides} | {s["cq"]._b.cqn for s in self.sides}
        if qpn in mine or regs.field_get(regs.CQ_DB_CQN, value) in mine:
            return
        self.sides[side]["ctx"]._b.dev.bar0.write64(regs.uar_offset(uar, reg), value)

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def memory_matches_model(self) -> None:
        if not hasattr(self, "sides"):
            return
        for i, s in enumerate(self.sides):
            assert s["mr"].read(REGION_BYTES) == bytes(self.model.mem[i])
            assert s["ro"].read(REGION_BYTES) == bytes(REGION_BYTES)

    @invariant()
    def no_internal_errors(self) -> None:
        if hasattr(self, "sides"):
            for s in self.sides:
                assert s["ctx"]._b.dev.counters["internal_errors"] == 0
