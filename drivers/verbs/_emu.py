"""Backend ``emu``: drives the NIC model (:class:`labrig.hw.fabric.nic.NicDevice`) through its
BAR0 registers, its command queue and rings in host memory -- nothing else (DESIGN.md).

Structure after the mlx5 split between kernel driver and user provider:

- :class:`NicDriver` (one per device, like ``mlx5_core``): waits for ``INITIALIZING`` to
  clear, programs the command queue, runs INIT_HCA, and executes commands by filling an entry,
  ringing ``CMD_DBELL`` and polling the ownership bit (Linux ``mlx5_cmd_exec`` in polling
  mode); a command status becomes :class:`~labrig.drivers.verbs.VerbsError` with the errno
  ``mlx5_cmd_check`` would give.
- :class:`EmuContext`, :class:`EmuCQ`, :class:`EmuQP` (like rdma-core ``providers/mlx5``):
  WQEs are written straight into the SQ/RQ rings, doorbells are one 64-bit MMIO write per
  post call, and polling reads CQEs by the owner bit, writes the consumer index to the CQ's
  doorbell record and maps syndromes to ``IBV_WC_*`` statuses (``mlx5_handle_error_cqe``).
"""

from __future__ import annotations

import errno
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from labrig.drivers.verbs import enums as e
from labrig.drivers.verbs._errors import VerbsError
from labrig.drivers.verbs._types import WC, PortAttr, QPAttr, QPInitAttr, RecvWR, SendWR
from labrig.errors import UsageError
from labrig.hw.fabric.nic import regs
from labrig.hw.fabric.nic.device import NicDevice
from labrig.hw.fabric.nic.regs import CmdOpcode, CmdStatus, CqeOpcode, Reg, Syndrome, UarReg

__all__ = ["EmuContext", "NicDriver"]

_ENTRY = regs.struct_of(regs.CMD_ENTRY)
_OUT = regs.struct_of(regs.CMD_OUT)
_SEND_WQE = regs.struct_of(regs.SEND_WQE)
_RECV_WQE = regs.struct_of(regs.RECV_WQE)
_CQE = regs.struct_of(regs.CQE)
_OUT_INLINE_OFF = regs.CMD_ENTRY.fields["out_inline"][1]
_STATUS_OWN_OFF = regs.CMD_ENTRY.fields["status_own"][1]
_INPUT_BUF_BYTES = 4096
#: mlx5 command timeout (Linux MLX5_CMD_TIMEOUT_MSEC = 60 s), in virtual ns
CMD_TIMEOUT_NS = 60_000_000_000
#: how long to wait for INITIALIZING to clear (mlx5 FW_INIT_TIMEOUT_MILI = 2 min)
INIT_TIMEOUT_NS = 120_000_000_000

#: errno of each command status (Linux mlx5 ``cmd_status_to_err``)
CMD_ERRNO = {
    CmdStatus.INT_ERR: errno.EIO, CmdStatus.BAD_OP_ERR: errno.EINVAL,
    CmdStatus.BAD_PARAM_ERR: errno.EINVAL, CmdStatus.BAD_SYS_STATE_ERR: errno.EIO,
    CmdStatus.BAD_RES_ERR: errno.EINVAL, CmdStatus.RES_BUSY: errno.EBUSY,
    CmdStatus.LIM_ERR: errno.ENOMEM, CmdStatus.BAD_RES_STATE_ERR: errno.EINVAL,
    CmdStatus.IX_ERR: errno.EINVAL, CmdStatus.NO_RES_ERR: errno.EAGAIN,
    CmdStatus.BAD_QP_STATE_ERR: errno.EINVAL, CmdStatus.BAD_INP_LEN_ERR: errno.EIO,
    CmdStatus.BAD_OUTP_LEN_ERR: errno.EIO,
}

#: IBV_WR_* -> WQE opcode
WR_TO_WQE = {
    e.IBV_WR_RDMA_WRITE: regs.WqeOpcode.RDMA_WRITE,
    e.IBV_WR_RDMA_WRITE_WITH_IMM: regs.WqeOpcode.RDMA_WRITE_IMM,
    e.IBV_WR_SEND: regs.WqeOpcode.SEND,
    e.IBV_WR_SEND_WITH_IMM: regs.WqeOpcode.SEND_IMM,
    e.IBV_WR_RDMA_READ: regs.WqeOpcode.RDMA_READ,
}
_WR_TO_WQE = {int(k): int(v) for k, v in WR_TO_WQE.items()}
#: IBV_WR_* -> IBV_WC_* of its send completion
_WR_TO_WC = {
    int(e.IBV_WR_RDMA_WRITE): int(e.IBV_WC_RDMA_WRITE),
    int(e.IBV_WR_RDMA_WRITE_WITH_IMM): int(e.IBV_WC_RDMA_WRITE),
    int(e.IBV_WR_SEND): int(e.IBV_WC_SEND),
    int(e.IBV_WR_SEND_WITH_IMM): int(e.IBV_WC_SEND),
    int(e.IBV_WR_RDMA_READ): int(e.IBV_WC_RDMA_READ),
}
#: error CQE syndrome -> IBV_WC status (rdma-core providers/mlx5/cq.c mlx5_handle_error_cqe)
SYNDROME_TO_STATUS = {
    Syndrome.LOCAL_LENGTH_ERR: e.IBV_WC_LOC_LEN_ERR,
    Syndrome.LOCAL_QP_OP_ERR: e.IBV_WC_LOC_QP_OP_ERR,
    Syndrome.LOCAL_PROT_ERR: e.IBV_WC_LOC_PROT_ERR,
    Syndrome.WR_FLUSH_ERR: e.IBV_WC_WR_FLUSH_ERR,
    Syndrome.MW_BIND_ERR: e.IBV_WC_MW_BIND_ERR,
    Syndrome.BAD_RESP_ERR: e.IBV_WC_BAD_RESP_ERR,
    Syndrome.LOCAL_ACCESS_ERR: e.IBV_WC_LOC_ACCESS_ERR,
    Syndrome.REMOTE_INVAL_REQ_ERR: e.IBV_WC_REM_INV_REQ_ERR,
    Syndrome.REMOTE_ACCESS_ERR: e.IBV_WC_REM_ACCESS_ERR,
    Syndrome.REMOTE_OP_ERR: e.IBV_WC_REM_OP_ERR,
    Syndrome.TRANSPORT_RETRY_EXC_ERR: e.IBV_WC_RETRY_EXC_ERR,
    Syndrome.RNR_RETRY_EXC_ERR: e.IBV_WC_RNR_RETRY_EXC_ERR,
    Syndrome.REMOTE_ABORTED_ERR: e.IBV_WC_REM_ABORT_ERR,
}
_SYN = {int(k): int(v) for k, v in SYNDROME_TO_STATUS.items()}
_GENERAL_ERR = int(e.IBV_WC_GENERAL_ERR)
_WC_RECV = int(e.IBV_WC_RECV)
_WC_RECV_IMM = int(e.IBV_WC_RECV_RDMA_WITH_IMM)
_WC_WITH_IMM = int(e.IBV_WC_WITH_IMM)
_SIGNALED = int(e.IBV_SEND_SIGNALED)
_SOLICITED = int(e.IBV_SEND_SOLICITED)
_REQ = int(CqeOpcode.REQ)
_REQ_ERR = int(CqeOpcode.REQ_ERR)
_RESP_ERR = int(CqeOpcode.RESP_ERR)
_RESP_SEND_IMM = int(CqeOpcode.RESP_SEND_IMM)
_RESP_WR_IMM = int(CqeOpcode.RESP_WR_IMM)
_INVALID = int(CqeOpcode.INVALID)
_MAX_SGE_ZERO = (0, 0, 0) * regs.MAX_SEND_SGE
_RECV_TERMINATOR = (0, regs.INVALID_LKEY, 0)
_DS_BASE = 2                          # ctrl + raddr segments
_MTU_CODE = {256: 1, 512: 2, 1024: 3, 2048: 4, 4096: 5}
#: the MSI-X vector a CQ reports on: command completions own vector 0
_FIRST_CQ_VECTOR = 1

_DRIVERS: weakref.WeakKeyDictionary[NicDevice, NicDriver] = weakref.WeakKeyDictionary()


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class NicDriver:
    """The device-wide part of the driver: init sequence and the command interface."""

    def __init__(self, dev: NicDevice) -> None:
        self.dev = dev
        self.plat = dev.plat
        self.bar0 = dev.bar0
        self._wait(lambda: not self.bar0.read32(Reg.INITIALIZING) & regs.INITIALIZING_BIT,
                   INIT_TIMEOUT_NS, "firmware initialization (INITIALIZING still set)")
        mem = self.plat.memory
        # like mlx5_cmd_init: the queue geometry is read from CMDQ_ADDR_LO before programming
        lo = self.bar0.read32(Reg.CMDQ_ADDR_LO)
        if 1 << regs.field_get(regs.CMDQ_LOG_STRIDE, lo) != regs.CMD_ENTRY_BYTES:
            raise VerbsError(f"{dev.node}: command entry stride "
                             f"{1 << regs.field_get(regs.CMDQ_LOG_STRIDE, lo)} is not "
                             f"{regs.CMD_ENTRY_BYTES} bytes", errno.EIO)
        n_entries = 1 << regs.field_get(regs.CMDQ_LOG_SIZE, lo)
        self.cmdq = mem.alloc(n_entries * regs.CMD_ENTRY_BYTES, 4096)
        self.inbuf = mem.alloc(_INPUT_BUF_BYTES, 4096)
        self.bar0.write32(Reg.CMDQ_ADDR_HI, self.cmdq.addr >> 32)
        self.bar0.write32(Reg.CMDQ_ADDR_LO, self.cmdq.addr & 0xFFFF_FFFF)
        self.caps = {r: self.bar0.read32(r) for r in (
            Reg.CAP_LOG_MAX_QP, Reg.CAP_LOG_MAX_CQ, Reg.CAP_LOG_MAX_MKEY, Reg.CAP_LOG_MAX_PD,
            Reg.CAP_LOG_MAX_QP_SZ, Reg.CAP_LOG_MAX_CQ_SZ, Reg.CAP_MAX_SGE, Reg.CAP_NUM_UARS)}
        self.max_send_sge = regs.field_get(regs.CAP_MAX_SEND_SGE, self.caps[Reg.CAP_MAX_SGE])
        self.max_recv_sge = regs.field_get(regs.CAP_MAX_RECV_SGE, self.caps[Reg.CAP_MAX_SGE])
        self.num_uars = self.caps[Reg.CAP_NUM_UARS]
        self._next_uar = 0
        self._next_key = 0
        self._next_vector = _FIRST_CQ_VECTOR
        self.cmd(CmdOpcode.INIT_HCA, regs.OBJ_IN)

    @classmethod
    def of(cls, dev: NicDevice) -> NicDriver:
        """The one driver instance of ``dev`` (created on first use)."""
        drv = _DRIVERS.get(dev)
        if drv is None:
            drv = _DRIVERS[dev] = cls(dev)
        return drv

    def _wait(self, done: Callable[[], bool], timeout_ns: int, what: str) -> None:
        """Run the platform until ``done()``; raise if it cannot happen or takes too long."""
        plat = self.plat
        deadline = plat.now_ns + timeout_ns
        while not done():
            if plat.now_ns > deadline or not plat.step():
                raise VerbsError(f"{self.dev.node}: timed out waiting for {what}", errno.ETIMEDOUT)

    def alloc_uar(self) -> int:
        """A UAR page index (round robin, as mlx5 spreads contexts over UARs)."""
        uar = self._next_uar % self.num_uars
        self._next_uar += 1
        return uar

    def next_key(self) -> int:
        """Variant byte for a new memory key (mlx5 ``mkey_key``), so a stale key misses."""
        self._next_key = (self._next_key + 1) & 0xFF
        return self._next_key

    def next_vector(self) -> int:
        v = self._next_vector
        self._next_vector += 1
        return v

    def cmd(self, opcode: CmdOpcode, layout: np.dtype, **fields: Any) -> tuple[int, int]:
        """Execute one command; returns ``(result0, result1)``.

        Raises
        ------
        VerbsError
            Delivery or command status not OK (errno as Linux mlx5), or no answer.
        """
        inp = np.zeros(1, dtype=layout)
        inp["hdr"]["opcode"] = int(opcode)
        for k, v in fields.items():
            inp[k] = v
        raw = inp.tobytes()
        inline = raw[:regs.CMD_INLINE_BYTES].ljust(regs.CMD_INLINE_BYTES, b"\0")
        rest = raw[regs.CMD_INLINE_BYTES:]
        if rest:
            self.inbuf.view[:len(rest)] = np.frombuffer(rest, np.uint8)
        entry = self.cmdq.view[:regs.CMD_ENTRY_BYTES]
        _ENTRY.pack_into(entry, 0, regs.CMD_TYPE_PCIE, len(raw), self.inbuf.addr, *inline,
                         *bytes(regs.CMD_INLINE_BYTES), 0, regs.CMD_INLINE_BYTES, 0, 0,
                         regs.CMD_OWN_HW)
        self.bar0.write32(Reg.CMD_DBELL, 1)
        self._wait(lambda: not entry[_STATUS_OWN_OFF] & regs.CMD_OWN_HW, CMD_TIMEOUT_NS,
                   f"command {opcode.name}")
        delivery = regs.field_get(regs.CMD_DELIVERY, int(entry[_STATUS_OWN_OFF]))
        if delivery:
            raise VerbsError(f"{self.dev.node}: command {opcode.name} not delivered: "
                             f"{regs.DeliveryStatus(delivery).name}", errno.EIO)
        status, _syn, r0, r1 = _OUT.unpack_from(entry, _OUT_INLINE_OFF)
        if status:
            try:
                name = CmdStatus(status).name
            except ValueError:
                name = f"status {status:#x}"
            raise VerbsError(f"{self.dev.node}: {opcode.name} failed: {name}",
                             CMD_ERRNO.get(status, errno.EIO), status=status)
        return r0, r1


class EmuContext:
    """A verbs context on an emulated NIC (backend of :class:`labrig.drivers.verbs.Context`)."""

    backend = "emu"

    def __init__(self, dev: NicDevice) -> None:
        self.dev = dev
        self.plat = dev.plat
        self.drv = NicDriver.of(dev)
        self.name = dev.node
        self.qps: dict[int, EmuQP] = {}

    def clock(self) -> int:
        """Virtual ns (DESIGN.md "Time")."""
        return self.plat.now_ns

    def idle(self) -> bool:
        """Nothing left that could ever produce a completion."""
        return self.plat.events.next_event_ns is None

    def query_port(self, port_num: int = 1) -> PortAttr:
        if port_num != 1:
            raise UsageError(f"query_port port_num={port_num}: the NIC has one port (1)")
        bar = self.dev.bar0
        mtu = _MTU_CODE.get(bar.read32(Reg.PORT_MTU), int(e.IBV_MTU_4096))
        return PortAttr(state=bar.read32(Reg.PORT_STATE), lid=bar.read32(Reg.PORT_LID),
                        active_mtu=mtu, max_mtu=mtu)

    def query_gid(self, port_num: int = 1, index: int = 0) -> str:
        """A link-local GID carrying the port LID (the emulator routes by LID)."""
        lid = self.dev.bar0.read32(Reg.PORT_LID)
        return f"fe80:0000:0000:0000:0000:0000:0000:{lid:04x}"

    def alloc_pd(self) -> EmuPD:
        return EmuPD(self)

    def create_cq(self, cqe: int, comp_vector: int) -> EmuCQ:
        return EmuCQ(self, cqe)

    def close(self) -> None:
        self.qps.clear()


class EmuPD:
    def __init__(self, ctx: EmuContext) -> None:
        self.ctx = ctx
        self.pdn, _ = ctx.drv.cmd(CmdOpcode.ALLOC_PD, regs.OBJ_IN)
        self.closed = False

    def reg_mr(self, length: int, access: int, buffer: Any = None) -> EmuMR:
        return EmuMR(self, length, access, buffer)

    def close(self) -> None:
        if not self.closed:
            self.ctx.drv.cmd(CmdOpcode.DEALLOC_PD, regs.OBJ_IN, obj=self.pdn)
            self.closed = True


class EmuMR:
    """A registered region; allocates its own host memory unless given a DMA buffer (for
    example GPU HBM from :meth:`labrig.hw.fabric.Gpu.alloc`)."""

    def __init__(self, pd: EmuPD, length: int, access: int, buffer: Any = None) -> None:
        drv = pd.ctx.drv
        self.pd = pd
        self._own = buffer is None
        self.buffer = pd.ctx.plat.memory.alloc(length, 4096) if buffer is None else buffer
        self.length = int(length)
        self.buf = int(self.buffer.addr)
        self.view = self.buffer.view[:self.length]
        try:
            self.lkey, _ = drv.cmd(CmdOpcode.CREATE_MKEY, regs.CREATE_MKEY_IN, pd=pd.pdn,
                                   access=int(access), start_addr=self.buf, length=self.length,
                                   mkey_7_0=drv.next_key())
        except VerbsError:
            if self._own:
                self.buffer.free()
            raise
        self.rkey = self.lkey
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.pd.ctx.drv.cmd(CmdOpcode.DESTROY_MKEY, regs.OBJ_IN, obj=self.lkey)
            if self._own:
                self.buffer.free()
            self.closed = True


class EmuCQ:
    """Completion queue: ring + doorbell record in host memory, polled by the owner bit."""

    def __init__(self, ctx: EmuContext, cqe: int) -> None:
        drv = ctx.drv
        self.ctx = ctx
        self.plat = ctx.plat
        size = _pow2_at_least(int(cqe) + 1)          # mlx5: roundup_pow_of_two(cqe + 1)
        self.log_size = size.bit_length() - 1
        self.size = size
        self.mask = size - 1
        self.ring = ctx.plat.memory.alloc(size * regs.CQE_BYTES, 4096)
        self.ring.view[regs.CQE_BYTES - 1::regs.CQE_BYTES] = (_INVALID << 4) | 1  # 0xF1
        self.dbrec = ctx.plat.memory.alloc(regs.CQ_DBREC_BYTES, 64)
        self._ring_mv = memoryview(self.ring.view)
        self._dbrec_u32 = self.dbrec.view.view("<u4")
        self.uar = drv.alloc_uar()
        self.vector = drv.next_vector()
        self.cqn, _ = drv.cmd(CmdOpcode.CREATE_CQ, regs.CREATE_CQ_IN, log_cq_size=self.log_size,
                              uar=self.uar, c_eqn=self.vector, cq_addr=self.ring.addr,
                              dbrec_addr=self.dbrec.addr)
        self.ci = 0
        self.cqe = size - 1
        self.events = 0
        self._db_off = regs.uar_offset(self.uar, UarReg.CQ_DB)
        self.closed = False

    def _reap(self, num: int, out: list[WC]) -> int:
        ring = self._ring_mv
        ci = self.ci
        log = self.log_size
        mask = self.mask
        qps = self.ctx.qps
        n = 0
        unpack = _CQE.unpack_from
        while n < num:
            off = (ci & mask) << 6
            op_own = ring[off + 63]
            if (op_own >> 4) == _INVALID or (op_own & 1) != ((ci >> log) & 1):
                break
            imm, flags, byte_cnt, _ts, _v, syndrome, qpn, counter, _sig, op_own = \
                unpack(ring, off)
            ci += 1
            n += 1
            opcode = op_own >> 4
            qp = qps.get(qpn)
            if qp is None:
                continue                       # the QP was destroyed meanwhile
            out.append(qp.completion(opcode, counter, byte_cnt, imm, flags, syndrome))
        if n:
            self.ci = ci
            self._dbrec_u32[0] = ci & regs.CQ_CI_MASK
        return n

    def poll(self, num_entries: int = 1) -> tuple[int, list[WC]]:
        """Reap up to ``num_entries`` completions.  When none is ready, let the emulator run
        to its next event and look once more (the poll-mode idle loop, DESIGN.md "Time")."""
        out: list[WC] = []
        if not self._reap(num_entries, out) and self.plat.step():
            self._reap(num_entries, out)
        return len(out), out

    def req_notify(self, solicited_only: bool = False) -> None:
        """Arm the CQ: its MSI-X vector fires on the next (solicited) completion."""
        cmd = regs.CqArm.SOLICITED if solicited_only else regs.CqArm.NEXT
        self.ctx.dev.bar0.write64(self._db_off, regs.cq_db_encode(self.cqn, self.ci, cmd))

    def on_event(self, callback: Callable[[EmuCQ], None] | None) -> None:
        """Call ``callback(cq)`` when the armed CQ raises its interrupt."""
        def fire(_vector: int) -> None:
            self.events += 1
            if callback is not None:
                callback(self)
        self.ctx.dev.on_interrupt(self.vector, fire if callback is not None else None)

    def close(self) -> None:
        if not self.closed:
            self.ctx.drv.cmd(CmdOpcode.DESTROY_CQ, regs.OBJ_IN, obj=self.cqn)
            self.ring.free()
            self.dbrec.free()
            self.closed = True


class EmuQP:
    """An RC queue pair: SQ/RQ rings written directly, one doorbell per post call."""

    def __init__(self, pd: EmuPD, init_attr: QPInitAttr, scq: EmuCQ, rcq: EmuCQ) -> None:
        ctx = pd.ctx
        drv = ctx.drv
        cap = init_attr.cap
        if int(init_attr.qp_type) != int(e.IBV_QPT_RC):
            raise UsageError(f"QPInitAttr.qp_type={init_attr.qp_type}: the emulated NIC "
                             "models reliable connected QPs only (IBV_QPT_RC)")
        max_sz = 1 << drv.caps[Reg.CAP_LOG_MAX_QP_SZ]
        for name, v, hi in (("max_send_wr", cap.max_send_wr, max_sz),
                            ("max_recv_wr", cap.max_recv_wr, max_sz),
                            ("max_send_sge", cap.max_send_sge, drv.max_send_sge),
                            ("max_recv_sge", cap.max_recv_sge, drv.max_recv_sge)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
                raise UsageError(f"QPCap.{name}={v!r}: must be in 0..{hi}")
        if cap.max_inline_data:
            raise UsageError(f"QPCap.max_inline_data={cap.max_inline_data}: inline data is not "
                             "modelled (use 0)")
        self.ctx = ctx
        self.pd = pd
        self.scq, self.rcq = scq, rcq
        self.init_attr = init_attr
        self.sq_size = _pow2_at_least(max(1, cap.max_send_wr))
        self.rq_size = _pow2_at_least(max(1, cap.max_recv_wr))
        self.sq_mask, self.rq_mask = self.sq_size - 1, self.rq_size - 1
        self.max_send_sge = cap.max_send_sge
        self.max_recv_sge = cap.max_recv_sge
        mem = ctx.plat.memory
        self.sq = mem.alloc(self.sq_size * regs.SEND_WQE_BYTES, 4096)
        self.rq = mem.alloc(self.rq_size * regs.RECV_WQE_BYTES, 4096)
        self._sq_mv = memoryview(self.sq.view)
        self._rq_mv = memoryview(self.rq.view)
        self.uar = drv.alloc_uar()
        self.qp_num, _ = drv.cmd(CmdOpcode.CREATE_QP, regs.CREATE_QP_IN, pd=pd.pdn,
                                 st=regs.QP_ST_RC, uar=self.uar,
                                 log_sq_size=self.sq_size.bit_length() - 1,
                                 log_rq_size=self.rq_size.bit_length() - 1, cqn_snd=scq.cqn,
                                 cqn_rcv=rcq.cqn, sq_addr=self.sq.addr, rq_addr=self.rq.addr)
        ctx.qps[self.qp_num] = self
        self.qp_state = int(e.IBV_QPS_RESET)
        self.sig_all = bool(init_attr.sq_sig_all)
        self.sq_pi = 0                 # WQEs written
        self.sq_ci = 0                 # WQEs known complete
        self.rq_pi = 0
        self.rq_ci = 0
        self.sq_wrid = [0] * self.sq_size
        self.sq_wcop = [0] * self.sq_size
        self.rq_wrid = [0] * self.rq_size
        self._bar = ctx.dev.bar0
        self._sq_db = regs.uar_offset(self.uar, UarReg.SQ_DB)
        self._rq_db = regs.uar_offset(self.uar, UarReg.RQ_DB)
        self._qpn_db = regs.field_prep(regs.WQ_DB_QPN, self.qp_num)
        self._qpn_ds = regs.field_prep(regs.CTRL_QPN, self.qp_num)
        self.closed = False

    # -- state transitions ------------------------------------------------------------------
    def modify(self, attr: QPAttr, mask: int) -> None:
        """Move to ``attr.qp_state`` with the command for that transition (RST2INIT,
        INIT2RTR, RTR2RTS, 2ERR, 2RST); the NIC refuses a transition from the wrong state
        with BAD_QP_STATE_ERR, raised as VerbsError(EINVAL) like ``ibv_modify_qp``."""
        drv = self.ctx.drv
        target = int(attr.qp_state) if mask & e.IBV_QP_STATE else self.qp_state
        qpn = self.qp_num
        if target == e.IBV_QPS_INIT:
            drv.cmd(CmdOpcode.RST2INIT_QP, regs.RST2INIT_IN, obj=qpn,
                    access=int(attr.qp_access_flags), port=int(attr.port_num))
        elif target == e.IBV_QPS_RTR:
            if attr.ah_attr is None:
                raise UsageError("modify to RTR: QPAttr.ah_attr (with dlid) is required")
            drv.cmd(CmdOpcode.INIT2RTR_QP, regs.INIT2RTR_IN, obj=qpn,
                    remote_qpn=int(attr.dest_qp_num), dlid=int(attr.ah_attr.dlid),
                    path_mtu=int(attr.path_mtu), min_rnr_timer=int(attr.min_rnr_timer),
                    rq_psn=int(attr.rq_psn), max_dest_rd_atomic=int(attr.max_dest_rd_atomic))
        elif target == e.IBV_QPS_RTS:
            drv.cmd(CmdOpcode.RTR2RTS_QP, regs.RTR2RTS_IN, obj=qpn, sq_psn=int(attr.sq_psn),
                    timeout=int(attr.timeout), retry_cnt=int(attr.retry_cnt),
                    rnr_retry=int(attr.rnr_retry), max_rd_atomic=int(attr.max_rd_atomic))
        elif target == e.IBV_QPS_ERR:
            drv.cmd(CmdOpcode.QP_2ERR, regs.OBJ_IN, obj=qpn)
        elif target == e.IBV_QPS_RESET:
            drv.cmd(CmdOpcode.QP_2RST, regs.OBJ_IN, obj=qpn)
            self.sq_pi = self.sq_ci = self.rq_pi = self.rq_ci = 0
        else:
            raise VerbsError(f"modify QP {qpn}: state {target} is not modelled (SQD/SQE)",
                             errno.EINVAL)
        self.qp_state = target

    def query_state(self) -> int:
        """Current state as the NIC reports it (QUERY_QP); ERR after an error completion."""
        state, _ = self.ctx.drv.cmd(CmdOpcode.QUERY_QP, regs.OBJ_IN, obj=self.qp_num)
        self.qp_state = state
        return state

    # -- posting ----------------------------------------------------------------------------
    def post_send(self, wr: SendWR) -> None:
        if self.qp_state == e.IBV_QPS_RESET:
            raise VerbsError(f"post_send on QP {self.qp_num} in RESET", errno.EINVAL)
        pack = _SEND_WQE.pack_into
        sq = self._sq_mv
        pi = self.sq_pi
        qpn_ds = self._qpn_ds
        sig_all = self.sig_all
        while wr is not None:
            if pi - self.sq_ci >= self.sq_size:
                self._ring_sq(pi)
                raise VerbsError(f"post_send on QP {self.qp_num}: send queue full "
                                 f"({self.sq_size} WRs outstanding)", errno.ENOMEM)
            op = _WR_TO_WQE.get(int(wr.opcode))
            if op is None:
                self._ring_sq(pi)
                raise VerbsError(f"post_send opcode={wr.opcode}: not supported by the "
                                 "emulated NIC", errno.EINVAL)
            sg = wr.sg or ()
            n = wr.num_sge if wr.num_sge else len(sg)
            if n > self.max_send_sge or n > len(sg):
                self._ring_sq(pi)
                raise VerbsError(f"post_send num_sge={n}: QP {self.qp_num} allows "
                                 f"{self.max_send_sge} and sg has {len(sg)}", errno.EINVAL)
            segs: list[int] = []
            for s in sg[:n]:
                segs += (s.length, s.lkey, s.addr)
            segs += _MAX_SGE_ZERO[: 3 * (regs.MAX_SEND_SGE - n)]
            flags = int(wr.send_flags)
            ce = regs.CTRL_CE_SIGNALED if (sig_all or flags & _SIGNALED) else 0
            if flags & _SOLICITED:
                ce |= regs.CTRL_SOLICITED
            slot = pi & self.sq_mask
            pack(sq, slot * regs.SEND_WQE_BYTES, regs.field_prep(regs.CTRL_WQE_INDEX, pi) | op,
                 qpn_ds | (_DS_BASE + n), 0, ce, wr.imm_data & 0xFFFF_FFFF,
                 wr.remote_addr, wr.rkey, *segs)
            self.sq_wrid[slot] = wr.wr_id
            self.sq_wcop[slot] = _WR_TO_WC[int(wr.opcode)]
            pi += 1
            wr = wr.next_wr
        self._ring_sq(pi)

    def _ring_sq(self, pi: int) -> None:
        if pi != self.sq_pi:
            self.sq_pi = pi
            self._bar.write64(self._sq_db, self._qpn_db | (pi & regs.WQ_DB_PI))

    def post_recv(self, wr: RecvWR) -> None:
        if self.qp_state == e.IBV_QPS_RESET:
            raise VerbsError(f"post_recv on QP {self.qp_num} in RESET", errno.EINVAL)
        pi = self.rq_pi
        while wr is not None:
            if pi - self.rq_ci >= self.rq_size:
                self._ring_rq(pi)
                raise VerbsError(f"post_recv on QP {self.qp_num}: receive queue full",
                                 errno.ENOMEM)
            sg = wr.sg or ()
            n = wr.num_sge if wr.num_sge else len(sg)
            if n > self.max_recv_sge or n > len(sg):
                self._ring_rq(pi)
                raise VerbsError(f"post_recv num_sge={n}: QP {self.qp_num} allows "
                                 f"{self.max_recv_sge} and sg has {len(sg)}", errno.EINVAL)
            segs: list[int] = []
            for s in sg[:n]:
                segs += (s.length, s.lkey, s.addr)
            for _ in range(regs.MAX_RECV_SGE - n):
                segs += _RECV_TERMINATOR
            slot = pi & self.rq_mask
            _RECV_WQE.pack_into(self._rq_mv, slot * regs.RECV_WQE_BYTES, *segs)
            self.rq_wrid[slot] = wr.wr_id
            pi += 1
            wr = wr.next_wr
        self._ring_rq(pi)

    def _ring_rq(self, pi: int) -> None:
        if pi != self.rq_pi:
            self.rq_pi = pi
            self._bar.write64(self._rq_db, self._qpn_db | (pi & regs.WQ_DB_PI))

    # -- completions ------------------------------------------------------------------------
    def completion(self, opcode: int, counter: int, byte_cnt: int, imm: int, flags: int,
                   syndrome: int) -> WC:
        """Turn one CQE of this QP into a WC (wr_id from the ring's bookkeeping)."""
        if opcode == _REQ or opcode == _REQ_ERR:
            full = self.sq_ci + ((counter - self.sq_ci) & regs.WQE_COUNTER_MASK)
            self.sq_ci = full + 1                   # a CQE retires every earlier WQE too
            slot = full & self.sq_mask
            status = _SYN.get(syndrome, _GENERAL_ERR) if opcode == _REQ_ERR else 0
            if status:
                self.qp_state = int(e.IBV_QPS_ERR)
            return WC(self.sq_wrid[slot], status, self.sq_wcop[slot], syndrome, byte_cnt,
                      self.qp_num, 0, 0, 0)
        slot = self.rq_ci & self.rq_mask
        self.rq_ci += 1
        if opcode == _RESP_ERR:
            status = _SYN.get(syndrome, _GENERAL_ERR)
            self.qp_state = int(e.IBV_QPS_ERR)
            return WC(self.rq_wrid[slot], status, _WC_RECV, syndrome, 0, self.qp_num, 0, 0, 0)
        wc_op = _WC_RECV_IMM if opcode == _RESP_WR_IMM else _WC_RECV
        wflags = _WC_WITH_IMM if flags & regs.CQE_FLAG_IMM else 0
        return WC(self.rq_wrid[slot], 0, wc_op, 0, byte_cnt, self.qp_num, 0,
                  imm if wflags else 0, wflags)

    def close(self) -> None:
        if not self.closed:
            self.ctx.drv.cmd(CmdOpcode.DESTROY_QP, regs.OBJ_IN, obj=self.qp_num)
            self.ctx.qps.pop(self.qp_num, None)
            self.sq.free()
            self.rq.free()
            self.closed = True

