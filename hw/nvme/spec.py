"""NVMe command-level definitions: SQE/CQE layouts, opcodes, status codes, data structures.

Sources: NVM Express Base Specification 2.0 (sections 4.1 "Submission Queue Entry", 4.2
"Completion Queue Entry", 4.3 "Physical Region Page Entry and List", 5 "Admin Command Set")
and the NVM Command Set Specification 1.0 (section 3 "I/O Commands").  Layouts match SPDK's
``struct spdk_nvme_cmd`` (64 B) and ``struct spdk_nvme_cpl`` (16 B).

Pure data shared by model, driver, the passthrough backend and tests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from labrig.hw._bits import bit, genmask

# ------------------------------------------------------------------------------------------
# Queue entries
# ------------------------------------------------------------------------------------------
SQE_BYTES: Final = 64
CQE_BYTES: Final = 16
SQE_SIZE_LOG2: Final = 6     # CC.IOSQES required value
CQE_SIZE_LOG2: Final = 4     # CC.IOCQES required value

#: SQE as 16 little-endian dwords: CDW0 (OPC[7:0] FUSE[9:8] PSDT[15:14] CID[31:16]), NSID,
#: CDW2, CDW3, MPTR (2 dw), PRP1 (2 dw), PRP2 (2 dw), CDW10..CDW15.
SQE_STRUCT: Final = struct.Struct("<BBHIIIQQQIIIIII")
#: CQE: DW0, DW1, SQHD u16, SQID u16, CID u16, STATUS u16 (P = bit 0, SF = bits 15:1).
CQE_STRUCT: Final = struct.Struct("<IIHHHH")

SQE_OPC_OFFSET: Final = 0
SQE_FLAGS_OFFSET: Final = 1      # FUSE[1:0], PSDT[7:6]
SQE_CID_OFFSET: Final = 2
SQE_NSID_OFFSET: Final = 4
SQE_PRP1_OFFSET: Final = 24
SQE_PRP2_OFFSET: Final = 32
SQE_CDW10_OFFSET: Final = 40
SQE_FUSE_MASK: Final = genmask(1, 0)
SQE_PSDT_MASK: Final = genmask(7, 6)
CQE_STATUS_OFFSET: Final = 14

NSID_BROADCAST: Final = 0xFFFF_FFFF


# ------------------------------------------------------------------------------------------
# Opcodes
# ------------------------------------------------------------------------------------------
class AdminOpcode(IntEnum):
    """Admin command opcodes (Base spec 2.0 Figure 138)."""

    DELETE_IO_SQ = 0x00
    CREATE_IO_SQ = 0x01
    GET_LOG_PAGE = 0x02
    DELETE_IO_CQ = 0x04
    CREATE_IO_CQ = 0x05
    IDENTIFY = 0x06
    ABORT = 0x08
    SET_FEATURES = 0x09
    GET_FEATURES = 0x0A
    ASYNC_EVENT_REQUEST = 0x0C
    KEEP_ALIVE = 0x18


class IoOpcode(IntEnum):
    """NVM command set I/O opcodes (NVM Command Set spec 1.0 Figure 15)."""

    FLUSH = 0x00
    WRITE = 0x01
    READ = 0x02
    WRITE_UNCORRECTABLE = 0x04
    COMPARE = 0x05
    WRITE_ZEROES = 0x08
    DATASET_MANAGEMENT = 0x09


# -- command dword fields -------------------------------------------------------------------
CDW10_QID: Final = genmask(15, 0)          # Create/Delete queue: Queue Identifier
CDW10_QSIZE: Final = genmask(31, 16)       # Create queue: Queue Size (0-based)
CDW11_PC: Final = bit(0)                   # Physically Contiguous
CDW11_IEN: Final = bit(1)                  # Create CQ: Interrupts Enabled
CDW11_IV: Final = genmask(31, 16)          # Create CQ: Interrupt Vector
CDW11_QPRIO: Final = genmask(2, 1)         # Create SQ: Queue Priority (WRR)
CDW11_CQID: Final = genmask(31, 16)        # Create SQ: Completion Queue Identifier
CDW10_CNS: Final = genmask(7, 0)           # Identify: Controller or Namespace Structure
CDW10_CNTID: Final = genmask(31, 16)
CDW10_FID: Final = genmask(7, 0)           # Get/Set Features: Feature Identifier
CDW10_SEL: Final = genmask(10, 8)          # Get Features: Select
CDW10_SV: Final = bit(31)                  # Set Features: Save
CDW10_LID: Final = genmask(7, 0)           # Get Log Page: Log Page Identifier
CDW10_LSP: Final = genmask(11, 8)
CDW10_RAE: Final = bit(15)
CDW10_NUMDL: Final = genmask(31, 16)       # Number of Dwords Lower (0-based)
CDW11_NUMDU: Final = genmask(15, 0)
CDW10_ABORT_SQID: Final = genmask(15, 0)   # Abort
CDW10_ABORT_CID: Final = genmask(31, 16)
CDW12_NLB: Final = genmask(15, 0)          # Read/Write/Write Zeroes: Number of Logical Blocks (0-based)
CDW12_DEAC: Final = bit(25)                # Write Zeroes: Deallocate
CDW12_FUA: Final = bit(30)                 # Force Unit Access
CDW12_LR: Final = bit(31)                  # Limited Retry
CDW10_DSM_NR: Final = genmask(7, 0)        # DSM: Number of Ranges (0-based)
CDW11_DSM_AD: Final = bit(2)               # DSM: Attribute - Deallocate
DSM_RANGE_STRUCT: Final = struct.Struct("<IIQ")   # context attributes, length in LBAs, SLBA
DSM_MAX_RANGES: Final = 256


class Cns(IntEnum):
    """Identify CNS values (Base spec 2.0 Figure 273)."""

    NAMESPACE = 0x00
    CONTROLLER = 0x01
    ACTIVE_NS_LIST = 0x02
    NS_ID_DESCRIPTORS = 0x03


IDENTIFY_BYTES: Final = 4096


class FeatureId(IntEnum):
    """Feature identifiers (Base spec 2.0 Figure 317)."""

    ARBITRATION = 0x01
    POWER_MANAGEMENT = 0x02
    TEMPERATURE_THRESHOLD = 0x04
    VOLATILE_WRITE_CACHE = 0x06
    NUMBER_OF_QUEUES = 0x07
    INTERRUPT_COALESCING = 0x08
    ASYNC_EVENT_CONFIG = 0x0B


# Arbitration feature, CDW11 (5.27.1.1)
ARB_AB: Final = genmask(2, 0)     # Arbitration Burst, 2^n commands; 111b = no limit
ARB_LPW: Final = genmask(15, 8)   # Low Priority Weight (0-based)
ARB_MPW: Final = genmask(23, 16)  # Medium Priority Weight
ARB_HPW: Final = genmask(31, 24)  # High Priority Weight
# Number of Queues feature, CDW11 and completion DW0 (5.27.1.5)
NQ_NSQR: Final = genmask(15, 0)
NQ_NCQR: Final = genmask(31, 16)
# Volatile Write Cache feature, CDW11 (5.27.1.4)
VWC_WCE: Final = bit(0)


class LogPageId(IntEnum):
    """Log page identifiers (Base spec 2.0 Figure 202)."""

    ERROR_INFORMATION = 0x01
    SMART_HEALTH = 0x02
    FIRMWARE_SLOT = 0x03
    COMMANDS_SUPPORTED_EFFECTS = 0x05


ERROR_LOG_ENTRY_BYTES: Final = 64
#: Error Information Log entry (5.16.1.2): error count, SQID, CID, status field, parameter
#: error location, LBA, namespace, vendor info available, transport type, command specific.
ERROR_LOG_STRUCT: Final = struct.Struct("<QHHHHQIBB2xQH22x")
SMART_LOG_BYTES: Final = 512


class SmartOffset(IntEnum):
    """SMART / Health Information log byte offsets (5.16.1.3)."""

    CRITICAL_WARNING = 0
    COMPOSITE_TEMPERATURE = 1     # u16, Kelvin
    AVAILABLE_SPARE = 3
    AVAILABLE_SPARE_THRESHOLD = 4
    PERCENTAGE_USED = 5
    DATA_UNITS_READ = 32          # u128, thousands of 512-byte units, rounded up
    DATA_UNITS_WRITTEN = 48
    HOST_READ_COMMANDS = 64
    HOST_WRITE_COMMANDS = 80
    CONTROLLER_BUSY_TIME = 96
    POWER_CYCLES = 112
    POWER_ON_HOURS = 128
    UNSAFE_SHUTDOWNS = 144
    MEDIA_ERRORS = 160
    NUM_ERROR_LOG_ENTRIES = 176


#: SMART "data unit": 1000 units of 512 bytes.
SMART_DATA_UNIT_BYTES: Final = 512_000


class AsyncEventType(IntEnum):
    """Asynchronous Event Type, completion DW0[2:0] (5.2 Figure 146)."""

    ERROR_STATUS = 0
    SMART_HEALTH = 1
    NOTICE = 2
    IO_COMMAND_SET = 6
    VENDOR = 7


class AsyncErrorInfo(IntEnum):
    """Asynchronous Event Information for Error Status events (Figure 147)."""

    INVALID_DOORBELL_REGISTER = 0x00     # write to an invalid doorbell register
    INVALID_DOORBELL_VALUE = 0x01        # invalid doorbell write value
    DIAGNOSTIC_FAILURE = 0x02
    PERSISTENT_INTERNAL_ERROR = 0x03
    TRANSIENT_INTERNAL_ERROR = 0x04


AER_TYPE: Final = genmask(2, 0)
AER_INFO: Final = genmask(15, 8)
AER_LID: Final = genmask(23, 16)


# ------------------------------------------------------------------------------------------
# Identify data structures
# ------------------------------------------------------------------------------------------
class IdCtrl(IntEnum):
    """Identify Controller data structure byte offsets (Base spec 2.0 Figure 275)."""

    VID = 0           # u16 PCI Vendor ID
    SSVID = 2         # u16
    SN = 4            # 20 ASCII
    MN = 24           # 40 ASCII
    FR = 64           # 8 ASCII
    RAB = 72
    IEEE = 73         # 3 bytes
    CMIC = 76
    MDTS = 77         # Maximum Data Transfer Size, 2^n pages of CAP.MPSMIN; 0 = no limit
    CNTLID = 78       # u16
    VER = 80          # u32
    OAES = 92         # u32
    OACS = 256        # u16
    ACL = 258         # Abort Command Limit (0-based)
    AERL = 259        # Async Event Request Limit (0-based)
    FRMW = 260
    LPA = 261
    ELPE = 262        # Error Log Page Entries (0-based)
    NPSS = 263
    SQES = 512        # [3:0] required, [7:4] maximum (log2 bytes)
    CQES = 513
    MAXCMD = 514      # u16
    NN = 516          # u32 Number of Namespaces
    ONCS = 520        # u16 Optional NVM Command Support
    FUSES = 522
    FNA = 524
    VWC = 525         # Volatile Write Cache: bit 0 present
    AWUN = 526
    AWUPF = 528
    SGLS = 536        # u32
    SUBNQN = 768      # 256 bytes


ONCS_COMPARE: Final = bit(0)
ONCS_WRITE_UNCORRECTABLE: Final = bit(1)
ONCS_DSM: Final = bit(2)
ONCS_WRITE_ZEROES: Final = bit(3)
ONCS_SAVE_SELECT: Final = bit(4)
VWC_PRESENT: Final = bit(0)
VWC_FLUSH_BROADCAST: Final = genmask(2, 1)   # 11b: Flush with NSID FFFFFFFFh supported


class IdNs(IntEnum):
    """Identify Namespace data structure byte offsets (NVM Command Set spec 1.0 Figure 97)."""

    NSZE = 0          # u64 Namespace Size (LBAs)
    NCAP = 8          # u64 Namespace Capacity
    NUSE = 16         # u64 Namespace Utilization
    NSFEAT = 24
    NLBAF = 25        # number of LBA formats (0-based)
    FLBAS = 26        # Formatted LBA Size: [3:0] index
    MC = 27
    DPC = 28
    DPS = 29
    NMIC = 30
    DLFEAT = 33       # [2:0] = 001b: deallocated blocks read as zeros
    NOWS = 72         # u16
    LBAF0 = 128       # LBA Format 0; each entry 4 bytes: MS u16, LBADS u8, RP[1:0]


LBAF_BYTES: Final = 4
LBAF_LBADS_OFFSET: Final = 2      # LBA Data Size, log2 bytes, inside an LBAF entry
FLBAS_INDEX: Final = genmask(3, 0)
DLFEAT_READS_ZEROES: Final = 0b001
NSFEAT_THINP: Final = bit(0)      # thin provisioning (NUSE meaningful)
NSFEAT_DEALLOC: Final = bit(2)    # DLFEAT / deallocation errors supported


# ------------------------------------------------------------------------------------------
# Status (Base spec 2.0 section 4.6.1 "Status Field Definition")
# ------------------------------------------------------------------------------------------
class Sct(IntEnum):
    """Status Code Type."""

    GENERIC = 0x0
    COMMAND_SPECIFIC = 0x1
    MEDIA_ERROR = 0x2
    PATH = 0x3
    VENDOR = 0x7


class GenericSc(IntEnum):
    """Generic Command Status values (Figure 94 and NVM Command Set Figure 16)."""

    SUCCESS = 0x00
    INVALID_OPCODE = 0x01
    INVALID_FIELD = 0x02
    CID_CONFLICT = 0x03
    DATA_TRANSFER_ERROR = 0x04
    ABORTED_POWER_LOSS = 0x05
    INTERNAL_ERROR = 0x06
    ABORT_REQUESTED = 0x07
    ABORTED_SQ_DELETION = 0x08
    ABORTED_FAILED_FUSED = 0x09
    ABORTED_MISSING_FUSED = 0x0A
    INVALID_NAMESPACE = 0x0B
    COMMAND_SEQUENCE_ERROR = 0x0C
    INVALID_SGL_SEGMENT = 0x0D
    INVALID_PRP_OFFSET = 0x13
    LBA_OUT_OF_RANGE = 0x80
    CAPACITY_EXCEEDED = 0x81
    NAMESPACE_NOT_READY = 0x82


class CommandSpecificSc(IntEnum):
    """Command Specific Status values (Figure 95; NVM Command Set Figure 17)."""

    INVALID_CQ = 0x00
    INVALID_QID = 0x01
    INVALID_QSIZE = 0x02
    ABORT_LIMIT_EXCEEDED = 0x03
    AER_LIMIT_EXCEEDED = 0x05
    INVALID_INTERRUPT_VECTOR = 0x08
    INVALID_LOG_PAGE = 0x09
    INVALID_FORMAT = 0x0A
    INVALID_QUEUE_DELETION = 0x0C
    FEATURE_NOT_SAVEABLE = 0x0D
    FEATURE_NOT_CHANGEABLE = 0x0E
    CONFLICTING_ATTRIBUTES = 0x80
    INVALID_PROTECTION_INFO = 0x81
    WRITE_TO_READ_ONLY = 0x82


class MediaSc(IntEnum):
    """Media and Data Integrity Errors (NVM Command Set Figure 18)."""

    WRITE_FAULT = 0x80
    UNRECOVERED_READ_ERROR = 0x81
    COMPARE_FAILURE = 0x85
    ACCESS_DENIED = 0x86
    DEALLOCATED_OR_UNWRITTEN = 0x87


# Status field bits inside the upper 16 bits of CQE DW3 (bit 0 of that half is the phase tag)
STATUS_P: Final = bit(0)
STATUS_SC: Final = genmask(8, 1)
STATUS_SCT: Final = genmask(11, 9)
STATUS_CRD: Final = genmask(13, 12)
STATUS_M: Final = bit(14)
STATUS_DNR: Final = bit(15)

_SC_NAMES: dict[int, type[IntEnum]] = {
    Sct.GENERIC: GenericSc,
    Sct.COMMAND_SPECIFIC: CommandSpecificSc,
    Sct.MEDIA_ERROR: MediaSc,
}


@dataclass(frozen=True, slots=True)
class NvmeStatus:
    """A completion status: (SCT, SC) plus the More and Do Not Retry bits.

    ``str`` gives the spec name, after SPDK's ``spdk_nvme_cpl_get_status_string``; the driver
    retries only when ``dnr`` is clear (``nvme_completion_is_retry``).
    """

    sct: int = Sct.GENERIC
    sc: int = GenericSc.SUCCESS
    dnr: bool = False
    more: bool = False

    @property
    def ok(self) -> bool:
        return self.sct == Sct.GENERIC and self.sc == GenericSc.SUCCESS

    @property
    def name(self) -> str:
        table = _SC_NAMES.get(self.sct)
        if table is not None:
            try:
                return table(self.sc).name
            except ValueError:
                pass
        return f"SCT{self.sct:#x}_SC{self.sc:#04x}"

    def encode(self) -> int:
        """The 15-bit status field shifted to bits 15:1 of the CQE status half (P = 0)."""
        return ((self.sc & 0xFF) << 1) | ((self.sct & 0x7) << 9) | \
            (STATUS_M if self.more else 0) | (STATUS_DNR if self.dnr else 0)

    @classmethod
    def decode(cls, status_half: int) -> NvmeStatus:
        """Decode the upper 16 bits of CQE DW3 (the phase bit is ignored)."""
        return cls(sct=(status_half >> 9) & 0x7, sc=(status_half >> 1) & 0xFF,
                   dnr=bool(status_half & STATUS_DNR), more=bool(status_half & STATUS_M))

    def __str__(self) -> str:
        return f"{self.name} (sct={self.sct:#x}, sc={self.sc:#04x}{', dnr' if self.dnr else ''})"


def status(sc: IntEnum | int, sct: int = Sct.GENERIC, *, dnr: bool = False) -> NvmeStatus:
    """Shorthand used by handlers: ``status(GenericSc.INVALID_FIELD, dnr=True)``."""
    if isinstance(sc, CommandSpecificSc):
        sct = Sct.COMMAND_SPECIFIC
    elif isinstance(sc, MediaSc):
        sct = Sct.MEDIA_ERROR
    return NvmeStatus(sct=int(sct), sc=int(sc), dnr=dnr)


SUCCESS: Final = NvmeStatus()
