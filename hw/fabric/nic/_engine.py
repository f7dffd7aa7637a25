"""The NIC data path: send-queue processing, the RC requester and responder, completions.

Reliable-connected transport after IB spec 1.4 chapter 9 ("Transport Layer"), at message
granularity:

- **Requester.**  A SQ doorbell schedules :meth:`Engine._process_sq` one WQE fetch plus the
  send pipeline later; it reads each WQE from host memory, checks its local SGEs against the
  memory-key table (10.6.3) and hands the message to the wire (``wire.transfer``; a message
  for this NIC's own LID loops back inside it).  Messages of one QP are in flight together;
  completions leave in WQE order (9.7.5: an ACK acknowledges every earlier PSN).
- **Responder.**  A message is placed one receive pipeline plus one DMA write after it lands,
  strictly in PSN order (a message that overtook an earlier one waits for it).  It checks the
  rkey, range and access flags of RDMA WRITE/READ, consumes a receive WQE for SEND and WRITE
  WITH IMMEDIATE, and answers ACK, RNR NAK (no receive WQE), NAK-Remote Access, NAK-Invalid
  Request (receive buffer too small) or NAK-Remote Operational (bad receive lkey).  A
  protection error is found before any byte is placed, so memory is never changed by one.
- **Errors.**  A NAK or a local error completes the WQE with its syndrome and moves the QP to
  ERR, which flushes every outstanding WQE with WR_FLUSH_ERR (10.3.1 "Error" state).  A lost
  message (link down, unknown destination, responder not ready) is retransmitted after the
  local ACK timeout up to ``retry_cnt`` times, then completes with TRANSPORT_RETRY_EXC_ERR;
  an RNR NAK waits the responder's RNR timer, ``rnr_retry`` times (7: for ever).
- **Duplicates.**  A retransmitted message the responder already executed is acknowledged
  again without consuming another receive WQE (9.9.2: duplicate SENDs are not re-executed;
  duplicate RDMA WRITE/READ are re-executed with the same checks).

The model never raises on what a driver wrote: every malformed WQE, key or address ends in an
error completion; an unexpected exception in a handler is counted in ``CNT_INTERNAL_ERR``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from labrig.hw.fabric.nic import regs
from labrig.hw.fabric.nic._objects import Cq, Message, MKey, Qp
from labrig.hw.fabric.nic.regs import CqeOpcode, QpState, Syndrome, WqeOpcode

if TYPE_CHECKING:
    from labrig.hw.fabric.nic.device import NicDevice

__all__ = ["Engine"]

log = logging.getLogger("labrig.hw.fabric.nic")

_SEND_WQE = regs.struct_of(regs.SEND_WQE)
_RECV_WQE = regs.struct_of(regs.RECV_WQE)
_CQE = regs.struct_of(regs.CQE)
_unpack_send = _SEND_WQE.unpack_from
_unpack_recv = _RECV_WQE.unpack_from
_pack_cqe = _CQE.pack_into

_OP_WRITE = int(WqeOpcode.RDMA_WRITE)
_OP_WRITE_IMM = int(WqeOpcode.RDMA_WRITE_IMM)
_OP_SEND = int(WqeOpcode.SEND)
_OP_SEND_IMM = int(WqeOpcode.SEND_IMM)
_OP_READ = int(WqeOpcode.RDMA_READ)
_OP_NOP = int(WqeOpcode.NOP)
_SUPPORTED = frozenset((_OP_WRITE, _OP_WRITE_IMM, _OP_SEND, _OP_SEND_IMM, _OP_READ, _OP_NOP))
_WITH_IMM = frozenset((_OP_WRITE_IMM, _OP_SEND_IMM))
_NEEDS_RECV = frozenset((_OP_WRITE_IMM, _OP_SEND, _OP_SEND_IMM))
_CARRIES_DATA = frozenset((_OP_WRITE, _OP_WRITE_IMM, _OP_SEND, _OP_SEND_IMM))

_U16 = regs.WQE_COUNTER_MASK
_PSN_MASK = 0xFFFFFF      # PSNs are 24 bits (IB spec 9.7.1)
_PSN_HALF = 1 << 23
#: largest message (IB spec 9.4: 2^31 bytes)
MAX_MSG_BYTES = 1 << 31
#: a send WQE's control and remote-address segments come before its data segments
SEGS_BEFORE_DATA = 2
#: a RETH or the READ request fields ride in one header-sized packet
READ_REQ_EXTRA_BYTES = 16

# response kinds
ACK = 0
RNR = 1
NAK = 2

_OPCODE_SHIFT = 4
_CE = regs.CTRL_CE_SIGNALED
_SE = regs.CTRL_SOLICITED
_INVALID_LKEY = regs.INVALID_LKEY


class Engine:
    """Data path of one :class:`~labrig.hw.fabric.nic.device.NicDevice`."""

    def __init__(self, dev: NicDevice) -> None:
        self.dev = dev
        self.plat = dev.plat
        self.mem = dev.plat.memory
        t = dev.cfg.timing
        self.start_delay_ns = t.wqe_fetch_ns + t.tx_proc_ns
        self.rx_delay_ns = t.rx_proc_ns + t.dma_write_ns
        self.dma_write_ns = t.dma_write_ns
        self.occupancy_ns = t.msg_occupancy_ns
        self.header_bytes = t.header_bytes
        self.tx_free_ns = 0
        #: responder reorder buffers: qpn -> {psn: message}
        self.held: dict[int, dict[int, Message]] = {}
        self.stats = {"messages": 0, "bytes_placed": 0, "retransmits": 0, "rnr_naks": 0,
                      "naks": 0}

    # =========================================================================================
    # doorbells
    # =========================================================================================
    def sq_doorbell(self, qp: Qp, pi16: int) -> bool:
        """New SQ producer counter; False if it is not a plausible advance (dropped)."""
        new_pi = qp.sq_pi + ((pi16 - qp.sq_pi) & _U16)
        if new_pi - qp.sq_done > qp.sq_mask + 1:
            return False
        qp.sq_pi = new_pi
        if qp.state == QpState.ERR:
            self._flush_sq(qp)
        elif qp.state == QpState.RTS:
            self.kick(qp)
        return True

    def rq_doorbell(self, qp: Qp, pi16: int) -> bool:
        """New RQ producer counter; in ERR the new receive WQEs are flushed at once."""
        new_pi = qp.rq_pi + ((pi16 - qp.rq_pi) & _U16)
        if new_pi - qp.rq_ci > qp.rq_mask + 1:
            return False
        qp.rq_pi = new_pi
        if qp.state == QpState.ERR:
            self._flush_rq(qp)
        return True

    def cq_arm(self, cq: Cq, ci: int, cmd: int) -> None:
        """Request an interrupt on the next (solicited) completion; if completions beyond
        ``ci`` are already there, it fires at once (mlx5 arm semantics)."""
        if (cq.pi - ci) & regs.CQ_CI_MASK:
            self.dev.raise_interrupt(cq.vector)
            cq.armed = None
        else:
            cq.armed = cmd

    def kick(self, qp: Qp) -> None:
        """Schedule send-queue processing (one WQE fetch plus the send pipeline from now)."""
        if not qp.sq_scheduled and qp.sq_ci != qp.sq_pi:
            qp.sq_scheduled = True
            self.plat.schedule(self.start_delay_ns, self._process_sq, qp, qp.gen)

    # =========================================================================================
    # requester
    # =========================================================================================
    def _process_sq(self, qp: Qp, gen: int) -> None:
        if gen != qp.gen:
            return
        qp.sq_scheduled = False
        if qp.state != QpState.RTS:
            return
        try:
            now = self.plat.now_ns
            while qp.sq_ci != qp.sq_pi and qp.state == QpState.RTS:
                if self.tx_free_ns > now:      # send engine busy: 1 / message rate
                    qp.sq_scheduled = True
                    self.plat.schedule_at(self.tx_free_ns, self._process_sq, qp, qp.gen)
                    return
                self.tx_free_ns = now + self.occupancy_ns
                msg = self._fetch(qp)
                qp.inflight.append(msg)
                if msg.status or msg.opcode == _OP_NOP:
                    msg.executed = True         # a local error completes without the wire
                    self._drain(qp)
                else:
                    self._transmit(msg)
        except Exception:          # a model bug must never escape into the driver
            self.dev._internal_error("send queue processing")

    def _fetch(self, qp: Qp) -> Message:
        """Read the WQE at ``sq_ci`` and check its local segments (IB spec 10.6.3)."""
        counter = qp.sq_ci
        qp.sq_ci = counter + 1
        f = _unpack_send(qp.sq_buf, (counter & qp.sq_mask) * regs.SEND_WQE_BYTES)
        opmod_idx_opcode, qpn_ds, _sig, fm_ce_se, imm, raddr, rkey = f[:7]
        opcode = opmod_idx_opcode & regs.CTRL_OPCODE
        nsge = (qpn_ds & regs.CTRL_DS) - SEGS_BEFORE_DATA
        msg = Message(self, qp, counter & _U16, opcode, bool(fm_ce_se & _CE),
                      bool(fm_ce_se & _SE), imm, raddr, rkey, [], 0)
        if opcode not in _SUPPORTED or not 0 <= nsge <= regs.MAX_SEND_SGE:
            msg.status = Syndrome.LOCAL_QP_OP_ERR
            return msg
        need_write = opcode == _OP_READ
        mkeys = self.dev.mkeys
        total = 0
        local = msg.local
        for i in range(nsge):
            length, lkey, addr = f[7 + 3 * i: 10 + 3 * i]
            if length == 0:
                continue
            mk = mkeys.get(lkey >> 8)
            if (mk is None or mk.key != (lkey & 0xFF) or mk.pd != qp.pd or addr < mk.start
                    or addr + length > mk.end
                    or (need_write and not mk.access & regs.ACCESS_LOCAL_WRITE)):
                msg.status = Syndrome.LOCAL_PROT_ERR
                return msg
            local.append((addr, length))
            total += length
        if total > MAX_MSG_BYTES:
            msg.status = Syndrome.LOCAL_LENGTH_ERR
            return msg
        msg.byte_len = total
        if opcode in _CARRIES_DATA:
            data = self._gather(local)
            if data is None:
                msg.status = Syndrome.LOCAL_PROT_ERR
                return msg
            msg.data = data
        msg.psn = qp.sq_psn
        qp.sq_psn = (qp.sq_psn + 1) & _PSN_MASK
        mtu = qp.path_mtu
        if opcode == _OP_READ:
            msg.wire_bytes = self.header_bytes + READ_REQ_EXTRA_BYTES
        else:
            msg.wire_bytes = total + max(1, -(-total // mtu)) * self.header_bytes
        self.stats["messages"] += 1
        return msg

    def _gather(self, local: list[tuple[int, int]]) -> bytes | None:
        """DMA-read the payload of the checked SGEs (None if memory vanished)."""
        dma = self.mem.dma_view
        if len(local) == 1:
            v = dma(*local[0])
            return None if v is None else v.tobytes()
        parts = []
        for addr, length in local:
            v = dma(addr, length)
            if v is None:
                return None
            parts.append(v.tobytes())
        return b"".join(parts)

    def _transmit(self, msg: Message) -> None:
        """Put ``msg`` on the wire towards the QP's destination LID."""
        qp = msg.qp
        dev = self.dev
        dest = dev.subnet.get(qp.dlid)
        if dest is None or not dev.port_up:
            reason = "port down" if not dev.port_up else f"no port with LID {qp.dlid}"
            self.plat.schedule(0, self._on_lost, msg, reason)
            return
        if dest is dev:
            self.plat.schedule(self.rx_delay_ns, dest.engine._rx, msg)
            return
        rx = dest.engine._arrive
        try:
            dev.wire.transfer(dev.node, dest.node, msg.wire_bytes,
                              lambda _t, m=msg: rx(m),
                              on_fail=lambda reason, m=msg: self._on_lost(m, reason))
        except Exception:
            dev._internal_error("wire transfer")
            self.plat.schedule(0, self._on_lost, msg, "wire refused the transfer")

    def _on_lost(self, msg: Message, reason: str) -> None:
        """The message or its response was lost: retransmit after the ACK timeout or give up
        with TRANSPORT_RETRY_EXC_ERR (IB spec 9.7.6.1.3)."""
        qp = msg.qp
        if msg.gen != qp.gen or msg.executed:
            return
        if msg.retries <= 0:
            log.info("nic %s qp %d: retry exceeded (%s)", self.dev.node, qp.qpn, reason)
            msg.status = Syndrome.TRANSPORT_RETRY_EXC_ERR
            msg.executed = True
            self._drain(qp)
            return
        msg.retries -= 1
        self.stats["retransmits"] += 1
        self.plat.schedule(regs.ack_timeout_ns(qp.timeout), self._retransmit, msg)

    def _retransmit(self, msg: Message) -> None:
        if msg.gen == msg.qp.gen and msg.qp.state == QpState.RTS:
            self._transmit(msg)

    def _on_response(self, msg: Message, kind: int, syndrome: int, rnr_ns: int) -> None:
        """ACK / NAK / RNR NAK / READ response reached the requester (after its DMA write)."""
        qp = msg.qp
        if msg.gen != qp.gen or msg.executed:
            return
        if kind == RNR:
            self.stats["rnr_naks"] += 1
            if msg.rnr_retries == 0:
                msg.status = Syndrome.RNR_RETRY_EXC_ERR
            else:
                if msg.rnr_retries != regs.RNR_RETRY_INFINITE:
                    msg.rnr_retries -= 1
                self.plat.schedule(rnr_ns, self._retransmit, msg)
                return
        elif kind == NAK:
            self.stats["naks"] += 1
            msg.status = syndrome
        elif msg.opcode == _OP_READ:
            data = msg.result
            dma = self.mem.dma_view
            off = 0
            if data is not None:
                for addr, length in msg.local:
                    v = dma(addr, length)
                    if v is None:
                        msg.status = Syndrome.LOCAL_PROT_ERR
                        break
                    v[:] = np.frombuffer(data, np.uint8, length, off)
                    off += length
        msg.executed = True
        self._drain(qp)

    def _drain(self, qp: Qp) -> None:
        """Complete finished messages in WQE order; an error moves the QP to ERR."""
        inflight = qp.inflight
        while inflight and inflight[0].executed:
            msg = inflight.popleft()
            if msg.status:
                self.post_cqe(qp.scq, CqeOpcode.REQ_ERR, qp.qpn, msg.wqe_counter, 0, 0,
                              msg.status, False)
                self.to_error(qp)
                return
            if msg.signaled:
                self.post_cqe(qp.scq, CqeOpcode.REQ, qp.qpn, msg.wqe_counter, msg.byte_len,
                              0, 0, False)
        qp.sq_done = qp.sq_ci - len(inflight)

    # =========================================================================================
    # responder
    # =========================================================================================
    def _arrive(self, msg: Message) -> None:
        """Wire delivery: placement happens one receive pipeline plus a DMA write later."""
        self.plat.schedule(self.rx_delay_ns, self._rx, msg)

    def _rx(self, msg: Message) -> None:
        try:
            self._rx_inner(msg)
        except Exception:
            self.dev._internal_error("responder")

    def _rx_inner(self, msg: Message) -> None:
        dev = self.dev
        req_qp = msg.qp
        qp = dev.qps.get(req_qp.remote_qpn)
        if not dev.port_up or qp is None or qp.state not in (QpState.RTR, QpState.RTS):
            # IB spec 9.6.1: a packet for a missing or unready QP is silently dropped
            msg.eng._on_lost(msg, "responder QP not ready")
            return
        diff = (msg.psn - qp.rq_psn) & _PSN_MASK
        if diff == 0:
            self._execute(qp, msg)
            held = self.held.get(qp.qpn)
            while held and qp.state != QpState.ERR:
                nxt = held.pop(qp.rq_psn, None)
                if nxt is None:
                    break
                self._execute(qp, nxt)
        elif diff < _PSN_HALF:
            self.held.setdefault(qp.qpn, {})[msg.psn] = msg    # overtook an earlier message
        else:
            self._duplicate(qp, msg)

    def _execute(self, qp: Qp, msg: Message) -> None:
        """Run one in-order message at the responder and send its response."""
        op = msg.opcode
        if op == _OP_READ or op == _OP_WRITE or op == _OP_WRITE_IMM:
            need = regs.ACCESS_REMOTE_READ if op == _OP_READ else regs.ACCESS_REMOTE_WRITE
            if not self._check_remote(qp, msg, need):
                self._nak_remote(qp, msg, Syndrome.REMOTE_ACCESS_ERR)
                return
        if op in _NEEDS_RECV:
            if qp.rq_ci == qp.rq_pi:
                self._respond(msg, RNR, 0, regs.RNR_TIMER_NS[qp.min_rnr_timer])
                return
            rcounter = qp.rq_ci
            if op != _OP_WRITE_IMM:
                sges, status = self._recv_sges(qp, rcounter, msg.byte_len)
                if status:
                    qp.rq_ci += 1
                    self.post_cqe(qp.rcq, CqeOpcode.RESP_ERR, qp.qpn, rcounter & _U16, 0, 0,
                                  status, False)
                    nak = (Syndrome.REMOTE_INVAL_REQ_ERR if status == Syndrome.LOCAL_LENGTH_ERR
                           else Syndrome.REMOTE_OP_ERR)
                    self._nak_remote(qp, msg, nak)
                    return
                self._scatter(sges, msg.data)
            else:
                self._place(msg.raddr, msg.data)
            qp.rq_ci += 1
            if op == _OP_SEND:
                opc, imm, flag = CqeOpcode.RESP_SEND, 0, 0
            elif op == _OP_SEND_IMM:
                opc, imm, flag = CqeOpcode.RESP_SEND_IMM, msg.imm, regs.CQE_FLAG_IMM
            else:
                opc, imm, flag = CqeOpcode.RESP_WR_IMM, msg.imm, regs.CQE_FLAG_IMM
            self.post_cqe(qp.rcq, opc, qp.qpn, rcounter & _U16, msg.byte_len, imm, 0,
                          msg.solicited, flag)
        elif op == _OP_WRITE:
            self._place(msg.raddr, msg.data)
        else:
            msg.result = self.mem.dma_view(msg.raddr, msg.byte_len).tobytes() \
                if msg.byte_len else b""
        qp.rq_psn = (qp.rq_psn + 1) & _PSN_MASK
        self._respond(msg, ACK, 0, 0)

    def _duplicate(self, qp: Qp, msg: Message) -> None:
        """A retransmission of a message already executed: re-ACK (re-run WRITE/READ)."""
        op = msg.opcode
        if op == _OP_READ or op == _OP_WRITE:
            need = regs.ACCESS_REMOTE_READ if op == _OP_READ else regs.ACCESS_REMOTE_WRITE
            if not self._check_remote(qp, msg, need):
                self._respond(msg, NAK, Syndrome.REMOTE_ACCESS_ERR, 0)
                return
            if op == _OP_WRITE:
                self._place(msg.raddr, msg.data)
            else:
                msg.result = self.mem.dma_view(msg.raddr, msg.byte_len).tobytes() \
                    if msg.byte_len else b""
        self._respond(msg, ACK, 0, 0)

    def _check_remote(self, qp: Qp, msg: Message, need: int) -> bool:
        """rkey, PD, range and access of an RDMA operation (IB spec 10.6.3.3, 9.7.5.1.3)."""
        if not qp.access & need:
            return False
        rkey = msg.rkey
        mk: MKey | None = self.dev.mkeys.get(rkey >> 8)
        n = msg.byte_len
        if mk is None or mk.key != (rkey & 0xFF) or mk.pd != qp.pd or not mk.access & need:
            return False
        if n == 0:
            return True
        if msg.raddr < mk.start or msg.raddr + n > mk.end:
            return False
        return self.mem.dma_view(msg.raddr, n) is not None

    def _recv_sges(self, qp: Qp, counter: int, nbytes: int) -> tuple[list[tuple[int, int]], int]:
        """Scatter list of receive WQE ``counter``, checked; ``(sges, 0)`` or an error."""
        f = _unpack_recv(qp.rq_buf, (counter & qp.rq_mask) * regs.RECV_WQE_BYTES)
        mkeys = self.dev.mkeys
        sges: list[tuple[int, int]] = []
        room = 0
        for i in range(regs.MAX_RECV_SGE):
            length, lkey, addr = f[3 * i: 3 * i + 3]
            if lkey == _INVALID_LKEY:
                break
            if length == 0:
                continue
            mk = mkeys.get(lkey >> 8)
            if (mk is None or mk.key != (lkey & 0xFF) or mk.pd != qp.pd
                    or not mk.access & regs.ACCESS_LOCAL_WRITE
                    or addr < mk.start or addr + length > mk.end
                    or self.mem.dma_view(addr, length) is None):
                return [], Syndrome.LOCAL_PROT_ERR
            sges.append((addr, length))
            room += length
        if room < nbytes:
            return [], Syndrome.LOCAL_LENGTH_ERR
        return sges, 0

    def _scatter(self, sges: list[tuple[int, int]], data: bytes | None) -> None:
        if not data:
            return
        dma = self.mem.dma_view
        off = 0
        n = len(data)
        for addr, length in sges:
            k = min(length, n - off)
            if k <= 0:
                break
            dma(addr, k)[:] = np.frombuffer(data, np.uint8, k, off)
            off += k
        self.stats["bytes_placed"] += n

    def _place(self, addr: int, data: bytes | None) -> None:
        if data:
            self.mem.dma_view(addr, len(data))[:] = np.frombuffer(data, np.uint8)
            self.stats["bytes_placed"] += len(data)

    def _nak_remote(self, qp: Qp, msg: Message, syndrome: int) -> None:
        """Responder-side error: NAK the requester and move this QP to ERR (IB spec 9.9.3)."""
        self._respond(msg, NAK, syndrome, 0)
        self.to_error(qp)

    def _respond(self, msg: Message, kind: int, syndrome: int, rnr_ns: int) -> None:
        """Send ACK/NAK/READ response back to the requester NIC."""
        dev = self.dev
        req_engine = msg.eng
        req_dev = req_engine.dev
        if req_dev is dev:
            self.plat.schedule(self.dma_write_ns, req_engine._on_response, msg, kind, syndrome,
                               rnr_ns)
            return
        nbytes = self.header_bytes
        if kind == ACK and msg.result:
            n = len(msg.result)
            nbytes = n + max(1, -(-n // msg.qp.path_mtu)) * self.header_bytes
        delay = req_engine.dma_write_ns
        sched = self.plat.schedule
        on_resp = req_engine._on_response
        try:
            dev.wire.transfer(dev.node, req_dev.node, nbytes,
                              lambda _t: sched(delay, on_resp, msg, kind, syndrome, rnr_ns),
                              on_fail=lambda reason: req_engine._on_lost(msg, reason))
        except Exception:
            dev._internal_error("wire transfer")
            self.plat.schedule(0, req_engine._on_lost, msg, "wire refused the transfer")

    # =========================================================================================
    # errors and flushing
    # =========================================================================================
    def to_error(self, qp: Qp) -> None:
        """Move ``qp`` to ERR and flush every outstanding WQE (IB spec 10.3.1, 11.6.2)."""
        if qp.state == QpState.ERR:
            return
        qp.state = QpState.ERR
        qp.gen += 1                       # responses and retries still on their way are ignored
        qp.sq_scheduled = False
        self.held.pop(qp.qpn, None)
        inflight = qp.inflight
        while inflight:
            msg = inflight.popleft()
            self.post_cqe(qp.scq, CqeOpcode.REQ_ERR, qp.qpn, msg.wqe_counter, 0, 0,
                          Syndrome.WR_FLUSH_ERR, False)
        self._flush_sq(qp)
        self._flush_rq(qp)

    def _flush_sq(self, qp: Qp) -> None:
        while qp.sq_ci != qp.sq_pi:
            self.post_cqe(qp.scq, CqeOpcode.REQ_ERR, qp.qpn, qp.sq_ci & _U16, 0, 0,
                          Syndrome.WR_FLUSH_ERR, False)
            qp.sq_ci += 1
        qp.sq_done = qp.sq_ci

    def _flush_rq(self, qp: Qp) -> None:
        while qp.rq_ci != qp.rq_pi:
            self.post_cqe(qp.rcq, CqeOpcode.RESP_ERR, qp.qpn, qp.rq_ci & _U16, 0, 0,
                          Syndrome.WR_FLUSH_ERR, False)
            qp.rq_ci += 1

    # =========================================================================================
    # completions
    # =========================================================================================
    def post_cqe(self, cq: Cq, opcode: int, qpn: int, wqe_counter: int, byte_cnt: int,
                 imm: int, syndrome: int, solicited: bool, flags: int = 0) -> bool:
        """Write one CQE at the CQ's producer index (mlx5 owner-bit protocol); a full CQ
        loses it and is marked overflowed (the PRM's CQ error)."""
        ci = int(cq.dbrec[0]) & regs.CQ_CI_MASK
        if ((cq.pi - ci) & regs.CQ_CI_MASK) >= cq.size:
            if not cq.overflowed:
                log.info("nic %s: CQ %d overflow", self.dev.node, cq.cqn)
            cq.overflowed = True
            self.dev._count(regs.Reg.CNT_CQ_OVERFLOW)
            return False
        pi = cq.pi
        owner = (pi >> cq.log_size) & 1
        _pack_cqe(cq.buf, (pi & cq.mask) * regs.CQE_BYTES, imm & 0xFFFF_FFFF, flags,
                  byte_cnt & 0xFFFF_FFFF, self.plat.now_ns & 0xFFFF_FFFF, 0, syndrome,
                  qpn & regs.CQE_QPN, wqe_counter, 0, (int(opcode) << _OPCODE_SHIFT) | owner)
        cq.pi = pi + 1
        armed = cq.armed
        if armed is not None and (armed == regs.CqArm.NEXT or solicited or syndrome):
            cq.armed = None
            self.dev.raise_interrupt(cq.vector)
        return True
