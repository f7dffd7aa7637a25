"""Mailbox command handlers of the Type-3 device (CXL 2.0 8.2.9).

One handler per opcode, ``(payload: bytes) -> (ReturnCode, output: bytes)``, in a table; the
dispatcher checks the opcode and the input length before a handler runs, after QEMU's
``cxl_cmd_set`` table.  Handlers never raise for bad input: they return a spec return code.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from labrig.hw.cxl import regs as R
from labrig.hw.cxl.config import CxlPodConfig

__all__ = ["Mailbox", "CEL_EFFECTS"]

Handler = Callable[[bytes], tuple[R.ReturnCode, bytes]]

#: Command Effects Log effect bits per opcode (CXL 2.0 Table 173): 0 = no effects
CEL_EFFECTS: dict[int, int] = {
    R.Opcode.GET_SUPPORTED_LOGS: 0, R.Opcode.GET_LOG: 0, R.Opcode.IDENTIFY: 0,
    R.Opcode.GET_PARTITION_INFO: 0, R.Opcode.GET_HEALTH_INFO: 0,
    R.Opcode.VENDOR_GET_POD_LAYOUT: 0,
}


@dataclass
class _Spec:
    handler: Handler
    in_len: int | None  # exact input length, or None for "any"


class Mailbox:
    """The command set; ``execute(opcode, payload)`` returns ``(rc, output)``."""

    FW_REVISION = b"labrig-cxl 0.1".ljust(16, b"\0")

    def __init__(self, cfg: CxlPodConfig, payload_bytes: int) -> None:
        self.cfg = cfg
        self.payload_bytes = payload_bytes
        self.table: dict[int, _Spec] = {
            R.Opcode.GET_SUPPORTED_LOGS: _Spec(self.get_supported_logs, 0),
            R.Opcode.GET_LOG: _Spec(self.get_log, R.GET_LOG_IN_LEN),
            R.Opcode.IDENTIFY: _Spec(self.identify, 0),
            R.Opcode.GET_PARTITION_INFO: _Spec(self.get_partition_info, 0),
            R.Opcode.GET_HEALTH_INFO: _Spec(self.get_health_info, 0),
            R.Opcode.VENDOR_GET_POD_LAYOUT: _Spec(self.get_pod_layout, 0),
        }
        self.dirty_shutdowns = 0

    def execute(self, opcode: int, payload: bytes) -> tuple[R.ReturnCode, bytes]:
        """Dispatch one command; unknown opcodes answer UNSUPPORTED (8.2.8.4.5.1)."""
        spec = self.table.get(opcode)
        if spec is None:
            return R.ReturnCode.UNSUPPORTED, b""
        if spec.in_len is not None and len(payload) != spec.in_len:
            return R.ReturnCode.INVALID_PAYLOAD_LENGTH, b""
        return spec.handler(payload)

    def cel(self) -> bytes:
        """The Command Effects Log: (opcode u16, effect u16) per supported command."""
        return b"".join(struct.pack("<HH", op, CEL_EFFECTS[op]) for op in sorted(self.table))

    # -- 8.2.9.4 Logs ---------------------------------------------------------------------------
    def get_supported_logs(self, _: bytes) -> tuple[R.ReturnCode, bytes]:
        """Get Supported Logs (8.2.9.4.1): one entry, the CEL."""
        out = struct.pack("<H6x", 1) + R.CEL_UUID + struct.pack("<I", len(self.cel()))
        return R.ReturnCode.SUCCESS, out

    def get_log(self, payload: bytes) -> tuple[R.ReturnCode, bytes]:
        """Get Log (8.2.9.4.2): UUID, offset, length; bad UUID/range -> INVALID_INPUT."""
        uuid, offset, length = payload[:16], *struct.unpack("<II", payload[16:24])
        if uuid != R.CEL_UUID:
            return R.ReturnCode.INVALID_INPUT, b""
        log = self.cel()
        if length == 0 or length > self.payload_bytes or offset + length > len(log):
            return R.ReturnCode.INVALID_INPUT, b""
        return R.ReturnCode.SUCCESS, log[offset:offset + length]

    # -- 8.2.9.5 Memory device commands ------------------------------------------------------------
    def identify(self, _: bytes) -> tuple[R.ReturnCode, bytes]:
        """Identify Memory Device (8.2.9.5.1.1): 0x43 bytes; capacities in 256 MiB units."""
        units = self.cfg.capacity_bytes // R.CAPACITY_UNIT_BYTES
        out = (self.FW_REVISION + struct.pack("<QQQQ", units, units, 0, 0)
               + struct.pack("<HHHH", 32, 32, 32, 32)     # event log sizes
               + struct.pack("<I", 0)                    # LSA size: no label storage
               + (0).to_bytes(3, "little")               # poison list max records
               + struct.pack("<HBB", 0, 0, 0))           # inject limit, poison caps, QoS caps
        assert len(out) == R.IDENTIFY_OUT_LEN
        return R.ReturnCode.SUCCESS, out

    def get_partition_info(self, _: bytes) -> tuple[R.ReturnCode, bytes]:
        """Get Partition Info (8.2.9.5.2.1): all capacity volatile, no pending change."""
        units = self.cfg.capacity_bytes // R.CAPACITY_UNIT_BYTES
        return R.ReturnCode.SUCCESS, struct.pack("<QQQQ", units, 0, 0, 0)

    def get_health_info(self, _: bytes) -> tuple[R.ReturnCode, bytes]:
        """Get Health Info (8.2.9.5.3.1): healthy, media normal, 35 C."""
        out = struct.pack("<BBBBhIII", 0, 0, 0, 0, 35, self.dirty_shutdowns, 0, 0)
        return R.ReturnCode.SUCCESS, out

    # -- vendor specific ---------------------------------------------------------------------------
    def get_pod_layout(self, _: bytes) -> tuple[R.ReturnCode, bytes]:
        """labrig Get Pod Layout (vendor opcode C000h): heads u16, line bytes u16, reserved u32,
        coherent window DPA base u64, coherent window size u64, reserved u64."""
        out = struct.pack("<HHIQQQ", self.cfg.hosts, R.LINE_BYTES, 0, 0,
                          self.cfg.coherent_bytes, 0)
        return R.ReturnCode.SUCCESS, out
