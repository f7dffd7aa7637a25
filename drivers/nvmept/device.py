"""NVMe passthrough on a namespace's generic character device (``/dev/ngXnY``), through io_uring.

Each request is an ``IORING_OP_URING_CMD`` with ``cmd_op = NVME_URING_CMD_IO`` on a ring created
with 128-byte SQEs and 32-byte CQEs; the SQE's command area holds ``struct nvme_uring_cmd``
packed from the very :class:`~labrig.drivers.nvme.commands.NvmeCommand` builders the emulated
PCIe driver uses (Read, Write, Flush, Write Zeroes, Dataset Management; Identify on the admin
path), and completions decode the NVMe status with the same
:class:`~labrig.hw.nvme.spec.NvmeStatus` code (the kernel returns the 15-bit status field, i.e.
the CQE status half without the phase bit; negative results are errnos).  Linux >= 5.19 and
read (and for writes, write) permission on the node; ``kernel.io_uring_disabled`` must be 0
or the caller in its group.

Geometry comes from sysfs (``/sys/block/nvmeXnY/queue``): the generic node carries no block
layer.  Semantics match the emulated drive: trim is Dataset Management with the Deallocate
attribute, write-zeroes sets DEAC, FUA sets the FUA bit.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labrig.drivers.block import IoKind, IoRequest
from labrig.drivers.filedev._device import STATUS_LBA_OUT_OF_RANGE, FileBuffer, HostBlockDevice
from labrig.drivers.nvme import commands as nvme
from labrig.drivers.nvme.commands import NvmeCommand
from labrig.drivers.nvme.errors import NvmeCommandError
from labrig.drivers.nvmept._abi import URING_CMD, check_layout
from labrig.drivers.uring.qpair import UringQPair
from labrig.errors import BackendError, BackendUnavailable, UsageError
from labrig.hw.nvme.spec import NvmeStatus

__all__ = ["GENERIC_NODE", "NvmePassthruDevice", "encode_uring_cmd", "geometry"]

#: ``/dev/ng<ctrl>n<nsid>`` (nvme core, ``nvme_add_ns_cdev``).
GENERIC_NODE = re.compile(r"^ng(\d+)n(\d+)$")
MAX_QUEUE_DEPTH = 1024
DEFAULT_DEPTH = 32
#: One NVMe command moves at most 65536 blocks (NLB is a 0-based 16-bit field).
MAX_NLB = 1 << 16


def encode_uring_cmd(cmd: NvmeCommand, *, addr: int = 0, data_len: int = 0,
                     timeout_ms: int = 0) -> bytes:
    """``struct nvme_uring_cmd`` for ``cmd`` with its data buffer (72 bytes, little endian)."""
    return URING_CMD.pack(cmd.opc & 0xFF, 0, 0, cmd.nsid, cmd.cdw2, cmd.cdw3, cmd.mptr, addr, 0,
                          data_len, cmd.cdw10, cmd.cdw11, cmd.cdw12, cmd.cdw13, cmd.cdw14,
                          cmd.cdw15, timeout_ms, 0)


def decode_uring_cmd(data: bytes) -> dict[str, int]:
    """The fields of a packed ``struct nvme_uring_cmd`` (tests and debugging)."""
    from labrig.drivers.nvmept._abi import FIELDS

    return dict(zip((name for name, _ in FIELDS), URING_CMD.unpack(data)))


def geometry(node: str, sys_root: Path = Path("/sys")) -> dict[str, int]:
    """Block size, capacity in blocks and max transfer of the namespace behind ``ngXnY``.

    Raises
    ------
    BackendError
        The namespace's sysfs directory is missing or unreadable.
    """
    m = GENERIC_NODE.match(node)
    if m is None:
        raise UsageError(f"{node}: not an NVMe generic device name (ngXnY)")
    q = sys_root / "block" / f"nvme{m.group(1)}n{m.group(2)}"
    try:
        lba = int((q / "queue" / "logical_block_size").read_text())
        sectors = int((q / "size").read_text())                 # always 512-byte units
        max_kb = int((q / "queue" / "max_hw_sectors_kb").read_text())
    except (OSError, ValueError) as exc:
        raise BackendError(f"{node}: cannot read its geometry under {q}: {exc}",
                           getattr(exc, "errno", 0) or 0) from exc
    return {"block_size": lba, "num_blocks": sectors * 512 // lba,
            "max_transfer_blocks": max(1, min(max_kb * 1024 // lba, MAX_NLB))}


class NvmePassthruDevice(HostBlockDevice):
    """A :class:`~labrig.drivers.block.BlockDevice` on ``/dev/ngXnY``."""

    direct = True           # buffers and offsets obey O_DIRECT-style alignment

    def __init__(self, path: str, *, uri: str | None = None, qd: int | None = None,
                 sys_root: Path = Path("/sys")) -> None:
        self.uri = uri or path
        self.path = path
        node = os.path.basename(path)
        if GENERIC_NODE.match(node) is None:
            raise UsageError(f"{path}: not an NVMe generic device (/dev/ngXnY)")
        self._ioctls = check_layout()
        try:
            st = os.stat(path)
        except OSError as exc:
            raise BackendError(f"cannot open {path}", exc.errno or 0) from exc
        if not stat.S_ISCHR(st.st_mode):
            raise UsageError(f"{path}: not a character device")
        self.read_only = False
        try:
            self.fd = os.open(path, os.O_RDWR)
        except PermissionError:
            try:
                self.fd = os.open(path, os.O_RDONLY)
            except OSError as exc:
                raise BackendError(f"cannot open {path}: permission denied", exc.errno or 0) \
                    from exc
            self.read_only = True
        except OSError as exc:
            raise BackendError(f"cannot open {path}", exc.errno or 0) from exc
        try:
            self.nsid = fcntl.ioctl(self.fd, self._ioctls["ioctl_id"])
            geo = geometry(node, sys_root)
        except BaseException:
            os.close(self.fd)
            raise
        self.block_size = geo["block_size"]
        self.num_blocks = geo["num_blocks"]
        self.max_transfer_blocks = geo["max_transfer_blocks"]
        self.max_queue_depth = MAX_QUEUE_DEPTH
        self.default_depth = qd or DEFAULT_DEPTH
        self.zero_block = bytes(self.block_size)
        self._qpairs: list[Any] = []
        self._buffers = weakref.WeakSet()

    def live_buffers(self) -> list[FileBuffer]:
        """No fixed buffers: URING_CMD takes plain user addresses."""
        return []

    def qpair(self, depth: int | None = None) -> PassthruQPair:
        if self.fd < 0:
            raise UsageError(f"{self.uri}: device is closed")
        depth = self.default_depth if depth is None else depth
        if not isinstance(depth, int) or not 1 <= depth <= MAX_QUEUE_DEPTH:
            raise UsageError(f"depth={depth!r}: must be in 1..{MAX_QUEUE_DEPTH}")
        qp = PassthruQPair(self, depth)
        self._qpairs.append(qp)
        return qp



class PassthruQPair(UringQPair):
    """A queue pair whose requests are NVMe commands in ``IORING_OP_URING_CMD`` SQEs."""

    dev: NvmePassthruDevice

    def __init__(self, dev: NvmePassthruDevice, depth: int) -> None:
        super().__init__(dev, depth, big_entries=True)   # type: ignore[arg-type]
        self._cmd_io = dev._ioctls["io"]

    def _cmd(self, req: IoRequest, cmd: NvmeCommand, addr: int = 0, data_len: int = 0,
             keep: Any = None) -> IoRequest:
        payload = encode_uring_cmd(cmd, addr=addr, data_len=data_len)
        return self._enqueue(req, (self._lib.LR_OP_URING_CMD, self._cmd_io, payload, 0, cmd,
                                   keep))

    def _rw(self, kind: str, buf: Any, lba: Any, nblocks: Any, buf_offset: Any, fua: bool,
            callback: Callable[[IoRequest], Any] | None, context: Any) -> IoRequest:
        lba, nblocks, buf_offset = self._check_rw(lba, nblocks, buf_offset)
        addr = self._addr(buf, buf_offset, nblocks * self.dev.block_size)
        req = IoRequest(kind, lba, nblocks, callback, context)
        if not self._check_range(lba, nblocks):
            return self._fail_early(req, STATUS_LBA_OUT_OF_RANGE,
                                    self._range_error(lba, nblocks))
        build = nvme.read if kind == IoKind.READ else nvme.write
        cmd = build(self.dev.nsid, lba, nblocks, fua=fua)
        return self._cmd(req, cmd, addr, nblocks * self.dev.block_size)

    def flush(self, *, callback: Callable[[IoRequest], Any] | None = None,
              context: Any = None) -> IoRequest:
        return self._cmd(IoRequest(IoKind.FLUSH, 0, 0, callback, context),
                         nvme.flush(self.dev.nsid))

    def _dealloc(self, kind: str, lba: Any, nblocks: Any,
                 callback: Callable[[IoRequest], Any] | None, context: Any) -> IoRequest:
        lba, nblocks = int(lba), int(nblocks)
        req = IoRequest(kind, lba, nblocks, callback, context)
        if not self._check_range(lba, nblocks):
            return self._fail_early(req, STATUS_LBA_OUT_OF_RANGE,
                                    self._range_error(lba, nblocks))
        if kind == IoKind.WRITE_ZEROES:
            if nblocks > MAX_NLB:    # NLB is 16 bits; DSM ranges (below) are 32 bits
                raise UsageError(f"write_zeroes nblocks={nblocks}: at most {MAX_NLB} per "
                                 "command (NVM Command Set 1.0, 3.2.8)")
            return self._cmd(req, nvme.write_zeroes(self.dev.nsid, lba, nblocks,
                                                    deallocate=True))
        ranges = nvme.dsm_range_bytes([(lba, nblocks)])
        buf = FileBuffer(4096)                       # the range list is DMA'd by the drive
        buf.view[:len(ranges)] = memoryview(ranges)
        return self._cmd(req, nvme.dsm(self.dev.nsid, [(lba, nblocks)]),
                         buf.view.ctypes.data, len(ranges), keep=buf)

    def _finish_cmd(self, req: IoRequest, sqe: tuple[Any, ...], res: int, dw0: int) -> None:
        keep = sqe[5]
        if keep is not None:
            keep.free()
        if res < 0:
            self._complete(req, errno.errorcode.get(-res, "EIO"),
                           OSError(-res, os.strerror(-res)))
            return
        if res == 0:
            req._complete(self.dev.clock(), "OK", None)
            return
        status = NvmeStatus.decode(res << 1)         # the kernel drops the phase bit
        cmd: NvmeCommand = sqe[4]
        err = NvmeCommandError(status, f"{req.kind} lba={req.lba} nblocks={req.nblocks} on "
                                       f"{self.dev.uri}: {status}", opc=cmd.opc, dw0=dw0)
        req._complete(self.dev.clock(), status, err)


def open_passthru(path: str, uri: str, options: dict[str, str]) -> NvmePassthruDevice:
    """Opener for ``/dev/ngXnY[?qd=N]``."""
    unknown = set(options) - {"qd"}
    if unknown:
        raise UsageError(f"{uri}: unknown option(s) {', '.join(sorted(unknown))} (known: qd)")
    qd = None
    if "qd" in options:
        try:
            qd = int(options["qd"])
        except ValueError:
            qd = 0
        if not 1 <= qd <= MAX_QUEUE_DEPTH:
            raise UsageError(f"{uri}: qd={options['qd']!r}: must be in 1..{MAX_QUEUE_DEPTH}")
    return NvmePassthruDevice(path, uri=uri, qd=qd)


def passthru_unavailable_reason(path: str) -> str | None:
    """Why passthrough cannot be used on ``path`` (for ``labrig devices``), or None."""
    from labrig.drivers.uring.qpair import uring_unavailable_reason

    reason = uring_unavailable_reason()
    if reason is not None:
        return reason
    try:
        check_layout()
    except BackendUnavailable as exc:
        return exc.reason
    try:
        if not stat.S_ISCHR(os.stat(path).st_mode):
            return f"{path} is not a character device"
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if not os.access(path, os.R_OK):
        return f"no read permission on {path}"
    return None
