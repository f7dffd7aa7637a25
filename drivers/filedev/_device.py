"""The ``file:`` backend: ``file:/path?size=64M&lba=4096&direct=1&engine=uring``.

Options
-------
size
    Bytes.  A missing file is created with this size; an existing smaller file is grown
    (sparse, ``ftruncate``); an existing larger file is used up to ``size``.  Without ``size``
    the file must exist and its size is used.
lba
    Logical block size, 512 or 4096 (default 4096).
ro
    ``1``: open read-only; writes, trims and flushes complete with an ``EBADF`` error.
direct
    ``1``: O_DIRECT is required (opening fails if the file system refuses it); ``0``: buffered;
    unset: O_DIRECT when the file system allows it, else buffered with a warning.
workers
    Threads per queue pair of the thread engine (default ``min(depth, 8)``).
engine
    ``uring`` (io_uring, :mod:`labrig.drivers.uring`), ``threads`` (a pread/pwrite thread
    pool) or ``auto`` (default: io_uring when this kernel allows it, else the thread pool with
    a one-line :class:`UringFallbackWarning` saying why).
sqpoll
    ``1``: io_uring rings with a kernel submission-polling thread (``IORING_SETUP_SQPOLL``).

Semantics chosen to match the emulated NVMe drive, so the same workload returns the same data
on both: ``trim`` and ``write_zeroes`` punch a hole (``fallocate(PUNCH_HOLE|KEEP_SIZE)``,
reads return zeros like NVMe DLFEAT=001b) and fall back to writing zeros where holes are not
supported; ``flush`` is ``fdatasync``; FUA is a write followed by ``fdatasync``.  A range
beyond the device completes with an LBA-out-of-range :class:`DeviceError`; an OS error on one
command (EIO, EBADF on a read-only file ...) completes that command with a
:class:`DeviceError` whose ``status`` is the errno name, and the queue keeps working.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import errno
import mmap
import os
import re
import stat
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labrig.drivers.block import DeviceString, IoKind, IoRequest, parse_size, register_backend
from labrig.errors import BackendError, BackendUnavailable, DeviceError, UsageError

__all__ = ["ENGINES", "DirectIoFallbackWarning", "FileBlockDevice", "FileBuffer",
           "UringFallbackWarning", "open_file"]

LBA_SIZES = (512, 4096)
#: largest single transfer, like a 1 MiB MDTS
MAX_TRANSFER_BYTES = 1 << 20
MAX_QUEUE_DEPTH = 1024
DEFAULT_DEPTH = 32
MAX_WORKERS = 8
#: fallocate(2) mode bits, <linux/falloc.h>
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
#: O_DIRECT needs buffer, offset and length aligned to the logical block size of the file
#: system; 512 covers every Linux file system, the page covers every buffer we allocate
DIRECT_ALIGN = 512
#: sleep between non-blocking polls while waiting with a timeout
WAIT_SLICE_S = 50e-6

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_fallocate = getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    _fallocate.restype = ctypes.c_int


class DirectIoFallbackWarning(UserWarning):
    """O_DIRECT was refused by the file system; the device runs buffered."""


class UringFallbackWarning(UserWarning):
    """io_uring cannot run here; the device uses the thread-pool engine."""


ENGINES = ("auto", "uring", "threads")


class FileBuffer:
    """Page-aligned anonymous memory (usable for O_DIRECT) with a numpy ``view``."""

    _serial = 0

    def __init__(self, nbytes: int) -> None:
        FileBuffer._serial += 1
        self.serial = FileBuffer._serial
        self._mm: mmap.mmap | None = mmap.mmap(-1, nbytes)
        self.nbytes = nbytes
        self.view: NDArray[np.uint8] = np.frombuffer(self._mm, dtype=np.uint8)

    def free(self) -> None:
        """Unmap; idempotent.  The view must not be used afterwards."""
        if self._mm is not None:
            self.view = np.zeros(0, dtype=np.uint8)
            try:
                self._mm.close()
            except BufferError:     # a view is still exported: let GC unmap it
                pass
            self._mm = None

    close = free

    def __enter__(self) -> FileBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.free()


def _block_device_read_only(path: str) -> bool:
    """The kernel's read-only flag of a block device (BLKROGET, <linux/fs.h>)."""
    import fcntl
    import struct

    BLKROGET = 0x125E   # _IO(0x12, 94)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        out = fcntl.ioctl(fd, BLKROGET, b"\0" * 4)
        return struct.unpack("i", out)[0] != 0
    except OSError:
        return False
    finally:
        os.close(fd)


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """Deallocate a byte range; False when the file system cannot punch holes."""
    if _fallocate is None:
        return False
    rc = _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


class _OutOfRange(OSError):
    """A command addressed blocks past the end of the device."""


#: status of a command past the end: the NVMe name, so runtimes see the same on every backend
STATUS_LBA_OUT_OF_RANGE = "LBA_OUT_OF_RANGE"


def _status_of(exc: OSError) -> str:
    if isinstance(exc, _OutOfRange):
        return STATUS_LBA_OUT_OF_RANGE
    return errno.errorcode.get(exc.errno or 0, "EIO")


class QPairChecks:
    """What every host queue pair shares (thread pool, io_uring, NVMe passthrough): argument
    checks, the read/write/trim/write-zeroes entry points, ``wait`` and context management."""

    dev: FileBlockDevice

    def _check_buf(self, buf: Any, buf_offset: int, nbytes: int) -> NDArray[np.uint8]:
        view = getattr(buf, "view", None)
        if view is None or not isinstance(view, np.ndarray):
            raise UsageError(f"buffer {buf!r}: must come from dev.alloc_buffer()")
        if buf_offset < 0 or buf_offset + nbytes > view.nbytes:
            raise UsageError(f"buf_offset={buf_offset} nbytes={nbytes}: outside the "
                             f"{view.nbytes}-byte buffer")
        if self.dev.direct and buf_offset % DIRECT_ALIGN:
            raise UsageError(f"buf_offset={buf_offset}: must be a multiple of {DIRECT_ALIGN} "
                             "bytes under O_DIRECT")
        return view[buf_offset:buf_offset + nbytes]

    def _check_range(self, lba: int, nblocks: int) -> bool:
        return 0 <= lba and nblocks >= 1 and lba + nblocks <= self.dev.num_blocks

    def _check_rw(self, lba: Any, nblocks: Any, buf_offset: Any) -> tuple[int, int, int]:
        for name, v in (("lba", lba), ("nblocks", nblocks), ("buf_offset", buf_offset)):
            if not isinstance(v, (int, np.integer)):
                raise UsageError(f"{name}={v!r}: must be an integer")
        lba, nblocks, buf_offset = int(lba), int(nblocks), int(buf_offset)
        if not 1 <= nblocks <= self.dev.max_transfer_blocks:
            raise UsageError(f"nblocks={nblocks}: must be in 1..{self.dev.max_transfer_blocks}")
        return lba, nblocks, buf_offset

    def _range_error(self, lba: int, nblocks: int) -> OSError:
        return _OutOfRange(errno.ERANGE, f"lba {lba}+{nblocks} beyond {self.dev.num_blocks} "
                                         "blocks")


    def _rw(self, kind: str, buf: Any, lba: Any, nblocks: Any, buf_offset: Any, fua: bool,
            callback: Callable[[IoRequest], Any] | None, context: Any) -> IoRequest:
        raise TypeError(f"{type(self).__name__} must define _rw")

    def _dealloc(self, kind: str, lba: Any, nblocks: Any,
                 callback: Callable[[IoRequest], Any] | None, context: Any) -> IoRequest:
        raise TypeError(f"{type(self).__name__} must define _dealloc")

    def close(self) -> None:
        raise TypeError(f"{type(self).__name__} must define close")

    def read(self, buf: Any, lba: int, nblocks: int, *, buf_offset: int = 0,
             callback: Callable[[IoRequest], Any] | None = None,
             context: Any = None) -> IoRequest:
        """Read ``nblocks`` blocks at ``lba`` into ``buf`` at ``buf_offset`` bytes."""
        return self._rw(IoKind.READ, buf, lba, nblocks, buf_offset, False, callback, context)

    def write(self, buf: Any, lba: int, nblocks: int, *, buf_offset: int = 0, fua: bool = False,
              callback: Callable[[IoRequest], Any] | None = None,
              context: Any = None) -> IoRequest:
        """Write ``nblocks`` blocks from ``buf``; ``fua`` makes it durable before completing."""
        return self._rw(IoKind.WRITE, buf, lba, nblocks, buf_offset, fua, callback, context)

    def trim(self, lba: int, nblocks: int, *,
             callback: Callable[[IoRequest], Any] | None = None,
             context: Any = None) -> IoRequest:
        """Deallocate the range; it then reads as zeros (NVMe DLFEAT=001b semantics)."""
        return self._dealloc(IoKind.TRIM, lba, nblocks, callback, context)

    def write_zeroes(self, lba: int, nblocks: int, *,
                     callback: Callable[[IoRequest], Any] | None = None,
                     context: Any = None) -> IoRequest:
        """Zero the range (deallocating it where the device or file system can)."""
        return self._dealloc(IoKind.WRITE_ZEROES, lba, nblocks, callback, context)

    def poll(self, max_completions: int = 0, *, wait: bool = True) -> int:
        raise TypeError(f"{type(self).__name__} must define poll")

    def wait(self, reqs: IoRequest | list[IoRequest] | None = None,
             timeout_ns: int | None = None) -> None:
        """Poll until ``reqs`` (default: everything outstanding) complete, sleeping in the
        backend (``poll(wait=True)``) while nothing is ready.

        Raises
        ------
        TimeoutError
            Not done after ``timeout_ns`` wall nanoseconds.
        """
        if isinstance(reqs, IoRequest):
            reqs = [reqs]
        deadline = None if timeout_ns is None else time.monotonic_ns() + timeout_ns

        def pending() -> bool:
            if reqs is None:
                return self.outstanding > 0
            return any(not r.done for r in reqs)

        while pending():
            if deadline is None:
                self.poll()
                continue
            if self.poll(wait=False) == 0 and pending():
                if time.monotonic_ns() > deadline:
                    raise TimeoutError(f"{self.outstanding} requests still outstanding on "
                                       f"{self.dev.uri} after {timeout_ns} ns")
                time.sleep(WAIT_SLICE_S)

    @property
    def outstanding(self) -> int:
        raise TypeError(f"{type(self).__name__} must define outstanding")

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileQPair(QPairChecks):
    """A queue pair: requests go to a thread pool, completions are reaped by :meth:`poll`.

    Callbacks run in the caller's thread inside ``poll``/``wait``, as on the emulator.
    """

    def __init__(self, dev: FileBlockDevice, depth: int, workers: int) -> None:
        self.dev = dev
        self.depth = depth
        self._pool = ThreadPoolExecutor(max_workers=workers,
                                        thread_name_prefix="labrig-file")
        self._done: collections.deque[tuple[IoRequest, str | None, OSError | None]] = \
            collections.deque()
        self._cv = threading.Condition()
        self._waiting: collections.deque[tuple[IoRequest, Callable[[], None]]] = \
            collections.deque()
        self._inflight = 0
        self._outstanding = 0
        self._batching = 0
        self._closing = False
        self._closed = False
        self._in_poll = False

    @property
    def outstanding(self) -> int:
        return self._outstanding

    # -- submission --------------------------------------------------------------------------
    def _submit(self, req: IoRequest, work: Callable[[], None]) -> IoRequest:
        if self._closing:
            raise UsageError("queue pair is closed")
        req.submit_ns = self.dev.clock()
        self._outstanding += 1
        if self._inflight >= self.depth:
            self._waiting.append((req, work))     # software queue, like SPDK queued_req
        else:
            self._start(req, work)
        return req

    def _start(self, req: IoRequest, work: Callable[[], None]) -> None:
        self._inflight += 1

        def run() -> None:
            status: str | None = None
            exc: OSError | None = None
            try:
                work()
            except OSError as e:
                status, exc = _status_of(e), e
            with self._cv:
                self._done.append((req, status, exc))
                self._cv.notify()

        self._pool.submit(run)

    def _rw(self, kind: str, buf: Any, lba: int, nblocks: int, buf_offset: int, fua: bool,
            callback: Callable[[IoRequest], Any] | None, context: Any) -> IoRequest:
        lba, nblocks, buf_offset = self._check_rw(lba, nblocks, buf_offset)
        bs = self.dev.block_size
        mem = self._check_buf(buf, buf_offset, nblocks * bs)
        req = IoRequest(kind, lba, nblocks, callback, context)
        if not self._check_range(lba, nblocks):
            return self._submit(req, self._out_of_range(lba, nblocks))
        fd, off = self.dev.fd, lba * bs

        if kind == IoKind.READ:
            def work() -> None:
                got = os.preadv(fd, [memoryview(mem)], off)
                if got != mem.nbytes:       # the file shrank underneath us
                    raise OSError(errno.EIO, f"short read: {got} of {mem.nbytes} bytes")
        else:
            def work() -> None:
                put = os.pwritev(fd, [memoryview(mem)], off)
                if put != mem.nbytes:
                    raise OSError(errno.EIO, f"short write: {put} of {mem.nbytes} bytes")
                if fua:
                    os.fdatasync(fd)
        return self._submit(req, work)

    def _out_of_range(self, lba: int, nblocks: int) -> Callable[[], None]:
        exc = self._range_error(lba, nblocks)

        def work() -> None:
            raise exc
        return work

    def flush(self, *, callback: Callable[[IoRequest], Any] | None = None,
              context: Any = None) -> IoRequest:
        """``fdatasync``: every completed write becomes durable."""
        fd = self.dev.fd
        return self._submit(IoRequest(IoKind.FLUSH, 0, 0, callback, context),
                            lambda: os.fdatasync(fd))

    def _dealloc(self, kind: str, lba: int, nblocks: int,
                 callback: Callable[[IoRequest], Any] | None, context: Any) -> IoRequest:
        req = IoRequest(kind, int(lba), int(nblocks), callback, context)
        if not self._check_range(int(lba), int(nblocks)):
            return self._submit(req, self._out_of_range(int(lba), int(nblocks)))
        dev = self.dev
        off, length = int(lba) * dev.block_size, int(nblocks) * dev.block_size

        def work() -> None:
            if not _punch_hole(dev.fd, off, length):
                zeros = dev.zero_block * int(nblocks)
                os.pwrite(dev.fd, zeros, off)
        return self._submit(req, work)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Accepted for interface parity: each request is handed to the pool at once."""
        self._batching += 1
        try:
            yield
        finally:
            self._batching -= 1

    # -- completion --------------------------------------------------------------------------
    def poll(self, max_completions: int = 0, *, wait: bool = True) -> int:
        """Reap finished requests (all ready ones when ``max_completions`` is 0), run their
        callbacks, start queued ones.  With ``wait`` and nothing ready while requests are in
        flight, first sleep until one finishes."""
        if wait and not self._done and self._inflight and not self._in_poll:
            with self._cv:
                while not self._done:
                    self._cv.wait(0.05)
        n = 0
        self._in_poll = True
        try:
            while self._done and (max_completions <= 0 or n < max_completions):
                with self._cv:
                    req, status, exc = self._done.popleft()
                self._inflight -= 1
                self._outstanding -= 1
                if self._waiting and not self._closing:
                    self._start(*self._waiting.popleft())
                err = None
                if status is not None:
                    err = DeviceError(status, f"{req.kind} lba={req.lba} nblocks={req.nblocks}"
                                      f" on {self.dev.uri}: {exc}", retryable=False)
                    err.__cause__ = BackendError(str(exc), exc.errno if exc else 0)
                req._complete(self.dev.clock(), status or "OK", err)
                n += 1
        finally:
            self._in_poll = False
        if self._closing and not self._closed:
            self._finish_close()
        return n

    def close(self) -> None:
        """Finish outstanding requests, stop the threads; from a callback, after ``poll``."""
        if self._closed:
            return
        self._closing = True
        if not self._in_poll:
            self._finish_close()

    def _finish_close(self) -> None:
        self._waiting.clear()
        self._pool.shutdown(wait=True)
        self._closed = True

class HostBlockDevice:
    """What every real-device backend shares: wall clock, page-aligned buffers, closing.

    Subclasses set ``fd``, ``block_size`` and ``_qpairs`` and open queue pairs.
    """

    fd: int
    block_size: int
    _qpairs: list[Any]
    _buffers: weakref.WeakSet[FileBuffer]

    def clock(self) -> int:
        """Monotonic wall-clock nanoseconds."""
        return time.monotonic_ns()

    def spend(self, ns: int) -> None:
        """Nothing to do: host work on a real device already took real time."""

    def alloc_buffer(self, nbytes: int) -> FileBuffer:
        """Zeroed, page-aligned buffer of ``nbytes`` rounded up to the block size."""
        if not isinstance(nbytes, int) or nbytes <= 0:
            raise UsageError(f"nbytes={nbytes!r}: must be a positive integer")
        bs = self.block_size
        buf = FileBuffer(-(-nbytes // bs) * bs)
        self._buffers.add(buf)
        return buf

    def live_buffers(self) -> list[FileBuffer]:
        """Buffers allocated here and not yet freed, oldest first (the io_uring engine
        registers them with its rings)."""
        return sorted((b for b in self._buffers if b.nbytes > 0 and b._mm is not None),
                      key=lambda b: b.serial)

    def close(self) -> None:
        """Close queue pairs first, then the file.  Idempotent."""
        if self.fd < 0:
            return
        for qp in self._qpairs:
            qp.close()
        os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



class FileBlockDevice(HostBlockDevice):
    """A file or block device node as a :class:`~labrig.drivers.block.BlockDevice`."""

    def __init__(self, path: str, *, size: int | None = None, lba_bytes: int = 4096,
                 direct: bool | None = None, workers: int | None = None,
                 read_only: bool = False, uri: str | None = None, engine: str = "auto",
                 sqpoll: bool = False) -> None:
        if lba_bytes not in LBA_SIZES:
            raise UsageError(f"lba={lba_bytes}: must be one of 512, 4096")
        if engine not in ENGINES:
            raise UsageError(f"engine={engine!r}: must be one of {', '.join(ENGINES)}")
        self.engine = _choose_engine(engine, sqpoll, uri or f"file:{path}")
        self.sqpoll = sqpoll
        self.uri = uri or f"file:{path}"
        self.path = path
        self.block_size = lba_bytes
        self.max_transfer_blocks = MAX_TRANSFER_BYTES // lba_bytes
        self.max_queue_depth = MAX_QUEUE_DEPTH
        self.workers = workers
        self.zero_block = bytes(lba_bytes)
        self._qpairs: list[Any] = []
        self._buffers: weakref.WeakSet[FileBuffer] = weakref.WeakSet()
        self.fd, self.read_only, self.direct = self._open(path, size, direct, read_only)
        try:
            st = os.fstat(self.fd)
            if stat.S_ISBLK(st.st_mode):
                total = os.lseek(self.fd, 0, os.SEEK_END)
                if size is not None and size > total:
                    raise UsageError(f"{path}: the device holds {total} bytes, size={size} "
                                     "requested (a block device cannot grow)")
            else:
                total = st.st_size
                if size is not None and total < size:
                    if self.read_only:
                        raise UsageError(f"{path}: file has {total} bytes, size={size} "
                                         "requested, and it is read-only")
                    os.ftruncate(self.fd, size)
                    total = size
            if size is not None:
                total = min(total, size)
            self.num_blocks = total // lba_bytes
            if self.num_blocks == 0:
                raise UsageError(f"{path}: {total} bytes hold no {lba_bytes}-byte block "
                                 "(pass size=...)")
        except BaseException:
            os.close(self.fd)
            raise

    def _open(self, path: str, size: int | None, direct: bool | None,
              read_only: bool) -> tuple[int, bool, bool]:
        exists = os.path.exists(path)
        if not exists and (size is None or read_only):
            raise UsageError(f"{path}: no such file (pass size=... to create it)")
        is_blk = exists and stat.S_ISBLK(os.stat(path).st_mode)
        if is_blk and not read_only and _block_device_read_only(path):
            raise UsageError(f"{path}: the block device is read-only (pass ro=1)")
        flags = (os.O_RDONLY if read_only else os.O_RDWR) | (0 if exists else os.O_CREAT)
        if is_blk and not read_only:
            flags |= os.O_EXCL      # block devices: EBUSY if mounted or opened exclusively
        want_direct = direct is not False
        for attempt_direct in ((True, False) if want_direct else (False,)):
            f = flags | (os.O_DIRECT if attempt_direct else 0)
            try:
                try:
                    fd = os.open(path, f, 0o644)
                except PermissionError:
                    fd = os.open(path, (f & ~os.O_RDWR) | os.O_RDONLY)
                    read_only = True
                return fd, read_only, attempt_direct
            except OSError as exc:
                if attempt_direct and exc.errno == errno.EINVAL:
                    if direct:
                        raise BackendError(f"{path}: the file system refuses O_DIRECT and "
                                           "direct=1 was requested", exc.errno) from exc
                    warnings.warn(f"{path}: O_DIRECT not supported by the file system; "
                                  "running buffered", DirectIoFallbackWarning, stacklevel=3)
                    continue
                if exc.errno == errno.EBUSY:
                    raise BackendError(f"{path}: device busy (mounted, or open exclusively "
                                       "by another program)", exc.errno) from exc
                raise BackendError(f"cannot open {path}", exc.errno or 0) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def qpair(self, depth: int | None = None) -> FileQPair:
        """A queue pair with ``depth`` requests in flight (default 32)."""
        if self.fd < 0:
            raise UsageError(f"{self.uri}: device is closed")
        depth = DEFAULT_DEPTH if depth is None else depth
        if not isinstance(depth, int) or not 1 <= depth <= MAX_QUEUE_DEPTH:
            raise UsageError(f"depth={depth!r}: must be in 1..{MAX_QUEUE_DEPTH}")
        qp: Any
        if self.engine == "uring":
            from labrig.drivers.uring.qpair import UringQPair

            qp = UringQPair(self, depth, sqpoll=self.sqpoll)
        else:
            qp = FileQPair(self, depth, self.workers or min(depth, MAX_WORKERS))
        self._qpairs.append(qp)
        return qp

    def __repr__(self) -> str:
        return (f"FileBlockDevice({self.path!r}, block_size={self.block_size}, "
                f"num_blocks={self.num_blocks}, direct={self.direct}, engine={self.engine})")


def _choose_engine(engine: str, sqpoll: bool, uri: str) -> str:
    """Resolve ``auto``; a demanded engine that cannot run is an error naming why."""
    if engine == "threads":
        if sqpoll:
            raise UsageError(f"{uri}: sqpoll=1 needs the io_uring engine, not engine=threads")
        return engine
    from labrig.drivers.uring.qpair import uring_unavailable_reason

    reason = uring_unavailable_reason()
    if reason is None:
        return "uring"
    if engine == "uring" or sqpoll:
        raise BackendUnavailable("uring", reason)
    warnings.warn(f"{uri}: io_uring unavailable ({reason}); using the thread-pool engine",
                  UringFallbackWarning, stacklevel=4)
    return "threads"


_OPTIONS = {"size", "lba", "direct", "workers", "engine", "ro", "sqpoll"}


def open_file(ds: DeviceString) -> FileBlockDevice:
    """Opener for ``file:/path?...`` device strings (see the module docstring)."""
    unknown = set(ds.options) - _OPTIONS
    if unknown:
        raise UsageError(f"{ds.text}: unknown option(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(_OPTIONS))})")
    if not ds.target:
        raise UsageError(f"{ds.text}: no path after 'file:'")
    o = ds.options
    engine = o.get("engine", "auto")
    if engine not in ENGINES:
        raise UsageError(f"{ds.text}: engine={engine!r}: must be one of {', '.join(ENGINES)}")
    sq_opt = o.get("sqpoll", "0")
    if sq_opt not in ("0", "1"):
        raise UsageError(f"{ds.text}: sqpoll={sq_opt!r}: must be 0 or 1")
    size = parse_size(o["size"], "size") if "size" in o else None
    try:
        lba = int(o.get("lba", "4096"))
    except ValueError:
        raise UsageError(f"{ds.text}: lba={o['lba']!r}: must be 512 or 4096") from None
    direct_opt = o.get("direct")
    if direct_opt not in (None, "0", "1"):
        raise UsageError(f"{ds.text}: direct={direct_opt!r}: must be 0 or 1")
    direct = None if direct_opt is None else direct_opt == "1"
    ro_opt = o.get("ro", "0")
    if ro_opt not in ("0", "1"):
        raise UsageError(f"{ds.text}: ro={ro_opt!r}: must be 0 or 1")
    workers = None
    if "workers" in o:
        try:
            workers = int(o["workers"])
        except ValueError:
            workers = 0
        if not 1 <= workers <= 64:
            raise UsageError(f"{ds.text}: workers={o['workers']!r}: must be in 1..64")
    return FileBlockDevice(ds.target, size=size, lba_bytes=lba, direct=direct,
                           workers=workers, read_only=ro_opt == "1", uri=ds.text,
                           engine=engine, sqpoll=sq_opt == "1")


def open_dev(ds: DeviceString) -> Any:
    """Opener for ``/dev/...`` strings: ``/dev/ngXnY`` is NVMe passthrough
    (:mod:`labrig.drivers.nvmept`), any other node (``/dev/nvme0n1``, ``/dev/vdb``) a block
    device served like ``file:`` (same options; ``size`` cannot grow a device)."""
    path = ds.target
    if re.match(r"^ng\d+n\d+$", os.path.basename(path)):
        from labrig.drivers.nvmept import open_passthru

        return open_passthru(path, ds.text, ds.options)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise BackendError(f"cannot open {path}", exc.errno or 0) from exc
    if not stat.S_ISBLK(mode):
        raise UsageError(f"{ds.text}: not a block device (use file:{path} for regular files)")
    return open_file(DeviceString("file", path, ds.options, ds.text))


register_backend("file", "regular file or block device node: io_uring (O_DIRECT, fixed "
                         "buffers) or a pread/pwrite thread pool", open_file)
register_backend("dev", "/dev/... block device nodes (as file:), /dev/ngXnY NVMe passthrough "
                        "over io_uring URING_CMD", open_dev)
