"""``file:`` block devices: a regular file (or a block device node) behind the
:class:`~labrig.drivers.block.BlockDevice` interface, served by io_uring
(:mod:`labrig.drivers.uring`) or, where io_uring cannot run, by a thread pool doing
``pread``/``pwrite`` — the portable engine that works wherever POSIX I/O does.
"""

from labrig.drivers.filedev._device import (
    ENGINES,
    DirectIoFallbackWarning,
    FileBlockDevice,
    FileBuffer,
    UringFallbackWarning,
    open_file,
)

__all__ = ["ENGINES", "DirectIoFallbackWarning", "FileBlockDevice", "FileBuffer",
           "UringFallbackWarning", "open_file"]
