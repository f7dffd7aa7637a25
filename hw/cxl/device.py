"""The multi-headed CXL Type-3 memory device: register front end (BAR0).

Component registers with the HDM decoder capability (CXL 2.0 8.2.5) and device registers with the
capability array, device status, primary mailbox and memory-device status (8.2.8).  Mailbox
commands run as platform events ``timing.mailbox_ns`` after the doorbell write; the doorbell
clears when the result is in place (8.2.8.4.4).  The memory path is in :mod:`.pod`.
"""

from __future__ import annotations

import numpy as np

from labrig.hw._device import PciDevice
from labrig.hw._platform import Platform
from labrig.hw.cxl import regs as R
from labrig.hw.cxl.config import CxlPodConfig
from labrig.hw.cxl.hdm import HdmDecoders
from labrig.hw.cxl.mailbox import Mailbox

__all__ = ["CxlType3Device"]

_CAPS = ((R.DevCap.DEVICE_STATUS, R.DEV_STATUS_REL_OFFSET, R.DEV_STATUS_LEN),
         (R.DevCap.PRIMARY_MAILBOX, R.MBOX_REL_OFFSET, R.MBOX_LEN),
         (R.DevCap.MEMDEV, R.MEMDEV_REL_OFFSET, R.MEMDEV_LEN))


class CxlType3Device(PciDevice):
    """Register front end of the pod's memory device (one BAR0 shared by the heads' drivers).

    Parameters
    ----------
    plat : Platform
    cfg : CxlPodConfig
    """

    BAR0_SIZE = R.BAR0_SIZE

    def __init__(self, plat: Platform, cfg: CxlPodConfig, name: str = "cxl0") -> None:
        super().__init__(plat, name)
        self.cfg = cfg
        self.hdm = HdmDecoders(cfg.capacity_bytes)
        self.payload = np.zeros(1 << R.MBOX_PAYLOAD_SIZE_LOG2, dtype=np.uint8)
        self.mbox = Mailbox(cfg, len(self.payload))
        self.mbox_caps = R.mbox_caps_encode(R.MBOX_PAYLOAD_SIZE_LOG2)
        self.mbox_ctrl = 0
        self.mbox_cmd = 0
        self.mbox_status = 0
        self.commands_run = 0

    # -- BAR0 dispatch --------------------------------------------------------------------------
    def _mmio_read(self, off: int, width: int) -> int:
        if width == 8:
            return self._read64(off)
        return self._read32(off)

    def _read64(self, off: int) -> int:
        if off == R.MBOX_CMD_OFFSET:
            return self.mbox_cmd
        if off == R.MBOX_STATUS_OFFSET:
            return self.mbox_status
        if off == R.DEV_CAP_ARRAY_OFFSET:
            return R.field_prep(R.DEV_CAP_ARRAY_COUNT_MASK, len(_CAPS)) | R.field_prep(
                R.DEV_CAP_ARRAY_VERSION_MASK, 1)
        if R.MBOX_PAYLOAD_OFFSET <= off < R.MBOX_PAYLOAD_OFFSET + len(self.payload):
            p = off - R.MBOX_PAYLOAD_OFFSET
            return int.from_bytes(self.payload[p:p + 8].tobytes(), "little")
        return self._read32(off) | (self._read32(off + 4) << 32)

    def _read32(self, off: int) -> int:
        if R.CM_OFFSET <= off < R.DEVICE_OFFSET:
            if off == R.CM_CAP_HDR_OFFSET:
                return (R.field_prep(R.CM_CAP_HDR_ID_MASK, R.CmCap.CXL)
                        | R.field_prep(R.CM_CAP_HDR_VERSION_MASK, 1)
                        | R.field_prep(R.CM_CAP_HDR_CACHE_MEM_VERSION_MASK, 1)
                        | R.field_prep(R.CM_CAP_HDR_ARRAY_SIZE_MASK, 1))
            if off == R.CM_CAP_PTR_ENTRY_OFFSET:
                return R.cm_cap_hdr_encode(R.CmCap.HDM, 3, R.HDM_REL_OFFSET)
            return self.hdm.read(off)
        if off == R.DEV_CAP_ARRAY_OFFSET:
            return R.field_prep(R.DEV_CAP_ARRAY_VERSION_MASK, 1)
        if off == R.DEV_CAP_ARRAY_OFFSET + 4:
            return len(_CAPS)
        rel = off - R.DEV_CAP_HDR_OFFSET
        if 0 <= rel < len(_CAPS) * R.DEV_CAP_HDR_STRIDE:
            i, word = divmod(rel, R.DEV_CAP_HDR_STRIDE)
            cap_id, cap_off, cap_len = _CAPS[i]
            return {0: R.dev_cap_hdr_encode(cap_id, 1), 4: cap_off, 8: cap_len}.get(word, 0)
        if off == R.DEV_STATUS_OFFSET:
            return 0
        if off == R.MEMDEV_STATUS_OFFSET:
            return (R.field_prep(R.MEMDEV_STATUS_MEDIA_MASK, R.MEMDEV_STATUS_MEDIA_READY)
                    | R.MEMDEV_STATUS_MBOX_READY)
        if off == R.MBOX_CAPS_OFFSET:
            return self.mbox_caps
        if off == R.MBOX_CTRL_OFFSET:
            return self.mbox_ctrl
        if off in (R.MBOX_CMD_OFFSET, R.MBOX_STATUS_OFFSET, R.MBOX_BG_STATUS_OFFSET):
            reg = {R.MBOX_CMD_OFFSET: self.mbox_cmd,
                   R.MBOX_STATUS_OFFSET: self.mbox_status}.get(off, 0)
            return reg & 0xFFFF_FFFF
        if off in (R.MBOX_CMD_OFFSET + 4, R.MBOX_STATUS_OFFSET + 4):
            return (self.mbox_cmd if off == R.MBOX_CMD_OFFSET + 4 else self.mbox_status) >> 32
        if R.MBOX_PAYLOAD_OFFSET <= off < R.MBOX_PAYLOAD_OFFSET + len(self.payload):
            p = off - R.MBOX_PAYLOAD_OFFSET
            return int.from_bytes(self.payload[p:p + 4].tobytes(), "little")
        return 0

    def _mmio_write(self, off: int, width: int, value: int) -> None:
        if R.CM_OFFSET <= off < R.DEVICE_OFFSET:
            if width == 8:
                self.hdm.write(off, value & 0xFFFF_FFFF)
                self.hdm.write(off + 4, value >> 32)
            else:
                self.hdm.write(off, value)
            return
        busy = bool(self.mbox_ctrl & R.MBOX_CTRL_DOORBELL)
        if off == R.MBOX_CTRL_OFFSET and width == 4:
            self._write_ctrl(value)
        elif busy:
            return  # command and payload registers must not change while the doorbell is set
        elif off == R.MBOX_CMD_OFFSET and width == 8:
            self.mbox_cmd = value & (R.MBOX_CMD_OPCODE_MASK | R.MBOX_CMD_PAYLOAD_LEN_MASK)
        elif off == R.MBOX_CMD_OFFSET and width == 4:
            self.mbox_cmd = (self.mbox_cmd & ~0xFFFF_FFFF) | value
        elif off == R.MBOX_CMD_OFFSET + 4 and width == 4:
            self.mbox_cmd = ((self.mbox_cmd & 0xFFFF_FFFF) | (value << 32)) & (
                R.MBOX_CMD_OPCODE_MASK | R.MBOX_CMD_PAYLOAD_LEN_MASK)
        elif R.MBOX_PAYLOAD_OFFSET <= off < R.MBOX_PAYLOAD_OFFSET + len(self.payload):
            p = off - R.MBOX_PAYLOAD_OFFSET
            self.payload[p:p + width] = np.frombuffer(value.to_bytes(width, "little"), np.uint8)

    def _write_ctrl(self, value: int) -> None:
        old = self.mbox_ctrl
        irq_bits = R.MBOX_CTRL_DOORBELL_IRQ_EN | R.MBOX_CTRL_BG_IRQ_EN
        if old & R.MBOX_CTRL_DOORBELL:
            return  # whole register is read-only while a command runs
        self.mbox_ctrl = value & (irq_bits | R.MBOX_CTRL_DOORBELL)
        if value & R.MBOX_CTRL_DOORBELL:
            self.plat.schedule(self.cfg.timing.mailbox_ns, self._run_command)

    def _run_command(self) -> None:
        opcode, length = R.mbox_cmd_decode(self.mbox_cmd)
        if length > len(self.payload):
            rc, out = R.ReturnCode.INVALID_PAYLOAD_LENGTH, b""
        else:
            rc, out = self.mbox.execute(opcode, self.payload[:length].tobytes())
        if len(out) > len(self.payload):
            rc, out = R.ReturnCode.INTERNAL_ERROR, b""
        self.payload[:len(out)] = np.frombuffer(out, np.uint8)
        self.mbox_cmd = R.mbox_cmd_encode(opcode, len(out))
        self.mbox_status = R.mbox_status_encode(rc)
        self.mbox_ctrl &= ~R.MBOX_CTRL_DOORBELL
        self.commands_run += 1
        if self.mbox_ctrl & R.MBOX_CTRL_DOORBELL_IRQ_EN:
            self.raise_interrupt(0)
