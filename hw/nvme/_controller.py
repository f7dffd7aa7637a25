"""The NVMe controller: BAR0 registers, doorbells, queue processing, completions.

Structure after QEMU ``hw/nvme/ctrl.c`` (STYLE.md section 1): BAR0 writes below the doorbell
area go to :meth:`NvmeController._write_reg` (a ``match`` over :class:`~labrig.hw.nvme.regs.Reg`),
above it to :meth:`NvmeController._ring_doorbell`; CC.EN/CC.SHN act on bit edges and show their
result in CSTS after a configured delay; enabling runs a flat list of guards, each returning a
named :class:`EnableFault`; SQ processing is a platform event that fetches, dispatches through
``{opcode: handler}`` tables and posts CQEs -- it knows no opcodes.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from labrig.hw._device import PciDevice
from labrig.hw._platform import Platform
from labrig.hw.nvme import regs
from labrig.hw.nvme._admin import ADMIN_HANDLERS
from labrig.hw.nvme._io import IO_HANDLERS
from labrig.hw.nvme._namespace import Namespace
from labrig.hw.nvme._queues import NO_COMPLETE, CompletionQueue, Request, SubmissionQueue
from labrig.hw.nvme._timing import TimingModel
from labrig.hw.nvme.config import NvmeConfig
from labrig.hw.nvme.regs import Reg
from labrig.hw.nvme.spec import (
    AER_INFO,
    ARB_AB,
    ARB_HPW,
    ARB_LPW,
    ARB_MPW,
    AER_LID,
    AER_TYPE,
    CQE_BYTES,
    CQE_SIZE_LOG2,
    ERROR_LOG_STRUCT,
    SQE_BYTES,
    SQE_SIZE_LOG2,
    SQE_STRUCT,
    AsyncErrorInfo,
    AsyncEventType,
    GenericSc,
    LogPageId,
    MediaSc,
    NvmeStatus,
    Sct,
    status,
)

if TYPE_CHECKING:
    from labrig.hw.nvme._store import Snapshot

__all__ = ["ControllerCounters", "EnableFault", "NvmeController"]

log = logging.getLogger("labrig.hw.nvme")

REG_AREA_BYTES = regs.DOORBELL_BASE
DWORD = 4
QWORD = 8
ASQ_HI = Reg.ASQ + DWORD          # upper dword of the 64-bit ASQ/ACQ registers
ACQ_HI = Reg.ACQ + DWORD
ADMIN_QUEUE_DWORDS = frozenset((Reg.AQA, Reg.ASQ, ASQ_HI, Reg.ACQ, ACQ_HI))
INTM_BITS = 32                     # INTMS/INTMC cover vectors 0..31
ADMIN_QID = 0
#: Arbitration Burst value meaning "no limit" (5.27.1.1)
AB_UNLIMITED = 0b111
#: CDW11.QPRIO of Create I/O SQ: 0 urgent, 1 high, 2 medium, 3 low (4.13.2)
WRR_URGENT = 0
_unpack_sqe = SQE_STRUCT.unpack_from

ST_INVALID_OPCODE = status(GenericSc.INVALID_OPCODE, dnr=True)
ST_INTERNAL = status(GenericSc.INTERNAL_ERROR, dnr=True)
ST_ABORT_REQUESTED = status(GenericSc.ABORT_REQUESTED)


class EnableFault(Enum):
    """Why CC.EN 0->1 failed and set CSTS.CFS (QEMU ``pci_nvme_err_startfail_*``)."""

    CSS_UNSUPPORTED = "CC.CSS not in CAP.CSS"
    MPS_UNSUPPORTED = "CC.MPS outside CAP.MPSMIN..MPSMAX"
    AMS_UNSUPPORTED = "CC.AMS not supported by CAP.AMS"
    ASQ_ZERO = "ASQ is zero"
    ACQ_ZERO = "ACQ is zero"
    ASQ_MISALIGNED = "ASQ not aligned to the CC.MPS page"
    ACQ_MISALIGNED = "ACQ not aligned to the CC.MPS page"
    IOSQES_INVALID = "CC.IOSQES is not 6 (64-byte SQEs)"
    IOCQES_INVALID = "CC.IOCQES is not 4 (16-byte CQEs)"
    ASQS_INVALID = "AQA.ASQS is 0 (an admin SQ needs 2 entries)"
    ACQS_INVALID = "AQA.ACQS is 0 (an admin CQ needs 2 entries)"
    ASQ_UNMAPPED = "ASQ range is not in host memory"
    ACQ_UNMAPPED = "ACQ range is not in host memory"


class ControllerCounters:
    """Running counters (SMART / Health log fields and test inspection)."""

    __slots__ = ("bytes_read", "bytes_written", "commands", "errors", "internal_errors",
                 "media_errors", "power_cycles", "read_commands", "unsafe_shutdowns",
                 "write_commands")

    def __init__(self) -> None:
        self.bytes_read = 0
        self.bytes_written = 0
        self.read_commands = 0
        self.write_commands = 0
        self.media_errors = 0
        self.power_cycles = 1
        self.unsafe_shutdowns = 0
        self.errors = 0
        self.commands = 0
        #: handler failures turned into Internal Error (a model bug; tests assert it stays 0)
        self.internal_errors = 0

    def __repr__(self) -> str:
        return "ControllerCounters(" + ", ".join(
            f"{k}={getattr(self, k)}" for k in self.__slots__) + ")"


class NvmeController(PciDevice):
    """An NVMe SSD controller with NAND timing (default: Micron 9200).

    Parameters
    ----------
    plat : Platform
        Clock, events and host memory.
    cfg : NvmeConfig, optional
        Limits, namespaces and timing.

    Notes
    -----
    Drivers use only ``bar0``, host memory and ``on_interrupt``.  :meth:`namespace`,
    :attr:`counters`, :meth:`inject_error` and :meth:`power_loss` are the inspection and fault
    API for tests.

    Examples
    --------
    >>> from labrig.hw import Platform
    >>> plat = Platform(seed=0)
    >>> ctrl = NvmeController(plat, NvmeConfig())
    >>> hex(ctrl.bar0.read32(Reg.VS))
    '0x10400'
    """

    def __init__(self, plat: Platform, cfg: NvmeConfig | None = None) -> None:
        cfg = NvmeConfig() if cfg is None else cfg
        self.cfg = cfg
        stride = 4 << cfg.doorbell_stride_log2
        db_bytes = 2 * (cfg.max_io_queues + 1) * stride
        self.BAR0_SIZE = -(-(REG_AREA_BYTES + db_bytes) // 4096) * 4096
        super().__init__(plat, "nvme")
        self.dstrd = cfg.doorbell_stride_log2
        self._db_shift = 2 + self.dstrd
        self._regs = bytearray(REG_AREA_BYTES)
        self.cap = (
            regs.field_prep(regs.CAP_MQES, cfg.max_queue_entries - 1)
            | regs.CAP_CQR
            | regs.field_prep(regs.CAP_AMS, regs.CAP_AMS_WRR if cfg.wrr_supported else 0)
            | regs.field_prep(regs.CAP_TO, cfg.timeout_500ms)
            | regs.field_prep(regs.CAP_DSTRD, cfg.doorbell_stride_log2)
            | regs.field_prep(regs.CAP_CSS, regs.CAP_CSS_NVM)
            | regs.field_prep(regs.CAP_MPSMIN, cfg.mps_min_log2)
            | regs.field_prep(regs.CAP_MPSMAX, cfg.mps_max_log2))
        struct.pack_into("<Q", self._regs, Reg.CAP, self.cap)
        struct.pack_into("<I", self._regs, Reg.VS, regs.vs_encode(1, 4))
        self.namespaces: dict[int, Namespace] = {
            i + 1: Namespace(i + 1, ns) for i, ns in enumerate(cfg.namespaces)}
        self.timing = TimingModel(cfg.timing, cfg.write_cache_bytes)
        self.counters = ControllerCounters()
        self.mdts_bytes = cfg.mdts_bytes
        self._admin_ns = cfg.timing.fw_admin_ns
        self.last_enable_fault: EnableFault | None = None
        self._injected: dict[tuple[bool, int], list[Any]] = {}
        #: undo records of writes not yet durable, in acceptance order: (durable_ns, snapshot)
        self._undo: list[tuple[int, int, Snapshot]] = []
        self._undo_start = 0
        self._error_log: list[bytes] = []
        self._error_count = 0
        self._power_on_reset()

    # ---------------------------------------------------------------------------------------
    # state
    # ---------------------------------------------------------------------------------------
    def _power_on_reset(self) -> None:
        """Registers to their reset values, no queues (after power-on or power loss)."""
        for off in (Reg.INTMS, Reg.CC, Reg.CSTS, Reg.AQA):
            struct.pack_into("<I", self._regs, off, 0)
        struct.pack_into("<QQ", self._regs, Reg.ASQ, 0, 0)
        for v in range(INTM_BITS):
            self.mask_interrupt(v, False)
        self._teardown()

    def _teardown(self) -> None:
        """Controller reset (3.7.2): queues, outstanding commands, AERs and features go."""
        # Every reset starts a new generation; events of older ones are dropped when they run.
        self._gen = getattr(self, "_gen", 0) + 1
        self.sqs: dict[int, SubmissionQueue] = {}
        self.cqs: dict[int, CompletionQueue] = {}
        self._busy: dict[SubmissionQueue, None] = {}
        self._arb_scheduled = False
        self._pending: dict[int, list[list[Any]]] = {}
        self._aers: list[Request] = []
        self._aen_queue: list[tuple[int, int, int]] = []
        self._aen_masked: set[int] = set()
        self._irq_cqs: set[CompletionQueue] = set()
        self._aborted: set[tuple[int, int]] = set()
        self.enabled = False
        self.page_bytes = 4096
        self.nsq_alloc = self.cfg.max_io_queues
        self.ncq_alloc = self.cfg.max_io_queues
        self.nq_set = False
        self.features: dict[int, int] = {}
        self.vwc_enabled = True
        self.arbitration = 0
        self._burst = 1
        self._weights = (1, 1, 1)
        self.wrr = False

    def _set_csts(self, rdy: int | None = None, cfs: int | None = None,
                  shst: int | None = None) -> None:
        csts = struct.unpack_from("<I", self._regs, Reg.CSTS)[0]
        if rdy is not None:
            csts = (csts & ~regs.CSTS_RDY) | (regs.CSTS_RDY if rdy else 0)
        if cfs is not None:
            csts = (csts & ~regs.CSTS_CFS) | (regs.CSTS_CFS if cfs else 0)
        if shst is not None:
            csts = (csts & ~regs.CSTS_SHST) | regs.field_prep(regs.CSTS_SHST, shst)
        struct.pack_into("<I", self._regs, Reg.CSTS, csts)

    def _reg32(self, off: int) -> int:
        return int(struct.unpack_from("<I", self._regs, off)[0])

    def _reg64(self, off: int) -> int:
        return int(struct.unpack_from("<Q", self._regs, off)[0])

    @property
    def csts(self) -> int:
        """Current CSTS value (same as a driver's read)."""
        return self._reg32(Reg.CSTS)

    # ---------------------------------------------------------------------------------------
    # BAR0
    # ---------------------------------------------------------------------------------------
    def _mmio_read(self, off: int, width: int) -> int:
        if off >= REG_AREA_BYTES:
            return 0        # doorbells are write-only; reads return 0 (3.1.4.x)
        return int.from_bytes(self._regs[off:off + width], "little")

    def _mmio_write(self, off: int, width: int, value: int) -> None:
        if off >= REG_AREA_BYTES:
            if width == DWORD:
                self._ring_doorbell(off, value)
            else:
                self._doorbell_error(AsyncErrorInfo.INVALID_DOORBELL_REGISTER)
            return
        if width == QWORD:
            self._write_reg(off, value & 0xFFFF_FFFF)
            self._write_reg(off + DWORD, value >> 32)
        else:
            self._write_reg(off, value)

    def _write_reg(self, off: int, value: int) -> None:
        """One dword register write (3.1.3); read-only registers ignore it."""
        cc = self._reg32(Reg.CC)
        match off:
            case Reg.INTMS:
                for v in range(INTM_BITS):
                    if value >> v & 1:
                        self.mask_interrupt(v, True)
                struct.pack_into("<I", self._regs, Reg.INTMS, self._reg32(Reg.INTMS) | value)
                struct.pack_into("<I", self._regs, Reg.INTMC, self._reg32(Reg.INTMS))
            case Reg.INTMC:
                for v in range(INTM_BITS):
                    if value >> v & 1:
                        self.mask_interrupt(v, False)
                struct.pack_into("<I", self._regs, Reg.INTMS, self._reg32(Reg.INTMS) & ~value)
                struct.pack_into("<I", self._regs, Reg.INTMC, self._reg32(Reg.INTMS))
            case Reg.CC:
                struct.pack_into("<I", self._regs, Reg.CC, value)
                rising, falling = value & ~cc, cc & ~value
                if falling & regs.CC_EN:
                    self._reset()
                elif rising & regs.CC_EN:
                    self._enable()
                old_shn = regs.field_get(regs.CC_SHN, cc)
                new_shn = regs.field_get(regs.CC_SHN, value)
                if new_shn != regs.SHN_NONE and old_shn == regs.SHN_NONE:
                    self._shutdown()
                elif new_shn == regs.SHN_NONE and old_shn != regs.SHN_NONE:
                    self._set_csts(shst=regs.SHST_NORMAL)
            case _ if off in ADMIN_QUEUE_DWORDS:
                if not cc & regs.CC_EN:      # admin queue attributes are set while disabled
                    struct.pack_into("<I", self._regs, off, value)
            case _:
                pass   # CAP, VS, CSTS, NSSR (no NSSRS), CMB*, reserved: read-only or ignored

    # -- CC edges ---------------------------------------------------------------------------
    def _enable_fault(self) -> EnableFault | None:
        """The enable-time guards of QEMU ``nvme_start_ctrl``, one check each."""
        cc = self._reg32(Reg.CC)
        cap = self.cap
        aqa = self._reg32(Reg.AQA)
        asq, acq = self._reg64(Reg.ASQ), self._reg64(Reg.ACQ)
        mps = regs.field_get(regs.CC_MPS, cc)
        page = 1 << (12 + mps)
        css = regs.field_get(regs.CC_CSS, cc)
        ams = regs.field_get(regs.CC_AMS, cc)
        if css != 0 or not regs.field_get(regs.CAP_CSS, cap) & regs.CAP_CSS_NVM:
            return EnableFault.CSS_UNSUPPORTED
        if not regs.cap_mpsmin(cap) <= mps <= regs.cap_mpsmax(cap):
            return EnableFault.MPS_UNSUPPORTED
        if ams not in ((regs.AMS_RR, regs.AMS_WRR) if self.cfg.wrr_supported else (regs.AMS_RR,)):
            return EnableFault.AMS_UNSUPPORTED
        if regs.field_get(regs.CC_IOSQES, cc) != SQE_SIZE_LOG2:
            return EnableFault.IOSQES_INVALID
        if regs.field_get(regs.CC_IOCQES, cc) != CQE_SIZE_LOG2:
            return EnableFault.IOCQES_INVALID
        if asq == 0:
            return EnableFault.ASQ_ZERO
        if acq == 0:
            return EnableFault.ACQ_ZERO
        if asq & (page - 1):
            return EnableFault.ASQ_MISALIGNED
        if acq & (page - 1):
            return EnableFault.ACQ_MISALIGNED
        if regs.field_get(regs.AQA_ASQS, aqa) == 0:
            return EnableFault.ASQS_INVALID
        if regs.field_get(regs.AQA_ACQS, aqa) == 0:
            return EnableFault.ACQS_INVALID
        if self.plat.memory.dma_view(asq, (regs.field_get(regs.AQA_ASQS, aqa) + 1)
                                     * SQE_BYTES) is None:
            return EnableFault.ASQ_UNMAPPED
        if self.plat.memory.dma_view(acq, (regs.field_get(regs.AQA_ACQS, aqa) + 1)
                                     * CQE_BYTES) is None:
            return EnableFault.ACQ_UNMAPPED
        return None

    def _enable(self) -> None:
        """CC.EN 0->1: check, then create the admin queues; CSTS shows RDY (or CFS) later."""
        fault = self._enable_fault()
        self.last_enable_fault = fault
        gen = self._gen
        if fault is not None:
            log.info("nvme: enable failed: %s", fault.value)
            self.plat.schedule(self.cfg.enable_delay_ns, self._enable_done, gen, False)
            return
        cc = self._reg32(Reg.CC)
        aqa = self._reg32(Reg.AQA)
        self.page_bytes = 1 << (12 + regs.field_get(regs.CC_MPS, cc))
        self.wrr = regs.field_get(regs.CC_AMS, cc) == regs.AMS_WRR
        asqs = regs.field_get(regs.AQA_ASQS, aqa) + 1
        acqs = regs.field_get(regs.AQA_ACQS, aqa) + 1
        mem = self.plat.memory
        cq = CompletionQueue(ADMIN_QID, mem.dma_view(self._reg64(Reg.ACQ), acqs * CQE_BYTES),
                             acqs, True, 0)
        sq = SubmissionQueue(ADMIN_QID, mem.dma_view(self._reg64(Reg.ASQ), asqs * SQE_BYTES),
                             asqs, cq)
        self.plat.schedule(self.cfg.enable_delay_ns, self._enable_done, gen, True, sq, cq)

    def _enable_done(self, gen: int, ok: bool, sq: SubmissionQueue | None = None,
                     cq: CompletionQueue | None = None) -> None:
        if gen != self._gen:
            return
        if not ok:
            self._set_csts(cfs=1)
            return
        assert sq is not None and cq is not None
        cq.sqs.add(ADMIN_QID)
        self.cqs[ADMIN_QID] = cq
        self.sqs[ADMIN_QID] = sq
        self.enabled = True
        self._set_csts(rdy=1, cfs=0)

    def _reset(self) -> None:
        """CC.EN 1->0: controller reset; queues and outstanding commands are dropped."""
        self._teardown()
        self.plat.schedule(self.cfg.disable_delay_ns, self._reset_done, self._gen)

    def _reset_done(self, gen: int) -> None:
        if gen == self._gen:
            self._set_csts(rdy=0, cfs=0)

    def _shutdown(self) -> None:
        """CC.SHN set: flush the write cache; SHST = complete once everything is durable."""
        self._set_csts(shst=regs.SHST_OCCURRING)
        done = max(self.plat.now_ns + self.cfg.shutdown_delay_ns, self.timing.last_durable_ns)
        self.plat.schedule_at(done, self._shutdown_done, self._gen)

    def _shutdown_done(self, gen: int) -> None:
        if gen == self._gen and regs.field_get(regs.CC_SHN, self._reg32(Reg.CC)):
            self._set_csts(shst=regs.SHST_COMPLETE)

    # ---------------------------------------------------------------------------------------
    # doorbells
    # ---------------------------------------------------------------------------------------
    def _ring_doorbell(self, off: int, value: int) -> None:
        """SQyTDBL / CQyHDBL write (3.1.4.x); invalid ones are ignored and reported by AER."""
        if not self.enabled:
            return
        rel = off - REG_AREA_BYTES
        if rel & ((1 << self._db_shift) - 1):
            self._doorbell_error(AsyncErrorInfo.INVALID_DOORBELL_REGISTER)
            return
        idx = rel >> self._db_shift
        qid = idx >> 1
        if idx & 1:
            cq = self.cqs.get(qid)
            if cq is None:
                self._doorbell_error(AsyncErrorInfo.INVALID_DOORBELL_REGISTER)
                return
            if value >= cq.size or (value - cq.head) % cq.size > (cq.tail - cq.head) % cq.size:
                self._doorbell_error(AsyncErrorInfo.INVALID_DOORBELL_VALUE)
                return
            cq.head = value
            if cq.held and cq.release_held() and cq.ien:
                self.raise_interrupt(cq.iv)
            return
        sq = self.sqs.get(qid)
        if sq is None:
            self._doorbell_error(AsyncErrorInfo.INVALID_DOORBELL_REGISTER)
            return
        if value >= sq.size:
            self._doorbell_error(AsyncErrorInfo.INVALID_DOORBELL_VALUE)
            return
        sq.tail = value
        if value != sq.head:
            self._busy[sq] = None
            if not self._arb_scheduled:
                self._arb_scheduled = True
                self.plat.schedule(0, self._process_sqs, self._gen)

    # ---------------------------------------------------------------------------------------
    # queue processing (knows no opcodes)
    # ---------------------------------------------------------------------------------------
    def _quota(self, sq: SubmissionQueue) -> int:
        if not self.wrr or sq.qid == ADMIN_QID or sq.prio == WRR_URGENT:
            return self._burst
        return self._burst * self._weights[sq.prio - 1]

    def _process_sqs(self, gen: int) -> None:
        """Arbitrate (round robin, or WRR with the urgent class first, 4.13) and fetch."""
        if gen != self._gen:
            return
        self._arb_scheduled = False
        busy = self._busy
        now = self.plat.now_ns
        execute = self._execute
        while busy:
            order = list(busy)
            if self.wrr and len(order) > 1:
                order.sort(key=lambda q: 0 if q.qid == ADMIN_QID else q.prio + 1)
            for sq in order:
                n = 0 if sq.deleted else (sq.tail - sq.head) % sq.size
                quota = self._burst if not self.wrr else self._quota(sq)
                if n > quota:
                    n = quota
                for _ in range(n):
                    execute(sq, now)
                    if gen != self._gen:
                        return
                    if sq.deleted:
                        break
                if sq.deleted or sq.head == sq.tail:
                    busy.pop(sq, None)     # a Delete I/O SQ in this pass may have removed it
        self._flush_irqs()

    def _execute(self, sq: SubmissionQueue, now: int) -> None:
        """Fetch the SQE at head, advance head, dispatch, schedule its completion."""
        cmd = _unpack_sqe(sq.buf, sq.head * SQE_BYTES)
        h = sq.head + 1
        sq.head = 0 if h == sq.size else h
        admin = sq.qid == ADMIN_QID
        req = Request(sq, cmd, now + self._admin_ns if admin else now)
        self.counters.commands += 1
        inj = self._injected.get((admin, req.opc)) if self._injected else None
        if self._aborted and (sq.qid, req.cid) in self._aborted:
            self._aborted.discard((sq.qid, req.cid))
            st = ST_ABORT_REQUESTED
        elif inj is not None:
            st = inj[0]
            inj[1] -= 1
            if inj[1] <= 0:
                del self._injected[(admin, req.opc)]
        else:
            handler = (ADMIN_HANDLERS if admin else IO_HANDLERS).get(req.opc)
            if handler is None:
                st = ST_INVALID_OPCODE
            else:
                try:
                    st = handler(self, req)
                except Exception:      # a model bug must not escape into the driver
                    log.exception("nvme: handler for opcode %#x failed", req.opc)
                    self.counters.internal_errors += 1
                    st = ST_INTERNAL
        if st is NO_COMPLETE:
            return
        self._complete(req, st)

    def _complete(self, req: Request, st: NvmeStatus) -> None:
        """Schedule the CQE of ``req`` at ``req.done_ns`` (one event per distinct time)."""
        if st.sc or st.sct:
            self._log_error(req, st)
            half = st.encode()
        else:
            half = 0
        rec = [req.sq.cq, req.sq, req.cid, req.dw0, half, req.opc]
        t = req.done_ns
        lst = self._pending.get(t)
        if lst is None:
            self._pending[t] = [rec]
            self.plat.schedule_at(t, self._post_due, self._gen, t)
        else:
            lst.append(rec)

    def _post_due(self, gen: int, t: int) -> None:
        if gen != self._gen:
            return
        recs = self._pending.pop(t, ())
        irq = self._irq_cqs
        for cq, sq, cid, dw0, half, _opc in recs:
            if cq.deleted or sq.deleted:
                continue
            if cq.post(dw0, sq, cid, half) and cq.ien:
                irq.add(cq)
        self._flush_irqs()

    def _post_now(self, sq: SubmissionQueue, cid: int, dw0: int, st: NvmeStatus) -> None:
        cq = sq.cq
        if not cq.deleted and cq.post(dw0, sq, cid, st.encode()) and cq.ien:
            self._irq_cqs.add(cq)

    def _flush_irqs(self) -> None:
        if self._irq_cqs:
            for cq in self._irq_cqs:
                self.raise_interrupt(cq.iv)
            self._irq_cqs.clear()

    # ---------------------------------------------------------------------------------------
    # errors, async events
    # ---------------------------------------------------------------------------------------
    def _log_error(self, req: Request, st: NvmeStatus) -> None:
        """Append to the Error Information log (5.16.1.2) and count SMART fields."""
        self._error_count += 1
        self.counters.errors += 1
        if st.sct == Sct.MEDIA_ERROR and st.sc in (MediaSc.UNRECOVERED_READ_ERROR,
                                                    MediaSc.WRITE_FAULT,
                                                    MediaSc.COMPARE_FAILURE):
            self.counters.media_errors += 1
        entry = ERROR_LOG_STRUCT.pack(self._error_count, req.sq.qid, req.cid, st.encode(),
                                      0xFFFF, req.lba, req.nsid, 0, 0, 0, 0)
        self._error_log.append(entry)
        if len(self._error_log) > self.cfg.error_log_entries:
            del self._error_log[0]

    def error_log_page(self) -> bytes:
        """Error Information log: newest entry first, ring padded with zeros (5.16.1.2)."""
        entries = list(reversed(self._error_log))
        pad = bytes(ERROR_LOG_STRUCT.size) * (self.cfg.error_log_entries - len(entries))
        return b"".join(entries) + pad

    def _doorbell_error(self, info: AsyncErrorInfo) -> None:
        log.info("nvme: invalid doorbell write: %s", info.name)
        self.post_async_event(AsyncEventType.ERROR_STATUS, info, LogPageId.ERROR_INFORMATION)

    def post_async_event(self, etype: int, info: int, lid: int) -> None:
        """Queue an asynchronous event and complete an outstanding AER if there is one (5.2)."""
        if not self.enabled:
            return
        self._aen_queue.append((etype, info, lid))
        self._deliver_aen()

    def _deliver_aen(self) -> None:
        while self._aers and self._aen_queue:
            k = next((i for i, e in enumerate(self._aen_queue)
                      if e[0] not in self._aen_masked), None)
            if k is None:
                return
            etype, info, lid = self._aen_queue.pop(k)
            self._aen_masked.add(etype)     # masked until the host reads the log page
            req = self._aers.pop(0)
            req.dw0 = (regs.field_prep(AER_TYPE, etype) | regs.field_prep(AER_INFO, info)
                       | regs.field_prep(AER_LID, lid))
            self._post_now(req.sq, req.cid, req.dw0, NvmeStatus())
        self._flush_irqs()

    # ---------------------------------------------------------------------------------------
    # write-cache durability (used by the I/O handlers)
    # ---------------------------------------------------------------------------------------
    def _record_undo(self, durable_ns: int, ns: Namespace, snap: Snapshot) -> None:
        now = self.plat.now_ns
        undo = self._undo
        i = self._undo_start
        while i < len(undo) and undo[i][0] <= now:
            i += 1
        if i > 256 and i * 2 > len(undo):
            del undo[:i]
            i = 0
        self._undo_start = i
        undo.append((durable_ns, ns.nsid, snap))

    # ---------------------------------------------------------------------------------------
    # inspection / fault API (tests only; drivers never call these)
    # ---------------------------------------------------------------------------------------
    def namespace(self, nsid: int) -> Namespace:
        """The namespace object for ``nsid`` (KeyError if there is none)."""
        return self.namespaces[nsid]

    def inject_error(self, opcode: int, status: NvmeStatus, count: int = 1,
                     admin: bool = False) -> None:
        """Force ``status`` on the next ``count`` commands with ``opcode`` (SPDK's
        ``spdk_nvme_qpair_add_cmd_error_injection``); the command is not executed."""
        if count <= 0:
            self._injected.pop((bool(admin), int(opcode)), None)
            return
        self._injected[(bool(admin), int(opcode))] = [status, int(count)]

    def durable_ns(self) -> int:
        """Virtual time at which every write accepted so far is on NAND."""
        return self.timing.last_durable_ns

    def power_loss(self) -> None:
        """Cut power now and restore it: writes still in the volatile cache are lost (block
        atomic: each block returns to its last durable version), the controller restarts with
        CSTS.RDY = 0 and no queues; SMART power cycles and unsafe shutdowns count it."""
        now = self.plat.now_ns
        safe = (regs.field_get(regs.CSTS_SHST, self._reg32(Reg.CSTS)) == regs.SHST_COMPLETE)
        lost = [r for r in self._undo[self._undo_start:] if r[0] > now]
        for _durable, nsid, snap in reversed(lost):
            self.namespaces[nsid].store.restore(snap)
        self._undo = []
        self._undo_start = 0
        self.timing.reset()
        self._power_on_reset()
        self.counters.power_cycles += 1
        if not safe:
            self.counters.unsafe_shutdowns += 1

    def close(self) -> None:
        """Release backing files."""
        for ns in self.namespaces.values():
            ns.close()

    # used by handlers
    def schedule_later(self, delay_ns: int, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn`` unless a reset happens first."""
        gen = self._gen

        def run() -> None:
            if gen == self._gen:
                fn(*args)
        self.plat.schedule(delay_ns, run)

    def reinit_arbitration(self) -> None:
        """Apply the Arbitration feature (5.27.1.1): burst and WRR weights."""
        ab = regs.field_get(ARB_AB, self.arbitration)
        self._burst = 1 << 16 if ab == AB_UNLIMITED else 1 << ab
        self._weights = (regs.field_get(ARB_HPW, self.arbitration) + 1,
                         regs.field_get(ARB_MPW, self.arbitration) + 1,
                         regs.field_get(ARB_LPW, self.arbitration) + 1)

