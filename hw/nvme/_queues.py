"""Submission and completion queue state (Base spec 2.0 section 3.3 "Queue Mechanism").

Queues live in host memory; the model keeps a numpy view of each ring and the head/tail/phase
bookkeeping.  A completion queue that is full holds further completions until the host frees
entries with its head doorbell (4.2.4: the controller shall not post into a full CQ).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from labrig.hw.nvme.spec import CQE_BYTES, CQE_STRUCT, NvmeStatus, Sct

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["NO_COMPLETE", "CompletionQueue", "Request", "SubmissionQueue"]

#: Handlers return this when the command completes later (QEMU ``NVME_NO_COMPLETE``); a
#: vendor-specific code no real completion carries.
NO_COMPLETE = NvmeStatus(sct=Sct.VENDOR, sc=0xFF, dnr=True)

_pack_cqe = CQE_STRUCT.pack_into


class Request:
    """One fetched command, handed to an opcode handler (QEMU ``NvmeRequest``).

    Handlers fill ``dw0`` and ``done_ns`` (completion time, default "now") and return a status.
    """

    __slots__ = ("cid", "cmd", "done_ns", "dw0", "lba", "nsid", "opc", "sq")

    def __init__(self, sq: SubmissionQueue, cmd: tuple[int, ...], now: int) -> None:
        self.sq = sq
        self.cmd = cmd
        self.opc = cmd[0]
        self.cid = cmd[2]
        self.nsid = cmd[3]
        self.dw0 = 0
        self.done_ns = now
        self.lba = 0


class CompletionQueue:
    """A CQ ring: the model writes CQEs at ``tail`` and flips ``phase`` on wrap."""

    __slots__ = ("buf", "deleted", "head", "held", "ien", "iv", "phase", "qid", "size",
                 "sqs", "tail")

    def __init__(self, qid: int, buf: NDArray[np.uint8], size: int, ien: bool, iv: int) -> None:
        self.qid = qid
        self.buf = buf
        self.size = size
        self.ien = ien
        self.iv = iv
        self.head = 0
        self.tail = 0
        self.phase = 1        # the host zeroes the ring and expects P = 1 on the first pass
        self.held: deque[tuple[int, int, int, int, SubmissionQueue]] = deque()
        self.sqs: set[int] = set()
        self.deleted = False

    def full(self) -> bool:
        """No free slot: one more entry would make tail == head."""
        return (self.tail + 1) % self.size == self.head

    def post(self, dw0: int, sq: SubmissionQueue, cid: int, status_half: int) -> bool:
        """Write one CQE (or hold it if the ring is full); True when written."""
        if self.held or (self.tail + 1) % self.size == self.head:
            self.held.append((dw0, cid, status_half, 0, sq))
            return False
        self._write(dw0, sq, cid, status_half)
        return True

    def _write(self, dw0: int, sq: SubmissionQueue, cid: int, status_half: int) -> None:
        t = self.tail
        _pack_cqe(self.buf, t * CQE_BYTES, dw0, 0, sq.head, sq.qid, cid, status_half | self.phase)
        t += 1
        if t == self.size:
            t = 0
            self.phase ^= 1
        self.tail = t

    def release_held(self) -> int:
        """Post held completions into freed slots; returns how many were written."""
        n = 0
        held = self.held
        while held and (self.tail + 1) % self.size != self.head:
            dw0, cid, st, _, sq = held.popleft()
            self._write(dw0, sq, cid, st)
            n += 1
        return n


class SubmissionQueue:
    """An SQ ring: the host moves ``tail`` with its doorbell, the model fetches at ``head``."""

    __slots__ = ("buf", "cq", "deleted", "head", "prio", "qid", "size", "tail")

    def __init__(self, qid: int, buf: NDArray[np.uint8], size: int, cq: CompletionQueue,
                 prio: int = 0) -> None:
        self.qid = qid
        self.buf = buf
        self.size = size
        self.cq = cq
        self.prio = prio
        self.head = 0
        self.tail = 0
        self.deleted = False

    def pending(self) -> int:
        """Entries between head and tail (submitted, not yet fetched)."""
        return (self.tail - self.head) % self.size
