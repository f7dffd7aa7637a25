"""Command interface of the NIC: the control-path verbs as mlx5 PRM commands.

:func:`execute_entry` runs one command-queue entry (PRM "Command Interface": delivery checks on
the entry itself, then the opcode handler); each handler takes the parsed input and returns
``(status, result0, result1)`` with a PRM status code, after QEMU's ``{opcode: handler}`` tables
(STYLE.md section 1).  QP transitions follow the IB spec 1.4 section 10.3 state diagram: a
command whose current state does not match answers BAD_QP_STATE_ERR and changes nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from labrig.hw.fabric.nic import regs
from labrig.hw.fabric.nic._objects import Cq, MKey, Qp
from labrig.hw.fabric.nic.regs import CmdOpcode, CmdStatus, DeliveryStatus, QpState

if TYPE_CHECKING:
    from labrig.hw.fabric.nic.device import NicDevice

__all__ = ["HANDLERS", "execute_entry"]

_ENTRY = regs.struct_of(regs.CMD_ENTRY)
_OUT = regs.struct_of(regs.CMD_OUT)
#: offsets inside a command entry
_IN_INLINE_OFF = regs.CMD_ENTRY.fields["in_inline"][1]
_OUT_INLINE_OFF = regs.CMD_ENTRY.fields["out_inline"][1]
_STATUS_OWN_OFF = regs.CMD_ENTRY.fields["status_own"][1]
#: longest command input accepted (16 inline bytes + one 4 KiB input buffer)
MAX_INLEN = regs.CMD_INLINE_BYTES + 4096
#: MSI-X table size (PCIe: up to 2048 vectors)
MAX_VECTORS = 2048
MAX_PSN = 0xFFFFFF
MAX_QPN = 0xFFFFFF

Result = tuple[int, int, int]
OK: Result = (CmdStatus.OK, 0, 0)


def _err(status: CmdStatus) -> Result:
    return (int(status), 0, 0)


def execute_entry(dev: NicDevice, entry: np.ndarray) -> None:
    """Execute the 64-byte command entry ``entry`` (a view into host memory), write its
    output and hand it back to software (ownership bit cleared)."""
    (ctype, inlen, in_ptr, *_in, out_ptr, outlen, _tok, _sig, status_own) = \
        _ENTRY.unpack_from(entry, 0)
    if not status_own & regs.CMD_OWN_HW:
        return                                    # software still owns it: nothing to run
    delivery = DeliveryStatus.OK
    result: Result = OK
    if ctype != regs.CMD_TYPE_PCIE:
        delivery = DeliveryStatus.CMD_IF_VER_ERR
    elif not regs.CMD_IN_HDR.itemsize <= inlen <= MAX_INLEN:
        delivery = DeliveryStatus.IN_LENGTH_ERR
    elif outlen < regs.CMD_INLINE_BYTES:
        delivery = DeliveryStatus.OUT_LENGTH_ERR
    else:
        data = bytes(entry[_IN_INLINE_OFF:_IN_INLINE_OFF + min(inlen, regs.CMD_INLINE_BYTES)])
        if inlen > regs.CMD_INLINE_BYTES:
            extra = dev.plat.memory.dma_view(in_ptr, inlen - regs.CMD_INLINE_BYTES)
            if extra is None:
                delivery = DeliveryStatus.IN_PTR_ALIGN_ERR
            else:
                data += extra.tobytes()
        if delivery == DeliveryStatus.OK:
            result = run_command(dev, data)
    if delivery == DeliveryStatus.OK:
        _OUT.pack_into(entry, _OUT_INLINE_OFF, result[0], 0, result[1] & 0xFFFF_FFFF,
                       result[2] & 0xFFFF_FFFF)
    entry[_STATUS_OWN_OFF] = regs.field_prep(regs.CMD_DELIVERY, delivery)


def run_command(dev: NicDevice, data: bytes) -> Result:
    """Decode the opcode, check the input length against its layout, run the handler."""
    opcode = struct.unpack_from("<H", data, 0)[0]
    try:
        op = CmdOpcode(opcode)
    except ValueError:
        return _err(CmdStatus.BAD_OP_ERR)
    layout = regs.IN_LAYOUTS[op]
    if len(data) < layout.itemsize:
        return _err(CmdStatus.BAD_INP_LEN_ERR)
    if not dev.hca_ready and op != CmdOpcode.INIT_HCA:
        return _err(CmdStatus.BAD_SYS_STATE_ERR)
    inp = np.frombuffer(data, layout, count=1)[0]
    try:
        return HANDLERS[op](dev, inp)
    except Exception:              # a model bug must not escape into the driver
        dev._internal_error(f"command {op.name}")
        return _err(CmdStatus.INT_ERR)


def _alloc_index(table: dict[int, object], limit: int, first: int = 1) -> int | None:
    for i in range(first, limit):
        if i not in table:
            return i
    return None


def _mapped(dev: NicDevice, addr: int, nbytes: int) -> np.ndarray | None:
    return dev.plat.memory.dma_view(int(addr), int(nbytes))


# ---- HCA ----------------------------------------------------------------------------------
def _init_hca(dev: NicDevice, inp: np.void) -> Result:
    if dev.hca_ready:
        return _err(CmdStatus.BAD_SYS_STATE_ERR)
    dev.hca_ready = True
    return OK


def _teardown_hca(dev: NicDevice, inp: np.void) -> Result:
    dev.teardown()
    return OK


# ---- PD -----------------------------------------------------------------------------------
def _alloc_pd(dev: NicDevice, inp: np.void) -> Result:
    pdn = _alloc_index(dev.pds, 1 << dev.cfg.log_max_pd)
    if pdn is None:
        return _err(CmdStatus.NO_RES_ERR)
    dev.pds[pdn] = None
    return (CmdStatus.OK, pdn, 0)


def _dealloc_pd(dev: NicDevice, inp: np.void) -> Result:
    pdn = int(inp["obj"])
    if pdn not in dev.pds:
        return _err(CmdStatus.BAD_RES_ERR)
    if any(m.pd == pdn for m in dev.mkeys.values()) or any(q.pd == pdn for q in dev.qps.values()):
        return _err(CmdStatus.RES_BUSY)
    del dev.pds[pdn]
    return OK


# ---- memory keys --------------------------------------------------------------------------
def _create_mkey(dev: NicDevice, inp: np.void) -> Result:
    pd = int(inp["pd"])
    access = int(inp["access"])
    start, length = int(inp["start_addr"]), int(inp["length"])
    if pd not in dev.pds:
        return _err(CmdStatus.BAD_RES_ERR)
    if access & ~regs.ACCESS_ALL:
        return _err(CmdStatus.BAD_PARAM_ERR)
    # ibv_reg_mr(3): REMOTE_WRITE or REMOTE_ATOMIC requires LOCAL_WRITE too
    if access & (regs.ACCESS_REMOTE_WRITE | regs.ACCESS_REMOTE_ATOMIC) \
            and not access & regs.ACCESS_LOCAL_WRITE:
        return _err(CmdStatus.BAD_PARAM_ERR)
    if length == 0 or _mapped(dev, start, length) is None:
        return _err(CmdStatus.BAD_PARAM_ERR)      # nothing to pin there
    index = _alloc_index(dev.mkeys, 1 << dev.cfg.log_max_mkey)
    if index is None:
        return _err(CmdStatus.NO_RES_ERR)
    mk = MKey(index, int(inp["mkey_7_0"]), pd, access, start, length)
    dev.mkeys[index] = mk
    return (CmdStatus.OK, mk.mkey, 0)


def _destroy_mkey(dev: NicDevice, inp: np.void) -> Result:
    mkey = int(inp["obj"])
    mk = dev.mkeys.get(regs.field_get(regs.MKEY_INDEX, mkey))
    if mk is None or mk.key != regs.field_get(regs.MKEY_KEY, mkey):
        return _err(CmdStatus.BAD_RES_ERR)
    del dev.mkeys[mk.index]
    return OK


# ---- CQ -----------------------------------------------------------------------------------
def _create_cq(dev: NicDevice, inp: np.void) -> Result:
    log_size = int(inp["log_cq_size"])
    uar = int(inp["uar"])
    vector = int(inp["c_eqn"])
    if not 1 <= log_size <= dev.cfg.log_max_cq_sz or uar >= dev.cfg.num_uars \
            or vector >= MAX_VECTORS:
        return _err(CmdStatus.BAD_PARAM_ERR)
    ring = _mapped(dev, inp["cq_addr"], (1 << log_size) * regs.CQE_BYTES)
    dbrec = _mapped(dev, inp["dbrec_addr"], regs.CQ_DBREC_BYTES)
    if ring is None or dbrec is None or int(inp["dbrec_addr"]) % 4:
        return _err(CmdStatus.BAD_PARAM_ERR)
    cqn = _alloc_index(dev.cqs, 1 << dev.cfg.log_max_cq)
    if cqn is None:
        return _err(CmdStatus.NO_RES_ERR)
    dev.cqs[cqn] = Cq(cqn, ring, dbrec, log_size, uar, vector)
    return (CmdStatus.OK, cqn, 0)


def _destroy_cq(dev: NicDevice, inp: np.void) -> Result:
    cq = dev.cqs.get(int(inp["obj"]))
    if cq is None:
        return _err(CmdStatus.BAD_RES_ERR)
    if cq.qps:
        return _err(CmdStatus.RES_BUSY)
    del dev.cqs[cq.cqn]
    return OK


# ---- QP -----------------------------------------------------------------------------------
def _create_qp(dev: NicDevice, inp: np.void) -> Result:
    cfg = dev.cfg
    pd = int(inp["pd"])
    if pd not in dev.pds:
        return _err(CmdStatus.BAD_RES_ERR)
    scq, rcq = dev.cqs.get(int(inp["cqn_snd"])), dev.cqs.get(int(inp["cqn_rcv"]))
    if scq is None or rcq is None:
        return _err(CmdStatus.BAD_RES_ERR)
    lsq, lrq = int(inp["log_sq_size"]), int(inp["log_rq_size"])
    if int(inp["st"]) != regs.QP_ST_RC or int(inp["uar"]) >= cfg.num_uars \
            or not 0 <= lsq <= cfg.log_max_qp_sz or not 0 <= lrq <= cfg.log_max_qp_sz:
        return _err(CmdStatus.BAD_PARAM_ERR)
    sq = _mapped(dev, inp["sq_addr"], (1 << lsq) * regs.SEND_WQE_BYTES)
    rq = _mapped(dev, inp["rq_addr"], (1 << lrq) * regs.RECV_WQE_BYTES)
    if sq is None or rq is None:
        return _err(CmdStatus.BAD_PARAM_ERR)
    qpn = _alloc_index(dev.qps, 1 << cfg.log_max_qp)
    if qpn is None:
        return _err(CmdStatus.NO_RES_ERR)
    qp = Qp(qpn, pd, int(inp["uar"]), scq, rcq, sq, lsq, rq, lrq)
    dev.qps[qpn] = qp
    scq.qps.add(qpn)
    rcq.qps.add(qpn)
    return (CmdStatus.OK, qpn, 0)


def _qp(dev: NicDevice, inp: np.void) -> Qp | None:
    return dev.qps.get(int(inp["obj"]))


def _destroy_qp(dev: NicDevice, inp: np.void) -> Result:
    qp = _qp(dev, inp)
    if qp is None:
        return _err(CmdStatus.BAD_RES_ERR)
    qp.reset()                 # drops outstanding work; late responses see a new generation
    dev.engine.held.pop(qp.qpn, None)
    del dev.qps[qp.qpn]
    qp.scq.qps.discard(qp.qpn)
    qp.rcq.qps.discard(qp.qpn)
    return OK


def _rst2init(dev: NicDevice, inp: np.void) -> Result:
    qp = _qp(dev, inp)
    if qp is None:
        return _err(CmdStatus.BAD_RES_ERR)
    if qp.state != QpState.RESET:
        return _err(CmdStatus.BAD_QP_STATE_ERR)
    access = int(inp["access"])
    if access & ~regs.ACCESS_ALL or int(inp["port"]) != 1:
        return _err(CmdStatus.BAD_PARAM_ERR)
    qp.access = access
    qp.port = 1
    qp.state = QpState.INIT
    return OK


def _init2rtr(dev: NicDevice, inp: np.void) -> Result:
    qp = _qp(dev, inp)
    if qp is None:
        return _err(CmdStatus.BAD_RES_ERR)
    if qp.state != QpState.INIT:
        return _err(CmdStatus.BAD_QP_STATE_ERR)
    mtu = int(inp["path_mtu"])
    if mtu not in regs.MTU_BYTES or int(inp["min_rnr_timer"]) >= len(regs.RNR_TIMER_NS) \
            or int(inp["remote_qpn"]) > MAX_QPN or int(inp["rq_psn"]) > MAX_PSN:
        return _err(CmdStatus.BAD_PARAM_ERR)
    qp.remote_qpn = int(inp["remote_qpn"])
    qp.dlid = int(inp["dlid"])
    qp.path_mtu = min(regs.MTU_BYTES[mtu], dev.cfg.mtu)
    qp.min_rnr_timer = int(inp["min_rnr_timer"])
    qp.rq_psn = int(inp["rq_psn"])
    qp.state = QpState.RTR
    return OK


def _rtr2rts(dev: NicDevice, inp: np.void) -> Result:
    qp = _qp(dev, inp)
    if qp is None:
        return _err(CmdStatus.BAD_RES_ERR)
    if qp.state != QpState.RTR:
        return _err(CmdStatus.BAD_QP_STATE_ERR)
    if int(inp["timeout"]) > 31 or int(inp["retry_cnt"]) > 7 or int(inp["rnr_retry"]) > 7 \
            or int(inp["sq_psn"]) > MAX_PSN:
        return _err(CmdStatus.BAD_PARAM_ERR)
    qp.sq_psn = int(inp["sq_psn"])
    qp.timeout = int(inp["timeout"])
    qp.retry_cnt = int(inp["retry_cnt"])
    qp.rnr_retry = int(inp["rnr_retry"])
    qp.max_rd_atomic = int(inp["max_rd_atomic"])
    qp.state = QpState.RTS
    dev.engine.kick(qp)        # WQEs posted before RTS go out now
    return OK


def _qp_2err(dev: NicDevice, inp: np.void) -> Result:
    qp = _qp(dev, inp)
    if qp is None:
        return _err(CmdStatus.BAD_RES_ERR)
    dev.engine.to_error(qp)    # any state -> ERR (IB spec 10.3.1 state diagram)
    return OK


def _qp_2rst(dev: NicDevice, inp: np.void) -> Result:
    qp = _qp(dev, inp)
    if qp is None:
        return _err(CmdStatus.BAD_RES_ERR)
    dev.engine.held.pop(qp.qpn, None)
    qp.reset()
    return OK


def _query_qp(dev: NicDevice, inp: np.void) -> Result:
    qp = _qp(dev, inp)
    if qp is None:
        return _err(CmdStatus.BAD_RES_ERR)
    return (CmdStatus.OK, int(qp.state), qp.sq_psn)


HANDLERS: dict[CmdOpcode, Callable[[NicDevice, np.void], Result]] = {
    CmdOpcode.INIT_HCA: _init_hca,
    CmdOpcode.TEARDOWN_HCA: _teardown_hca,
    CmdOpcode.ALLOC_PD: _alloc_pd,
    CmdOpcode.DEALLOC_PD: _dealloc_pd,
    CmdOpcode.CREATE_MKEY: _create_mkey,
    CmdOpcode.DESTROY_MKEY: _destroy_mkey,
    CmdOpcode.CREATE_CQ: _create_cq,
    CmdOpcode.DESTROY_CQ: _destroy_cq,
    CmdOpcode.CREATE_QP: _create_qp,
    CmdOpcode.DESTROY_QP: _destroy_qp,
    CmdOpcode.RST2INIT_QP: _rst2init,
    CmdOpcode.INIT2RTR_QP: _init2rtr,
    CmdOpcode.RTR2RTS_QP: _rtr2rts,
    CmdOpcode.QP_2ERR: _qp_2err,
    CmdOpcode.QP_2RST: _qp_2rst,
    CmdOpcode.QUERY_QP: _query_qp,
}
