"""NVMe controller driver: register-level initialization, the admin queue, I/O queue pairs,
shutdown.

Initialization is an explicit, re-entrant state machine after SPDK ``nvme_ctrlr_process_init``
(STYLE.md section 2): :meth:`NvmeCtrlr.process_init` does one non-blocking step and returns the
:class:`InitState` it is in; every waiting state has a deadline read from the platform clock,
so a device that never answers fails with an :class:`~labrig.drivers.nvme.errors.NvmeInitError`
naming the state.  The order follows NVM Express Base Specification 2.0 section 3.5.1
("Memory-based Controller Initialization") and SPDK's ``enum nvme_ctrlr_state``:

1. ``INIT`` -- read CAP and VS.
2. ``CHECK_EN`` -- if CC.EN = 1, disable first: wait for RDY = 1 if it is still coming up
   (``DISABLE_WAIT_FOR_READY_1``), clear EN (``SET_EN_0``), wait for RDY = 0
   (``DISABLE_WAIT_FOR_READY_0``), each within CAP.TO.
3. ``SET_ADMINQ`` -- allocate the admin queue, program AQA, ASQ, ACQ.
4. ``ENABLE`` -- CC with CSS, MPS, AMS, IOSQES = 6, IOCQES = 4, EN = 1.
5. ``ENABLE_WAIT_FOR_READY_1`` -- CSTS.RDY = 1 within CAP.TO x 500 ms, failing on CSTS.CFS.
6. ``IDENTIFY`` -- Identify Controller (CNS 01h): MDTS, AERL, ONCS, VWC, NN.
7. ``SET_NUM_QUEUES`` -- Set Features Number of Queues (FID 07h).
8. ``IDENTIFY_ACTIVE_NS`` then ``IDENTIFY_NS`` for each (LBA format from FLBAS / LBAF.LBADS).
9. ``CONFIGURE_AER`` -- post Asynchronous Event Requests.
10. ``READY``.

I/O queue pairs are created on demand by :meth:`NvmeCtrlr.create_io_qpair` (Create I/O CQ,
then Create I/O SQ) and deleted in the reverse order.  :meth:`NvmeCtrlr.close` closes the
queue pairs, then shuts the controller down with CC.SHN = 01b and waits for CSTS.SHST = 10b
(section 3.6.1).

The driver reaches the device only through ``dev.bar0``, DMA buffers from ``plat.memory``,
and the platform clock (DESIGN.md, "The device contract").
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final, Protocol

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.nvme import commands as cmds
from labrig.drivers.nvme._queue import QueueRing
from labrig.drivers.nvme.commands import NvmeCommand
from labrig.drivers.nvme.errors import NvmeCommandError, NvmeControllerError, NvmeInitError
from labrig.drivers.nvme.prp import PrpListPool
from labrig.errors import ConfigError, UsageError
from labrig.hw._bits import field_get, field_prep
from labrig.hw.nvme import regs
from labrig.hw.nvme.regs import Reg
from labrig.hw.nvme.spec import (
    AER_INFO,
    AER_LID,
    AER_TYPE,
    CQE_SIZE_LOG2,
    FLBAS_INDEX,
    IDENTIFY_BYTES,
    LBAF_BYTES,
    LBAF_LBADS_OFFSET,
    SQE_SIZE_LOG2,
    SUCCESS,
    AdminOpcode,
    Cns,
    IdCtrl,
    IdNs,
    NvmeStatus,
)

__all__ = ["AsyncEvent", "InitState", "NvmeCtrlr", "NvmeDriverOptions", "NvmeNamespace"]

#: MMIO reads of a device that is gone return all ones (PCIe master abort).
_ALL_ONES_32: Final = 0xFFFF_FFFF
#: CC.CSS encodings (Base spec 2.0 Figure 46): 000b NVM only, 110b all supported I/O command
#: sets, selected when CAP.CSS bit 6 is set (section 3.5.1 step 3).
CC_CSS_NVM: Final = 0b000
CC_CSS_ALL_IOCS: Final = 0b110
CAP_CSS_IOCS: Final = 1 << 6
CAP_CSS_NO_IO: Final = 1 << 7
#: Page size exponent base: memory page = 2 ** (12 + MPS).
_MPS_SHIFT: Final = 12
#: Floor for CAP.TO-based deadlines, so a controller reporting TO = 0 still gets one unit.
_MIN_READY_TIMEOUT_MS: Final = regs.TO_UNIT_MS
#: Identify Active Namespace ID list: up to 1024 NSIDs (Base spec 2.0 section 5.17.2.2).
_NS_LIST_ENTRIES: Final = IDENTIFY_BYTES // 4
_NS_PER_LIST: Final = struct.Struct(f"<{_NS_LIST_ENTRIES}I")
_NS_TO_NS: Final = 1_000_000


class InitState(IntEnum):
    """States of :meth:`NvmeCtrlr.process_init` (after SPDK ``enum nvme_ctrlr_state``)."""

    INIT = 0
    CHECK_EN = 1
    DISABLE_WAIT_FOR_READY_1 = 2
    SET_EN_0 = 3
    DISABLE_WAIT_FOR_READY_0 = 4
    SET_ADMINQ = 5
    ENABLE = 6
    ENABLE_WAIT_FOR_READY_1 = 7
    IDENTIFY = 8
    WAIT_FOR_IDENTIFY = 9
    SET_NUM_QUEUES = 10
    WAIT_FOR_SET_NUM_QUEUES = 11
    IDENTIFY_ACTIVE_NS = 12
    WAIT_FOR_IDENTIFY_ACTIVE_NS = 13
    IDENTIFY_NS = 14
    WAIT_FOR_IDENTIFY_NS = 15
    CONFIGURE_AER = 16
    READY = 17
    ERROR = 18


@dataclass(frozen=True)
class NvmeDriverOptions:
    """Driver defaults, after ``spdk_nvme_ctrlr_get_default_ctrlr_opts`` and Linux.

    Attributes
    ----------
    page_size : int
        Host memory page size programmed in CC.MPS (4096, the x86 page).
    admin_queue_entries : int
        Admin SQ/CQ slots (SPDK ``DEFAULT_ADMIN_QUEUE_SIZE`` = 32).
    io_queue_entries : int
        Default I/O SQ/CQ slots (SPDK ``DEFAULT_IO_QUEUE_SIZE`` = 256), capped by CAP.MQES.
    num_io_queues : int
        I/O queue pairs requested with Set Features Number of Queues
        (SPDK ``DEFAULT_MAX_IO_QUEUES`` = 1024); the controller may grant fewer.
    admin_timeout_ms : int
        Deadline of each admin command (Linux ``NVME_ADMIN_TIMEOUT``, 60 s).
    io_timeout_ms : int
        Default deadline of :meth:`QPair.wait` (Linux ``nvme_io_timeout``, 30 s).
    shutdown_timeout_ms : int
        Wait for CSTS.SHST = complete (Linux ``shutdown_timeout``, 5 s).
    aer_count : int
        Asynchronous Event Requests kept outstanding, capped by Identify AERL + 1
        (SPDK ``NVME_MAX_ASYNC_EVENTS`` = 8).
    retry_count : int
        Resubmissions of a command that failed with DNR clear (SPDK
        ``NVME_DEFAULT_RETRY_COUNT`` = 4).
    """

    page_size: int = 4096
    admin_queue_entries: int = 32
    io_queue_entries: int = 256
    num_io_queues: int = 1024
    admin_timeout_ms: int = 60_000
    io_timeout_ms: int = 30_000
    shutdown_timeout_ms: int = 5_000
    aer_count: int = 8
    retry_count: int = 4

    def __post_init__(self) -> None:
        ps = self.page_size
        if ps < 4096 or ps & (ps - 1) or ps > 1 << (_MPS_SHIFT + 15):
            raise ConfigError("NvmeDriverOptions", "page_size", ps,
                              "must be a power of two in 4096..128 MiB")
        for name, lo, hi in (("admin_queue_entries", 2, regs.AQA_MAX_ENTRIES),
                             ("io_queue_entries", 2, cmds.MAX_QUEUE_ENTRIES),
                             ("num_io_queues", 1, cmds.MAX_QUEUE_ID - 1),
                             ("admin_timeout_ms", 1, 1 << 40), ("io_timeout_ms", 1, 1 << 40),
                             ("shutdown_timeout_ms", 1, 1 << 40), ("aer_count", 0, 256),
                             ("retry_count", 0, 1 << 16)):
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ConfigError("NvmeDriverOptions", name, value, f"must be in {lo}..{hi}")


@dataclass(frozen=True)
class NvmeNamespace:
    """An active namespace as Identify Namespace describes it (NVM Command Set spec 1.0
    section 4.1.5.1).

    Attributes
    ----------
    nsid : int
        Namespace identifier.
    num_blocks : int
        NSZE, the size in logical blocks.
    capacity_blocks : int
        NCAP.
    lba_bytes : int
        Logical block size, ``2 ** LBAF[FLBAS].LBADS``.
    """

    nsid: int
    num_blocks: int
    capacity_blocks: int
    lba_bytes: int


@dataclass(frozen=True)
class AsyncEvent:
    """A completed Asynchronous Event Request (Base spec 2.0 section 5.2, Figure 145)."""

    type: int
    info: int
    log_page: int


@dataclass
class _Pending:
    """Completion slot of one admin command issued by the init state machine."""

    status: NvmeStatus | None = None
    dw0: int = 0
    done: bool = False


class _Host(Protocol):
    """What the driver needs from the platform: DMA memory, the clock, a way to wait."""

    memory: Any
    events: Any

    @property
    def now_ns(self) -> int: ...

    def step(self) -> bool: ...

    def run_until(self, t_ns: int) -> None: ...


class _Device(Protocol):
    bar0: Any

    def on_interrupt(self, vector: int, callback: Callable[[int], None] | None) -> None: ...


@dataclass
class _Identify:
    """Fields of Identify Controller the driver uses."""

    vid: int = 0
    sn: str = ""
    mn: str = ""
    fr: str = ""
    mdts: int = 0
    aerl: int = 0
    oncs: int = 0
    vwc: int = 0
    nn: int = 0
    maxcmd: int = 0
    raw: bytes = field(default=b"", repr=False)


class NvmeCtrlr:
    """A poll-mode driver instance for one NVMe controller.

    Parameters
    ----------
    plat : Platform
        Supplies DMA memory (``plat.memory``), the clock (``plat.now_ns``) and waiting
        (``plat.step()``, ``plat.run_until()``).
    dev : PciDevice-like
        The controller; only ``dev.bar0`` is used.
    options : NvmeDriverOptions, optional
        Driver defaults.

    Notes
    -----
    Construction does not touch the device.  Call :meth:`init` (or drive
    :meth:`process_init` yourself) before creating queue pairs.

    Usage, on the emulator (``EmuNvmeDevice`` in :mod:`labrig.drivers.nvme.emu` does this)::

        plat = Platform(seed=0)
        ctrlr = NvmeCtrlr(plat, NvmeController(plat, NvmeConfig(...)))
        ctrlr.init()                        # or: while ctrlr.process_init() != READY: ...
        with ctrlr.create_io_qpair(32) as qp:
            qp.wait(qp.read(buf, lba, 1))
        ctrlr.close()
    """

    def __init__(self, plat: _Host, dev: _Device,
                 options: NvmeDriverOptions | None = None) -> None:
        self.plat = plat
        self.dev = dev
        self.bar0 = dev.bar0
        self.options = options or NvmeDriverOptions()
        self.page_size = self.options.page_size
        self.state = InitState.INIT
        self._deadline_ns: int | None = None
        self._timeout_ms = 0
        self._error: NvmeInitError | None = None
        self._pending = _Pending()
        self.cap = 0
        self.vs = 0
        self.dstrd = 0
        self.mqes = 0
        self.ready_timeout_ms = _MIN_READY_TIMEOUT_MS
        self.identify = _Identify()
        self.namespaces: dict[int, NvmeNamespace] = {}
        self._ns_todo: list[int] = []
        self.num_io_queues = 0
        self.async_events: list[AsyncEvent] = []
        self._aers_outstanding = 0
        self.admin: QueueRing | None = None
        self._admin_queued: deque[tuple[NvmeCommand, Callable[[NvmeStatus, int], None]]] = \
            deque()
        self._id_buf: Any = None
        self.prp_pool = PrpListPool(plat.memory, self.page_size)
        self._qpairs: dict[int, Any] = {}
        self._closed = False
        self.shutdown_complete = False

    # -- public facts --------------------------------------------------------------------------
    @property
    def max_transfer_bytes(self) -> int:
        """Largest data transfer of one command: Identify MDTS (units of the CAP.MPSMIN page,
        0 = no limit; Base spec 2.0 Figure 275), capped by the 16-bit NLB of 4 KiB blocks."""
        mdts = self.identify.mdts
        limit = cmds.MAX_NLB * 4096
        if mdts:
            limit = min(limit, (1 << mdts) << (_MPS_SHIFT + regs.cap_mpsmin(self.cap)))
        return limit

    @property
    def max_io_queue_entries(self) -> int:
        """Largest I/O queue: CAP.MQES + 1 slots."""
        return self.mqes + 1

    # -- init state machine ---------------------------------------------------------------------
    def init(self) -> None:
        """Run :meth:`process_init` to ``READY``, waiting on the platform clock in between.

        Raises
        ------
        NvmeInitError
            The controller did not come up; the message names the state and the cause.
        """
        while True:
            before = self.state
            state = self.process_init()
            if state == InitState.READY:
                return
            if state == before:     # a WAIT_FOR_* state made no progress: let time pass
                self._wait_for_device(self._deadline_ns)

    def process_init(self) -> InitState:
        """Do one non-blocking step of controller initialization.

        Returns
        -------
        InitState
            The state after the step; call again until ``READY``.

        Raises
        ------
        NvmeInitError
            The step failed or its deadline passed (the state becomes ``ERROR``; later calls
            raise the same error).
        """
        if self._closed:
            raise UsageError("process_init: the controller driver is closed")
        if self.state == InitState.ERROR:
            assert self._error is not None
            raise self._error
        try:
            self._init_step()
        except NvmeInitError as exc:
            self._error = exc
            self.state = InitState.ERROR
            raise
        return self.state

    def _set_state(self, state: InitState, timeout_ms: int | None = None) -> None:
        self.state = state
        self._timeout_ms = timeout_ms or 0
        self._deadline_ns = (None if timeout_ms is None
                             else self.plat.now_ns + timeout_ms * _NS_TO_NS)

    def _expired(self) -> bool:
        return self._deadline_ns is not None and self.plat.now_ns >= self._deadline_ns

    def _fail(self, cause: str, status: NvmeStatus | None = None) -> None:
        raise NvmeInitError(self.state.name, cause, status)

    def _read_csts(self, after: str) -> int:
        csts = self.bar0.read32(Reg.CSTS)
        if csts == _ALL_ONES_32:
            self._fail(f"CSTS reads FFFFFFFFh (device not responding) {after}")
        if csts & regs.CSTS_CFS:
            self._fail(f"CSTS.CFS=1 (controller fatal status) {after}")
        return csts

    def _wait_rdy(self, want: int, after: str, nxt: InitState) -> None:
        csts = self._read_csts(after)
        if (csts & regs.CSTS_RDY) == want:
            self._set_state(nxt)
        elif self._expired():
            self._fail(f"timeout after {self._timeout_ms} ms: CSTS.RDY still {1 - want} "
                       f"{after} (CAP.TO={field_get(regs.CAP_TO, self.cap)})")

    def _init_step(self) -> None:
        s = self.state
        S = InitState
        if s == S.INIT:
            self._read_cap()
            self._set_state(S.CHECK_EN)
        elif s == S.CHECK_EN:
            cc = self.bar0.read32(Reg.CC)
            csts = self._read_csts("while checking CC.EN")
            if cc & regs.CC_EN:
                if csts & regs.CSTS_RDY:
                    self._set_state(S.SET_EN_0)
                else:
                    self._set_state(S.DISABLE_WAIT_FOR_READY_1, self.ready_timeout_ms)
            elif csts & regs.CSTS_RDY:
                self._set_state(S.DISABLE_WAIT_FOR_READY_0, self.ready_timeout_ms)
            else:
                self._set_state(S.SET_ADMINQ)
        elif s == S.DISABLE_WAIT_FOR_READY_1:
            self._wait_rdy(1, "while CC.EN=1 before disabling", S.SET_EN_0)
        elif s == S.SET_EN_0:
            cc = self.bar0.read32(Reg.CC)
            self.bar0.write32(Reg.CC, cc & ~regs.CC_EN)
            self._set_state(S.DISABLE_WAIT_FOR_READY_0, self.ready_timeout_ms)
        elif s == S.DISABLE_WAIT_FOR_READY_0:
            self._wait_rdy(0, "after CC.EN=0", S.SET_ADMINQ)
        elif s == S.SET_ADMINQ:
            self._setup_admin_queue()
            self._set_state(S.ENABLE)
        elif s == S.ENABLE:
            self._enable()
            self._set_state(S.ENABLE_WAIT_FOR_READY_1, self.ready_timeout_ms)
        elif s == S.ENABLE_WAIT_FOR_READY_1:
            self._wait_rdy(1, "after CC.EN=1", S.IDENTIFY)
        elif s == S.IDENTIFY:
            self._init_admin(cmds.identify(Cns.CONTROLLER, prp1=self._id_buf.addr),
                             S.WAIT_FOR_IDENTIFY)
        elif s == S.WAIT_FOR_IDENTIFY:
            if self._init_done("Identify Controller"):
                self._parse_identify_ctrlr()
                self._set_state(S.SET_NUM_QUEUES)
        elif s == S.SET_NUM_QUEUES:
            n = self.options.num_io_queues
            self._init_admin(cmds.set_num_queues(n, n), S.WAIT_FOR_SET_NUM_QUEUES)
        elif s == S.WAIT_FOR_SET_NUM_QUEUES:
            if self._init_done("Set Features Number of Queues"):
                nsq, ncq = cmds.num_queues_granted(self._pending.dw0)
                self.num_io_queues = min(nsq, ncq, self.options.num_io_queues)
                self._set_state(S.IDENTIFY_ACTIVE_NS)
        elif s == S.IDENTIFY_ACTIVE_NS:
            self._init_admin(cmds.identify(Cns.ACTIVE_NS_LIST, 0, prp1=self._id_buf.addr),
                             S.WAIT_FOR_IDENTIFY_ACTIVE_NS)
        elif s == S.WAIT_FOR_IDENTIFY_ACTIVE_NS:
            if self._init_done("Identify Active Namespace ID list"):
                ids = [n for n in _NS_PER_LIST.unpack_from(self._id_buf.view) if n]
                self._ns_todo = ids[::-1]
                self._set_state(S.IDENTIFY_NS)
        elif s == S.IDENTIFY_NS:
            if not self._ns_todo:
                self._set_state(S.CONFIGURE_AER)
            else:
                nsid = self._ns_todo[-1]
                self._init_admin(cmds.identify(Cns.NAMESPACE, nsid, prp1=self._id_buf.addr),
                                 S.WAIT_FOR_IDENTIFY_NS)
        elif s == S.WAIT_FOR_IDENTIFY_NS:
            nsid = self._ns_todo[-1]
            if self._init_done(f"Identify Namespace nsid={nsid}"):
                self._ns_todo.pop()
                self._parse_identify_ns(nsid)
                self._set_state(S.IDENTIFY_NS)
        elif s == S.CONFIGURE_AER:
            for _ in range(min(self.identify.aerl + 1, self.options.aer_count)):
                self._submit_aer()
            self._set_state(S.READY)

    def _read_cap(self) -> None:
        cap = self.bar0.read64(Reg.CAP)
        if cap == (1 << 64) - 1:
            self._fail("CAP reads all ones (device not responding)")
        self.cap = cap
        self.vs = self.bar0.read32(Reg.VS)
        self.dstrd = regs.cap_dstrd(cap)
        self.mqes = regs.cap_mqes(cap)
        self.ready_timeout_ms = max(regs.cap_to_ms(cap), _MIN_READY_TIMEOUT_MS)
        if self.mqes < 1:
            self._fail(f"CAP.MQES={self.mqes}: a queue needs at least 2 entries")

    def _setup_admin_queue(self) -> None:
        if self.admin is not None:
            self.admin.free()
        entries = min(self.options.admin_queue_entries, self.mqes + 1, regs.AQA_MAX_ENTRIES)
        self.admin = QueueRing(self.plat.memory, self.bar0, 0, entries, self.dstrd,
                               self.page_size)
        self._admin_queued.clear()
        if self._id_buf is None:
            self._id_buf = self.plat.memory.alloc(IDENTIFY_BYTES, self.page_size)
        self.bar0.write32(Reg.AQA, field_prep(regs.AQA_ASQS, entries - 1)
                          | field_prep(regs.AQA_ACQS, entries - 1))
        self.bar0.write64(Reg.ASQ, self.admin.sq_addr)
        self.bar0.write64(Reg.ACQ, self.admin.cq_addr)

    def _enable(self) -> None:
        cap = self.cap
        mps = self.page_size.bit_length() - 1 - _MPS_SHIFT
        lo, hi = regs.cap_mpsmin(cap), regs.cap_mpsmax(cap)
        if not lo <= mps <= hi:
            self._fail(f"host page size {self.page_size} (MPS={mps}) outside "
                       f"CAP.MPSMIN={lo}..CAP.MPSMAX={hi} "
                       f"({1 << (_MPS_SHIFT + lo)}..{1 << (_MPS_SHIFT + hi)} bytes)")
        css_cap = field_get(regs.CAP_CSS, cap)
        if css_cap & CAP_CSS_IOCS:
            css = CC_CSS_ALL_IOCS
        elif css_cap & regs.CAP_CSS_NVM:
            css = CC_CSS_NVM
        else:
            self._fail(f"CAP.CSS={css_cap:#x}: the NVM command set is not supported")
        cc = (regs.CC_EN | field_prep(regs.CC_CSS, css) | field_prep(regs.CC_MPS, mps)
              | field_prep(regs.CC_AMS, regs.AMS_RR)
              | field_prep(regs.CC_IOSQES, SQE_SIZE_LOG2)
              | field_prep(regs.CC_IOCQES, CQE_SIZE_LOG2))
        self.bar0.write32(Reg.CC, cc)

    def _init_admin(self, cmd: NvmeCommand, wait_state: InitState) -> None:
        pending = self._pending = _Pending()

        def done(status: NvmeStatus, dw0: int) -> None:
            pending.status = status
            pending.dw0 = dw0
            pending.done = True

        self.submit_admin(cmd, done)
        self._set_state(wait_state, self.options.admin_timeout_ms)

    def _init_done(self, what: str) -> bool:
        self._check_controller(f"while waiting for {what}")
        self.process_admin_completions()
        p = self._pending
        if not p.done:
            if self._expired():
                self._fail(f"timeout after {self._timeout_ms} ms waiting for {what}")
            return False
        assert p.status is not None
        if not p.status.ok:
            self._fail(f"{what} failed: {p.status}", p.status)
        return True

    def _check_controller(self, when: str) -> None:
        csts = self.bar0.read32(Reg.CSTS)
        if csts == _ALL_ONES_32 or csts & regs.CSTS_CFS:
            self._fail(f"CSTS={csts:#x}: controller fatal status {when}")

    def _parse_identify_ctrlr(self) -> None:
        raw = self._id_buf.view.tobytes()

        def text(off: int, n: int) -> str:
            return raw[off:off + n].decode("ascii", "replace").strip(" \0")

        sqes, cqes = raw[IdCtrl.SQES], raw[IdCtrl.CQES]
        if (sqes & 0xF) > SQE_SIZE_LOG2 or (cqes & 0xF) > CQE_SIZE_LOG2:
            self._fail(f"Identify SQES={sqes:#x} CQES={cqes:#x}: controller requires entries "
                       "larger than 64/16 bytes")
        self.identify = _Identify(
            vid=int.from_bytes(raw[IdCtrl.VID:IdCtrl.VID + 2], "little"),
            sn=text(IdCtrl.SN, 20), mn=text(IdCtrl.MN, 40), fr=text(IdCtrl.FR, 8),
            mdts=raw[IdCtrl.MDTS], aerl=raw[IdCtrl.AERL],
            oncs=int.from_bytes(raw[IdCtrl.ONCS:IdCtrl.ONCS + 2], "little"),
            vwc=raw[IdCtrl.VWC],
            nn=int.from_bytes(raw[IdCtrl.NN:IdCtrl.NN + 4], "little"),
            maxcmd=int.from_bytes(raw[IdCtrl.MAXCMD:IdCtrl.MAXCMD + 2], "little"),
            raw=raw)

    def _parse_identify_ns(self, nsid: int) -> None:
        view: NDArray[np.uint8] = self._id_buf.view
        nsze = int(view[IdNs.NSZE:IdNs.NSZE + 8].view(np.uint64)[0])
        ncap = int(view[IdNs.NCAP:IdNs.NCAP + 8].view(np.uint64)[0])
        if nsze == 0:
            return      # inactive namespace (Identify returns zeros)
        idx = field_get(FLBAS_INDEX, int(view[IdNs.FLBAS]))
        nlbaf = int(view[IdNs.NLBAF])
        if idx > nlbaf:
            self._fail(f"nsid={nsid}: FLBAS index {idx} > NLBAF={nlbaf}")
        lbads = int(view[IdNs.LBAF0 + idx * LBAF_BYTES + LBAF_LBADS_OFFSET])
        if lbads < 9:
            self._fail(f"nsid={nsid}: LBAF{idx}.LBADS={lbads}: block size below 512 bytes")
        self.namespaces[nsid] = NvmeNamespace(nsid, nsze, ncap, 1 << lbads)

    # -- admin queue --------------------------------------------------------------------------
    def submit_admin(self, cmd: NvmeCommand, callback: Callable[[NvmeStatus, int], None]) -> None:
        """Submit an admin command; ``callback(status, dw0)`` runs from
        :meth:`process_admin_completions`.  Waits in a software queue when the admin SQ is
        full."""
        ring = self.admin
        if ring is None:
            raise UsageError("submit_admin: the admin queue is not set up (run init() first)")
        if not ring.free_cids:
            self._admin_queued.append((cmd, callback))
            return
        cid = ring.free_cids.pop()
        ring.cid_owner[cid] = callback
        cmd.cid = cid
        ring.push_command(cmd)
        ring.ring_sq_doorbell()

    def process_admin_completions(self) -> int:
        """Reap admin completions (AERs included) and run their callbacks; returns the count."""
        ring = self.admin
        if ring is None:
            return 0
        n = 0
        while ring.cqe_pending():
            cid, status_half, dw0 = ring.pop_cqe()
            cb = ring.cid_owner[cid] if cid < ring.capacity else None
            if cb is None:
                ring.ring_cq_doorbell()
                raise NvmeControllerError(f"admin completion for CID {cid}, which is not "
                                          "outstanding")
            ring.cid_owner[cid] = None
            ring.free_cids.append(cid)
            n += 1
            cb(NvmeStatus.decode(status_half) if status_half & 0xFFFE else SUCCESS, dw0)
        if n:
            ring.ring_cq_doorbell()
            while self._admin_queued and ring.free_cids:
                cmd, cb = self._admin_queued.popleft()
                self.submit_admin(cmd, cb)
        return n

    def admin_command(self, cmd: NvmeCommand, timeout_ms: int | None = None) -> int:
        """Submit an admin command and poll until it completes.

        Returns
        -------
        int
            Completion DW0.

        Raises
        ------
        NvmeCommandError
            The command completed with an error status.
        TimeoutError
            No completion within ``timeout_ms`` (default ``options.admin_timeout_ms``).
        """
        box = _Pending()

        def done(status: NvmeStatus, dw0: int) -> None:
            box.status, box.dw0, box.done = status, dw0, True

        self.submit_admin(cmd, done)
        timeout = self.options.admin_timeout_ms if timeout_ms is None else timeout_ms
        deadline = self.plat.now_ns + timeout * _NS_TO_NS
        while not box.done:
            if self.process_admin_completions():
                continue
            if self.plat.now_ns >= deadline:
                raise TimeoutError(f"admin opcode {_opname(cmd.opc)}: no completion within "
                                   f"{timeout} ms (CSTS={self.bar0.read32(Reg.CSTS):#x})")
            self._wait_for_device(deadline)
        assert box.status is not None
        if not box.status.ok:
            raise NvmeCommandError(box.status, f"admin {_opname(cmd.opc)}", opc=cmd.opc,
                                   dw0=box.dw0)
        return box.dw0

    def _submit_aer(self) -> None:
        self._aers_outstanding += 1
        self.submit_admin(cmds.async_event_request(), self._on_aer)

    def _on_aer(self, status: NvmeStatus, dw0: int) -> None:
        self._aers_outstanding -= 1
        if not status.ok:
            return      # aborted at shutdown, or not supported: stop re-posting
        self.async_events.append(AsyncEvent(field_get(AER_TYPE, dw0), field_get(AER_INFO, dw0),
                                            field_get(AER_LID, dw0)))
        if not self._closed:
            self._submit_aer()

    def _wait_for_device(self, deadline_ns: int | None) -> None:
        """Let virtual time pass until the next device event or ``deadline_ns``."""
        plat = self.plat
        nxt = plat.events.next_event_ns
        if nxt is None or (deadline_ns is not None and nxt > deadline_ns):
            if deadline_ns is None:
                raise NvmeControllerError("waiting for the device, but it has nothing pending")
            plat.run_until(max(deadline_ns, plat.now_ns))
        else:
            plat.step()

    # -- I/O queue pairs ----------------------------------------------------------------------
    def create_io_qpair(self, depth: int | None = None, nsid: int | None = None, *,
                        interrupts: bool = False) -> Any:
        """Create an I/O queue pair: Create I/O CQ, then Create I/O SQ on a free QID.

        Parameters
        ----------
        depth : int, optional
            Commands outstanding at once (ring slots = depth + 1); default
            ``options.io_queue_entries - 1``, at most CAP.MQES.
        nsid : int, optional
            Namespace the queue pair reads and writes (default: the lowest active one).
        interrupts : bool, optional
            Create the CQ with interrupts enabled on MSI-X vector ``qid`` (CDW11.IEN/IV) and
            let ``poll`` sleep until the interrupt instead of stepping once; polling (the
            default) is what SPDK does.

        Returns
        -------
        QPair

        Raises
        ------
        UsageError
            Not ready, bad depth or nsid, or every granted I/O queue is in use.
        """
        from labrig.drivers.nvme.qpair import QPair

        if self.state != InitState.READY or self._closed:
            raise UsageError(f"create_io_qpair: controller is {'closed' if self._closed else self.state.name}, "
                             "not READY")
        if depth is None:
            depth = min(self.options.io_queue_entries, self.mqes + 1) - 1
        if not isinstance(depth, int) or not 1 <= depth <= self.mqes:
            raise UsageError(f"depth={depth!r}: must be in 1..{self.mqes} (CAP.MQES)")
        if nsid is None:
            if not self.namespaces:
                raise UsageError("create_io_qpair: the controller has no active namespace")
            nsid = min(self.namespaces)
        ns = self.namespaces.get(nsid)
        if ns is None:
            raise UsageError(f"nsid={nsid!r}: not an active namespace "
                             f"(active: {sorted(self.namespaces)})")
        qid = next((q for q in range(1, self.num_io_queues + 1) if q not in self._qpairs), None)
        if qid is None:
            raise UsageError(f"create_io_qpair: all {self.num_io_queues} I/O queue pairs "
                             "granted by Set Features Number of Queues are in use")
        entries = depth + 1
        ring = QueueRing(self.plat.memory, self.bar0, qid, entries, self.dstrd, self.page_size)
        try:
            self.admin_command(cmds.create_io_cq(qid, entries, prp1=ring.cq_addr,
                                                 ien=interrupts, iv=qid if interrupts else 0))
            try:
                self.admin_command(cmds.create_io_sq(qid, entries, qid, prp1=ring.sq_addr))
            except BaseException:
                self.admin_command(cmds.delete_io_cq(qid))
                raise
        except BaseException:
            ring.free()
            raise
        qp = QPair(self, ring, ns, interrupt_vector=qid if interrupts else None)
        self._qpairs[qid] = qp
        return qp

    def _delete_io_queues(self, qid: int) -> None:
        """Delete I/O SQ then CQ ``qid`` (called by :meth:`QPair.close`)."""
        self._qpairs.pop(qid, None)
        if self._closed_or_failed():
            return      # nothing to delete on a controller that cannot run commands
        self.admin_command(cmds.delete_io_sq(qid))
        self.admin_command(cmds.delete_io_cq(qid))

    def _closed_or_failed(self) -> bool:
        """True when no command can complete any more: closed, not READY, or CSTS.CFS."""
        if self._closed or self.state != InitState.READY:
            return True
        csts = self.bar0.read32(Reg.CSTS)
        return csts == _ALL_ONES_32 or bool(csts & regs.CSTS_CFS)

    @property
    def qpairs(self) -> list[Any]:
        """Open I/O queue pairs."""
        return list(self._qpairs.values())

    # -- shutdown -----------------------------------------------------------------------------
    def close(self) -> None:
        """Close every queue pair, shut the controller down (CC.SHN = normal, wait for
        CSTS.SHST = complete, Base spec 2.0 section 3.6.1) and free driver memory.

        Idempotent.

        Raises
        ------
        NvmeControllerError
            Shutdown did not complete within ``options.shutdown_timeout_ms``.
        """
        if self._closed:
            return
        try:
            for qp in list(self._qpairs.values()):
                qp.close()
        finally:
            self._closed = True
            try:
                if self.admin is not None and self.state == InitState.READY:
                    self._shutdown()
            finally:
                self._free()

    def _shutdown(self) -> None:
        cc = self.bar0.read32(Reg.CC)
        self.bar0.write32(Reg.CC, (cc & ~regs.CC_SHN) | field_prep(regs.CC_SHN, regs.SHN_NORMAL))
        timeout = self.options.shutdown_timeout_ms
        deadline = self.plat.now_ns + timeout * _NS_TO_NS
        while True:
            csts = self.bar0.read32(Reg.CSTS)
            if csts != _ALL_ONES_32 and field_get(regs.CSTS_SHST, csts) == regs.SHST_COMPLETE:
                self.shutdown_complete = True
                return
            if self.plat.now_ns >= deadline:
                raise NvmeControllerError(f"shutdown: CSTS.SHST={field_get(regs.CSTS_SHST, csts):#04b}"
                                          f" (CSTS={csts:#x}), not complete (10b) {timeout} ms "
                                          "after CC.SHN=01b")
            self._wait_for_device(deadline)

    def _free(self) -> None:
        if self.admin is not None:
            self.admin.free()
            self.admin = None
        if self._id_buf is not None:
            self._id_buf.free()
            self._id_buf = None
        self.prp_pool.close()

    def __enter__(self) -> NvmeCtrlr:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"NvmeCtrlr(state={self.state.name}, mn={self.identify.mn!r}, "
                f"namespaces={sorted(self.namespaces)}, io_qpairs={len(self._qpairs)})")


def _opname(opc: int) -> str:
    try:
        return AdminOpcode(opc).name
    except ValueError:
        return f"{opc:#04x}"

