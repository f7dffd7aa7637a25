"""Poll-mode driver for the CXL Type-3 device's registers: enumeration, mailbox, HDM decoders.

Reaches the device only through ``bar0`` (DESIGN.md, "The device contract").  Mailbox commands
follow CXL 2.0 8.2.8.4 ("Mailbox Registers") and Linux ``__cxl_pci_mbox_send_cmd``: check the
doorbell is clear, write payload and Command Register, set the doorbell, poll until it clears
under a timeout measured on the platform clock, then read the return code from the Status
register.  Decoder programming applies the checks Linux ``cxl_decoder_commit`` and ndctl
``cxl create-region`` make before touching the hardware, with a message naming the bad value.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from labrig.errors import DeviceError, UsageError
from labrig.hw._device import Bar
from labrig.hw._platform import Platform
from labrig.hw.cxl import regs as R

__all__ = ["CxlMemdev", "Identify", "PodLayout", "MBOX_TIMEOUT_NS"]

#: Linux uses a 2 s mailbox timeout (``CXL_MAILBOX_TIMEOUT_MS``)
MBOX_TIMEOUT_NS: Final = 2_000_000_000


@dataclass(frozen=True)
class Identify:
    """Decoded Identify Memory Device output (CXL 2.0 8.2.9.5.1.1)."""

    fw_revision: str
    total_bytes: int
    volatile_bytes: int
    persistent_bytes: int
    lsa_size: int


@dataclass(frozen=True)
class PodLayout:
    """Decoded vendor Get Pod Layout output: heads, line size, coherent window (DPA)."""

    heads: int
    line_bytes: int
    coherent_dpa: int
    coherent_bytes: int


class CxlMemdev:
    """Driver instance bound to one device.

    Parameters
    ----------
    plat : Platform
        Clock used for mailbox polling and timeouts.
    bar0 : Bar
        The device's register window.
    timeout_ns : int, optional
        Mailbox command timeout (default :data:`MBOX_TIMEOUT_NS`).

    Raises
    ------
    DeviceError
        If the register blocks are missing or the mailbox is not ready.
    """

    def __init__(self, plat: Platform, bar0: Bar, *, timeout_ns: int = MBOX_TIMEOUT_NS) -> None:
        self.plat = plat
        self.bar0 = bar0
        self.timeout_ns = timeout_ns
        self._enumerate()

    # -- enumeration ---------------------------------------------------------------------------
    def _enumerate(self) -> None:
        hdr = self.bar0.read32(R.CM_CAP_HDR_OFFSET)
        if R.field_get(R.CM_CAP_HDR_ID_MASK, hdr) != R.CmCap.CXL:
            raise DeviceError("no CXL capability header", "enumerate")
        self.hdm_offset = None
        for k in range(R.field_get(R.CM_CAP_HDR_ARRAY_SIZE_MASK, hdr)):
            ptr = self.bar0.read32(R.CM_CAP_PTR_ENTRY_OFFSET + 4 * k)
            cap_id, _, rel = R.cm_cap_hdr_decode(ptr)
            if cap_id == R.CmCap.HDM:
                self.hdm_offset = R.CM_OFFSET + rel
        if self.hdm_offset != R.HDM_OFFSET:
            raise DeviceError("no HDM decoder capability", "enumerate")
        self.decoder_count = R.hdm_cap_decoder_count(self.bar0.read32(R.HDM_CAP_OFFSET))
        count = R.field_get(R.DEV_CAP_ARRAY_COUNT_MASK, self.bar0.read64(R.DEV_CAP_ARRAY_OFFSET))
        caps = {}
        for k in range(count):
            base = R.DEV_CAP_HDR_OFFSET + k * R.DEV_CAP_HDR_STRIDE
            cap_id, _ = R.dev_cap_hdr_decode(self.bar0.read32(base))
            caps[cap_id] = R.DEVICE_OFFSET + self.bar0.read32(base + 4)
        if caps.get(R.DevCap.PRIMARY_MAILBOX) != R.MBOX_OFFSET or R.DevCap.MEMDEV not in caps:
            raise DeviceError("no primary mailbox / memdev capability", "enumerate")
        status = self.bar0.read32(R.MEMDEV_STATUS_OFFSET)
        if not status & R.MEMDEV_STATUS_MBOX_READY or status & R.MEMDEV_STATUS_FATAL:
            raise DeviceError(f"memdev status {status:#x}", "mailbox not ready")
        self.payload_bytes = R.mbox_caps_payload_bytes(self.bar0.read32(R.MBOX_CAPS_OFFSET))

    # -- mailbox -------------------------------------------------------------------------------
    def mbox_send(self, opcode: int, payload: bytes = b"", *,
                  timeout_ns: int | None = None) -> bytes:
        """Run one mailbox command and return its output payload.

        Raises
        ------
        UsageError
            Payload longer than the mailbox payload area.
        DeviceError
            Non-success return code (``.status`` is the :class:`ReturnCode`), a busy mailbox,
            or a timeout (``.status`` is the string ``"timeout"``).
        """
        if len(payload) > self.payload_bytes:
            raise UsageError(f"payload of {len(payload)} bytes: mailbox holds "
                             f"{self.payload_bytes}")
        if self.bar0.read32(R.MBOX_CTRL_OFFSET) & R.MBOX_CTRL_DOORBELL:
            raise DeviceError(R.ReturnCode.BUSY, f"opcode {opcode:#06x}", retryable=True)
        padded = payload + b"\0" * (-len(payload) % 8)
        for i in range(0, len(padded), 8):
            self.bar0.write64(R.MBOX_PAYLOAD_OFFSET + i, int.from_bytes(padded[i:i + 8], "little"))
        self.bar0.write64(R.MBOX_CMD_OFFSET, R.mbox_cmd_encode(opcode, len(payload)))
        ctrl = self.bar0.read32(R.MBOX_CTRL_OFFSET)   # keep the interrupt enables
        self.bar0.write32(R.MBOX_CTRL_OFFSET, ctrl | R.MBOX_CTRL_DOORBELL)
        deadline = self.plat.now_ns + (self.timeout_ns if timeout_ns is None else timeout_ns)
        while self.bar0.read32(R.MBOX_CTRL_OFFSET) & R.MBOX_CTRL_DOORBELL:
            nxt = self.plat.events.next_event_ns
            if nxt is None or nxt > deadline:
                self.plat.run_until(max(deadline, self.plat.now_ns))
                raise DeviceError("timeout", f"opcode {opcode:#06x}", retryable=True)
            self.plat.step()
        rc, _, _ = R.mbox_status_decode(self.bar0.read64(R.MBOX_STATUS_OFFSET))
        try:
            code: R.ReturnCode | int = R.ReturnCode(rc)
        except ValueError:
            code = rc
        if code != R.ReturnCode.SUCCESS:
            raise DeviceError(code, f"opcode {opcode:#06x}",
                              retryable=code in (R.ReturnCode.BUSY, R.ReturnCode.RETRY_REQUIRED))
        _, out_len = R.mbox_cmd_decode(self.bar0.read64(R.MBOX_CMD_OFFSET))
        out = bytearray()
        for i in range(0, out_len, 8):
            out += self.bar0.read64(R.MBOX_PAYLOAD_OFFSET + i).to_bytes(8, "little")
        return bytes(out[:out_len])

    def identify(self) -> Identify:
        """Identify Memory Device (0x4000)."""
        out = self.mbox_send(R.Opcode.IDENTIFY)
        total, vol, pers, _ = struct.unpack_from("<QQQQ", out, 16)
        (lsa,) = struct.unpack_from("<I", out, 56)
        unit = R.CAPACITY_UNIT_BYTES
        return Identify(out[:16].rstrip(b"\0").decode("ascii", "replace"), total * unit,
                        vol * unit, pers * unit, lsa)

    def partition_info(self) -> dict[str, int]:
        """Get Partition Info (0x4100), in bytes."""
        names = ("active_volatile", "active_persistent", "next_volatile", "next_persistent")
        vals = struct.unpack("<QQQQ", self.mbox_send(R.Opcode.GET_PARTITION_INFO))
        return {n: v * R.CAPACITY_UNIT_BYTES for n, v in zip(names, vals)}

    def health_info(self) -> dict[str, int]:
        """Get Health Info (0x4200)."""
        names = ("health_status", "media_status", "additional_status", "life_used",
                 "temperature_c", "dirty_shutdowns", "corrected_volatile_errors",
                 "corrected_persistent_errors")
        out = self.mbox_send(R.Opcode.GET_HEALTH_INFO)
        return dict(zip(names, struct.unpack("<BBBBhIII", out)))

    def supported_logs(self) -> list[tuple[bytes, int]]:
        """Get Supported Logs (0x0400): ``[(uuid, size_bytes)]``."""
        out = self.mbox_send(R.Opcode.GET_SUPPORTED_LOGS)
        (n,) = struct.unpack_from("<H", out)
        return [(out[8 + 20 * i:24 + 20 * i], struct.unpack_from("<I", out, 24 + 20 * i)[0])
                for i in range(n)]

    def get_log(self, uuid: bytes, offset: int, length: int) -> bytes:
        """Get Log (0x0401)."""
        return self.mbox_send(R.Opcode.GET_LOG, uuid + struct.pack("<II", offset, length))

    def command_effects(self) -> dict[int, int]:
        """The Command Effects Log as ``{opcode: effects}`` (what the device supports)."""
        size = dict(self.supported_logs()).get(R.CEL_UUID)
        if size is None:
            raise DeviceError(R.ReturnCode.UNSUPPORTED, "no Command Effects Log")
        log = self.get_log(R.CEL_UUID, 0, size)
        return {op: eff for op, eff in struct.iter_unpack("<HH", log)}

    def pod_layout(self) -> PodLayout:
        """Vendor Get Pod Layout (0xC000)."""
        heads, line, _, dpa, size, _ = struct.unpack("<HHIQQQ",
                                                     self.mbox_send(R.Opcode.VENDOR_GET_POD_LAYOUT))
        return PodLayout(heads, line, dpa, size)

    # -- HDM decoders --------------------------------------------------------------------------
    def decoder(self, i: int) -> dict[str, int | bool]:
        """Read back decoder ``i``: base, size and the decoded control fields."""
        self._check_index(i)
        base = self.bar0.read32(R.hdm_decoder_base_low_offset(i)) | (
            self.bar0.read32(R.hdm_decoder_base_high_offset(i)) << 32)
        size = self.bar0.read32(R.hdm_decoder_size_low_offset(i)) | (
            self.bar0.read32(R.hdm_decoder_size_high_offset(i)) << 32)
        return {"base": base, "size": size,
                **R.hdm_decoder_ctrl_decode(self.bar0.read32(R.hdm_decoder_ctrl_offset(i)))}

    def _check_index(self, i: int) -> None:
        if not 0 <= i < self.decoder_count:
            raise UsageError(f"decoder {i}: must be in 0..{self.decoder_count - 1}")

    def commit_decoder(self, i: int, base: int, size: int, *, ways: int = 1,
                       granularity: int = 256, lock: bool = False) -> None:
        """Program decoder ``i`` to map ``[base, base+size)`` and commit it.

        Raises
        ------
        UsageError
            Bad base/size/interleave, out-of-order commit, already committed, or ``ways`` > 1
            (the pod has one Type-3 device, so there are no other interleave targets).
        DeviceError
            The device set COMMIT_ERROR (``.status`` is ``"commit error"``), or it did not
            answer within the timeout.
        """
        self._check_index(i)
        try:
            eiw = R.ways_to_eiw(ways)
            eig = R.granularity_to_eig(granularity)
        except ValueError as exc:
            raise UsageError(f"decoder {i}: {exc}") from None
        if ways != 1:
            raise UsageError(f"decoder {i}: interleave ways={ways} needs {ways} targets, "
                             "the pod has 1 memory device")
        if base < 0 or base % R.HDM_ALIGN_BYTES:
            raise UsageError(f"decoder {i}: base={base:#x} must be 256 MiB aligned")
        if size <= 0 or size % R.HDM_ALIGN_BYTES:
            raise UsageError(f"decoder {i}: size={size:#x} must be a positive multiple of 256 MiB")
        cur = self.decoder(i)
        if cur["committed"]:
            raise UsageError(f"decoder {i}: already committed (reset it first)")
        if i > 0:
            prev = self.decoder(i - 1)
            if not prev["committed"]:
                raise UsageError(f"decoder {i}: decoder {i - 1} must be committed first")
            if base < int(prev["base"]) + int(prev["size"]):
                raise UsageError(f"decoder {i}: base={base:#x} overlaps decoder {i - 1}")
        self.bar0.write32(R.hdm_decoder_base_low_offset(i), base & 0xFFFF_FFFF)
        self.bar0.write32(R.hdm_decoder_base_high_offset(i), base >> 32)
        self.bar0.write32(R.hdm_decoder_size_low_offset(i), size & 0xFFFF_FFFF)
        self.bar0.write32(R.hdm_decoder_size_high_offset(i), size >> 32)
        self.bar0.write32(R.hdm_decoder_ctrl_offset(i),
                          R.hdm_decoder_ctrl_encode(eig=eig, eiw=eiw, lock=lock, commit=True))
        ctrl = self.bar0.read32(R.hdm_decoder_ctrl_offset(i))
        if ctrl & R.HDM_DECODER_CTRL_COMMIT_ERROR:
            raise DeviceError("commit error", f"decoder {i} base={base:#x} size={size:#x}")
        if not ctrl & R.HDM_DECODER_CTRL_COMMITTED:
            raise DeviceError("timeout", f"decoder {i} did not commit")
        gc = self.bar0.read32(R.HDM_GLOBAL_CTRL_OFFSET)
        self.bar0.write32(R.HDM_GLOBAL_CTRL_OFFSET, gc | R.HDM_GLOBAL_CTRL_ENABLE)

    def reset_decoder(self, i: int) -> None:
        """Uncommit decoder ``i`` (higher decoders first, as the spec requires)."""
        self._check_index(i)
        if self.decoder(i)["lock"] and self.decoder(i)["committed"]:
            raise UsageError(f"decoder {i}: locked on commit")
        self.bar0.write32(R.hdm_decoder_ctrl_offset(i), 0)
        if self.decoder(i)["committed"]:
            raise UsageError(f"decoder {i}: uncommit higher-numbered decoders first")
