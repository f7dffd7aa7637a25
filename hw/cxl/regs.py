"""CXL Type-3 memory device registers (CXL 2.0 section 8.2; CXL 3.0 section 8.2).

Pure data shared by the model (:mod:`labrig.hw.cxl`), the driver (:mod:`labrig.drivers.cxl`) and
the tests, after Linux ``drivers/cxl/cxl.h``: each block is headed by its spec section, offsets
end in ``_OFFSET``, field masks sit under their register, per-instance offsets are functions and
encodings go through checked helpers.

BAR0 layout of the model (real devices locate these blocks through the Register Locator DVSEC,
CXL 2.0 8.1.9, which labrig does not model; the driver reads the fixed offsets below):

* ``COMPONENT_OFFSET`` 0x00000: CXL component registers (64 KiB, CXL 2.0 8.2.4), whose
  CXL.cache/CXL.mem area at +0x1000 holds the HDM Decoder Capability (8.2.5.12).
* ``DEVICE_OFFSET`` 0x10000: CXL device registers (8.2.8): capability array, device status,
  primary mailbox, memory-device status.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from labrig.hw._bits import bit, field_get, field_prep, genmask

__all__ = [
    "BAR0_SIZE", "COMPONENT_OFFSET", "DEVICE_OFFSET", "CAPACITY_UNIT_BYTES", "HDM_ALIGN_BYTES",
    "LINE_BYTES", "CmCap", "DevCap", "ReturnCode", "Opcode",
    "eig_to_granularity", "granularity_to_eig", "eiw_to_ways", "ways_to_eiw",
    "hdm_decoder_ctrl_encode", "hdm_decoder_ctrl_decode", "hdm_decoder_base_low_offset",
    "hdm_decoder_base_high_offset", "hdm_decoder_size_low_offset", "hdm_decoder_size_high_offset",
    "hdm_decoder_ctrl_offset", "hdm_decoder_tl_low_offset", "hdm_decoder_tl_high_offset",
    "hdm_cap_encode", "hdm_cap_decoder_count", "mbox_cmd_encode", "mbox_cmd_decode",
    "mbox_status_encode", "mbox_status_decode", "mbox_caps_encode", "mbox_caps_payload_bytes",
    "cm_cap_hdr_encode", "cm_cap_hdr_decode", "dev_cap_hdr_encode", "dev_cap_hdr_decode",
    "field_get", "field_prep",
]

#: Cache-line size of every host in the pod (x86-64).
LINE_BYTES: Final = 64
#: Identify/partition capacities are in multiples of 256 MiB (CXL 2.0 8.2.9.5.1.1).
CAPACITY_UNIT_BYTES: Final = 256 << 20
#: HDM decoder base and size are 256 MiB aligned (CXL 2.0 8.2.5.12.8-11: bits 27:0 reserved).
HDM_ALIGN_BYTES: Final = 256 << 20

BAR0_SIZE: Final = 0x20000
COMPONENT_OFFSET: Final = 0x00000
DEVICE_OFFSET: Final = 0x10000

# ---------------------------------------------------------------------------------------------
# CXL 2.0 8.2.5: CXL.cache and CXL.mem registers, at component block + 0x1000
# ---------------------------------------------------------------------------------------------
CM_OFFSET: Final = COMPONENT_OFFSET + 0x1000
CM_CAP_HDR_OFFSET: Final = CM_OFFSET + 0x0       # CXL Capability Header (8.2.5.1)
CM_CAP_HDR_ID_MASK: Final = genmask(15, 0)
CM_CAP_HDR_VERSION_MASK: Final = genmask(19, 16)
CM_CAP_HDR_CACHE_MEM_VERSION_MASK: Final = genmask(23, 20)
CM_CAP_HDR_ARRAY_SIZE_MASK: Final = genmask(31, 24)
CM_CAP_PTR_ENTRY_OFFSET: Final = CM_OFFSET + 0x4  # first capability pointer dword (8.2.5.2)
CM_CAP_PTR_MASK: Final = genmask(31, 20)         # offset of the capability from CM_OFFSET


class CmCap(IntEnum):
    """CXL.cache/mem capability IDs (CXL 2.0 Table 141)."""

    CXL = 0x1
    RAS = 0x2
    HDM = 0x5


# -- HDM Decoder Capability Structure (CXL 2.0 8.2.5.12), at CM_OFFSET + HDM_REL_OFFSET --------
HDM_REL_OFFSET: Final = 0x100
HDM_OFFSET: Final = CM_OFFSET + HDM_REL_OFFSET
HDM_CAP_OFFSET: Final = HDM_OFFSET + 0x0          # HDM Decoder Capability Register (8.2.5.12.1)
HDM_CAP_DECODER_COUNT_MASK: Final = genmask(3, 0)   # 0 -> 1 decoder, n -> 2n decoders
HDM_CAP_TARGET_COUNT_MASK: Final = genmask(7, 4)
HDM_CAP_INTERLEAVE_11_8: Final = bit(8)            # A11to8 interleave capable
HDM_CAP_INTERLEAVE_14_12: Final = bit(9)           # A14to12 interleave capable
HDM_CAP_POISON_ON_ERR: Final = bit(10)
HDM_CAP_3_6_12_WAY: Final = bit(11)                # CXL 3.0 8.2.4.19.1
HDM_CAP_16_WAY: Final = bit(12)
HDM_GLOBAL_CTRL_OFFSET: Final = HDM_OFFSET + 0x4  # HDM Decoder Global Control (8.2.5.12.2)
HDM_GLOBAL_CTRL_POISON_ON_ERR_EN: Final = bit(0)
HDM_GLOBAL_CTRL_ENABLE: Final = bit(1)
#: decoders the model implements (HDM_CAP decoder count encoding 2 -> 4 decoders)
HDM_DECODER_COUNT: Final = 4

HDM_DECODER_CTRL_IG_MASK: Final = genmask(3, 0)    # Interleave Granularity (8.2.5.12.7)
HDM_DECODER_CTRL_IW_MASK: Final = genmask(7, 4)    # Interleave Ways
HDM_DECODER_CTRL_LOCK_ON_COMMIT: Final = bit(8)
HDM_DECODER_CTRL_COMMIT: Final = bit(9)
HDM_DECODER_CTRL_COMMITTED: Final = bit(10)
HDM_DECODER_CTRL_COMMIT_ERROR: Final = bit(11)
HDM_DECODER_CTRL_TYPE: Final = bit(12)             # 0: HDM-D (device-coherent), 1: host-only
HDM_DECODER_CTRL_RW_MASK: Final = genmask(8, 0) | HDM_DECODER_CTRL_COMMIT | HDM_DECODER_CTRL_TYPE


def hdm_decoder_base_low_offset(i: int) -> int:
    """HDM Decoder i Base Low (CXL 2.0 8.2.5.12.5)."""
    return HDM_OFFSET + 0x20 * i + 0x10


def hdm_decoder_base_high_offset(i: int) -> int:
    """HDM Decoder i Base High (CXL 2.0 8.2.5.12.6)."""
    return HDM_OFFSET + 0x20 * i + 0x14


def hdm_decoder_size_low_offset(i: int) -> int:
    """HDM Decoder i Size Low (CXL 2.0 8.2.5.12.7)."""
    return HDM_OFFSET + 0x20 * i + 0x18


def hdm_decoder_size_high_offset(i: int) -> int:
    """HDM Decoder i Size High (CXL 2.0 8.2.5.12.8)."""
    return HDM_OFFSET + 0x20 * i + 0x1C


def hdm_decoder_ctrl_offset(i: int) -> int:
    """HDM Decoder i Control (CXL 2.0 8.2.5.12.9)."""
    return HDM_OFFSET + 0x20 * i + 0x20


def hdm_decoder_tl_low_offset(i: int) -> int:
    """HDM Decoder i Target List Low / DPA Skip Low for a device (CXL 2.0 8.2.5.12.10)."""
    return HDM_OFFSET + 0x20 * i + 0x24


def hdm_decoder_tl_high_offset(i: int) -> int:
    """HDM Decoder i Target List High / DPA Skip High (CXL 2.0 8.2.5.12.11)."""
    return HDM_OFFSET + 0x20 * i + 0x28


_IW_TO_WAYS: Final = {0: 1, 1: 2, 2: 4, 3: 8, 4: 16, 8: 3, 9: 6, 10: 12}
_WAYS_TO_IW: Final = {w: e for e, w in _IW_TO_WAYS.items()}
#: Interleave granularity encodings 0..6: 256 B << eig, up to 16 KiB (CXL 2.0 8.2.5.12.7)
MAX_EIG: Final = 6


def eig_to_granularity(eig: int) -> int:
    """Decode the IG field to bytes (256 << eig); ``ValueError`` for a reserved encoding."""
    if not 0 <= eig <= MAX_EIG:
        raise ValueError(f"interleave granularity encoding {eig}: must be in 0..{MAX_EIG}")
    return 256 << eig


def granularity_to_eig(granularity: int) -> int:
    """Encode a granularity in bytes (256, 512, ..., 16384) as the IG field."""
    for eig in range(MAX_EIG + 1):
        if 256 << eig == granularity:
            return eig
    raise ValueError(f"interleave granularity {granularity}: must be 256 << n for n in 0..6")


def eiw_to_ways(eiw: int) -> int:
    """Decode the IW field to a way count; ``ValueError`` for a reserved encoding."""
    try:
        return _IW_TO_WAYS[eiw]
    except KeyError:
        raise ValueError(f"interleave ways encoding {eiw}: must be one of "
                         f"{sorted(_IW_TO_WAYS)}") from None


def ways_to_eiw(ways: int) -> int:
    """Encode a way count (1, 2, 4, 8, 16, 3, 6, 12) as the IW field."""
    try:
        return _WAYS_TO_IW[ways]
    except KeyError:
        raise ValueError(f"interleave ways {ways}: must be one of "
                         f"{sorted(_WAYS_TO_IW)}") from None


def hdm_decoder_ctrl_encode(*, eig: int, eiw: int, lock: bool = False, commit: bool = False,
                            committed: bool = False, commit_error: bool = False,
                            host_only: bool = False) -> int:
    """Build an HDM Decoder Control value from raw encodings (checked to fit their fields)."""
    if not 0 <= eig <= 0xF or not 0 <= eiw <= 0xF:
        raise ValueError(f"eig={eig}, eiw={eiw}: must each fit in 4 bits")
    v = field_prep(HDM_DECODER_CTRL_IG_MASK, eig) | field_prep(HDM_DECODER_CTRL_IW_MASK, eiw)
    v |= HDM_DECODER_CTRL_LOCK_ON_COMMIT if lock else 0
    v |= HDM_DECODER_CTRL_COMMIT if commit else 0
    v |= HDM_DECODER_CTRL_COMMITTED if committed else 0
    v |= HDM_DECODER_CTRL_COMMIT_ERROR if commit_error else 0
    v |= HDM_DECODER_CTRL_TYPE if host_only else 0
    return v


def hdm_decoder_ctrl_decode(v: int) -> dict[str, int | bool]:
    """Split an HDM Decoder Control value into the keyword arguments of the encoder."""
    return {"eig": field_get(HDM_DECODER_CTRL_IG_MASK, v),
            "eiw": field_get(HDM_DECODER_CTRL_IW_MASK, v),
            "lock": bool(v & HDM_DECODER_CTRL_LOCK_ON_COMMIT),
            "commit": bool(v & HDM_DECODER_CTRL_COMMIT),
            "committed": bool(v & HDM_DECODER_CTRL_COMMITTED),
            "commit_error": bool(v & HDM_DECODER_CTRL_COMMIT_ERROR),
            "host_only": bool(v & HDM_DECODER_CTRL_TYPE)}


#: Decoder Count encodings (CXL 3.0 8.2.4.19.1; CXL 2.0 defined 0..5): field -> decoders
_DECODER_COUNT: Final = {0: 1, 1: 2, 2: 4, 3: 6, 4: 8, 5: 10, 6: 12, 7: 14, 8: 16, 9: 20,
                         10: 24, 11: 28, 12: 32}
_DECODER_COUNT_ENC: Final = {n: e for e, n in _DECODER_COUNT.items()}


def hdm_cap_encode(decoders: int, targets: int = 1) -> int:
    """HDM Decoder Capability value for ``decoders`` (1, 2, 4, 6, ..., 16, 20, 24, 28, 32)."""
    if decoders not in _DECODER_COUNT_ENC:
        raise ValueError(f"decoder count {decoders}: must be one of {sorted(_DECODER_COUNT_ENC)}")
    enc = _DECODER_COUNT_ENC[decoders]
    if not 1 <= targets <= 8:
        raise ValueError(f"target count {targets}: must be in 1..8")
    return (field_prep(HDM_CAP_DECODER_COUNT_MASK, enc)
            | field_prep(HDM_CAP_TARGET_COUNT_MASK, targets)
            | HDM_CAP_INTERLEAVE_11_8 | HDM_CAP_INTERLEAVE_14_12
            | HDM_CAP_3_6_12_WAY | HDM_CAP_16_WAY)


def hdm_cap_decoder_count(cap: int) -> int:
    """Decoder count from the HDM Decoder Capability register; 0 for a reserved encoding."""
    return _DECODER_COUNT.get(field_get(HDM_CAP_DECODER_COUNT_MASK, cap), 0)


def cm_cap_hdr_encode(cap_id: int, version: int, rel_offset: int) -> int:
    """A CXL.cache/mem capability pointer dword (CXL 2.0 8.2.5.2)."""
    if not 0 <= cap_id <= 0xFFFF or not 0 <= version <= 0xF or not 0 <= rel_offset <= 0xFFF:
        raise ValueError(f"cap_id={cap_id}, version={version}, offset={rel_offset}: out of range")
    return (field_prep(CM_CAP_HDR_ID_MASK, cap_id) | field_prep(CM_CAP_HDR_VERSION_MASK, version)
            | field_prep(CM_CAP_PTR_MASK, rel_offset))


def cm_cap_hdr_decode(v: int) -> tuple[int, int, int]:
    """``(cap_id, version, offset)`` of a capability pointer dword."""
    return (field_get(CM_CAP_HDR_ID_MASK, v), field_get(CM_CAP_HDR_VERSION_MASK, v),
            field_get(CM_CAP_PTR_MASK, v))


# ---------------------------------------------------------------------------------------------
# CXL 2.0 8.2.8: CXL device registers, at DEVICE_OFFSET
# ---------------------------------------------------------------------------------------------
DEV_CAP_ARRAY_OFFSET: Final = DEVICE_OFFSET + 0x0   # Device Capabilities Array (8.2.8.1)
DEV_CAP_ARRAY_ID_MASK: Final = genmask(15, 0)
DEV_CAP_ARRAY_VERSION_MASK: Final = genmask(23, 16)
DEV_CAP_ARRAY_COUNT_MASK: Final = genmask(47, 32)
DEV_CAP_HDR_OFFSET: Final = DEVICE_OFFSET + 0x10    # first Device Capability Header (8.2.8.2)
DEV_CAP_HDR_STRIDE: Final = 0x10
DEV_CAP_HDR_ID_MASK: Final = genmask(15, 0)         # dword 0
DEV_CAP_HDR_VERSION_MASK: Final = genmask(23, 16)
#: dword 1 (+0x4): offset of the capability from DEVICE_OFFSET; dword 2 (+0x8): its length


class DevCap(IntEnum):
    """Device capability IDs (CXL 2.0 8.2.8.2.1)."""

    DEVICE_STATUS = 0x0001
    PRIMARY_MAILBOX = 0x0002
    SECONDARY_MAILBOX = 0x0003
    MEMDEV = 0x4000


DEV_STATUS_REL_OFFSET: Final = 0x100
DEV_STATUS_LEN: Final = 0x8
MBOX_REL_OFFSET: Final = 0x200
MBOX_PAYLOAD_SIZE_LOG2: Final = 11                  # 2 KiB payload (spec range 8..20)
MBOX_LEN: Final = 0x20 + (1 << MBOX_PAYLOAD_SIZE_LOG2)
MEMDEV_REL_OFFSET: Final = 0x1000
MEMDEV_LEN: Final = 0x8


def dev_cap_hdr_encode(cap_id: int, version: int) -> int:
    """Dword 0 of a Device Capability Header (8.2.8.2)."""
    if not 0 <= cap_id <= 0xFFFF or not 0 <= version <= 0xFF:
        raise ValueError(f"cap_id={cap_id}, version={version}: out of range")
    return field_prep(DEV_CAP_HDR_ID_MASK, cap_id) | field_prep(DEV_CAP_HDR_VERSION_MASK, version)


def dev_cap_hdr_decode(v: int) -> tuple[int, int]:
    """``(cap_id, version)`` of a Device Capability Header dword 0."""
    return field_get(DEV_CAP_HDR_ID_MASK, v), field_get(DEV_CAP_HDR_VERSION_MASK, v)


# -- Device Status Registers (8.2.8.3) ---------------------------------------------------------
DEV_STATUS_OFFSET: Final = DEVICE_OFFSET + DEV_STATUS_REL_OFFSET
DEV_STATUS_EVENT_STATUS_MASK: Final = genmask(31, 0)

# -- Mailbox Registers (8.2.8.4) ---------------------------------------------------------------
MBOX_OFFSET: Final = DEVICE_OFFSET + MBOX_REL_OFFSET
MBOX_CAPS_OFFSET: Final = MBOX_OFFSET + 0x00        # Mailbox Capabilities (8.2.8.4.3)
MBOX_CAPS_PAYLOAD_SIZE_MASK: Final = genmask(4, 0)  # 2^n bytes
MBOX_CAPS_DOORBELL_IRQ: Final = bit(5)
MBOX_CAPS_BG_IRQ: Final = bit(6)
MBOX_CAPS_IRQ_MSG_MASK: Final = genmask(10, 7)
MBOX_CTRL_OFFSET: Final = MBOX_OFFSET + 0x04        # Mailbox Control (8.2.8.4.4)
MBOX_CTRL_DOORBELL: Final = bit(0)
MBOX_CTRL_DOORBELL_IRQ_EN: Final = bit(1)
MBOX_CTRL_BG_IRQ_EN: Final = bit(2)
MBOX_CMD_OFFSET: Final = MBOX_OFFSET + 0x08         # Command Register (8.2.8.4.5), 64-bit
MBOX_CMD_OPCODE_MASK: Final = genmask(15, 0)
MBOX_CMD_PAYLOAD_LEN_MASK: Final = genmask(36, 16)
MBOX_STATUS_OFFSET: Final = MBOX_OFFSET + 0x10      # Mailbox Status (8.2.8.4.6), 64-bit
MBOX_STATUS_BG_OP: Final = bit(0)
MBOX_STATUS_RET_CODE_MASK: Final = genmask(47, 32)
MBOX_STATUS_VENDOR_MASK: Final = genmask(63, 48)
MBOX_BG_STATUS_OFFSET: Final = MBOX_OFFSET + 0x18   # Background Command Status (8.2.8.4.7)
MBOX_BG_OPCODE_MASK: Final = genmask(15, 0)
MBOX_BG_PERCENT_MASK: Final = genmask(22, 16)
MBOX_BG_RET_CODE_MASK: Final = genmask(47, 32)
MBOX_PAYLOAD_OFFSET: Final = MBOX_OFFSET + 0x20     # Commands Payload Registers (8.2.8.4.8)

# -- Memory Device Status (8.2.8.5.1) ----------------------------------------------------------
MEMDEV_STATUS_OFFSET: Final = DEVICE_OFFSET + MEMDEV_REL_OFFSET
MEMDEV_STATUS_FATAL: Final = bit(0)
MEMDEV_STATUS_FW_HALT: Final = bit(1)
MEMDEV_STATUS_MEDIA_MASK: Final = genmask(3, 2)     # 01b: media ready
MEMDEV_STATUS_MEDIA_READY: Final = 0b01
MEMDEV_STATUS_MBOX_READY: Final = bit(4)
MEMDEV_STATUS_RESET_NEEDED_MASK: Final = genmask(7, 5)


def mbox_caps_encode(payload_size_log2: int, irq_msg: int = 0) -> int:
    """Mailbox Capabilities value; payload size 2^n bytes for n in 8..20."""
    if not 8 <= payload_size_log2 <= 20 or not 0 <= irq_msg <= 0xF:
        raise ValueError(f"payload_size_log2={payload_size_log2}: must be in 8..20")
    return (field_prep(MBOX_CAPS_PAYLOAD_SIZE_MASK, payload_size_log2)
            | MBOX_CAPS_DOORBELL_IRQ | field_prep(MBOX_CAPS_IRQ_MSG_MASK, irq_msg))


def mbox_caps_payload_bytes(caps: int) -> int:
    """Payload area size in bytes from a Mailbox Capabilities value."""
    return 1 << field_get(MBOX_CAPS_PAYLOAD_SIZE_MASK, caps)


def mbox_cmd_encode(opcode: int, payload_len: int) -> int:
    """Command Register value (opcode 16 bits, payload length 21 bits)."""
    if not 0 <= opcode <= 0xFFFF:
        raise ValueError(f"opcode {opcode:#x}: must fit in 16 bits")
    if not 0 <= payload_len < (1 << 21):
        raise ValueError(f"payload length {payload_len}: must be in 0..{(1 << 21) - 1}")
    return field_prep(MBOX_CMD_OPCODE_MASK, opcode) | field_prep(MBOX_CMD_PAYLOAD_LEN_MASK,
                                                                 payload_len)


def mbox_cmd_decode(v: int) -> tuple[int, int]:
    """``(opcode, payload_len)`` of a Command Register value."""
    return field_get(MBOX_CMD_OPCODE_MASK, v), field_get(MBOX_CMD_PAYLOAD_LEN_MASK, v)


def mbox_status_encode(ret_code: int, bg_op: bool = False, vendor: int = 0) -> int:
    """Mailbox Status value."""
    if not 0 <= ret_code <= 0xFFFF or not 0 <= vendor <= 0xFFFF:
        raise ValueError(f"ret_code={ret_code}, vendor={vendor}: must fit in 16 bits")
    return (field_prep(MBOX_STATUS_RET_CODE_MASK, ret_code)
            | field_prep(MBOX_STATUS_VENDOR_MASK, vendor) | (MBOX_STATUS_BG_OP if bg_op else 0))


def mbox_status_decode(v: int) -> tuple[int, bool, int]:
    """``(ret_code, bg_op, vendor)`` of a Mailbox Status value."""
    return (field_get(MBOX_STATUS_RET_CODE_MASK, v), bool(v & MBOX_STATUS_BG_OP),
            field_get(MBOX_STATUS_VENDOR_MASK, v))


class ReturnCode(IntEnum):
    """Mailbox return codes (CXL 2.0 Table 150, section 8.2.8.4.5.1; CXL 3.0 Table 8-34)."""

    SUCCESS = 0x0000
    BACKGROUND_COMMAND_STARTED = 0x0001
    INVALID_INPUT = 0x0002
    UNSUPPORTED = 0x0003
    INTERNAL_ERROR = 0x0004
    RETRY_REQUIRED = 0x0005
    BUSY = 0x0006
    MEDIA_DISABLED = 0x0007
    FW_TRANSFER_IN_PROGRESS = 0x0008
    FW_TRANSFER_OUT_OF_ORDER = 0x0009
    FW_AUTHENTICATION_FAILED = 0x000A
    INVALID_SLOT = 0x000B
    ACTIVATION_FAILED_FW_ROLLED_BACK = 0x000C
    ACTIVATION_FAILED_COLD_RESET_REQUIRED = 0x000D
    INVALID_HANDLE = 0x000E
    INVALID_PHYSICAL_ADDRESS = 0x000F
    INJECT_POISON_LIMIT_REACHED = 0x0010
    PERMANENT_MEDIA_FAILURE = 0x0011
    ABORTED = 0x0012
    INVALID_SECURITY_STATE = 0x0013
    INCORRECT_PASSPHRASE = 0x0014
    UNSUPPORTED_MAILBOX = 0x0015
    INVALID_PAYLOAD_LENGTH = 0x0016

    def __str__(self) -> str:
        return f"{self.name} ({self.value:#06x})"


class Opcode(IntEnum):
    """Mailbox command opcodes (CXL 2.0 Table 205 section 8.2.9; Linux ``enum cxl_opcode``)."""

    GET_SUPPORTED_LOGS = 0x0400      # 8.2.9.4.1
    GET_LOG = 0x0401                 # 8.2.9.4.2
    IDENTIFY = 0x4000                # 8.2.9.5.1.1 Identify Memory Device
    GET_PARTITION_INFO = 0x4100      # 8.2.9.5.2.1
    GET_HEALTH_INFO = 0x4200         # 8.2.9.5.3.1
    #: Vendor-specific range C000h-FFFFh (8.2.9): labrig's "Get Pod Layout" (heads, coherent window)
    VENDOR_GET_POD_LAYOUT = 0xC000


#: Command Effects Log UUID (CXL 2.0 Table 170): 0da9c0b5-bf41-4b78-8f79-96b1623b3f17
CEL_UUID: Final = bytes.fromhex("0da9c0b5bf414b788f7996b1623b3f17")
IDENTIFY_OUT_LEN: Final = 0x43
PARTITION_INFO_OUT_LEN: Final = 0x20
HEALTH_INFO_OUT_LEN: Final = 0x12
GET_LOG_IN_LEN: Final = 0x18
POD_LAYOUT_OUT_LEN: Final = 0x20
CEL_ENTRY_LEN: Final = 4
SUPPORTED_LOGS_HDR_LEN: Final = 8
SUPPORTED_LOGS_ENTRY_LEN: Final = 20
