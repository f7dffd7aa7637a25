"""One submission/completion queue pair in host memory: ring memory, doorbells, phase tag,
command identifiers.  Shared by the admin queue and the I/O queue pairs.

Base spec 2.0 section 3.3.1 ("Memory-based Transport Queue Model") and 4.2 ("Completion Queue
Entry"): the host writes SQEs at the SQ tail and announces them by writing the new tail to
SQyTDBL; the controller posts CQEs with the Phase Tag inverted on every pass through the CQ.
The host zeroes the CQ, so on the first pass it consumes entries whose P = 1, flipping the
expected phase each time its head wraps (SPDK ``nvme_pcie_qpair_process_completions``), and
reports consumed entries by writing the head to CQyHDBL.

The queue never holds more than ``entries - 1`` commands (section 4.1.2: a full queue has
one empty slot), so it hands out ``entries - 1`` CIDs and an SQ or CQ can never overflow.
"""

from __future__ import annotations

from typing import Any, Final, Protocol

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.nvme.commands import NvmeCommand
from labrig.hw.nvme.regs import cq_hdbl_offset, sq_tdbl_offset
from labrig.hw.nvme.spec import CQE_BYTES, SQE_BYTES, SQE_STRUCT

__all__ = ["QueueRing"]

#: CQE fields as 16-bit words: CID is word 6, the status half (with P in bit 0) is word 7.
_CQE_WORDS: Final = CQE_BYTES // 2
_CQE_CID_WORD: Final = 6
_CQE_STATUS_WORD: Final = 7
_CQE_DW0_DWORD: Final = 0


class _Bar(Protocol):
    def write32(self, off: int, value: int) -> None: ...


class _Buffer(Protocol):
    addr: int
    view: NDArray[np.uint8]

    def free(self) -> None: ...


class _Memory(Protocol):
    def alloc(self, nbytes: int, align: int = ...) -> _Buffer: ...


class QueueRing:
    """SQ and CQ memory of one queue pair plus the host's view of their state.

    Parameters
    ----------
    memory : HostMemory-like
        Where the rings are allocated (physically contiguous, page aligned).
    bar0 : Bar-like
        Doorbell writes go to ``bar0.write32``.
    qid : int
        Queue identifier (0 = admin).
    entries : int
        Slots in each ring; ``entries - 1`` commands can be outstanding.
    dstrd : int
        CAP.DSTRD, the doorbell stride exponent.
    page_size : int
        Alignment of the rings (the controller memory page size).
    """

    __slots__ = ("_cq_dw", "_cq_u16", "bar0", "cid_owner", "cq_buf", "cq_db_off", "cq_head",
                 "cq_phase", "entries", "free_cids", "qid", "sq_buf", "sq_db_off", "sq_mv",
                 "sq_tail", "sq_tail_rung")

    def __init__(self, memory: _Memory, bar0: _Bar, qid: int, entries: int, dstrd: int,
                 page_size: int) -> None:
        self.qid = qid
        self.entries = entries
        self.bar0 = bar0
        self.sq_buf = memory.alloc(entries * SQE_BYTES, page_size)
        self.cq_buf = memory.alloc(entries * CQE_BYTES, page_size)
        self.sq_mv = memoryview(self.sq_buf.view)
        cq_mv = memoryview(self.cq_buf.view)
        self._cq_u16 = cq_mv.cast("H")
        self._cq_dw = cq_mv.cast("I")
        self.sq_db_off = sq_tdbl_offset(qid, dstrd)
        self.cq_db_off = cq_hdbl_offset(qid, dstrd)
        self.sq_tail = 0
        self.sq_tail_rung = 0
        self.cq_head = 0
        self.cq_phase = 1
        #: per-CID owner (request or callback) while the command is outstanding
        self.cid_owner: list[Any] = [None] * (entries - 1)
        self.free_cids: list[int] = list(range(entries - 2, -1, -1))

    @property
    def sq_addr(self) -> int:
        return self.sq_buf.addr

    @property
    def cq_addr(self) -> int:
        return self.cq_buf.addr

    @property
    def capacity(self) -> int:
        """Commands that can be outstanding at once."""
        return self.entries - 1

    @property
    def outstanding(self) -> int:
        return self.entries - 1 - len(self.free_cids)

    def push(self, opc: int, cid: int, nsid: int, prp1: int, prp2: int, cdw10: int,
             cdw11: int, cdw12: int, cdw13: int = 0, cdw14: int = 0, cdw15: int = 0) -> None:
        """Write one SQE at the tail (no doorbell; see :meth:`ring_sq_doorbell`)."""
        tail = self.sq_tail
        SQE_STRUCT.pack_into(self.sq_mv, tail * SQE_BYTES, opc, 0, cid, nsid, 0, 0, 0, prp1,
                             prp2, cdw10, cdw11, cdw12, cdw13, cdw14, cdw15)
        tail += 1
        self.sq_tail = 0 if tail == self.entries else tail

    def ring_sq_doorbell(self) -> None:
        """Announce SQEs written since the last ring (one MMIO write, if any)."""
        tail = self.sq_tail
        if tail != self.sq_tail_rung:
            self.sq_tail_rung = tail
            self.bar0.write32(self.sq_db_off, tail)

    def cqe_pending(self) -> bool:
        """True when the entry at the CQ head carries the expected phase tag."""
        return (self._cq_u16[self.cq_head * _CQE_WORDS + _CQE_STATUS_WORD] & 1) == self.cq_phase

    def pop_cqe(self) -> tuple[int, int, int]:
        """Consume the CQE at the head: ``(cid, status_half, dw0)``; caller checked
        :meth:`cqe_pending`.  The head doorbell is written by :meth:`ring_cq_doorbell`."""
        head = self.cq_head
        base = head * _CQE_WORDS
        u16 = self._cq_u16
        cid = u16[base + _CQE_CID_WORD]
        status_half = u16[base + _CQE_STATUS_WORD]
        dw0 = self._cq_dw[head * 4 + _CQE_DW0_DWORD]
        head += 1
        if head == self.entries:
            head = 0
            self.cq_phase ^= 1
        self.cq_head = head
        return cid, status_half, dw0

    def ring_cq_doorbell(self) -> None:
        """Report the CQ head to the controller."""
        self.bar0.write32(self.cq_db_off, self.cq_head)

    def push_command(self, cmd: NvmeCommand) -> None:
        """Write a prepared :class:`NvmeCommand` (its ``cid`` already set) at the tail."""
        tail = self.sq_tail
        cmd.pack_into(self.sq_mv, tail * SQE_BYTES)
        tail += 1
        self.sq_tail = 0 if tail == self.entries else tail

    def free(self) -> None:
        """Release the ring memory (after the controller deleted the queues)."""
        self.sq_buf.free()
        self.cq_buf.free()
