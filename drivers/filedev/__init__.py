"""``file:`` block devices: a regular file (or a block device node) behind the
:class:`~labrig.drivers.block.BlockDevice` interface, served by a thread pool doing
``pread``/``pwrite`` -- the portable engine that works wherever POSIX I/O does, and the
fallback the io_uring engine (issue 3) will use when io_uring is unavailable.
"""

from labrig.drivers.filedev._device import FileBlockDevice, FileBuffer, open_file

__all__ = ["FileBlockDevice", "FileBuffer", "open_file"]
