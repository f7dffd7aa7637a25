"""NVMe submission queue entries and their builders.

One :class:`NvmeCommand` is the 64-byte SQE of NVM Express Base Specification 2.0 section 4.1
(Figure 88 "Common Command Format"), laid out by :data:`labrig.hw.nvme.spec.SQE_STRUCT`.
The builders below fill the command-specific dwords of each admin command (Base spec
section 5) and NVM I/O command (NVM Command Set Specification 1.0 section 3); they are shared
by the PCIe poll-mode driver and by io_uring NVMe passthrough, which copies the same dwords
into ``struct nvme_uring_cmd``.

Builders take counts the way callers think of them (``nblocks`` blocks, ``qsize`` entries,
``numd`` dwords) and encode the spec's 0-based fields themselves.  Bad arguments raise
:class:`~labrig.errors.UsageError` naming the argument, its value and the allowed range.
Data pointers (``prp1``/``prp2``) default to 0: the queue fills them from the host buffer
(:mod:`labrig.drivers.nvme.prp`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Final

from labrig.errors import UsageError
from labrig.hw._bits import field_get, field_prep
from labrig.hw.nvme.spec import (
    CDW10_ABORT_CID,
    CDW10_ABORT_SQID,
    CDW10_CNS,
    CDW10_CNTID,
    CDW10_DSM_NR,
    CDW10_FID,
    CDW10_LID,
    CDW10_LSP,
    CDW10_NUMDL,
    CDW10_QID,
    CDW10_QSIZE,
    CDW10_RAE,
    CDW10_SEL,
    CDW10_SV,
    CDW11_CQID,
    CDW11_DSM_AD,
    CDW11_IEN,
    CDW11_IV,
    CDW11_NUMDU,
    CDW11_PC,
    CDW11_QPRIO,
    CDW12_DEAC,
    CDW12_FUA,
    DSM_MAX_RANGES,
    DSM_RANGE_STRUCT,
    NQ_NCQR,
    NQ_NSQR,
    NSID_BROADCAST,
    SQE_BYTES,
    SQE_STRUCT,
    AdminOpcode,
    FeatureId,
    IoOpcode,
)

__all__ = [
    "MAX_NLB",
    "MAX_QUEUE_ID",
    "NvmeCommand",
    "abort",
    "async_event_request",
    "create_io_cq",
    "create_io_sq",
    "delete_io_cq",
    "delete_io_sq",
    "dsm",
    "dsm_range_bytes",
    "flush",
    "get_features",
    "get_log_page",
    "identify",
    "num_queues_granted",
    "read",
    "set_features",
    "set_num_queues",
    "write",
    "write_zeroes",
]

U16_MAX: Final = 0xFFFF
U32_MAX: Final = 0xFFFF_FFFF
U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF
#: Largest transfer of one Read/Write/Write Zeroes command: NLB is a 16-bit 0-based field.
MAX_NLB: Final = 1 << 16
#: Queue identifiers are 16-bit; Base spec 2.0 section 3.1.3.x limits I/O queues to 65535.
MAX_QUEUE_ID: Final = 0xFFFF
#: Queue sizes are 16-bit 0-based fields; 2 entries is the minimum (one is always empty).
MIN_QUEUE_ENTRIES: Final = 2
MAX_QUEUE_ENTRIES: Final = 1 << 16
#: Get Log Page: NUMD is a 32-bit 0-based dword count split into NUMDL/NUMDU.
MAX_LOG_DWORDS: Final = 1 << 32
#: Bit 6 of the SQE flags byte is PSDT[0]; PSDT is 2 bits at 7:6 (00b = PRPs).
_PSDT_SHIFT: Final = 6
_FUSE_MASK: Final = 0x3


@dataclass(slots=True)
class NvmeCommand:
    """A 64-byte submission queue entry (Base spec 2.0 Figure 88).

    Attributes
    ----------
    opc : int
        Opcode (CDW0 bits 7:0): an :class:`~labrig.hw.nvme.spec.AdminOpcode` or
        :class:`~labrig.hw.nvme.spec.IoOpcode` value.
    cid : int
        Command Identifier (CDW0 bits 31:16), set by the queue at submission.
    nsid : int
        Namespace Identifier (CDW1).
    cdw2, cdw3 : int
        Command-specific dwords 2 and 3.
    mptr : int
        Metadata Pointer (CDW4-5).
    prp1, prp2 : int
        Data Pointer (CDW6-9) as PRP Entry 1 and 2 (section 4.3).
    cdw10 .. cdw15 : int
        Command-specific dwords.
    fuse : int
        Fused Operation (CDW0 bits 9:8), 0 = normal.
    psdt : int
        PRP or SGL for Data Transfer (CDW0 bits 15:14), 0 = PRPs.

    Examples
    --------
    >>> cmd = read(1, slba=8, nblocks=2)
    >>> cmd
    NvmeCommand(opc=0x02, nsid=1, cdw10=0x8, cdw12=0x1)
    >>> NvmeCommand.from_bytes(cmd.to_bytes()) == cmd
    True
    """

    opc: int
    cid: int = 0
    nsid: int = 0
    cdw2: int = 0
    cdw3: int = 0
    mptr: int = 0
    prp1: int = 0
    prp2: int = 0
    cdw10: int = 0
    cdw11: int = 0
    cdw12: int = 0
    cdw13: int = 0
    cdw14: int = 0
    cdw15: int = 0
    fuse: int = 0
    psdt: int = 0

    def pack_into(self, buf: memoryview | bytearray, off: int = 0) -> None:
        """Write the 64-byte little-endian SQE into ``buf`` at byte ``off``."""
        SQE_STRUCT.pack_into(
            buf, off, self.opc & 0xFF, (self.fuse & _FUSE_MASK) | ((self.psdt & 0x3) << _PSDT_SHIFT),
            self.cid & U16_MAX, self.nsid & U32_MAX, self.cdw2 & U32_MAX, self.cdw3 & U32_MAX,
            self.mptr & U64_MAX, self.prp1 & U64_MAX, self.prp2 & U64_MAX,
            self.cdw10 & U32_MAX, self.cdw11 & U32_MAX, self.cdw12 & U32_MAX,
            self.cdw13 & U32_MAX, self.cdw14 & U32_MAX, self.cdw15 & U32_MAX)

    def to_bytes(self) -> bytes:
        """The 64-byte SQE."""
        out = bytearray(SQE_BYTES)
        self.pack_into(out)
        return bytes(out)

    @classmethod
    def unpack_from(cls, buf: bytes | bytearray | memoryview, off: int = 0) -> NvmeCommand:
        """Decode a 64-byte SQE (the inverse of :meth:`pack_into`)."""
        (opc, flags, cid, nsid, cdw2, cdw3, mptr, prp1, prp2,
         cdw10, cdw11, cdw12, cdw13, cdw14, cdw15) = SQE_STRUCT.unpack_from(buf, off)
        return cls(opc=opc, cid=cid, nsid=nsid, cdw2=cdw2, cdw3=cdw3, mptr=mptr, prp1=prp1,
                   prp2=prp2, cdw10=cdw10, cdw11=cdw11, cdw12=cdw12, cdw13=cdw13, cdw14=cdw14,
                   cdw15=cdw15, fuse=flags & _FUSE_MASK, psdt=flags >> _PSDT_SHIFT)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> NvmeCommand:
        """Decode a 64-byte SQE."""
        if len(data) != SQE_BYTES:
            raise UsageError(f"NvmeCommand.from_bytes: len(data)={len(data)}: must be {SQE_BYTES}")
        return cls.unpack_from(data)

    def __repr__(self) -> str:
        parts = [f"opc={self.opc:#04x}"]
        for f in fields(self)[1:]:
            value = getattr(self, f.name)
            if value:
                parts.append(f"{f.name}={value}" if f.name in ("cid", "nsid", "fuse", "psdt")
                             else f"{f.name}={value:#x}")
        return f"NvmeCommand({', '.join(parts)})"


# -- argument checks --------------------------------------------------------------------------
def _check(name: str, value: int, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise UsageError(f"{name}={value!r}: must be an integer in {lo}..{hi}")
    return value


def _nsid(nsid: int, *, broadcast: bool = False) -> int:
    hi = NSID_BROADCAST if broadcast else NSID_BROADCAST - 1
    return _check("nsid", nsid, 1, hi)


def _prps(prp1: int, prp2: int) -> None:
    _check("prp1", prp1, 0, U64_MAX)
    _check("prp2", prp2, 0, U64_MAX)


def _rw_range(slba: int, nblocks: int) -> None:
    _check("slba", slba, 0, U64_MAX)
    _check("nblocks", nblocks, 1, MAX_NLB)
    if slba + nblocks - 1 > U64_MAX:
        raise UsageError(f"slba={slba} nblocks={nblocks}: range passes the 64-bit LBA space")


# -- admin commands (Base spec 2.0 section 5) -------------------------------------------------
def identify(cns: int, nsid: int = 0, *, cntid: int = 0, prp1: int = 0,
             prp2: int = 0) -> NvmeCommand:
    """Identify (section 5.17): CDW10 = CNS | CNTID << 16; returns a 4 KiB data structure.

    ``nsid`` is 0 for controller-wide structures and the namespace (or the starting point of
    an active namespace list, CNS 02h) otherwise.
    """
    _check("cns", cns, 0, 0xFF)
    _check("nsid", nsid, 0, NSID_BROADCAST)
    _check("cntid", cntid, 0, U16_MAX)
    _prps(prp1, prp2)
    return NvmeCommand(opc=AdminOpcode.IDENTIFY, nsid=nsid, prp1=prp1, prp2=prp2,
                       cdw10=field_prep(CDW10_CNS, cns) | field_prep(CDW10_CNTID, cntid))


def set_features(fid: int, cdw11: int = 0, *, cdw12: int = 0, nsid: int = 0,
                 save: bool = False, prp1: int = 0, prp2: int = 0) -> NvmeCommand:
    """Set Features (section 5.27): CDW10 = FID | SV << 31, CDW11.. feature specific."""
    _check("fid", fid, 0, 0xFF)
    _check("cdw11", cdw11, 0, U32_MAX)
    _check("cdw12", cdw12, 0, U32_MAX)
    _check("nsid", nsid, 0, NSID_BROADCAST)
    _prps(prp1, prp2)
    return NvmeCommand(opc=AdminOpcode.SET_FEATURES, nsid=nsid, prp1=prp1, prp2=prp2,
                       cdw10=field_prep(CDW10_FID, fid) | (CDW10_SV if save else 0),
                       cdw11=cdw11, cdw12=cdw12)


def get_features(fid: int, *, sel: int = 0, cdw11: int = 0, nsid: int = 0, prp1: int = 0,
                 prp2: int = 0) -> NvmeCommand:
    """Get Features (section 5.15): CDW10 = FID | SEL << 8 (0 current, 1 default, 2 saved,
    3 supported capabilities); the value comes back in completion DW0."""
    _check("fid", fid, 0, 0xFF)
    _check("sel", sel, 0, 3)
    _check("cdw11", cdw11, 0, U32_MAX)
    _check("nsid", nsid, 0, NSID_BROADCAST)
    _prps(prp1, prp2)
    return NvmeCommand(opc=AdminOpcode.GET_FEATURES, nsid=nsid, prp1=prp1, prp2=prp2,
                       cdw10=field_prep(CDW10_FID, fid) | field_prep(CDW10_SEL, sel),
                       cdw11=cdw11)


def set_num_queues(nsq: int, ncq: int) -> NvmeCommand:
    """Set Features Number of Queues (section 5.27.1.5) requesting ``nsq`` I/O submission and
    ``ncq`` I/O completion queues (encoded 0-based in NSQR/NCQR)."""
    _check("nsq", nsq, 1, MAX_QUEUE_ID)
    _check("ncq", ncq, 1, MAX_QUEUE_ID)
    return set_features(FeatureId.NUMBER_OF_QUEUES,
                        field_prep(NQ_NSQR, nsq - 1) | field_prep(NQ_NCQR, ncq - 1))


def create_io_cq(qid: int, qsize: int, *, prp1: int, pc: bool = True, ien: bool = False,
                 iv: int = 0) -> NvmeCommand:
    """Create I/O Completion Queue (section 5.4): CDW10 = QID | (QSIZE-1) << 16,
    CDW11 = PC | IEN << 1 | IV << 16; ``prp1`` is the queue's base (physically contiguous)."""
    _check("qid", qid, 1, MAX_QUEUE_ID)
    _check("qsize", qsize, MIN_QUEUE_ENTRIES, MAX_QUEUE_ENTRIES)
    _check("iv", iv, 0, U16_MAX)
    _prps(prp1, 0)
    return NvmeCommand(opc=AdminOpcode.CREATE_IO_CQ, prp1=prp1,
                       cdw10=field_prep(CDW10_QID, qid) | field_prep(CDW10_QSIZE, qsize - 1),
                       cdw11=(CDW11_PC if pc else 0) | (CDW11_IEN if ien else 0)
                       | field_prep(CDW11_IV, iv))


def create_io_sq(qid: int, qsize: int, cqid: int, *, prp1: int, pc: bool = True,
                 qprio: int = 0) -> NvmeCommand:
    """Create I/O Submission Queue (section 5.5): CDW10 = QID | (QSIZE-1) << 16,
    CDW11 = PC | QPRIO << 1 | CQID << 16."""
    _check("qid", qid, 1, MAX_QUEUE_ID)
    _check("qsize", qsize, MIN_QUEUE_ENTRIES, MAX_QUEUE_ENTRIES)
    _check("cqid", cqid, 1, MAX_QUEUE_ID)
    _check("qprio", qprio, 0, 3)
    _prps(prp1, 0)
    return NvmeCommand(opc=AdminOpcode.CREATE_IO_SQ, prp1=prp1,
                       cdw10=field_prep(CDW10_QID, qid) | field_prep(CDW10_QSIZE, qsize - 1),
                       cdw11=(CDW11_PC if pc else 0) | field_prep(CDW11_QPRIO, qprio)
                       | field_prep(CDW11_CQID, cqid))


def delete_io_sq(qid: int) -> NvmeCommand:
    """Delete I/O Submission Queue (section 5.7): CDW10 = QID."""
    _check("qid", qid, 1, MAX_QUEUE_ID)
    return NvmeCommand(opc=AdminOpcode.DELETE_IO_SQ, cdw10=qid)


def delete_io_cq(qid: int) -> NvmeCommand:
    """Delete I/O Completion Queue (section 5.6): CDW10 = QID."""
    _check("qid", qid, 1, MAX_QUEUE_ID)
    return NvmeCommand(opc=AdminOpcode.DELETE_IO_CQ, cdw10=qid)


def get_log_page(lid: int, numd: int, offset: int = 0, *, nsid: int = NSID_BROADCAST,
                 lsp: int = 0, rae: bool = False, prp1: int = 0, prp2: int = 0) -> NvmeCommand:
    """Get Log Page (section 5.16) of ``numd`` dwords starting ``offset`` bytes in.

    CDW10 = LID | LSP << 8 | RAE << 15 | NUMDL << 16, CDW11 = NUMDU, CDW12/13 = LPOL/LPOU
    (byte offset, dword aligned).
    """
    _check("lid", lid, 0, 0xFF)
    _check("numd", numd, 1, MAX_LOG_DWORDS)
    _check("offset", offset, 0, U64_MAX)
    if offset % 4:
        raise UsageError(f"offset={offset}: log page offset must be a multiple of 4 bytes")
    _check("lsp", lsp, 0, 0xF)
    _check("nsid", nsid, 0, NSID_BROADCAST)
    _prps(prp1, prp2)
    n = numd - 1
    return NvmeCommand(opc=AdminOpcode.GET_LOG_PAGE, nsid=nsid, prp1=prp1, prp2=prp2,
                       cdw10=field_prep(CDW10_LID, lid) | field_prep(CDW10_LSP, lsp)
                       | (CDW10_RAE if rae else 0) | field_prep(CDW10_NUMDL, n & U16_MAX),
                       cdw11=field_prep(CDW11_NUMDU, n >> 16),
                       cdw12=offset & U32_MAX, cdw13=offset >> 32)


def abort(sqid: int, cid: int) -> NvmeCommand:
    """Abort (section 5.1): CDW10 = SQID | CID << 16."""
    _check("sqid", sqid, 0, MAX_QUEUE_ID)
    _check("cid", cid, 0, U16_MAX)
    return NvmeCommand(opc=AdminOpcode.ABORT,
                       cdw10=field_prep(CDW10_ABORT_SQID, sqid) | field_prep(CDW10_ABORT_CID, cid))


def async_event_request() -> NvmeCommand:
    """Asynchronous Event Request (section 5.2): no fields; completes when an event occurs."""
    return NvmeCommand(opc=AdminOpcode.ASYNC_EVENT_REQUEST)


# -- NVM I/O commands (NVM Command Set spec 1.0 section 3) ------------------------------------
def read(nsid: int, slba: int, nblocks: int, *, fua: bool = False, prp1: int = 0,
         prp2: int = 0) -> NvmeCommand:
    """Read (section 3.3.4): CDW10/11 = SLBA, CDW12 = (nblocks-1) | FUA << 30."""
    _nsid(nsid)
    _rw_range(slba, nblocks)
    _prps(prp1, prp2)
    return NvmeCommand(opc=IoOpcode.READ, nsid=nsid, prp1=prp1, prp2=prp2,
                       cdw10=slba & U32_MAX, cdw11=slba >> 32,
                       cdw12=(nblocks - 1) | (CDW12_FUA if fua else 0))


def write(nsid: int, slba: int, nblocks: int, *, fua: bool = False, prp1: int = 0,
          prp2: int = 0) -> NvmeCommand:
    """Write (section 3.3.6): CDW10/11 = SLBA, CDW12 = (nblocks-1) | FUA << 30."""
    _nsid(nsid)
    _rw_range(slba, nblocks)
    _prps(prp1, prp2)
    return NvmeCommand(opc=IoOpcode.WRITE, nsid=nsid, prp1=prp1, prp2=prp2,
                       cdw10=slba & U32_MAX, cdw11=slba >> 32,
                       cdw12=(nblocks - 1) | (CDW12_FUA if fua else 0))


def flush(nsid: int) -> NvmeCommand:
    """Flush (Base spec 2.0 section 7.1); ``nsid`` FFFFFFFFh flushes every namespace."""
    _nsid(nsid, broadcast=True)
    return NvmeCommand(opc=IoOpcode.FLUSH, nsid=nsid)


def write_zeroes(nsid: int, slba: int, nblocks: int, *, deallocate: bool = False,
                 fua: bool = False) -> NvmeCommand:
    """Write Zeroes (section 3.3.7): like Write with no data; DEAC (CDW12 bit 25) lets the
    controller deallocate the range."""
    _nsid(nsid)
    _rw_range(slba, nblocks)
    return NvmeCommand(opc=IoOpcode.WRITE_ZEROES, nsid=nsid, cdw10=slba & U32_MAX,
                       cdw11=slba >> 32,
                       cdw12=(nblocks - 1) | (CDW12_DEAC if deallocate else 0)
                       | (CDW12_FUA if fua else 0))


def _check_ranges(ranges: Sequence[tuple[int, int]]) -> None:
    if not 1 <= len(ranges) <= DSM_MAX_RANGES:
        raise UsageError(f"ranges: {len(ranges)} given, must be 1..{DSM_MAX_RANGES}")
    for i, (slba, nblocks) in enumerate(ranges):
        _check(f"ranges[{i}].slba", slba, 0, U64_MAX)
        _check(f"ranges[{i}].nblocks", nblocks, 1, U32_MAX)


def dsm_range_bytes(ranges: Sequence[tuple[int, int]]) -> bytes:
    """The Dataset Management range list (NVM Command Set section 3.3.3, Figure 39): 16 bytes
    per ``(slba, nblocks)`` range -- context attributes, length in LBAs, starting LBA."""
    _check_ranges(ranges)
    return b"".join(DSM_RANGE_STRUCT.pack(0, n, slba) for slba, n in ranges)


def dsm(nsid: int, ranges: Sequence[tuple[int, int]], *, deallocate: bool = True,
        prp1: int = 0, prp2: int = 0) -> NvmeCommand:
    """Dataset Management (section 3.3.3): CDW10 = NR (ranges-1), CDW11 = AD << 2.

    ``ranges`` are ``(slba, nblocks)`` pairs; the caller places :func:`dsm_range_bytes` in the
    buffer ``prp1`` points at.  With ``deallocate`` this is a trim.
    """
    _nsid(nsid)
    _check_ranges(ranges)
    _prps(prp1, prp2)
    return NvmeCommand(opc=IoOpcode.DATASET_MANAGEMENT, nsid=nsid, prp1=prp1, prp2=prp2,
                       cdw10=field_prep(CDW10_DSM_NR, len(ranges) - 1),
                       cdw11=CDW11_DSM_AD if deallocate else 0)


def num_queues_granted(dw0: int) -> tuple[int, int]:
    """Decode Set Features Number of Queues completion DW0 into 1-based ``(nsq, ncq)``."""
    return field_get(NQ_NSQR, dw0) + 1, field_get(NQ_NCQR, dw0) + 1
