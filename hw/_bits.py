"""Bit-field helpers in the style of Linux ``GENMASK``/``FIELD_GET``/``FIELD_PREP``.

Register modules (``hw/*/regs.py``) describe each field by its mask, so one definition serves
the model, the driver and the tests.
"""

from __future__ import annotations

__all__ = ["bit", "field_get", "field_prep", "genmask"]


def genmask(hi: int, lo: int) -> int:
    """Mask with bits ``lo..hi`` (inclusive) set, like Linux ``GENMASK(hi, lo)``."""
    if hi < lo or lo < 0:
        raise ValueError(f"genmask({hi}, {lo}): need hi >= lo >= 0")
    return ((1 << (hi - lo + 1)) - 1) << lo


def bit(n: int) -> int:
    """Mask with only bit ``n`` set, like Linux ``BIT(n)``."""
    return 1 << n


def _shift(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


def field_get(mask: int, reg: int) -> int:
    """Extract the field ``mask`` from ``reg`` (``FIELD_GET``)."""
    return (reg & mask) >> _shift(mask)


def field_prep(mask: int, value: int) -> int:
    """Place ``value`` into the field ``mask``; bits that do not fit are dropped."""
    return (value << _shift(mask)) & mask
