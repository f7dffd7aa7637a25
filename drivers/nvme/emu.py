"""The ``emu:nvme`` block backend: the emulated NVMe SSD driven through its registers.

``open_block_device("emu:nvme?capacity=1G&lba=4096&queues=8&qd=32&seed=0")`` builds a
:class:`~labrig.hw.Platform`, an :class:`labrig.hw.nvme.NvmeController` with one namespace,
and runs the poll-mode driver (:class:`~labrig.drivers.nvme.controller.NvmeCtrlr`) through
controller init; queue pairs are NVMe I/O queue pairs and ``clock()`` is virtual time.

Options (all optional):

==========  ===================================================  =========
option      meaning                                              default
==========  ===================================================  =========
capacity    namespace size, bytes with K/M/G/T suffix            1G
lba         logical block size in bytes: 512 or 4096             4096
queues      I/O queue pairs the controller supports              the model's default
qd          default depth of ``qpair()``                         min(255, CAP.MQES)
seed        platform seed (same seed -> same virtual times)      0
==========  ===================================================  =========

Experiments that need the device itself (power loss, statistics) use ``dev.platform`` and
``dev.controller``; the driver instance is ``dev.ctrlr``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from labrig.drivers.block._interface import BlockDevice
from labrig.drivers.block._registry import DeviceString, parse_size, register_backend
from labrig.drivers.nvme.controller import NvmeCtrlr, NvmeDriverOptions
from labrig.drivers.nvme.qpair import QPair
from labrig.errors import ConfigError, UsageError
from labrig.hw import DmaBuffer, Platform

__all__ = ["EmuNvmeDevice", "emu_available", "open_emu"]

SCHEME: Final = "emu"
TARGET: Final = "nvme"
DEFAULT_CAPACITY_BYTES: Final = 1 << 30
DEFAULT_LBA_BYTES: Final = 4096
LBA_SIZES: Final = (512, 4096)


def _int_option(name: str, lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise UsageError(f"{name}={text!r}: not an integer") from None
        if not lo <= value <= hi:
            raise UsageError(f"{name}={value}: must be in {lo}..{hi}")
        return value
    return parse


def _lba_option(text: str) -> int:
    value = _int_option("lba", 1, 1 << 16)(text)
    if value not in LBA_SIZES:
        raise UsageError(f"lba={value}: must be one of {', '.join(map(str, LBA_SIZES))}")
    return value


_PARSERS: dict[str, Callable[[str], int]] = {
    "capacity": lambda t: parse_size(t, "capacity"),
    "lba": _lba_option,
    "queues": _int_option("queues", 1, 65535),
    "qd": _int_option("qd", 1, 65535),
    "seed": _int_option("seed", 0, (1 << 63) - 1),
}


class EmuNvmeDevice:
    """A :class:`~labrig.drivers.block.BlockDevice` on the emulated NVMe controller.

    Parameters
    ----------
    uri : str, optional
        Device string it was opened with (for ``repr`` and reports).
    capacity_bytes : int, optional
        Namespace 1 size in bytes (rounded down to whole blocks).
    lba_bytes : int, optional
        Logical block size, 512 or 4096.
    queues : int, optional
        I/O queue pairs the controller supports (model default when omitted).
    qd : int, optional
        Default :meth:`qpair` depth.
    seed : int, optional
        Platform seed.
    options : NvmeDriverOptions, optional
        Driver defaults.

    Raises
    ------
    UsageError
        A bad option value; the message names it.
    """

    def __init__(self, uri: str = "emu:nvme", *, capacity_bytes: int = DEFAULT_CAPACITY_BYTES,
                 lba_bytes: int = DEFAULT_LBA_BYTES, queues: int | None = None,
                 qd: int | None = None, seed: int = 0,
                 options: NvmeDriverOptions | None = None) -> None:
        from labrig.hw.nvme import NamespaceConfig, NvmeConfig, NvmeController

        if lba_bytes not in LBA_SIZES:
            raise UsageError(f"lba={lba_bytes}: must be one of {', '.join(map(str, LBA_SIZES))}")
        if capacity_bytes < lba_bytes:
            raise UsageError(f"capacity={capacity_bytes}: must hold at least one "
                             f"{lba_bytes}-byte block")
        self.uri = uri
        self.platform = Platform(seed)
        ns_cfg = NamespaceConfig(capacity_bytes=capacity_bytes // lba_bytes * lba_bytes,
                                 lba_bytes=lba_bytes)
        extra: dict[str, Any] = {}
        if queues is not None:
            extra["max_io_queues"] = queues
        try:
            cfg = NvmeConfig(namespaces=(ns_cfg,), **extra)
        except ConfigError as exc:
            raise UsageError(f"{uri}: {exc}") from exc
        self.config = cfg
        self.controller = NvmeController(self.platform, cfg)
        self.ctrlr = NvmeCtrlr(self.platform, self.controller, options)
        self._qpairs: list[QPair] = []
        self._closed = False
        try:
            self.ctrlr.init()
        except BaseException:
            self.ctrlr.close()
            raise
        ns = self.ctrlr.namespaces[min(self.ctrlr.namespaces)]
        self.nsid = ns.nsid
        self.block_size = ns.lba_bytes
        self.num_blocks = ns.num_blocks
        self.max_transfer_blocks = min(self.ctrlr.max_transfer_bytes // ns.lba_bytes, 1 << 16)
        self.max_queue_depth = self.ctrlr.mqes
        default_qd = min(self.ctrlr.options.io_queue_entries - 1, self.max_queue_depth)
        if qd is not None and not 1 <= qd <= self.max_queue_depth:
            self.ctrlr.close()
            raise UsageError(f"qd={qd}: must be in 1..{self.max_queue_depth} (CAP.MQES)")
        self.default_depth = default_qd if qd is None else qd

    # -- BlockDevice ----------------------------------------------------------------------------
    def clock(self) -> int:
        """Virtual nanoseconds of the platform."""
        return self.platform.now_ns

    def spend(self, ns: int) -> None:
        """Let ``ns`` of host work pass in virtual time; the controller keeps processing."""
        if ns > 0:
            self.platform.run_for(int(ns))

    def alloc_buffer(self, nbytes: int) -> DmaBuffer:
        """Zeroed DMA buffer of ``nbytes`` rounded up to ``block_size``, page aligned."""
        if not isinstance(nbytes, int) or nbytes <= 0:
            raise UsageError(f"nbytes={nbytes!r}: must be a positive integer")
        bs = self.block_size
        return self.platform.memory.alloc(-(-nbytes // bs) * bs, self.ctrlr.page_size)

    def qpair(self, depth: int | None = None) -> QPair:
        """Open an NVMe I/O queue pair of ``depth`` (default: the ``qd`` option)."""
        if self._closed:
            raise UsageError(f"{self.uri}: device is closed")
        if depth is not None and (not isinstance(depth, int)
                                  or not 1 <= depth <= self.max_queue_depth):
            raise UsageError(f"depth={depth!r}: must be in 1..{self.max_queue_depth}")
        qp: QPair = self.ctrlr.create_io_qpair(self.default_depth if depth is None else depth,
                                               self.nsid)
        return qp

    def close(self) -> None:
        """Close every queue pair, shut the controller down.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.ctrlr.close()

    def __enter__(self) -> EmuNvmeDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"EmuNvmeDevice({self.uri!r}, block_size={self.block_size}, "
                f"num_blocks={self.num_blocks})")


def open_emu(ds: DeviceString) -> BlockDevice:
    """Opener registered for the ``emu`` scheme."""
    if ds.target != TARGET:
        raise UsageError(f"device string {ds.text!r}: unknown emulated block device "
                         f"{ds.target!r} (known: {TARGET})")
    values: dict[str, int] = {}
    for key, text in ds.options.items():
        parser = _PARSERS.get(key)
        if parser is None:
            raise UsageError(f"device string {ds.text!r}: unknown option {key!r} "
                             f"(known: {', '.join(sorted(_PARSERS))})")
        values[key] = parser(text)
    return EmuNvmeDevice(
        ds.text or f"{SCHEME}:{TARGET}",
        capacity_bytes=values.get("capacity", DEFAULT_CAPACITY_BYTES),
        lba_bytes=values.get("lba", DEFAULT_LBA_BYTES), queues=values.get("queues"),
        qd=values.get("qd"), seed=values.get("seed", 0))


def emu_available() -> str | None:
    """``None`` when the device model can be imported, else the reason (``labrig devices``
    prints it; tests skip with it)."""
    try:
        from labrig.hw.nvme import NamespaceConfig, NvmeConfig, NvmeController  # noqa: F401
    except ImportError as exc:
        return f"the NVMe device model (labrig.hw.nvme) cannot be imported: {exc}"
    return None


register_backend(SCHEME, "emulated NVMe SSD (labrig.hw.nvme) through the poll-mode NVMe driver",
                 open_emu, emu_available)
