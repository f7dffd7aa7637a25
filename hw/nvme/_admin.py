"""Admin command set handlers (Base spec 2.0 section 5), one per opcode.

Each handler is ``(ctrl, req) -> NvmeStatus`` (QEMU ``nvme_admin_cmd`` switch, as a table);
``NO_COMPLETE`` means the command completes later (Asynchronous Event Request).  Every invalid
field has its own status, with DNR where retrying cannot help.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from labrig.hw._bits import field_get
from labrig.hw.nvme import regs
from labrig.hw.nvme._prp import map_prps
from labrig.hw.nvme._queues import NO_COMPLETE, CompletionQueue, Request, SubmissionQueue
from labrig.hw.nvme.spec import (
    CDW10_ABORT_CID,
    CDW10_ABORT_SQID,
    CDW10_CNS,
    CDW10_FID,
    CDW10_LID,
    CDW10_NUMDL,
    CDW10_QID,
    CDW10_QSIZE,
    CDW10_RAE,
    CDW10_SEL,
    CDW10_SV,
    CDW11_CQID,
    CDW11_IEN,
    CDW11_IV,
    CDW11_NUMDU,
    CDW11_PC,
    CDW11_QPRIO,
    CQE_BYTES,
    IDENTIFY_BYTES,
    NQ_NCQR,
    NQ_NSQR,
    NSID_BROADCAST,
    ONCS_DSM,
    ONCS_WRITE_ZEROES,
    SMART_DATA_UNIT_BYTES,
    SMART_LOG_BYTES,
    SQE_BYTES,
    SQE_SIZE_LOG2,
    CQE_SIZE_LOG2,
    VWC_FLUSH_BROADCAST,
    VWC_PRESENT,
    VWC_WCE,
    AdminOpcode,
    AsyncEventType,
    Cns,
    CommandSpecificSc,
    FeatureId,
    GenericSc,
    IdCtrl,
    LogPageId,
    NvmeStatus,
    SmartOffset,
    status,
)

if TYPE_CHECKING:
    from labrig.hw.nvme._controller import NvmeController

__all__ = ["ADMIN_HANDLERS"]

OK = NvmeStatus()
ST_INVALID_FIELD = status(GenericSc.INVALID_FIELD, dnr=True)
ST_INVALID_NS = status(GenericSc.INVALID_NAMESPACE, dnr=True)
ST_INVALID_QID = status(CommandSpecificSc.INVALID_QID, dnr=True)
ST_INVALID_QSIZE = status(CommandSpecificSc.INVALID_QSIZE, dnr=True)
ST_INVALID_CQ = status(CommandSpecificSc.INVALID_CQ, dnr=True)
ST_INVALID_DELETION = status(CommandSpecificSc.INVALID_QUEUE_DELETION, dnr=True)
ST_INVALID_IV = status(CommandSpecificSc.INVALID_INTERRUPT_VECTOR, dnr=True)
ST_INVALID_LOG = status(CommandSpecificSc.INVALID_LOG_PAGE, dnr=True)
ST_AER_LIMIT = status(CommandSpecificSc.AER_LIMIT_EXCEEDED, dnr=True)
ST_ABORT_LIMIT = status(CommandSpecificSc.ABORT_LIMIT_EXCEEDED, dnr=True)
ST_NOT_SAVEABLE = status(CommandSpecificSc.FEATURE_NOT_SAVEABLE, dnr=True)
ST_PRP_OFFSET = status(GenericSc.INVALID_PRP_OFFSET, dnr=True)
ST_DATA_TRANSFER = status(GenericSc.DATA_TRANSFER_ERROR)
ST_ABORT_REQUESTED = status(GenericSc.ABORT_REQUESTED)
ST_SQ_DELETION = status(GenericSc.ABORTED_SQ_DELETION)

# SQE tuple indices (SQE_STRUCT field order)
I_PRP1, I_PRP2, I_CDW10, I_CDW11, I_CDW12, I_CDW13 = 7, 8, 9, 10, 11, 12
#: Get Features SEL values (5.27 Figure 318)
SEL_CURRENT, SEL_DEFAULT, SEL_SAVED, SEL_SUPPORTED = 0, 1, 2, 3
FEATURE_CAP_CHANGEABLE = 0x4
NUMBER_OF_QUEUES_INVALID = 0xFFFF
ACTIVE_NS_LIST_MAX = 1024
LOG_OFFSET_ALIGN = 4
DEFAULT_TEMPERATURE_K = 313
PCI_VENDOR_ID = 0x1B36            # the PCI ID QEMU's emulated NVMe uses (Red Hat, Inc.)

Handler = Callable[["NvmeController", Request], NvmeStatus]


def dma_to_host(ctrl: NvmeController, req: Request, data: bytes) -> NvmeStatus:
    """Copy controller data to the command's PRPs."""
    if not data:
        return OK
    views = map_prps(ctrl.plat.memory, req.cmd[I_PRP1], req.cmd[I_PRP2], len(data),
                     ctrl.page_bytes)
    if isinstance(views, NvmeStatus):
        return views
    src = np.frombuffer(data, dtype=np.uint8)
    pos = 0
    for v in views:
        v[:] = src[pos:pos + len(v)]
        pos += len(v)
    return OK


# ------------------------------------------------------------------------------------------
# Identify (5.17)
# ------------------------------------------------------------------------------------------
def identify_controller(ctrl: NvmeController) -> bytes:
    """Identify Controller data structure (Figure 275)."""
    cfg = ctrl.cfg
    buf = bytearray(IDENTIFY_BYTES)
    struct.pack_into("<HH", buf, IdCtrl.VID, PCI_VENDOR_ID, PCI_VENDOR_ID)
    buf[IdCtrl.SN:IdCtrl.SN + 20] = cfg.serial.ljust(20).encode()
    buf[IdCtrl.MN:IdCtrl.MN + 40] = cfg.model.ljust(40).encode()
    buf[IdCtrl.FR:IdCtrl.FR + 8] = cfg.firmware.ljust(8).encode()
    buf[IdCtrl.MDTS] = cfg.mdts_log2
    struct.pack_into("<H", buf, IdCtrl.CNTLID, 1)
    struct.pack_into("<I", buf, IdCtrl.VER, regs.vs_encode(1, 4))
    buf[IdCtrl.ACL] = cfg.abort_limit - 1
    buf[IdCtrl.AERL] = cfg.aer_limit - 1
    buf[IdCtrl.ELPE] = cfg.error_log_entries - 1
    buf[IdCtrl.SQES] = SQE_SIZE_LOG2 | SQE_SIZE_LOG2 << 4
    buf[IdCtrl.CQES] = CQE_SIZE_LOG2 | CQE_SIZE_LOG2 << 4
    struct.pack_into("<H", buf, IdCtrl.MAXCMD, cfg.max_queue_entries)
    struct.pack_into("<I", buf, IdCtrl.NN, len(ctrl.namespaces))
    struct.pack_into("<H", buf, IdCtrl.ONCS, ONCS_DSM | ONCS_WRITE_ZEROES)
    buf[IdCtrl.VWC] = VWC_PRESENT | VWC_FLUSH_BROADCAST
    return bytes(buf)


def admin_identify(ctrl: NvmeController, req: Request) -> NvmeStatus:
    cns = field_get(CDW10_CNS, req.cmd[I_CDW10])
    nsid = req.nsid
    if cns == Cns.CONTROLLER:
        data = identify_controller(ctrl)
    elif cns == Cns.NAMESPACE:
        ns = ctrl.namespaces.get(nsid)
        if ns is None:
            return ST_INVALID_NS
        data = ns.identify()
    elif cns == Cns.ACTIVE_NS_LIST:
        if nsid >= NSID_BROADCAST - 1:
            return ST_INVALID_NS
        ids = [i for i in sorted(ctrl.namespaces) if i > nsid][:ACTIVE_NS_LIST_MAX]
        data = struct.pack(f"<{len(ids)}I", *ids).ljust(IDENTIFY_BYTES, b"\0")
    else:
        return ST_INVALID_FIELD
    return dma_to_host(ctrl, req, data)


# ------------------------------------------------------------------------------------------
# Queue management (5.4 Create I/O CQ, 5.5 Create I/O SQ, 5.6/5.7 Delete)
# ------------------------------------------------------------------------------------------
def _check_queue(ctrl: NvmeController, req: Request, limit: int,
                 existing: dict[int, object]) -> tuple[int, int] | NvmeStatus:
    c10, c11 = req.cmd[I_CDW10], req.cmd[I_CDW11]
    qid = field_get(CDW10_QID, c10)
    qsize = field_get(CDW10_QSIZE, c10) + 1
    if qid == 0 or qid > limit or qid in existing:
        return ST_INVALID_QID
    if qsize < 2 or qsize > ctrl.cfg.max_queue_entries:
        return ST_INVALID_QSIZE
    if not c11 & CDW11_PC:
        return ST_INVALID_FIELD      # CAP.CQR = 1: queues must be physically contiguous
    prp1 = req.cmd[I_PRP1]
    if prp1 == 0 or prp1 & (ctrl.page_bytes - 1):
        return ST_PRP_OFFSET
    return qid, qsize


def admin_create_cq(ctrl: NvmeController, req: Request) -> NvmeStatus:
    r = _check_queue(ctrl, req, ctrl.ncq_alloc, ctrl.cqs)
    if isinstance(r, NvmeStatus):
        return r
    qid, qsize = r
    c11 = req.cmd[I_CDW11]
    iv = field_get(CDW11_IV, c11)
    if iv >= ctrl.cfg.msix_vectors:
        return ST_INVALID_IV
    buf = ctrl.plat.memory.dma_view(req.cmd[I_PRP1], qsize * CQE_BYTES)
    if buf is None:
        return ST_DATA_TRANSFER
    ctrl.cqs[qid] = CompletionQueue(qid, buf, qsize, bool(c11 & CDW11_IEN), iv)
    return OK


def admin_create_sq(ctrl: NvmeController, req: Request) -> NvmeStatus:
    r = _check_queue(ctrl, req, ctrl.nsq_alloc, ctrl.sqs)
    if isinstance(r, NvmeStatus):
        return r
    qid, qsize = r
    c11 = req.cmd[I_CDW11]
    cqid = field_get(CDW11_CQID, c11)
    cq = ctrl.cqs.get(cqid)
    if cqid == 0 or cq is None:
        return ST_INVALID_CQ
    buf = ctrl.plat.memory.dma_view(req.cmd[I_PRP1], qsize * SQE_BYTES)
    if buf is None:
        return ST_DATA_TRANSFER
    cq.sqs.add(qid)
    ctrl.sqs[qid] = SubmissionQueue(qid, buf, qsize, cq, field_get(CDW11_QPRIO, c11))
    return OK


def admin_delete_sq(ctrl: NvmeController, req: Request) -> NvmeStatus:
    qid = field_get(CDW10_QID, req.cmd[I_CDW10])
    sq = ctrl.sqs.get(qid)
    if qid == 0 or sq is None:
        return ST_INVALID_QID
    # Commands of this SQ still held in the model complete as aborted (5.6), before the
    # Delete's own completion; the SQ then disappears.
    for recs in ctrl._pending.values():
        for rec in recs:
            if rec[1] is sq:
                ctrl._post_now(sq, rec[2], 0, ST_SQ_DELETION)
                rec[1] = _DEAD_SQ
    sq.deleted = True
    del ctrl.sqs[qid]
    sq.cq.sqs.discard(qid)
    ctrl._busy.pop(sq, None)
    return OK


def admin_delete_cq(ctrl: NvmeController, req: Request) -> NvmeStatus:
    qid = field_get(CDW10_QID, req.cmd[I_CDW10])
    cq = ctrl.cqs.get(qid)
    if qid == 0 or cq is None:
        return ST_INVALID_QID
    if cq.sqs:
        return ST_INVALID_DELETION
    cq.deleted = True
    del ctrl.cqs[qid]
    return OK


class _DeadSq:
    """Stands in for a deleted SQ in held completion records (they are then dropped)."""

    deleted = True
    qid = -1


_DEAD_SQ = _DeadSq()


# ------------------------------------------------------------------------------------------
# Features (5.27)
# ------------------------------------------------------------------------------------------
def _feature_value(ctrl: NvmeController, fid: int, sel: int) -> int | None:
    default = sel in (SEL_DEFAULT, SEL_SAVED)
    if fid == FeatureId.NUMBER_OF_QUEUES:
        n = ctrl.cfg.max_io_queues if default else None
        nsq = (n or ctrl.nsq_alloc) - 1
        ncq = (n or ctrl.ncq_alloc) - 1
        return nsq | ncq << 16
    if fid == FeatureId.VOLATILE_WRITE_CACHE:
        return VWC_WCE if default or ctrl.vwc_enabled else 0
    if fid == FeatureId.ARBITRATION:
        return 0 if default else ctrl.arbitration
    if fid in (FeatureId.POWER_MANAGEMENT, FeatureId.TEMPERATURE_THRESHOLD,
               FeatureId.INTERRUPT_COALESCING, FeatureId.ASYNC_EVENT_CONFIG):
        return 0 if default else ctrl.features.get(fid, 0)
    return None


def admin_get_features(ctrl: NvmeController, req: Request) -> NvmeStatus:
    c10 = req.cmd[I_CDW10]
    fid, sel = field_get(CDW10_FID, c10), field_get(CDW10_SEL, c10)
    if sel > SEL_SUPPORTED:
        return ST_INVALID_FIELD
    value = _feature_value(ctrl, fid, SEL_CURRENT if sel == SEL_SUPPORTED else sel)
    if value is None:
        return ST_INVALID_FIELD
    req.dw0 = FEATURE_CAP_CHANGEABLE if sel == SEL_SUPPORTED else value
    return OK


def admin_set_features(ctrl: NvmeController, req: Request) -> NvmeStatus:
    c10, c11 = req.cmd[I_CDW10], req.cmd[I_CDW11]
    fid = field_get(CDW10_FID, c10)
    if _feature_value(ctrl, fid, SEL_CURRENT) is None:
        return ST_INVALID_FIELD
    if c10 & CDW10_SV:
        return ST_NOT_SAVEABLE
    if fid == FeatureId.NUMBER_OF_QUEUES:
        nsqr, ncqr = field_get(NQ_NSQR, c11), field_get(NQ_NCQR, c11)
        if nsqr == NUMBER_OF_QUEUES_INVALID or ncqr == NUMBER_OF_QUEUES_INVALID:
            return ST_INVALID_FIELD
        limit = ctrl.cfg.max_io_queues
        ctrl.nsq_alloc = min(nsqr + 1, limit)
        ctrl.ncq_alloc = min(ncqr + 1, limit)
        ctrl.nq_set = True
        req.dw0 = (ctrl.nsq_alloc - 1) | (ctrl.ncq_alloc - 1) << 16
    elif fid == FeatureId.VOLATILE_WRITE_CACHE:
        ctrl.vwc_enabled = bool(c11 & VWC_WCE)
    elif fid == FeatureId.ARBITRATION:
        ctrl.arbitration = c11
        ctrl.reinit_arbitration()
    else:
        ctrl.features[fid] = c11
    return OK


# ------------------------------------------------------------------------------------------
# Get Log Page (5.16)
# ------------------------------------------------------------------------------------------
def _u128(buf: bytearray, off: int, value: int) -> None:
    buf[off:off + 16] = min(value, (1 << 128) - 1).to_bytes(16, "little")


def smart_log(ctrl: NvmeController) -> bytes:
    """SMART / Health Information log (5.16.1.3)."""
    c = ctrl.counters
    buf = bytearray(SMART_LOG_BYTES)
    struct.pack_into("<H", buf, SmartOffset.COMPOSITE_TEMPERATURE, DEFAULT_TEMPERATURE_K)
    buf[SmartOffset.AVAILABLE_SPARE] = 100
    buf[SmartOffset.AVAILABLE_SPARE_THRESHOLD] = 10
    _u128(buf, SmartOffset.DATA_UNITS_READ, -(-c.bytes_read // SMART_DATA_UNIT_BYTES))
    _u128(buf, SmartOffset.DATA_UNITS_WRITTEN, -(-c.bytes_written // SMART_DATA_UNIT_BYTES))
    _u128(buf, SmartOffset.HOST_READ_COMMANDS, c.read_commands)
    _u128(buf, SmartOffset.HOST_WRITE_COMMANDS, c.write_commands)
    _u128(buf, SmartOffset.POWER_CYCLES, c.power_cycles)
    _u128(buf, SmartOffset.POWER_ON_HOURS, ctrl.plat.now_ns // 3_600_000_000_000)
    _u128(buf, SmartOffset.UNSAFE_SHUTDOWNS, c.unsafe_shutdowns)
    _u128(buf, SmartOffset.MEDIA_ERRORS, c.media_errors)
    _u128(buf, SmartOffset.NUM_ERROR_LOG_ENTRIES, ctrl._error_count)
    return bytes(buf)


def admin_get_log_page(ctrl: NvmeController, req: Request) -> NvmeStatus:
    cmd = req.cmd
    c10 = cmd[I_CDW10]
    lid = field_get(CDW10_LID, c10)
    numd = (field_get(CDW10_NUMDL, c10) | field_get(CDW11_NUMDU, cmd[I_CDW11]) << 16) + 1
    offset = cmd[I_CDW12] | cmd[I_CDW13] << 32
    if lid == LogPageId.ERROR_INFORMATION:
        page = ctrl.error_log_page()
    elif lid == LogPageId.SMART_HEALTH:
        page = smart_log(ctrl)
    else:
        return ST_INVALID_LOG
    if offset & (LOG_OFFSET_ALIGN - 1) or offset > len(page):
        return ST_INVALID_FIELD
    nbytes = numd * 4
    mdts = ctrl.cfg.mdts_bytes
    if mdts and nbytes > mdts:
        return ST_INVALID_FIELD
    data = page[offset:offset + nbytes].ljust(nbytes, b"\0")
    st = dma_to_host(ctrl, req, data)
    if st.ok and not c10 & CDW10_RAE:
        # Reading the log clears the matching asynchronous event mask (5.2.1).
        etype = (AsyncEventType.ERROR_STATUS if lid == LogPageId.ERROR_INFORMATION
                 else AsyncEventType.SMART_HEALTH)
        ctrl._aen_masked.discard(etype)
        ctrl.schedule_later(req.done_ns - ctrl.plat.now_ns, ctrl._deliver_aen)
    return st


# ------------------------------------------------------------------------------------------
# Abort (5.1) and Asynchronous Event Request (5.2)
# ------------------------------------------------------------------------------------------
def admin_abort(ctrl: NvmeController, req: Request) -> NvmeStatus:
    c10 = req.cmd[I_CDW10]
    sqid, cid = field_get(CDW10_ABORT_SQID, c10), field_get(CDW10_ABORT_CID, c10)
    inflight = sum(1 for recs in ctrl._pending.values() for r in recs
                   if r[5] == AdminOpcode.ABORT and r[1].qid == 0)
    if inflight >= ctrl.cfg.abort_limit:
        return ST_ABORT_LIMIT
    req.dw0 = 1                         # bit 0 set: command not aborted
    sq = ctrl.sqs.get(sqid)
    if sq is None:
        return OK
    # Held in the model (fetched, completion not yet posted): post it as aborted instead.
    for recs in ctrl._pending.values():
        for rec in recs:
            if rec[1] is sq and rec[2] == cid and rec[4] == 0:
                rec[4] = ST_ABORT_REQUESTED.encode()
                req.dw0 = 0
                return OK
    # Still in the SQ: it completes as aborted, without executing, when fetched.
    i = sq.head
    while i != sq.tail:
        if struct.unpack_from("<H", sq.buf, i * SQE_BYTES + 2)[0] == cid:
            ctrl._aborted.add((sqid, cid))
            req.dw0 = 0
            return OK
        i = (i + 1) % sq.size
    return OK


def admin_async_event(ctrl: NvmeController, req: Request) -> NvmeStatus:
    if len(ctrl._aers) >= ctrl.cfg.aer_limit:
        return ST_AER_LIMIT
    ctrl._aers.append(req)
    ctrl.schedule_later(0, ctrl._deliver_aen)
    return NO_COMPLETE


ADMIN_HANDLERS: dict[int, Handler] = {
    AdminOpcode.DELETE_IO_SQ: admin_delete_sq,
    AdminOpcode.CREATE_IO_SQ: admin_create_sq,
    AdminOpcode.GET_LOG_PAGE: admin_get_log_page,
    AdminOpcode.DELETE_IO_CQ: admin_delete_cq,
    AdminOpcode.CREATE_IO_CQ: admin_create_cq,
    AdminOpcode.IDENTIFY: admin_identify,
    AdminOpcode.ABORT: admin_abort,
    AdminOpcode.SET_FEATURES: admin_set_features,
    AdminOpcode.GET_FEATURES: admin_get_features,
    AdminOpcode.ASYNC_EVENT_REQUEST: admin_async_event,
}

