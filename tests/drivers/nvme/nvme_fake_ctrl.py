"""A small register-level NVMe controller test double for driver tests.

Not the device model (that is :mod:`labrig.hw.nvme`): just enough of Base spec 2.0 to let the
driver's paths be exercised deterministically, with knobs the model need not have -- a
controller that never becomes ready, fatal status on enable, commands that are never
completed, and per-opcode injected statuses (to test DNR-driven retries).
"""

from __future__ import annotations

import struct
from collections import deque

from labrig.hw import PciDevice, Platform
from labrig.hw._bits import field_get, field_prep
from labrig.hw.nvme import regs
from labrig.hw.nvme.regs import Reg
from labrig.hw.nvme.spec import (
    CQE_BYTES,
    CQE_STRUCT,
    SQE_BYTES,
    SQE_STRUCT,
    AdminOpcode,
    Cns,
    GenericSc,
    IdCtrl,
    IdNs,
    IoOpcode,
    NvmeStatus,
)

MS = 1_000_000
US = 1_000


def make_cap(*, to: int = 2, mpsmin: int = 0, mpsmax: int = 4, mqes: int = 1023) -> int:
    return (field_prep(regs.CAP_MQES, mqes) | field_prep(regs.CAP_TO, to)
            | field_prep(regs.CAP_CSS, regs.CAP_CSS_NVM) | field_prep(regs.CAP_MPSMIN, mpsmin)
            | field_prep(regs.CAP_MPSMAX, mpsmax) | regs.CAP_CQR)


class FakeNvme(PciDevice):
    """Registers, admin and NVM I/O commands on a RAM namespace of 4 KiB blocks.

    Parameters
    ----------
    cap : int
        CAP register value.
    rdy, cfs : bool
        Whether CC.EN=1 ever sets RDY, or sets CFS instead.
    enabled : bool
        Start with CC.EN=1 and RDY=1 (as left by a previous driver).
    delay_ns : int
        Latency of EN edges.
    process : bool
        Whether submitted commands are processed at all.
    """

    BAR0_SIZE = 0x2000
    BLOCK = 4096

    def __init__(self, plat: Platform, cap: int | None = None, *, rdy: bool = True,
                 cfs: bool = False, enabled: bool = False, delay_ns: int = 10 * MS,
                 process: bool = True, num_blocks: int = 1024, mdts: int = 5) -> None:
        super().__init__(plat, "fake-nvme")
        self.regs = {Reg.CAP: make_cap() if cap is None else cap,
                     Reg.VS: regs.vs_encode(1, 4), Reg.CC: 0, Reg.CSTS: 0,
                     Reg.AQA: 0, Reg.ASQ: 0, Reg.ACQ: 0}
        if enabled:
            self.regs[Reg.CC] = regs.CC_EN
            self.regs[Reg.CSTS] = regs.CSTS_RDY
        self.rdy, self.cfs, self.delay_ns, self.process = rdy, cfs, delay_ns, process
        self.num_blocks, self.mdts = num_blocks, mdts
        self.data = bytearray(num_blocks * self.BLOCK)
        self.writes: list[tuple[int, int]] = []
        #: opcode -> statuses to answer with, one per command, before normal processing
        self.inject: dict[int, deque[NvmeStatus]] = {}
        self.sqs: dict[int, list[int]] = {}      # qid -> [base, entries, head, tail, cqid]
        self.cqs: dict[int, list[int]] = {}      # qid -> [base, entries, tail, phase]
        self.aers: deque[tuple[int, int]] = deque()
        self.cq_vectors: dict[int, int] = {}     # CQs created with IEN=1 -> vector

    # -- registers ------------------------------------------------------------------------
    def _mmio_read(self, off: int, width: int) -> int:
        return self.regs.get(off, 0)

    def _mmio_write(self, off: int, width: int, value: int) -> None:
        self.writes.append((off, value))
        if off >= regs.DOORBELL_BASE:
            qid, is_cq = regs.doorbell_decode(off, 0) or (0, True)
            if not is_cq and qid in self.sqs:
                self.sqs[qid][3] = value
                if self.process:
                    self.plat.schedule(US, self._run_sq, qid)
            return
        if off == Reg.CC:
            old = self.regs[Reg.CC]
            self.regs[Reg.CC] = value
            if value & regs.CC_EN and not old & regs.CC_EN:
                self.plat.schedule(self.delay_ns, self._enable)
            elif old & regs.CC_EN and not value & regs.CC_EN:
                self.plat.schedule(self.delay_ns, self._set_csts, 0)
            if field_get(regs.CC_SHN, value) and not field_get(regs.CC_SHN, old):
                self.plat.schedule(self.delay_ns, self._set_csts,
                                   self.regs[Reg.CSTS] | field_prep(regs.CSTS_SHST,
                                                                    regs.SHST_COMPLETE))
        elif off in self.regs:
            self.regs[off] = value

    def _set_csts(self, value: int) -> None:
        self.regs[Reg.CSTS] = value

    def _enable(self) -> None:
        if self.cfs:
            self._set_csts(regs.CSTS_CFS)
        elif self.rdy:
            n = field_get(regs.AQA_ASQS, self.regs[Reg.AQA]) + 1
            self.sqs = {0: [self.regs[Reg.ASQ], n, 0, 0, 0]}
            self.cqs = {0: [self.regs[Reg.ACQ], n, 0, 1]}
            self._set_csts(regs.CSTS_RDY)

    # -- queues ---------------------------------------------------------------------------
    def _run_sq(self, qid: int) -> None:
        sq = self.sqs.get(qid)
        if sq is None:
            return
        base, entries, _, _, cqid = sq
        while sq[2] != sq[3]:
            raw = self.plat.memory.read(base + sq[2] * SQE_BYTES, SQE_BYTES)
            sq[2] = (sq[2] + 1) % entries
            f = SQE_STRUCT.unpack(raw)
            opc, cid = f[0], f[2]
            injected = self.inject.get(opc)
            if injected:
                self._post(cqid, qid, cid, injected.popleft(), 0)
                continue
            status, dw0 = (self._admin(f) if qid == 0 else self._io(f))
            if status is not None:
                self._post(cqid, qid, cid, status, dw0)
            elif opc == AdminOpcode.ASYNC_EVENT_REQUEST:
                self.aers.append((qid, cid))

    def _post(self, cqid: int, sqid: int, cid: int, status: NvmeStatus, dw0: int) -> None:
        cq = self.cqs[cqid]
        base, entries, tail, phase = cq
        half = status.encode() | phase
        self.plat.memory.write(base + tail * CQE_BYTES,
                               CQE_STRUCT.pack(dw0, 0, self.sqs[sqid][2], sqid, cid, half))
        tail += 1
        if tail == entries:
            tail, cq[3] = 0, phase ^ 1
        cq[2] = tail
        if cqid in self.cq_vectors:
            self.raise_interrupt(self.cq_vectors[cqid])

    def _admin(self, f: tuple[int, ...]) -> tuple[NvmeStatus | None, int]:
        opc, nsid, prp1, cdw10, cdw11 = f[0], f[3], f[7], f[9], f[10]
        ok = NvmeStatus()
        if opc == AdminOpcode.IDENTIFY:
            page = bytearray(4096)
            cns = cdw10 & 0xFF
            if cns == Cns.CONTROLLER:
                page[IdCtrl.MDTS] = self.mdts
                page[IdCtrl.AERL] = 3
                page[IdCtrl.SQES] = 0x66
                page[IdCtrl.CQES] = 0x44
                struct.pack_into("<I", page, IdCtrl.NN, 1)
                page[IdCtrl.MN:IdCtrl.MN + 4] = b"fake"
            elif cns == Cns.ACTIVE_NS_LIST:
                struct.pack_into("<I", page, 0, 1)
            elif cns == Cns.NAMESPACE and nsid == 1:
                struct.pack_into("<QQ", page, IdNs.NSZE, self.num_blocks, self.num_blocks)
                page[IdNs.LBAF0 + 2] = 12
            self.plat.memory.write(prp1, bytes(page))
            return ok, 0
        if opc == AdminOpcode.SET_FEATURES:
            return ok, field_prep(0xFFFF, 3) | field_prep(0xFFFF_0000, 3)
        if opc == AdminOpcode.CREATE_IO_CQ:
            self.cqs[cdw10 & 0xFFFF] = [prp1, (cdw10 >> 16) + 1, 0, 1]
            if cdw11 & 0b10:
                self.cq_vectors[cdw10 & 0xFFFF] = cdw11 >> 16
            return ok, 0
        if opc == AdminOpcode.CREATE_IO_SQ:
            self.sqs[cdw10 & 0xFFFF] = [prp1, (cdw10 >> 16) + 1, 0, 0, cdw11 >> 16]
            return ok, 0
        if opc == AdminOpcode.DELETE_IO_SQ:
            self.sqs.pop(cdw10 & 0xFFFF, None)
            return ok, 0
        if opc == AdminOpcode.DELETE_IO_CQ:
            self.cqs.pop(cdw10 & 0xFFFF, None)
            return ok, 0
        if opc == AdminOpcode.ASYNC_EVENT_REQUEST:
            return None, 0
        return NvmeStatus(sc=GenericSc.INVALID_OPCODE, dnr=True), 0

    def _io(self, f: tuple[int, ...]) -> tuple[NvmeStatus | None, int]:
        opc, prp1, prp2, cdw10, cdw11, cdw12 = f[0], f[7], f[8], f[9], f[10], f[11]
        if opc == IoOpcode.FLUSH:
            return NvmeStatus(), 0
        if opc not in (IoOpcode.READ, IoOpcode.WRITE):
            return NvmeStatus(sc=GenericSc.INVALID_OPCODE, dnr=True), 0
        slba, nlb = cdw10 | cdw11 << 32, (cdw12 & 0xFFFF) + 1
        if slba + nlb > self.num_blocks:
            return NvmeStatus(sc=GenericSc.LBA_OUT_OF_RANGE, dnr=True), 0
        n = nlb * self.BLOCK
        pages = [(prp1, min(n, 4096 - prp1 % 4096))]
        rest = n - pages[0][1]
        if 0 < rest <= 4096:
            pages.append((prp2, rest))
        elif rest:
            k = 0
            while rest:
                addr = int.from_bytes(self.plat.memory.read(prp2 + 8 * k, 8), "little")
                pages.append((addr, min(4096, rest)))
                rest -= pages[-1][1]
                k += 1
        pos = slba * self.BLOCK
        for addr, ln in pages:
            if opc == IoOpcode.WRITE:
                self.data[pos:pos + ln] = self.plat.memory.read(addr, ln)
            else:
                self.plat.memory.write(addr, self.data[pos:pos + ln])
            pos += ln
        return NvmeStatus(), 0

    def fire_aer(self, dw0: int) -> None:
        """Complete one outstanding Asynchronous Event Request with ``dw0``."""
        sqid, cid = self.aers.popleft()
        self._post(0, sqid, cid, NvmeStatus(), dw0)
