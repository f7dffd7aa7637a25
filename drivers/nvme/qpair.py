"""Poll-mode NVMe I/O queue pair: the :class:`~labrig.drivers.block.BlockQPair` of the NVMe
driver.

After SPDK ``nvme_qpair.c`` / ``nvme_pcie_common.c`` (STYLE.md section 2):

- Submission writes the 64-byte SQE straight into the SQ memory and rings the SQ tail
  doorbell, unless inside ``with qp.batch():`` or a completion callback, where one doorbell
  covers every command written (SPDK's ``delay_cmd_submit``).
- A request that finds no free slot waits in a software queue (SPDK ``queued_req``) and goes
  out when a completion frees one; submission never fails because the queue is full.
- :meth:`QPair.poll` consumes CQEs whose phase tag matches, completes their requests, writes
  the CQ head doorbell once, then submits queued requests.  When nothing is ready and commands
  are outstanding, it advances the platform to its next event (the emulator's idle loop).
- Errors surface as :class:`~labrig.drivers.nvme.errors.NvmeCommandError` (spec status name,
  ``retryable = not DNR``).  A command that failed with DNR clear is resubmitted up to
  ``options.retry_count`` times first (SPDK ``nvme_completion_is_retry``).
- Transfers above the controller's MDTS are rejected with :class:`~labrig.errors.UsageError`
  rather than split: :attr:`max_transfer_blocks` is advertised through ``BlockDevice``, so
  runtimes size their reads to it (DiskANN/PipeANN read one sector or a few), and a rejected
  oversize request is a caller bug better reported than hidden.
- Callbacks may submit; ``close()`` from a callback takes effect when ``poll`` returns.
- Optional interrupt mode (``create_io_qpair(interrupts=True)``): the CQ raises MSI-X vector
  ``qid`` through ``dev.on_interrupt``, and an idle ``poll`` runs the platform until it fires.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from labrig.drivers.block._interface import IoKind, IoRequest
from labrig.drivers.nvme.commands import MAX_NLB
from labrig.drivers.nvme.errors import NvmeCommandError, NvmeControllerError
from labrig.drivers.nvme.prp import build_prps
from labrig.errors import UsageError
from labrig.hw.nvme.regs import CSTS_CFS, Reg
from labrig.hw.nvme.spec import (
    CDW11_DSM_AD,
    CDW12_DEAC,
    CDW12_FUA,
    DSM_RANGE_STRUCT,
    SQE_BYTES,
    SQE_STRUCT,
    SUCCESS,
    IoOpcode,
    NvmeStatus,
)

if TYPE_CHECKING:
    from labrig.drivers.nvme._queue import QueueRing
    from labrig.drivers.nvme.controller import NvmeCtrlr, NvmeNamespace

__all__ = ["NvmeRequest", "QPair"]

_U32: Final = 0xFFFF_FFFF
_MAX_LBA: Final = (1 << 64) - 1
_DSM_RANGE_BYTES: Final = DSM_RANGE_STRUCT.size
_NS_PER_MS: Final = 1_000_000
_OP_READ: Final = int(IoOpcode.READ)
_OP_WRITE: Final = int(IoOpcode.WRITE)
_OP_FLUSH: Final = int(IoOpcode.FLUSH)
_OP_DSM: Final = int(IoOpcode.DATASET_MANAGEMENT)
_OP_WRITE_ZEROES: Final = int(IoOpcode.WRITE_ZEROES)
_pack_sqe = SQE_STRUCT.pack_into


def _as_int(name: str, value: Any) -> int:
    """``value`` as a Python int (numpy integers welcome); bools and non-integers refused."""
    if isinstance(value, bool):
        raise UsageError(f"{name}={value!r}: must be an integer")
    try:
        return operator.index(value)
    except TypeError:
        raise UsageError(f"{name}={value!r}: must be an integer") from None


class NvmeRequest(IoRequest):
    """An :class:`~labrig.drivers.block.IoRequest` plus the SQE fields needed to (re)issue it.

    Attributes
    ----------
    opc, cdw10, cdw11, cdw12 : int
        Opcode and command dwords.
    addr, nbytes : int
        Data buffer bus address and length (0 for no data).
    retries : int
        Resubmissions so far.
    """

    __slots__ = ("addr", "cdw10", "cdw11", "cdw12", "nbytes", "opc", "retries")


class QPair:
    """One NVMe I/O submission/completion queue pair bound to a namespace.

    Created by :meth:`NvmeCtrlr.create_io_qpair` (or ``BlockDevice.qpair``); implements
    :class:`~labrig.drivers.block.BlockQPair`.  Not thread-safe: one per worker.

    Attributes
    ----------
    depth : int
        Commands the device holds at once (ring slots minus one).
    qid : int
        Queue identifier of the SQ/CQ pair.
    nsid : int
        Namespace addressed.
    """

    def __init__(self, ctrlr: NvmeCtrlr, ring: QueueRing, ns: NvmeNamespace, *,
                 interrupt_vector: int | None = None) -> None:
        self.ctrlr = ctrlr
        self._ring = ring
        self._plat = ctrlr.plat
        self.qid = ring.qid
        self.depth = ring.capacity
        self.nsid = ns.nsid
        self.block_size = ns.lba_bytes
        self.num_blocks = ns.num_blocks
        self.max_transfer_blocks = min(ctrlr.max_transfer_bytes // ns.lba_bytes, MAX_NLB)
        self._page = ctrlr.page_size
        self._page_mask = ctrlr.page_size - 1
        self._pool = ctrlr.prp_pool
        self._retry_count = ctrlr.options.retry_count
        self._io_timeout_ns = ctrlr.options.io_timeout_ms * _NS_PER_MS
        self._list_pages: list[Any] = [None] * ring.capacity
        self._queued: deque[NvmeRequest] = deque()
        self._dsm_buf: Any = None
        self._batch = 0
        self._in_poll = False
        self._closing = False
        self._close_pending = False
        self._closed = False
        #: commands submitted to the device / completed (for tests and benchmarks)
        self.submitted = 0
        self.completed = 0
        #: MSI-X vector of the CQ in interrupt mode, else None (polling)
        self.interrupt_vector = interrupt_vector
        self.interrupts = 0
        self._irq = False
        if interrupt_vector is not None:
            ctrlr.dev.on_interrupt(interrupt_vector, self._on_interrupt)

    # -- BlockQPair: facts ----------------------------------------------------------------------
    @property
    def outstanding(self) -> int:
        """Requests accepted and not yet completed (in the device or the software queue)."""
        return self._ring.outstanding + len(self._queued)

    @property
    def queued(self) -> int:
        """Requests waiting in the software queue for a free slot."""
        return len(self._queued)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- BlockQPair: submission -----------------------------------------------------------------
    def read(self, buf: Any, lba: int, nblocks: int, *, buf_offset: int = 0,
             callback: Callable[[IoRequest], Any] | None = None,
             context: Any = None) -> NvmeRequest:
        """Read ``nblocks`` blocks at ``lba`` into ``buf[buf_offset:]`` (NVM Read, 02h)."""
        return self._rw(_OP_READ, IoKind.READ, buf, lba, nblocks, buf_offset, 0, callback,
                        context)

    def write(self, buf: Any, lba: int, nblocks: int, *, buf_offset: int = 0,
              fua: bool = False, callback: Callable[[IoRequest], Any] | None = None,
              context: Any = None) -> NvmeRequest:
        """Write ``nblocks`` blocks from ``buf[buf_offset:]`` at ``lba`` (NVM Write, 01h);
        ``fua`` sets Force Unit Access."""
        return self._rw(_OP_WRITE, IoKind.WRITE, buf, lba, nblocks, buf_offset,
                        CDW12_FUA if fua else 0, callback, context)

    def flush(self, *, callback: Callable[[IoRequest], Any] | None = None,
              context: Any = None) -> NvmeRequest:
        """Flush the namespace's volatile write cache (Flush, 00h)."""
        return self._enqueue(self._new(_OP_FLUSH, IoKind.FLUSH, 0, 0, 0, 0, 0, 0, 0, callback,
                                       context))

    def trim(self, lba: int, nblocks: int, *, callback: Callable[[IoRequest], Any] | None = None,
             context: Any = None) -> NvmeRequest:
        """Deallocate a range (Dataset Management, 09h, one range, AD = 1)."""
        lba, nblocks = self._check_range(lba, nblocks, _U32)
        return self._enqueue(self._new(_OP_DSM, IoKind.TRIM, lba, nblocks, 0, CDW11_DSM_AD, 0,
                                       0, _DSM_RANGE_BYTES, callback, context))

    def write_zeroes(self, lba: int, nblocks: int, *,
                     callback: Callable[[IoRequest], Any] | None = None,
                     context: Any = None) -> NvmeRequest:
        """Zero a range (Write Zeroes, 08h); DEAC lets the device deallocate it."""
        lba, nblocks = self._check_range(lba, nblocks, MAX_NLB)
        return self._enqueue(self._new(_OP_WRITE_ZEROES, IoKind.WRITE_ZEROES, lba, nblocks,
                                       lba & _U32, lba >> 32, (nblocks - 1) | CDW12_DEAC, 0, 0,
                                       callback, context))

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Defer the SQ tail doorbell: commands submitted inside go out with one MMIO write."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1
            if not self._batch and not self._in_poll and not self._closed:
                self._ring.ring_sq_doorbell()

    # -- submission internals -------------------------------------------------------------------
    def _check_range(self, lba: int, nblocks: int, max_blocks: int) -> tuple[int, int]:
        if self._closing:
            raise UsageError(f"qpair {self.qid} is closed")
        nblocks = _as_int("nblocks", nblocks)
        lba = _as_int("lba", lba)
        if not 1 <= nblocks <= max_blocks:
            raise UsageError(f"nblocks={nblocks!r}: must be in 1..{max_blocks}")
        if lba < 0 or lba + nblocks - 1 > _MAX_LBA:
            raise UsageError(f"lba={lba!r}: must be a non-negative 64-bit LBA")
        return lba, nblocks

    def _new(self, opc: int, kind: str, lba: int, nblocks: int, cdw10: int, cdw11: int,
             cdw12: int, addr: int, nbytes: int, callback: Callable[[IoRequest], Any] | None,
             context: Any) -> NvmeRequest:
        if self._closing:
            raise UsageError(f"qpair {self.qid} is closed")
        req = NvmeRequest(kind, lba, nblocks, callback, context)
        req.opc = opc
        req.cdw10 = cdw10
        req.cdw11 = cdw11
        req.cdw12 = cdw12
        req.addr = addr
        req.nbytes = nbytes
        req.retries = 0
        return req

    def _rw(self, opc: int, kind: str, buf: Any, lba: int, nblocks: int, buf_offset: int,
            flags: int, callback: Callable[[IoRequest], Any] | None,
            context: Any) -> NvmeRequest:
        if self._closing:
            raise UsageError(f"qpair {self.qid} is closed")
        if nblocks.__class__ is not int:
            nblocks = _as_int("nblocks", nblocks)
        if lba.__class__ is not int:
            lba = _as_int("lba", lba)
        if not 0 < nblocks <= self.max_transfer_blocks:
            raise UsageError(f"nblocks={nblocks!r}: must be in 1..{self.max_transfer_blocks} "
                             "(max_transfer_blocks, from Identify MDTS); split larger transfers")
        if lba < 0 or lba + nblocks - 1 > _MAX_LBA:
            raise UsageError(f"lba={lba!r}: must be a non-negative 64-bit LBA")
        nbytes = nblocks * self.block_size
        try:
            addr = buf.addr
            size = buf.nbytes
        except AttributeError:
            raise UsageError(f"buf={buf!r}: not a DMA buffer from alloc_buffer()") from None
        if buf_offset < 0 or buf_offset + nbytes > size or buf_offset & 3:
            raise UsageError(f"buf_offset={buf_offset!r}: {nbytes} bytes at that offset must fit "
                             f"in the {size}-byte buffer and start dword aligned")
        req = NvmeRequest(kind, lba, nblocks, callback, context)
        req.opc = opc
        req.cdw10 = lba & _U32
        req.cdw11 = lba >> 32
        req.cdw12 = (nblocks - 1) | flags
        req.addr = addr + buf_offset
        req.nbytes = nbytes
        req.retries = 0
        req.submit_ns = self._plat.now_ns
        if self._ring.free_cids and not self._queued:
            self._issue(req)
        else:
            self._queued.append(req)
        return req

    def _enqueue(self, req: NvmeRequest) -> NvmeRequest:
        req.submit_ns = self._plat.now_ns
        if self._ring.free_cids and not self._queued:
            self._issue(req)
        else:
            self._queued.append(req)
        return req

    def _issue(self, req: NvmeRequest) -> None:
        """Write ``req``'s SQE (a free CID is guaranteed) and ring unless batching."""
        ring = self._ring
        cid = ring.free_cids.pop()
        ring.cid_owner[cid] = req
        opc = req.opc
        prp2 = 0
        if opc == _OP_DSM:
            prp1 = self._dsm_range(cid, req.lba, req.nblocks)
            cdw10 = 0      # NR = 0: one range
        else:
            cdw10 = req.cdw10
            prp1 = req.addr
            nbytes = req.nbytes
            if nbytes:
                end = (prp1 & self._page_mask) + nbytes
                if end > self._page:
                    if end <= 2 * self._page:
                        prp2 = (prp1 | self._page_mask) + 1
                    else:
                        prps = build_prps(((prp1, nbytes),), self._page, self._pool)
                        prp2 = prps.prp2
                        self._list_pages[cid] = prps.list_pages
        tail = ring.sq_tail
        _pack_sqe(ring.sq_mv, tail * SQE_BYTES, opc, 0, cid, self.nsid, 0, 0, 0, prp1, prp2,
                  cdw10, req.cdw11, req.cdw12, 0, 0, 0)
        tail += 1
        ring.sq_tail = 0 if tail == ring.entries else tail
        self.submitted += 1
        if not self._batch and not self._in_poll:
            ring.sq_tail_rung = ring.sq_tail
            ring.bar0.write32(ring.sq_db_off, ring.sq_tail)

    def _dsm_range(self, cid: int, lba: int, nblocks: int) -> int:
        """Write the one-range DSM list for ``cid`` into its 16-byte slot; return its address."""
        if self._dsm_buf is None:
            self._dsm_buf = self._plat.memory.alloc(self.depth * _DSM_RANGE_BYTES, self._page)
        off = cid * _DSM_RANGE_BYTES
        DSM_RANGE_STRUCT.pack_into(self._dsm_buf.view, off, 0, nblocks, lba)
        return int(self._dsm_buf.addr) + off

    # -- completion -----------------------------------------------------------------------------
    def poll(self, max_completions: int = 0, *, wait: bool = True) -> int:
        """Reap up to ``max_completions`` completions (0: all ready) and run their callbacks.

        When nothing is ready and commands are outstanding, advance the platform to its next
        event first (one ``plat.step()``), then reap again; ``wait=False`` skips that and
        returns 0 (a non-blocking peek, as on a real ring).

        Returns
        -------
        int
            Completions reaped (retried commands count when they finally complete).

        Raises
        ------
        UsageError
            Called from inside a completion callback, or on a closed qpair.
        """
        if self._in_poll:
            raise UsageError("poll() called from a completion callback of the same qpair")
        if self._closed:
            raise UsageError(f"qpair {self.qid} is closed")
        ring = self._ring
        n = (self._process(max_completions)
             if (ring._cq_u16[ring.cq_head * 8 + 7] & 1) == ring.cq_phase else 0)
        if n == 0 and wait and len(ring.free_cids) < ring.entries - 1:
            if self.interrupt_vector is None:
                self._plat.step()
            else:
                self._sleep_until_interrupt()
            n = self._process(max_completions)
        if self._close_pending:
            self._close_pending = False
            self._close_now()
        return n

    def _process(self, max_completions: int) -> int:
        ring = self._ring
        u16 = ring._cq_u16
        head = ring.cq_head
        phase = ring.cq_phase
        if (u16[head * 8 + 7] & 1) != phase:
            return 0
        owners = ring.cid_owner
        free = ring.free_cids
        pages = self._list_pages
        entries = ring.entries
        cap = ring.capacity
        now = self._plat.now_ns
        n = 0
        self._in_poll = True
        try:
            while (u16[head * 8 + 7] & 1) == phase:
                base = head * 8
                cid = u16[base + 6]
                status_half = u16[base + 7]
                head += 1
                if head == entries:
                    head = 0
                    phase ^= 1
                ring.cq_head = head
                ring.cq_phase = phase
                req = owners[cid] if cid < cap else None
                if req is None:
                    raise NvmeControllerError(f"qpair {self.qid}: completion for CID {cid}, "
                                              "which is not outstanding")
                owners[cid] = None
                free.append(cid)
                lp = pages[cid]
                if lp is not None:
                    pages[cid] = None
                    for page in lp:
                        self._pool.put(page)
                n += 1
                if status_half & 0xFFFE:
                    self._failed(req, cid, status_half, ring._cq_dw[base // 2])
                else:
                    self.completed += 1
                    req._complete(now, SUCCESS, None)
                if n == max_completions:
                    break
        finally:
            ring.ring_cq_doorbell()
            queued = self._queued
            while queued and free:
                self._issue(queued.popleft())
            self._in_poll = False
            if not self._batch:
                ring.ring_sq_doorbell()
        return n

    def _on_interrupt(self, vector: int) -> None:
        self.interrupts += 1
        self._irq = True

    def _sleep_until_interrupt(self) -> None:
        """Interrupt mode: run platform events until this CQ's vector fires (or nothing is
        left to run), like a thread blocked on the interrupt's eventfd."""
        step = self._plat.step
        self._irq = False
        while not self._irq and step():
            pass

    def _failed(self, req: NvmeRequest, cid: int, status_half: int, dw0: int) -> None:
        status = NvmeStatus.decode(status_half)
        if not status.dnr and req.retries < self._retry_count and not self._closing:
            req.retries += 1
            self._queued.appendleft(req)
            return
        self.completed += 1
        what = (f"{req.kind} nsid={self.nsid} lba={req.lba} nblocks={req.nblocks}"
                if req.opc != _OP_FLUSH else f"flush nsid={self.nsid}")
        err = NvmeCommandError(status, what, opc=req.opc, sqid=self.qid, cid=cid, dw0=dw0)
        req._complete(self._plat.now_ns, status, err)

    def wait(self, reqs: IoRequest | list[IoRequest] | None = None,
             timeout_ns: int | None = None) -> None:
        """Poll until ``reqs`` (default: everything outstanding) complete.

        Errors of individual requests are not raised here: check ``req.error`` or call
        ``req.result()``.

        Raises
        ------
        TimeoutError
            Not done within ``timeout_ns`` of ``clock()`` time (default
            ``options.io_timeout_ms``).
        NvmeControllerError
            Commands are outstanding but the device has nothing left to do (controller fatal
            status, or commands lost).
        """
        if reqs is None:
            targets: list[IoRequest] = []
        elif isinstance(reqs, IoRequest):
            targets = [reqs]
        else:
            targets = list(reqs)
        plat = self._plat
        timeout = self._io_timeout_ns if timeout_ns is None else timeout_ns
        deadline = plat.now_ns + timeout
        while True:
            if targets:
                while targets and targets[-1].done:
                    targets.pop()
                if not targets:
                    return
            elif not self.outstanding:
                return
            if self.poll():
                continue
            if plat.now_ns >= deadline:
                raise TimeoutError(f"qpair {self.qid}: {self.outstanding} requests not complete "
                                   f"after {timeout} ns ({self._csts_text()})")
            if self._ring.outstanding and plat.events.next_event_ns is None:
                raise NvmeControllerError(f"qpair {self.qid}: {self._ring.outstanding} commands "
                                          "outstanding but the device has no pending work "
                                          f"({self._csts_text()})")
            if not self._ring.outstanding:
                return      # targets belong elsewhere; nothing here can complete them

    def _csts_text(self) -> str:
        csts = self.ctrlr.bar0.read32(Reg.CSTS)
        cfs = " CFS=1 (controller fatal status)" if csts & CSTS_CFS else ""
        return f"CSTS={csts:#x}{cfs}"

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop accepting requests, wait for the accepted ones, delete the SQ then the CQ.

        Idempotent.  From inside a completion callback the close takes effect when ``poll``
        returns.
        """
        if self._closed or self._close_pending:
            return
        self._closing = True
        if self._in_poll:
            self._close_pending = True
            return
        self._close_now()

    def _close_now(self) -> None:
        try:
            if self.outstanding and not self.ctrlr._closed_or_failed():
                self.wait()
        finally:
            self._closed = True
            if self.interrupt_vector is not None:
                self.ctrlr.dev.on_interrupt(self.interrupt_vector, None)
            try:
                self.ctrlr._delete_io_queues(self.qid)
            finally:
                self._ring.free()
                if self._dsm_buf is not None:
                    self._dsm_buf.free()
                    self._dsm_buf = None

    def __enter__(self) -> QPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"QPair(qid={self.qid}, nsid={self.nsid}, depth={self.depth}, "
                f"outstanding={self.outstanding})")
