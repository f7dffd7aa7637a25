"""HDM decoders of the Type-3 device (CXL 2.0 8.2.5.12) and their commit rules.

A decoder maps a host-physical window ``[base, base+size)`` onto device-physical addresses.
Software writes base, size and control, then sets COMMIT; the device answers with COMMITTED or
COMMIT_ERROR, never an exception.  The commit checks follow CXL 2.0 8.2.5.12.20 ("Committing
decoder programming") and what Linux ``cxl_decoder_commit`` relies on: 256 MiB alignment,
in-order commit (decoder i needs decoder i-1 committed and a higher base), valid IG/IW
encodings, and the DPA range within capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

from labrig.hw.cxl import regs as R

__all__ = ["HdmDecoder", "HdmDecoders"]


@dataclass
class HdmDecoder:
    """Software-visible state of one decoder."""

    base: int = 0
    size: int = 0
    ctrl: int = 0
    dpa_skip: int = 0
    #: DPA where this decoder's range starts (set at commit)
    dpa_base: int = 0
    #: why the last commit failed (for traces and tests), "" when none
    error: str = ""

    @property
    def committed(self) -> bool:
        return bool(self.ctrl & R.HDM_DECODER_CTRL_COMMITTED)

    @property
    def locked(self) -> bool:
        return self.committed and bool(self.ctrl & R.HDM_DECODER_CTRL_LOCK_ON_COMMIT)


class HdmDecoders:
    """The decoder register block; ``capacity`` bounds the decoded DPA range."""

    def __init__(self, capacity: int, count: int = R.HDM_DECODER_COUNT) -> None:
        self.capacity = capacity
        self.dec = [HdmDecoder() for _ in range(count)]
        self.global_ctrl = 0
        self.cap = R.hdm_cap_encode(count)

    # -- register access ------------------------------------------------------------------------
    def read(self, off: int) -> int:
        """32-bit read of a register at absolute BAR0 offset ``off`` (0 for unknown)."""
        if off == R.HDM_CAP_OFFSET:
            return self.cap
        if off == R.HDM_GLOBAL_CTRL_OFFSET:
            return self.global_ctrl
        i, reg = self._locate(off)
        if i is None:
            return 0
        d = self.dec[i]
        return {0x10: d.base & 0xFFFF_FFFF, 0x14: d.base >> 32,
                0x18: d.size & 0xFFFF_FFFF, 0x1C: d.size >> 32, 0x20: d.ctrl,
                0x24: d.dpa_skip & 0xFFFF_FFFF, 0x28: d.dpa_skip >> 32}.get(reg, 0)

    def write(self, off: int, value: int) -> None:
        """32-bit write; writes to a committed+locked decoder or reserved bits are ignored."""
        if off == R.HDM_GLOBAL_CTRL_OFFSET:
            self.global_ctrl = value & (R.HDM_GLOBAL_CTRL_ENABLE
                                        | R.HDM_GLOBAL_CTRL_POISON_ON_ERR_EN)
            return
        i, reg = self._locate(off)
        if i is None:
            return
        d = self.dec[i]
        if d.locked:
            return
        lo28 = ~R.genmask(27, 0) & 0xFFFF_FFFF  # bits 27:0 of base/size low are reserved
        if reg == 0x20:
            self._write_ctrl(i, value)
        elif d.committed:
            return  # base/size/skip are read-only while committed (8.2.5.12.20)
        elif reg == 0x10:
            d.base = (d.base & ~0xFFFF_FFFF) | (value & lo28)
        elif reg == 0x14:
            d.base = (d.base & 0xFFFF_FFFF) | (value << 32)
        elif reg == 0x18:
            d.size = (d.size & ~0xFFFF_FFFF) | (value & lo28)
        elif reg == 0x1C:
            d.size = (d.size & 0xFFFF_FFFF) | (value << 32)
        elif reg == 0x24:
            d.dpa_skip = (d.dpa_skip & ~0xFFFF_FFFF) | (value & lo28)
        elif reg == 0x28:
            d.dpa_skip = (d.dpa_skip & 0xFFFF_FFFF) | (value << 32)

    def _locate(self, off: int) -> tuple[int | None, int]:
        rel = off - R.HDM_OFFSET
        if rel < 0x10:
            return None, 0
        i, reg = divmod(rel - 0x10, 0x20)
        if i >= len(self.dec):
            return None, 0
        return i, reg + 0x10

    # -- commit --------------------------------------------------------------------------------
    def _write_ctrl(self, i: int, value: int) -> None:
        d = self.dec[i]
        old = d.ctrl
        keep = old & (R.HDM_DECODER_CTRL_COMMITTED | R.HDM_DECODER_CTRL_COMMIT_ERROR)
        new = (value & R.HDM_DECODER_CTRL_RW_MASK) | keep
        rising = new & ~old & R.HDM_DECODER_CTRL_COMMIT
        falling = old & ~new & R.HDM_DECODER_CTRL_COMMIT
        if d.committed and not falling:
            # programming fields are frozen while committed; only COMMIT may be cleared
            d.ctrl = old
            return
        d.ctrl = new
        if rising:
            reason = self._check_commit(i)
            d.error = reason
            d.ctrl &= ~(R.HDM_DECODER_CTRL_COMMITTED | R.HDM_DECODER_CTRL_COMMIT_ERROR)
            d.ctrl |= R.HDM_DECODER_CTRL_COMMIT_ERROR if reason else R.HDM_DECODER_CTRL_COMMITTED
        elif falling:
            if any(x.committed for x in self.dec[i + 1:]):
                # uncommitting out of order: refuse, keep the decoder committed (8.2.5.12.20)
                d.ctrl = old
                return
            d.ctrl &= ~(R.HDM_DECODER_CTRL_COMMITTED | R.HDM_DECODER_CTRL_COMMIT_ERROR)
            d.error = ""

    def _check_commit(self, i: int) -> str:
        d = self.dec[i]
        f = R.hdm_decoder_ctrl_decode(d.ctrl)
        try:
            R.eig_to_granularity(int(f["eig"]))
            ways = R.eiw_to_ways(int(f["eiw"]))
        except ValueError as exc:
            return str(exc)
        if d.size == 0:
            return "size is 0"
        if d.base % R.HDM_ALIGN_BYTES or d.size % R.HDM_ALIGN_BYTES:
            return "base or size not 256 MiB aligned"
        if d.size % ways:
            return "size not a multiple of the interleave ways"
        if i > 0:
            prev = self.dec[i - 1]
            if not prev.committed:
                return f"decoder {i - 1} not committed (decoders commit in order)"
            if d.base < prev.base + prev.size:
                return f"base below the end of decoder {i - 1}"
        dpa = (self.dec[i - 1].dpa_base + self.dec[i - 1].size // self._ways(i - 1)
               if i > 0 else 0) + d.dpa_skip
        if dpa + d.size // ways > self.capacity:
            return "DPA range exceeds device capacity"
        d.dpa_base = dpa
        return ""

    def _ways(self, i: int) -> int:
        return R.eiw_to_ways(R.field_get(R.HDM_DECODER_CTRL_IW_MASK, self.dec[i].ctrl))

    # -- decode (the host's load/store path) ---------------------------------------------------
    def translate(self, hpa: int) -> int | None:
        """DPA for host physical address ``hpa``, or None when no committed decoder claims it.

        With ``ways`` > 1 this single device is interleave position 0: it owns the granules
        whose index modulo ``ways`` is 0 (the others belong to devices the pod doesn't have).
        """
        if not self.global_ctrl & R.HDM_GLOBAL_CTRL_ENABLE:
            return None
        for i, d in enumerate(self.dec):
            if d.committed and d.base <= hpa < d.base + d.size:
                gran = R.eig_to_granularity(R.field_get(R.HDM_DECODER_CTRL_IG_MASK, d.ctrl))
                ways = self._ways(i)
                rel = hpa - d.base
                g = rel // gran
                if g % ways:
                    return None
                return d.dpa_base + (g // ways) * gran + rel % gran
        return None

    def window(self, hpa: int) -> tuple[int, int, int] | None:
        """``(hpa_base, dpa_base, size)`` of the 1-way committed decoder containing ``hpa``."""
        if not self.global_ctrl & R.HDM_GLOBAL_CTRL_ENABLE:
            return None
        for i, d in enumerate(self.dec):
            if d.committed and d.base <= hpa < d.base + d.size and self._ways(i) == 1:
                return d.base, d.dpa_base, d.size
        return None
