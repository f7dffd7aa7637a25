"""NVMe controller registers (NVM Express Base Specification 2.0, section 3.1 "Register
Definition"; offsets as pinned by SPDK ``include/spdk/nvme_spec.h`` and Linux
``include/linux/nvme.h``).

Pure data shared by the model (:mod:`labrig.hw.nvme`), the driver (:mod:`labrig.drivers.nvme`)
and the tests.  Field masks sit under their register; accessors decode a whole register value.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from labrig.hw._bits import bit, field_get, field_prep, genmask

__all__ = [
    "AQA_ACQS",
    "AQA_ASQS",
    "CAP_CQR",
    "CAP_CSS",
    "CAP_CSS_NVM",
    "CAP_DSTRD",
    "CAP_MPSMAX",
    "CAP_MPSMIN",
    "CAP_MQES",
    "CAP_TO",
    "CC_AMS",
    "CC_CSS",
    "CC_EN",
    "CC_IOCQES",
    "CC_IOSQES",
    "CC_MPS",
    "CC_SHN",
    "CSTS_CFS",
    "CSTS_RDY",
    "CSTS_SHST",
    "DOORBELL_BASE",
    "Reg",
    "SHN_ABRUPT",
    "SHN_NONE",
    "SHN_NORMAL",
    "SHST_COMPLETE",
    "SHST_NORMAL",
    "SHST_OCCURRING",
    "TO_UNIT_MS",
    "cap_dstrd",
    "cap_mpsmax",
    "cap_mpsmin",
    "cap_mqes",
    "cap_to_ms",
    "cq_hdbl_offset",
    "doorbell_decode",
    "field_get",
    "field_prep",
    "sq_tdbl_offset",
    "vs_encode",
]


class Reg(IntEnum):
    """Controller register offsets in BAR0 (Base spec 2.0 Figure 33)."""

    CAP = 0x00      # Controller Capabilities (64-bit)
    VS = 0x08       # Version
    INTMS = 0x0C    # Interrupt Mask Set
    INTMC = 0x10    # Interrupt Mask Clear
    CC = 0x14       # Controller Configuration
    CSTS = 0x1C     # Controller Status
    NSSR = 0x20     # NVM Subsystem Reset
    AQA = 0x24      # Admin Queue Attributes
    ASQ = 0x28      # Admin Submission Queue Base Address (64-bit)
    ACQ = 0x30      # Admin Completion Queue Base Address (64-bit)
    CMBLOC = 0x38   # Controller Memory Buffer Location
    CMBSZ = 0x3C    # Controller Memory Buffer Size


#: First doorbell register: SQ0TDBL (Base spec 2.0 section 3.1.4.x, "Submission Queue y Tail Doorbell")
DOORBELL_BASE: Final = 0x1000

# -- CAP: Controller Capabilities (3.1.3.1) -------------------------------------------------
CAP_MQES: Final = genmask(15, 0)     # Maximum Queue Entries Supported (0-based)
CAP_CQR: Final = bit(16)             # Contiguous Queues Required
CAP_AMS: Final = genmask(18, 17)     # Arbitration Mechanism Supported (bit 17: WRR with urgent)
CAP_TO: Final = genmask(31, 24)      # Timeout, in 500 ms units
CAP_DSTRD: Final = genmask(35, 32)   # Doorbell Stride: 2^(2+DSTRD) bytes
CAP_NSSRS: Final = bit(36)           # NVM Subsystem Reset Supported
CAP_CSS: Final = genmask(44, 37)     # Command Sets Supported
CAP_MPSMIN: Final = genmask(51, 48)  # Memory Page Size Minimum: 2^(12+MPSMIN)
CAP_MPSMAX: Final = genmask(55, 52)  # Memory Page Size Maximum: 2^(12+MPSMAX)
CAP_CSS_NVM: Final = 0x01            # CAP.CSS bit 0: NVM command set
CAP_AMS_WRR: Final = 0x1             # CAP.AMS: Weighted Round Robin with Urgent Priority Class
TO_UNIT_MS: Final = 500

# -- VS: Version (3.1.3.2) ------------------------------------------------------------------
VS_MJR: Final = genmask(31, 16)
VS_MNR: Final = genmask(15, 8)
VS_TER: Final = genmask(7, 0)

# -- CC: Controller Configuration (3.1.3.5) -------------------------------------------------
CC_EN: Final = bit(0)
CC_CSS: Final = genmask(6, 4)        # I/O Command Set Selected (000b: NVM)
CC_MPS: Final = genmask(10, 7)       # Memory Page Size: 2^(12+MPS)
CC_AMS: Final = genmask(13, 11)      # Arbitration Mechanism Selected (000b RR, 001b WRR)
CC_SHN: Final = genmask(15, 14)      # Shutdown Notification
CC_IOSQES: Final = genmask(19, 16)   # I/O SQ Entry Size: 2^n bytes (6 -> 64 B)
CC_IOCQES: Final = genmask(23, 20)   # I/O CQ Entry Size: 2^n bytes (4 -> 16 B)
SHN_NONE: Final = 0b00
SHN_NORMAL: Final = 0b01
SHN_ABRUPT: Final = 0b10
AMS_RR: Final = 0b000
AMS_WRR: Final = 0b001

# -- CSTS: Controller Status (3.1.3.6) ------------------------------------------------------
CSTS_RDY: Final = bit(0)
CSTS_CFS: Final = bit(1)             # Controller Fatal Status
CSTS_SHST: Final = genmask(3, 2)     # Shutdown Status
CSTS_NSSRO: Final = bit(4)
CSTS_PP: Final = bit(5)
SHST_NORMAL: Final = 0b00
SHST_OCCURRING: Final = 0b01
SHST_COMPLETE: Final = 0b10

# -- AQA: Admin Queue Attributes (3.1.3.8) --------------------------------------------------
AQA_ASQS: Final = genmask(11, 0)     # Admin SQ Size (0-based)
AQA_ACQS: Final = genmask(27, 16)    # Admin CQ Size (0-based)
AQA_MAX_ENTRIES: Final = 4096        # 12-bit 0-based field

# -- ASQ/ACQ: base addresses; bits 11:0 reserved (page aligned) -----------------------------
ASQ_RESERVED: Final = genmask(11, 0)


def cap_mqes(cap: int) -> int:
    """CAP.MQES: the largest queue size, as a 0-based count."""
    return field_get(CAP_MQES, cap)


def cap_to_ms(cap: int) -> int:
    """CAP.TO in milliseconds (worst-case time to RDY after EN changes)."""
    return field_get(CAP_TO, cap) * TO_UNIT_MS


def cap_dstrd(cap: int) -> int:
    """CAP.DSTRD: doorbell stride exponent."""
    return field_get(CAP_DSTRD, cap)


def cap_mpsmin(cap: int) -> int:
    """CAP.MPSMIN as an exponent (page = 2^(12+n))."""
    return field_get(CAP_MPSMIN, cap)


def cap_mpsmax(cap: int) -> int:
    """CAP.MPSMAX as an exponent (page = 2^(12+n))."""
    return field_get(CAP_MPSMAX, cap)


def vs_encode(major: int, minor: int, tertiary: int = 0) -> int:
    """Version register value, e.g. 1.4.0 -> 0x00010400."""
    return field_prep(VS_MJR, major) | field_prep(VS_MNR, minor) | field_prep(VS_TER, tertiary)


def sq_tdbl_offset(qid: int, dstrd: int) -> int:
    """BAR0 offset of Submission Queue ``qid`` Tail Doorbell (3.1.3.x: 1000h + (2y) * (4 << DSTRD))."""
    return DOORBELL_BASE + (2 * qid) * (4 << dstrd)


def cq_hdbl_offset(qid: int, dstrd: int) -> int:
    """BAR0 offset of Completion Queue ``qid`` Head Doorbell (1000h + (2y + 1) * (4 << DSTRD))."""
    return DOORBELL_BASE + (2 * qid + 1) * (4 << dstrd)


def doorbell_decode(off: int, dstrd: int) -> tuple[int, bool] | None:
    """Map a BAR0 offset to ``(qid, is_cq)``, or ``None`` if it is not on a doorbell slot."""
    rel = off - DOORBELL_BASE
    stride = 4 << dstrd
    if rel < 0 or rel % stride:
        return None
    idx = rel // stride
    return idx >> 1, bool(idx & 1)
