"""A tiny register-level NVMe host for testing the model without the driver package.

It does what a real driver does -- registers, queues in host memory, doorbells, phase tags --
and nothing more, so tests exercise the model through the device contract only.
"""

from __future__ import annotations

from dataclasses import dataclass

from labrig.hw import Platform
from labrig.hw.nvme import NamespaceConfig, NvmeConfig, NvmeController
from labrig.hw.nvme import regs
from labrig.hw.nvme.regs import Reg
from labrig.hw.nvme.spec import (
    CQE_BYTES,
    CQE_STRUCT,
    SQE_BYTES,
    SQE_STRUCT,
    AdminOpcode,
    FeatureId,
    NvmeStatus,
)

PAGE = 4096


@dataclass
class Cqe:
    """One completion as the host sees it."""

    dw0: int
    sqhd: int
    sqid: int
    cid: int
    status: NvmeStatus
    phase: int


class HostQueue:
    """Host side of one SQ/CQ pair."""

    def __init__(self, host: RawHost, qid: int, size: int, cq_size: int | None = None) -> None:
        self.qid = qid
        self.size = size
        self.cq_size = cq_size or size
        self.sq = host.plat.memory.alloc(size * SQE_BYTES)
        self.cq = host.plat.memory.alloc(self.cq_size * CQE_BYTES)
        self.tail = 0
        self.head = 0
        self.phase = 1
        self.next_cid = 0


class RawHost:
    """Register-level host: enable, admin commands, I/O queue pairs, submit and reap."""

    def __init__(self, cfg: NvmeConfig | None = None, *, seed: int = 0, admin_size: int = 32,
                 enable: bool = True) -> None:
        self.plat = Platform(seed)
        self.cfg = cfg or NvmeConfig(namespaces=(NamespaceConfig(capacity_bytes=1 << 30),))
        self.ctrl = NvmeController(self.plat, self.cfg)
        self.dstrd = regs.cap_dstrd(self.ctrl.bar0.read64(Reg.CAP))
        self.admin = HostQueue(self, 0, admin_size)
        self.queues: dict[int, HostQueue] = {0: self.admin}
        if enable:
            self.enable()

    # -- registers ---------------------------------------------------------------------------
    def cc_value(self, en: int = 1, mps: int = 0, iosqes: int = 6, iocqes: int = 4,
                 ams: int = 0, css: int = 0) -> int:
        return (regs.field_prep(regs.CC_EN, en) | regs.field_prep(regs.CC_MPS, mps)
                | regs.field_prep(regs.CC_IOSQES, iosqes) | regs.field_prep(regs.CC_IOCQES, iocqes)
                | regs.field_prep(regs.CC_AMS, ams) | regs.field_prep(regs.CC_CSS, css))

    def enable(self, **cc: int) -> int:
        bar = self.ctrl.bar0
        a = self.admin
        bar.write32(Reg.AQA, (a.size - 1) | (a.cq_size - 1) << 16)
        bar.write64(Reg.ASQ, a.sq.addr)
        bar.write64(Reg.ACQ, a.cq.addr)
        bar.write32(Reg.CC, self.cc_value(**cc))
        self.wait_csts(regs.CSTS_RDY | regs.CSTS_CFS)
        return bar.read32(Reg.CSTS)

    def wait_csts(self, mask: int, want_set: bool = True, limit_ns: int = 10**10) -> None:
        end = self.plat.now_ns + limit_ns
        while bool(self.ctrl.bar0.read32(Reg.CSTS) & mask) != want_set:
            if self.plat.now_ns >= end or not self.plat.step():
                break

    def sq_doorbell(self, qid: int, value: int) -> None:
        self.ctrl.bar0.write32(regs.sq_tdbl_offset(qid, self.dstrd), value)

    def cq_doorbell(self, qid: int, value: int) -> None:
        self.ctrl.bar0.write32(regs.cq_hdbl_offset(qid, self.dstrd), value)

    # -- commands ----------------------------------------------------------------------------
    def submit(self, qid: int, opc: int, *, nsid: int = 0, prp1: int = 0, prp2: int = 0,
               cdw10: int = 0, cdw11: int = 0, cdw12: int = 0, cdw13: int = 0,
               cdw14: int = 0, cdw15: int = 0, flags: int = 0, cid: int | None = None,
               ring: bool = True) -> int:
        q = self.queues[qid]
        if cid is None:
            cid = q.next_cid
            q.next_cid = (q.next_cid + 1) & 0xFFFF
        SQE_STRUCT.pack_into(q.sq.view, q.tail * SQE_BYTES, opc, flags, cid, nsid, 0, 0, 0,
                             prp1, prp2, cdw10, cdw11, cdw12, cdw13, cdw14, cdw15)
        q.tail = (q.tail + 1) % q.size
        if ring:
            self.sq_doorbell(qid, q.tail)
        return cid

    def reap(self, qid: int, ring: bool = True) -> list[Cqe]:
        q = self.queues[qid]
        out = []
        while True:
            dw0, _dw1, sqhd, sqid, cid, st = CQE_STRUCT.unpack_from(q.cq.view, q.head * CQE_BYTES)
            if st & 1 != q.phase:
                break
            out.append(Cqe(dw0, sqhd, sqid, cid, NvmeStatus.decode(st), st & 1))
            q.head += 1
            if q.head == q.cq_size:
                q.head = 0
                q.phase ^= 1
        if out and ring:
            self.cq_doorbell(qid, q.head)
        return out

    def wait(self, qid: int, n: int = 1, limit_ns: int = 10**10) -> list[Cqe]:
        out: list[Cqe] = []
        end = self.plat.now_ns + limit_ns
        while len(out) < n:
            out += self.reap(qid)
            if len(out) >= n or self.plat.now_ns >= end or not self.plat.step():
                out += self.reap(qid)
                break
        return out

    def cmd(self, qid: int, opc: int, **kw: int) -> Cqe:
        cid = self.submit(qid, opc, **kw)
        got = self.wait(qid)
        assert got, f"no completion for opcode {opc:#x}"
        assert got[0].cid == cid
        return got[0]

    def admin_cmd(self, opc: int, **kw: int) -> Cqe:
        return self.cmd(0, opc, **kw)

    def create_pair(self, qid: int, size: int = 64, *, ien: bool = False, iv: int = 0,
                    prio: int = 0) -> HostQueue:
        q = HostQueue(self, qid, size)
        c = self.admin_cmd(AdminOpcode.CREATE_IO_CQ, prp1=q.cq.addr,
                           cdw10=qid | (size - 1) << 16, cdw11=1 | int(ien) << 1 | iv << 16)
        assert c.status.ok, str(c.status)
        c = self.admin_cmd(AdminOpcode.CREATE_IO_SQ, prp1=q.sq.addr,
                           cdw10=qid | (size - 1) << 16, cdw11=1 | prio << 1 | qid << 16)
        assert c.status.ok, str(c.status)
        self.queues[qid] = q
        return q

    def prps(self, addr: int, nbytes: int) -> tuple[int, int]:
        """PRP1/PRP2 for a page-aligned contiguous buffer (builds a PRP list when needed)."""
        pages = -(-nbytes // PAGE)
        if pages <= 1:
            return addr, 0
        if pages == 2:
            return addr, addr + PAGE
        lst = self.plat.memory.alloc(PAGE)
        for i in range(1, pages):
            lst.view[(i - 1) * 8:i * 8] = memoryview((addr + i * PAGE).to_bytes(8, "little"))
        return addr, lst.addr

    def set_queues(self, n: int) -> Cqe:
        return self.admin_cmd(AdminOpcode.SET_FEATURES, cdw10=FeatureId.NUMBER_OF_QUEUES,
                              cdw11=(n - 1) | (n - 1) << 16)

